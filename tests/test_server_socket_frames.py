"""Socket.IO frame limits on the real server (`python wsgi.py`, eventlet), with the python-socketio client.

Up to SOCKET_MAX_FRAME_BYTES a frame is parsed and the event's own limits answer in its ack; over
it the server sends `session:ended {"reason": "frame_too_large"}` and closes the connection.
"""
import json
import threading

import pytest
import requests
import socketio
import websocket

from tests.helpers import fast_only
from tests.scaleout_support import WsgiProcess

LIMIT = 300_000


@pytest.fixture(scope="module")
def server():
    process = WsgiProcess({"SOCKET_MAX_FRAME_BYTES": str(LIMIT), "RATELIMIT_ENABLED": "0"})
    try:
        yield process.wait_ready(timeout=30).url
    finally:
        process.stop()


class Rider:
    """A registered user connected over the websocket transport, recording session:ended."""

    def __init__(self, server, name):
        api = f"{server}/api/v1"
        body = {"email": f"{name}@example.com", "password": "a good password", "display_name": name}
        self.token = token = requests.post(f"{api}/auth/register", json=body, timeout=10).json()["data"]["access_token"]
        self.ended, self.gone = [], threading.Event()
        self.client = socketio.Client(reconnection=False)
        self.client.on("session:ended", self.ended.append)
        self.client.on("disconnect", lambda *reason: self.gone.set())
        self.client.connect(server, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        self.party = self.client.call("party:create", {"name": f"{name}'s ride"}, timeout=10)["party"]

    def message(self, text):
        return self.client.call("party:message", {"party_id": self.party["id"], "text": text}, timeout=20)


@pytest.fixture
def rider(server, request):
    rider = Rider(server, request.node.name.replace("[", "-").replace("]", "").lower()[-40:])
    yield rider
    if rider.client.connected:
        rider.client.disconnect()


@pytest.mark.parametrize("size", [200_000, LIMIT - 1000])
def test_a_frame_under_the_limit_is_parsed_and_refused_by_the_event(rider, size):
    ack = rider.message("x" * size)
    assert ack["ok"] is False
    assert ack["error"]["code"] == "validation_error"
    assert "text" in ack["error"]["details"]
    assert rider.client.connected and rider.ended == []
    assert rider.message("still here")["ok"] is True  # same connection


@fast_only
def test_a_frame_over_the_limit_ends_the_session(rider):
    rider.client.emit("party:message", {"party_id": rider.party["id"], "text": "x" * (LIMIT + 1000)})
    assert rider.gone.wait(10)
    assert rider.ended == [{"reason": "frame_too_large", "max_bytes": LIMIT}]


@fast_only
def test_a_fragmented_message_over_the_limit_ends_the_session(server, rider):
    """eventlet checks each frame's length only: fragments under the limit that add up to more."""
    ws = websocket.create_connection(server.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                                     timeout=10)
    try:
        assert ws.recv().startswith("0")
        ws.send("40" + json.dumps({"token": rider.token}))
        while not ws.recv().startswith("40"):  # party:presence of the rider's party may come first
            pass
        text = '42["party:message",{"party_id":"%s","text":"%s"}]' % (rider.party["id"], "x" * LIMIT)
        half = len(text) // 2  # each fragment is under the limit, the message is not
        ws.send_frame(websocket.ABNF(fin=0, opcode=websocket.ABNF.OPCODE_TEXT, data=text[:half]))
        ws.send_frame(websocket.ABNF(fin=1, opcode=websocket.ABNF.OPCODE_CONT, data=text[half:]))
        received = []
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            received.append(data.decode())
        assert int.from_bytes(data[:2], "big") == 1009
        assert '42["session:ended",{"reason":"frame_too_large","max_bytes":%d}]' % LIMIT in received
    finally:
        ws.close()
