"""eventlet.wsgi's request limits, set explicitly, and its own refusals in the contract's envelope.

eventlet.wsgi refuses an over-long request line (414), header line or header block (400) and a
bad Content-Length with canned `HTTP/1.0 4xx` bytes before the app runs, and a malformed
request line with the stdlib's `send_error` HTML. `EnvelopeHttpProtocol` (eventlet.wsgi.server's
`protocol=`) wraps its `wfile` to swap each canned answer for the envelope (431 for headers)
and overrides `send_error`. Used by wsgi.py under eventlet only. Details:
docs/architecture.md ("eventlet's HTTP refusals").
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
