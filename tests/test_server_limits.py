"""The real server's own limits (`python wsgi.py`, eventlet): answered in the contract's envelope.

eventlet.wsgi refuses an over-long URL or header before the app runs (allynet/transport/eventlet_http.py
puts those answers in the envelope); raw sockets show exactly what a client receives.
"""
import json
import socket

import pytest
import requests

from tests.scaleout_support import WsgiProcess


@pytest.fixture(scope="module")
def server():
    process = WsgiProcess({"HTTP_MAX_URL_BYTES": "4096", "HTTP_MAX_HEADER_BYTES": "2048"})
    try:
        yield process.wait_ready(timeout=30)
    finally:
        process.stop()


def raw_request(server, data):
    """Send `data` on a fresh connection; (status, headers, parsed JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_envelope(status, headers, body, want_status, want_code):
    assert status == want_status
    assert headers["content-type"] == "application/json"
    assert body["success"] is False
    assert body["error"]["code"] == want_code
    assert body["error"]["message"]


def test_url_over_the_limit_is_414_uri_too_long(server):
    status, headers, body = raw_request(server, b"GET /healthz?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_envelope(status, headers, body, 414, "uri_too_long")
    assert body["error"]["details"] == {"max_request_line_bytes": 4096}
    # Just under the configured limit: served by the app.
    assert requests.get(f"{server.url}/healthz?q=" + "a" * 3900, timeout=10).status_code == 200


def test_header_over_the_limit_is_431_headers_too_large(server):
    status, headers, body = raw_request(
        server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
    assert_envelope(status, headers, body, 431, "headers_too_large")
    assert body["error"]["details"]["max_header_line_bytes"] == 2048
    response = requests.get(f"{server.url}/healthz", headers={"X-Big": "a" * 1900}, timeout=10)
    assert response.status_code == 200


def test_headers_over_the_total_limit_are_431(server):
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 2000) for i in range(10))  # 20 KB > 8 x 2048
    status, headers, body = raw_request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert_envelope(status, headers, body, 431, "headers_too_large")


def test_too_many_headers_is_431(server):
    many = b"".join(b"X-H%d: a\r\n" % i for i in range(120))
    status, headers, body = raw_request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert_envelope(status, headers, body, 431, "headers_too_large")


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/9.x\r\nHost: x\r\n\r\n",
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n",
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_malformed_requests_are_400_bad_request(server, request_bytes):
    status, headers, body = raw_request(server, request_bytes)
    assert_envelope(status, headers, body, 400, "bad_request")


def test_the_server_keeps_serving(server):
    raw_request(server, b"GET /healthz?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
