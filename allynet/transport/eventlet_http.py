"""eventlet.wsgi's request limits, set explicitly, and its own refusals in the contract's envelope.

eventlet.wsgi reads the request line and the headers itself and refuses what breaks its limits
before the app is ever called, so Flask's error handlers never see those requests:

- a request line of `url_length_limit` bytes or more: canned bytes, an empty `414`;
- a header line of `MAX_HEADER_LINE` bytes or more, or headers over `MAX_TOTAL_HEADER_SIZE` in
  all: canned bytes, an empty `400 Header Line Too Long` / `400 Headers Too Large`;
- a bad `Content-Length`, or one with `Transfer-Encoding`: canned `400 Bad Request`;
- a malformed request line or more than 100 headers: the stdlib's `send_error` (an HTML page).

eventlet 0.41 has no option to shape those answers. The canned ones are written with
`self.wfile.write(...)` from inside `HttpProtocol.handle_one_request`, so `EnvelopeHttpProtocol`
(passed as eventlet.wsgi.server's `protocol=`) wraps its `wfile` and swaps each canned answer for
the envelope; they are the only writes that start with `HTTP/1.0 4` (every response of the app,
the websocket handshake and `100 Continue` go out as `HTTP/1.1`). `send_error` is the stdlib's
documented hook and is overridden. Installed by wsgi.py under eventlet only.
"""
import json

from eventlet import wsgi

# (first line eventlet writes, minus "HTTP/1.0 ") -> (status, reason, contract code, message)
CANNED = {
    b"414 ": (414, "URI Too Long", "uri_too_long", "The request URL is too long"),
    b"400 Header Line Too Long": (431, "Request Header Fields Too Large", "headers_too_large",
                                  "A request header is too long"),
    b"400 Headers Too Large": (431, "Request Header Fields Too Large", "headers_too_large",
                               "The request headers are too large"),
    b"400 Bad Request": (400, "Bad Request", "bad_request",
                         "Malformed request: bad Content-Length or Transfer-Encoding"),
}
# Statuses the stdlib's send_error answers with (parse_request), as contract codes.
STDLIB_CODES = {414: "uri_too_long", 431: "headers_too_large"}


def error_response(status, reason, code, message, details=None):
    """A complete HTTP/1.1 response carrying the contract's error envelope; the connection closes."""
    error = {"code": code, "message": message}
    if details:
        error["details"] = details
    body = json.dumps({"success": False, "error": error}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("latin-1") + body


class _EnvelopeErrors:
    """eventlet's `wfile`, with its canned refusals replaced by the envelope."""

    def __init__(self, wfile, limits):
        self._wfile = wfile
        self._limits = limits

    def write(self, data):
        if data[:10] == b"HTTP/1.0 4":
            for prefix, (status, reason, code, message) in CANNED.items():
                if data.startswith(prefix, 9):
                    data = error_response(status, reason, code, message, self._limits.get(code))
                    break
        return self._wfile.write(data)

    def __getattr__(self, name):
        return getattr(self._wfile, name)


class EnvelopeHttpProtocol(wsgi.HttpProtocol):
    """eventlet's HttpProtocol whose own error answers are JSON in the contract's envelope."""

    limits = {}  # contract code -> details of the limit it enforces (set by `server_options`)

    def setup(self):
        super().setup()
        self.wfile = _EnvelopeErrors(self.wfile, self.limits)

    def send_error(self, code, message=None, explain=None):
        status = int(code)
        reason = self.responses.get(status, ("Error",))[0]
        contract_code = STDLIB_CODES.get(status, "bad_request")
        self.log_error("code %d, message %s", status, message)
        self.wfile.write(error_response(status, reason, contract_code, message or reason))
        self.close_connection = True


def server_options(config):
    """eventlet.wsgi.server keyword arguments enforcing the configured limits with envelope answers.

    The header limits are module constants of eventlet.wsgi (read at every request), so this sets
    them for the whole process: wsgi.py runs one server per process.
    """
    url_limit = int(config["HTTP_MAX_URL_BYTES"])
    header_limit = int(config["HTTP_MAX_HEADER_BYTES"])
    wsgi.MAX_HEADER_LINE = header_limit
    wsgi.MAX_TOTAL_HEADER_SIZE = 8 * header_limit
    EnvelopeHttpProtocol.limits = {
        "uri_too_long": {"max_request_line_bytes": url_limit},
        "headers_too_large": {"max_header_line_bytes": header_limit,
                              "max_headers_total_bytes": 8 * header_limit},
    }
    return {"protocol": EnvelopeHttpProtocol, "url_length_limit": url_limit}
