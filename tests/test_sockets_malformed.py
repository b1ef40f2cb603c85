"""Malformed Socket.IO packets: dropped with one log line (no traceback), the connection kept.

Through the Socket.IO test client (which hands packets to the server's Engine.IO message handler)
and through a served app with a raw websocket, where the bytes take Engine.IO's own read path.
"""
import json
import logging

import pytest
import websocket

from tests.helpers import fast_only
from tests.scaleout_support import quiet_werkzeug, served  # noqa: F401  (fixtures)

GARBAGE = [
    '2["party:message",',           # JSON cut short
    "x",                             # not a packet type
    "2",                             # an EVENT without a name
    '4["party:message"]',            # a CONNECT_ERROR from a client
    "2/nowhere,[",                   # a namespace, then garbage
    "0[",                            # CONNECT with a broken auth object
]


def assert_one_line_each(caplog, count):
    dropped = [record for record in caplog.records if "malformed Socket.IO packet dropped" in record.getMessage()]
    assert len(dropped) == count
    assert all(record.exc_info is None and record.levelno == logging.WARNING for record in dropped)
    assert not [record for record in caplog.records if record.exc_info is not None]
    assert "Traceback" not in caplog.text


@fast_only
def test_garbage_packets_log_one_line_and_keep_the_connection(app, socket_client, make_user, caplog):
    user = make_user()
    client = socket_client(user)
    server = app.extensions["socketio"].server
    with caplog.at_level(logging.INFO):
        for garbage in GARBAGE:
            server._handle_eio_message(client.eio_sid, garbage)
    assert_one_line_each(caplog, len(GARBAGE))
    assert client.is_connected()
    ack = client.emit("party:create", {"name": "Still here"}, callback=True)
    assert ack["ok"] is True


@fast_only
def test_garbage_websocket_frames_log_one_line(served, make_user, caplog):
    user = make_user()
    ws = websocket.create_connection(served.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                                     timeout=10)
    try:
        assert ws.recv().startswith("0")  # Engine.IO open
        ws.send("40" + json.dumps({"token": user["access_token"]}))
        assert ws.recv().startswith("40")  # Socket.IO connect accepted
        with caplog.at_level(logging.INFO):
            for garbage in GARBAGE:
                ws.send("4" + garbage)
            ws.send('421["party:create",{"name":"After garbage"}]')
            ack = ws.recv()
            while not ack.startswith("43"):  # a ping, party:presence...
                if ack == "2":
                    ws.send("3")
                ack = ws.recv()
        assert ack.startswith("431["), ack
        assert json.loads(ack[3:])[0]["ok"] is True, ack  # same connection, still served
        assert_one_line_each(caplog, len(GARBAGE))
    finally:
        ws.close()


@fast_only
def test_garbage_polling_payload_logs_one_line(served, make_user, caplog):
    import requests

    user = make_user()
    base = f"{served.url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(base, timeout=10).text[1:])["sid"]
    assert requests.post(f"{base}&sid={sid}", data="40" + json.dumps({"token": user["access_token"]}),
                         timeout=10).text == "OK"
    with caplog.at_level(logging.INFO):
        for garbage in ("zz", "4" + GARBAGE[0]):
            assert requests.post(f"{base}&sid={sid}", data=garbage, timeout=10).status_code == 200
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info is not None]
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 2
    # The session goes on: an event with an ack is answered through the next poll.
    requests.post(f"{base}&sid={sid}", data='421["party:create",{"name":"Polling"}]', timeout=10)
    polled = ""
    while '431[' not in polled:
        polled = requests.get(f"{base}&sid={sid}", timeout=10).text
    assert '"ok":true' in polled.split("431[", 1)[1]
