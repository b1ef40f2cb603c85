"""Small helpers for tests (import as `from tests.helpers import ...`)."""
import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def events_named(sio_client, name):
    """Payloads of every `name` event a Socket.IO test client received (drains its queue)."""
    return [event["args"][0] for event in sio_client.get_received() if event["name"] == name]


def error_code(response):
    """The contract error code of a Flask test response."""
    return response.get_json()["error"]["code"]


def load_script(name):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"allynet_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emit_raw(sio_client, event, payload_json):
    """Emit `event` with `payload_json` spliced in as raw JSON text (NaN, 1e400, `\\ud800`, deep
    nesting: what a client's encoder may send but Python's would not) and return the ack."""
    import json

    sio_client.callback_counter += 1
    packet = f"2{sio_client.callback_counter}{json.dumps([event])[:-1]},{payload_json}]"
    sio_client.socketio.server._handle_eio_message(sio_client.eio_sid, packet)
    ack, sio_client.acks = sio_client.acks, None
    return None if ack is None else ack["args"][0]


def all_at_once(calls, timeout=60):
    """Run the callables in threads released together by a barrier; their results, in order.

    An exception in a call is returned in its place (the test asserts on it), never lost in a thread.
    """
    import threading

    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)
    done = [False] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # handed to the test as a result
            results[index] = exc
        done[index] = True

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert all(done), "a racing call did not finish"
    return results


# ALLYNET_TRANSPORT=plain (tests/conftest.py): tests of the fast transport's own mechanisms skip.
PLAIN_TRANSPORT = os.environ.get("ALLYNET_TRANSPORT") == "plain"


def fast_only(test):
    """Mark a test of a mechanism the plain transport does not have (allynet/transport/PATCHES.md)."""
    import pytest

    return pytest.mark.skipif(PLAIN_TRANSPORT, reason="the fast transport's own mechanism")(test)


class QuietHandler:
    """Mixin for http.server handlers of local test servers: no access log on stderr."""

    def log_message(self, *args):
        pass


class LocalHTTPServer:
    """An http.server on 127.0.0.1 (a free port) serving `handler` from a daemon thread; `base_url`."""

    def __init__(self, handler):
        from http.server import ThreadingHTTPServer
        import threading

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
