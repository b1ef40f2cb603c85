"""The real-time fast path (issue 9): what clients receive is unchanged, only cheaper to send.

- `realtime.relay_to_room` (party:update) delivers exactly what `emit_to_room` delivers, to the
  same sockets, skipping the sender's socket;
- across two servers sharing Redis, pre-encoded frames reach members on the other server and
  nobody else, and a server with no socket in the room drops the frame without decoding it;
- Socket.IO websocket upgrades are answered without permessage-deflate (configurable);
- `jsonutil` (orjson) writes the same JSON as before for what reaches the wire.
"""
import json
from datetime import datetime

import pytest
from bson import ObjectId

from allynet import jsonutil, realtime
from allynet.fields import iso
from allynet.message_queue import FAST_PREFIX
from allynet.sockets import RefuseWebSocketCompression
from tests.helpers import events_named
from tests.scaleout_support import cluster, quiet_werkzeug, redis_prefix, wait_until  # noqa: F401

API = "/api/v1"
PAYLOAD = {"party_id": "p1", "user_id": "u1", "location": {"lat": 48.137, "lng": 11.575},
           "speed_kmh": 55.5, "heading": None, "status": "riding", "ts": "2026-11-22T03:00:00.000Z",
           "note": "Straße → 東京", "client_ts": 1.0e16}


def sid_of(app, sio_client):
    return app.extensions["socketio"].server.manager.sid_from_eio_sid(sio_client.eio_sid, "/")


# ---- one process -------------------------------------------------------------

def test_relay_delivers_exactly_what_emit_to_room_delivers(app, make_user, socket_client):
    ann, ben = make_user(), make_user()
    ann_sio, ben_sio, other_sio = socket_client(ann), socket_client(ann), socket_client(ben)
    for sio in (ann_sio, ben_sio, other_sio):
        sio.get_received()
    room = realtime.user_room(ann.id)
    with app.app_context():
        assert realtime.emit_to_room(room, "party:update", PAYLOAD)
        assert realtime.relay_to_room(room, "party:update", PAYLOAD)
    for sio in (ann_sio, ben_sio):  # both sockets of ann: the same two events, field for field
        received = sio.get_received()
        assert [event["name"] for event in received] == ["party:update", "party:update"]
        assert received[0]["args"] == received[1]["args"] == [PAYLOAD]
    assert other_sio.get_received() == []


def test_relay_skips_the_sending_socket_only(app, make_user, socket_client):
    ann = make_user()
    phone, tablet = socket_client(ann), socket_client(ann)
    phone.get_received(), tablet.get_received()
    with app.app_context():
        realtime.relay_to_room(realtime.user_room(ann.id), "party:update", PAYLOAD, skip_sid=sid_of(app, phone))
    assert events_named(phone, "party:update") == []
    assert events_named(tablet, "party:update") == [PAYLOAD]


def test_relay_to_an_empty_room_sends_nothing_and_succeeds(app):
    with app.app_context():
        assert realtime.relay_to_room("party:nobody", "party:update", PAYLOAD) is True


def test_relay_without_a_server_is_emit_to_room(app):
    # No app context and no external emitter: nothing to send through, like emit_to_room.
    assert realtime.relay_to_room("party:x", "party:update", PAYLOAD) is False


def test_party_update_through_the_fast_path_keeps_the_contract_shape(client, make_user, socket_client):
    ann, ben = make_user(), make_user()
    party = client.post(f"{API}/parties", json={"name": "ride"}, headers=ann.headers).get_json()["data"]
    client.post(f"{API}/parties/join", json={"invite_code": party["invite_code"]}, headers=ben.headers)
    ann_sio, ben_sio = socket_client(ann), socket_client(ben)
    ann_sio.get_received(), ben_sio.get_received()
    ack = ann_sio.emit("party:update", {"party_id": party["id"], "location": {"lat": 48.1, "lng": 11.5},
                                        "heading": 90, "client_ts": 17.5}, callback=True)
    assert ack["ok"], ack
    assert events_named(ben_sio, "party:update") == [{
        "party_id": party["id"], "user_id": ann.id, "location": {"lat": 48.1, "lng": 11.5},
        "speed_kmh": None, "heading": 90.0, "status": "riding", "ts": ack["ts"], "client_ts": 17.5}]
    assert events_named(ann_sio, "party:update") == []


# ---- two servers through Redis ---------------------------------------------

def test_fast_frames_reach_members_on_the_other_server_and_nobody_else(cluster, make_user):
    a, b = cluster(2)
    ann, ben, cat, dan = (make_user(display_name=name) for name in ("ann", "ben", "cat", "dan"))
    ann_sock, ben_sock = cluster.connect(a, ann), cluster.connect(b, ben)
    cat_sock, dan_sock = cluster.connect(b, cat), cluster.connect(a, dan)
    room = "party:fast-test"
    for server, user in ((a, ann), (b, ben), (a, dan)):  # cat (on b) stays outside
        with server.app.app_context():
            for sid in server.sio.server.manager.rooms["/"][realtime.user_room(user.id)]:
                realtime.enter_room(sid, room)
    ann_sid = next(iter(a.sio.server.manager.rooms["/"][realtime.user_room(ann.id)]))
    with a.app.app_context():
        assert realtime.relay_to_room(room, "party:update", PAYLOAD, skip_sid=ann_sid)
    assert ben_sock.wait_for("party:update") == PAYLOAD  # crossed Redis pre-encoded, read by a stock client
    assert dan_sock.wait_for("party:update") == PAYLOAD  # same process, delivered before publishing
    # A marker emitted after the relay arrives after it: by then a stray copy would be there too.
    with a.app.app_context():
        realtime.emit_to_rooms([realtime.user_room(u.id) for u in (ann, ben, cat, dan)], "marker", {})
    for sock in (ann_sock, ben_sock, cat_sock, dan_sock):
        sock.wait_for("marker")
    assert ann_sock.received("party:update") == []  # the sender's socket
    assert cat_sock.received("party:update") == []  # on b, not in the room
    assert len(ben_sock.received("party:update")) == len(dan_sock.received("party:update")) == 1


def test_a_server_without_the_room_drops_the_frame_without_decoding_it(cluster, make_user):
    a, b = cluster(2)
    ben = make_user()
    ben_sock = cluster.connect(b, ben)
    queue = b.queue
    # Not JSON, not even UTF-8: it is never looked at, because b has no socket in party:elsewhere.
    garbage = FAST_PREFIX + b"other-host\nparty:elsewhere\n\n\xff\xfe{not json"
    queue._handle_fast(garbage)
    # Own frames are ignored (this process delivered them before publishing).
    user_room = realtime.user_room(ben.id)
    own = FAST_PREFIX + queue.host_id.encode() + b"\n" + user_room.encode() + b"\n\n" + b'2["own",{}]'
    queue._handle_fast(own)
    # A frame for a room that has a socket here is delivered as it is.
    theirs = FAST_PREFIX + b"other-host\n" + user_room.encode() + b"\n\n" + b'2["theirs",{"x":1}]'
    queue._handle_fast(theirs)
    assert ben_sock.wait_for("theirs") == {"x": 1}
    assert ben_sock.received("own") == []


def test_a_json_emit_for_a_room_with_no_local_socket_is_not_encoded(cluster, make_user):
    a, b = cluster(2)
    cluster.connect(b, make_user())  # b serves sockets, just none in that room

    class Unencodable:
        pass

    # Another process's emit for a room b does not hold: b stops before building the packet.
    b.queue._handle_emit({"method": "emit", "event": "x", "data": [Unencodable()], "namespace": "/",
                          "room": "party:not-here", "skip_sid": None, "callback": None, "host_id": "other"})


# ---- permessage-deflate -----------------------------------------------------

def _seen_environ(path, extensions="permessage-deflate; client_max_window_bits"):
    seen = {}

    def inner(environ, start_response):
        seen.update(environ)
        return []

    RefuseWebSocketCompression(inner)({"PATH_INFO": path, "HTTP_SEC_WEBSOCKET_EXTENSIONS": extensions}, None)
    return seen


def test_socketio_upgrades_get_no_compression_offer():
    assert "HTTP_SEC_WEBSOCKET_EXTENSIONS" not in _seen_environ("/socket.io/")
    assert _seen_environ("/api/v1/other")["HTTP_SEC_WEBSOCKET_EXTENSIONS"].startswith("permessage-deflate")


def test_compression_switch_is_configurable(app_factory):
    assert isinstance(app_factory().wsgi_app, RefuseWebSocketCompression)
    assert not isinstance(app_factory(SOCKETIO_WS_COMPRESSION=True).wsgi_app, RefuseWebSocketCompression)


def test_compression_switch_reads_the_environment():
    import config

    assert config.load("development", environ={})["SOCKETIO_WS_COMPRESSION"] is False
    assert config.load("development", environ={"SOCKETIO_WS_COMPRESSION": "1"})["SOCKETIO_WS_COMPRESSION"] is True


# ---- JSON ------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    PAYLOAD,
    {"id": ObjectId("5f0c9a1e2b3c4d5e6f708192"), "at": datetime(2026, 11, 22, 3, 4, 5, 678000)},
    [1, 2.5, None, True, "x", {"nested": [{}]}],
    {1: "int key"},                 # orjson refuses: stdlib fallback
    {"big": 2 ** 70},               # beyond 64 bits: stdlib fallback
])
def test_jsonutil_writes_what_the_stdlib_writes(value):
    expected = json.loads(json.dumps(value, default=jsonutil.default))
    assert json.loads(jsonutil.dumps(value)) == expected
    assert json.loads(jsonutil.dumps(value, separators=(",", ":"))) == expected  # python-socketio's call
    assert jsonutil.loads(jsonutil.dumps(value)) == expected


def test_jsonutil_datetimes_keep_the_z_format():
    at = datetime(2026, 1, 2, 3, 4, 5, 120000)
    assert jsonutil.dumps({"at": at}) == json.dumps({"at": iso(at)}, separators=(",", ":"))
    assert iso(at).endswith("Z")


def test_jsonutil_refuses_what_it_refused_before():
    with pytest.raises(TypeError):
        jsonutil.dumps({"s": {1, 2}})
    with pytest.raises(ValueError):
        jsonutil.loads("{not json")
    assert jsonutil.loads("[NaN]")[0] != jsonutil.loads("[NaN]")[0]  # stdlib leniency kept on input


# ---- eventlet websocket unmasking --------------------------------------------

def test_fast_unmasking_equals_eventlets():
    import random
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's import-time deprecation notice
        from eventlet.websocket import RFC6455WebSocket

    from allynet.eventlet_ws import apply_mask

    original = RFC6455WebSocket.__dict__["_apply_mask"]
    original = getattr(original, "__func__", original)
    if getattr(original, "__module__", "") == "allynet.eventlet_ws":
        pytest.skip("already patched in this process")
    rng = random.Random(9)
    for length in (0, 1, 3, 4, 5, 125, 126, 200, 1000):
        data = bytes(rng.getrandbits(8) for _ in range(length))
        for mask in (bytes(rng.getrandbits(8) for _ in range(4)), [rng.getrandbits(8) for _ in range(4)]):
            for offset in (0, 1, 2, 3, 7):
                assert apply_mask(data, mask, offset=offset) == original(data, mask, offset=offset)
                assert apply_mask(bytearray(data) + b"xyz", mask, length=length, offset=offset) == \
                    original(bytearray(data) + b"xyz", mask, length=length, offset=offset)
    data = b"\x00" * 8  # leading zero bytes survive the integer round trip
    assert apply_mask(data, b"\x00\x00\x00\x00") == data


# ---- party:update without a Flask request context ---------------------------

def test_party_update_runs_straight_on_the_socketio_server(app):
    from allynet import sockets

    assert "party:update" in sockets.BARE_EVENTS
    handler = app.extensions["socketio"].server.handlers["/"]["party:update"]
    assert handler.__qualname__.startswith("_bare_handler")  # not Flask-SocketIO's request-context wrapper


def test_bare_handler_acks_errors_like_the_others(client, make_user, socket_client):
    ann = make_user()
    sio = socket_client(ann)
    ack = sio.emit("party:update", {"party_id": "5f0c9a1e2b3c4d5e6f708192", "location": {"lat": 1, "lng": 2}},
                   callback=True)
    assert ack["ok"] is False and ack["error"]["code"] in ("not_found", "forbidden")
    ack = sio.emit("party:update", "not an object", callback=True)
    assert ack["ok"] is False and ack["error"]["code"] in ("validation_error", "bad_request")
    assert sio.is_connected()
