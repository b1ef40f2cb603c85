"""The real-time fast path (issue 9): what clients receive is unchanged, only cheaper to send.

- `realtime.relay_to_room` (party:update) delivers exactly what `emit_to_room` delivers, to the
  same sockets, skipping the sender's socket;
- across two servers sharing Redis, pre-encoded frames reach members on the other server and
  nobody else, and a server with no socket in the room drops the frame without decoding it;
- Socket.IO websocket upgrades are answered without permessage-deflate (configurable);
- `jsonutil` (orjson) writes the same JSON as before for what reaches the wire.
"""
import json
import time
from datetime import datetime

import pytest
from bson import ObjectId

from allynet import jsonutil, realtime
from allynet.fields import iso
from allynet.transport import RefuseWebSocketCompression
from allynet.transport import queue as message_queue
from allynet.transport.queue import FAST_PREFIX
from tests.helpers import events_named, fast_only
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


def _join_room(server, user, room):
    with server.app.app_context():
        for sid in list(server.sio.server.manager.rooms["/"][realtime.user_room(user.id)]):
            realtime.enter_room(sid, room)


def _leave_room(server, user, room):
    with server.app.app_context():
        for sid in list(server.sio.server.manager.rooms["/"][realtime.user_room(user.id)]):
            realtime.leave_room(sid, room)


def _relay(server, room, payload):
    with server.app.app_context():
        assert realtime.relay_to_room(room, "party:update", payload)


@fast_only
def test_party_traffic_is_published_only_while_another_server_has_a_member(cluster, make_user):
    a, b = cluster(2)
    ann, dan, ben = make_user(), make_user(), make_user()
    ann_sock, dan_sock, ben_sock = cluster.connect(a, ann), cluster.connect(a, dan), cluster.connect(b, ben)
    room = "party:routed-test"
    _join_room(a, ann, room)
    _join_room(a, dan, room)
    published = a.queue.published
    _relay(a, room, dict(PAYLOAD, heading=1.0))
    _relay(a, room, dict(PAYLOAD, heading=2.0))
    wait_until(lambda: len(dan_sock.received("party:update")) == 2, timeout=5, message="local delivery")
    assert a.queue.published == published  # the whole party is here: nothing goes to Redis
    # Ben joins on b: a hears of it through the queue and publishes from then on.
    _join_room(b, ben, room)
    wait_until(lambda: a.queue.has_remote_members(room), timeout=5, message="a learns of b's member")
    _relay(a, room, dict(PAYLOAD, heading=3.0))
    assert ben_sock.wait_for("party:update")["heading"] == 3.0
    assert a.queue.published == published + 1
    # Ben leaves: a stops publishing again.
    _leave_room(b, ben, room)
    wait_until(lambda: not a.queue.has_remote_members(room), timeout=5, message="a learns ben left")
    _relay(a, room, dict(PAYLOAD, heading=4.0))
    wait_until(lambda: len(dan_sock.received("party:update")) == 4, timeout=5, message="local delivery")
    assert a.queue.published == published + 1
    assert [u["heading"] for u in ben_sock.received("party:update")] == [3.0]


def _ann_in_room_on_a_ben_connected_to_b(cluster, make_user, room):
    a, b = cluster(2)
    ann, ben = make_user(), make_user()
    cluster.connect(a, ann)
    ben_sock = cluster.connect(b, ben)
    _join_room(a, ann, room)
    return a, b, ben, ben_sock


def test_room_hosts_are_recorded_again_after_redis_loses_them(cluster, make_user):
    room = "party:restart-test"
    a, b, ben, ben_sock = _ann_in_room_on_a_ben_connected_to_b(cluster, make_user, room)
    _join_room(b, ben, room)
    a.queue.publisher.delete(b.queue._hosts_key(room))  # what a Redis restart does to the sets
    a.queue._remote.clear()
    assert a.queue.has_remote_members(room) is False
    b.queue._announce_all()  # what b's listener does when it subscribes again
    wait_until(lambda: a.queue.has_remote_members(room), timeout=5, message="b's rooms recorded again")
    _relay(a, room, PAYLOAD)
    assert ben_sock.wait_for("party:update") == PAYLOAD


def test_a_server_that_cannot_ask_redis_publishes(cluster, make_user, monkeypatch):
    a, _ = cluster(2)
    room = "party:unsure"

    def down(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(a.queue.publisher, "smembers", down)
    a.queue._remote.clear()
    assert a.queue.has_remote_members(room) is True
    expires, _ = a.queue._remote[room]  # and asks again soon, not after the usual lifetime
    assert expires - time.monotonic() <= a.queue.unsure_cache_seconds < a.queue.remote_cache_seconds


def _counting_smembers(queue, monkeypatch, before=None):
    calls = []
    original = queue.publisher.smembers

    def smembers(*args, **kwargs):
        calls.append(args)
        if before is not None:
            before()
        return original(*args, **kwargs)

    monkeypatch.setattr(queue.publisher, "smembers", smembers)
    return calls


@fast_only
def test_the_room_hosts_answer_is_asked_once_and_kept_until_an_announcement(cluster, make_user, monkeypatch):
    room = "party:cached-hosts"
    a, b, ben, ben_sock = _ann_in_room_on_a_ben_connected_to_b(cluster, make_user, room)
    calls = _counting_smembers(a.queue, monkeypatch)
    a.queue._remote.clear()
    published = a.queue.published
    for heading in range(10):
        _relay(a, room, dict(PAYLOAD, heading=float(heading)))
    # Ten seconds later, with no announcement in between, the answer still holds.
    class Later:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def monotonic():
            return time.monotonic() + 10.0

    monkeypatch.setattr(message_queue, "time", Later())
    for heading in range(10, 20):
        _relay(a, room, dict(PAYLOAD, heading=float(heading)))
    assert len(calls) == 1  # a party's updates for a while: one question to Redis
    assert a.queue.published == published  # and nothing left this process
    # Ben joins on b: the announcement, not the cache's lifetime, makes a ask again.
    _join_room(b, ben, room)
    wait_until(lambda: a.queue.has_remote_members(room), timeout=5, message="a learns of b's member")
    assert len(calls) == 2
    _relay(a, room, dict(PAYLOAD, heading=99.0))
    assert ben_sock.wait_for("party:update")["heading"] == 99.0


def test_an_answer_that_raced_an_announcement_is_asked_again_soon(cluster, make_user, monkeypatch):
    a, _ = cluster(2)
    room = "party:raced-hosts"
    # An announcement lands while Redis answers: the answer may be older than it.
    calls = _counting_smembers(a.queue, monkeypatch,
                               before=lambda: a.queue._handle_room_hosts({"room": "party:elsewhere"}))
    a.queue._remote.clear()
    assert a.queue.has_remote_members(room) is False
    expires, _ = a.queue._remote[room]
    assert expires - time.monotonic() <= a.queue.unsure_cache_seconds
    assert len(calls) == 1


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

    from allynet.transport.eventlet_ws import apply_mask

    original = RFC6455WebSocket.__dict__["_apply_mask"]
    original = getattr(original, "__func__", original)
    if getattr(original, "__module__", "") == "allynet.transport.eventlet_ws":
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


class _ChunkedSocket:
    """Hands out a byte stream in the chunk sizes given (what a TCP peer may do)."""

    def __init__(self, data, sizes):
        self.data, self.sizes, self.calls = data, list(sizes), 0

    def recv(self, bufsize, flags=0):
        self.calls += 1
        size = self.sizes.pop(0) if self.sizes else len(self.data)
        chunk, self.data = self.data[:min(size, bufsize)], self.data[min(size, bufsize):]
        return chunk


def test_buffered_reads_give_eventlets_parser_the_same_messages_with_fewer_recvs():
    import random
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from eventlet.websocket import RFC6455WebSocket

    from allynet.transport.eventlet_ws import BufferedReads

    rng = random.Random(4)
    client = RFC6455WebSocket(None, {}, client=True)
    texts = ["x" * n for n in (1, 2, 125, 126, 170, 300, 70000)] + \
        ['42["party:update",{"n":%d}]' % i for i in range(50)]
    stream = b"".join(client._pack_message(text, masked=True) for text in texts)

    def parse(sock):
        ws = RFC6455WebSocket(sock, {}, client=False)
        return [ws.wait() for _ in texts]

    plain = _ChunkedSocket(stream, [])
    assert parse(plain) == texts
    for sizes in ([len(stream)], [1] * 40, [rng.randint(1, 400) for _ in range(500)], [3, 7, 65536, 5]):
        raw = _ChunkedSocket(stream, sizes)
        assert parse(BufferedReads(raw)) == texts, sizes[:5]
    whole = _ChunkedSocket(stream, [len(stream)])
    assert parse(BufferedReads(whole)) == texts
    assert whole.calls < len(texts) < plain.calls  # one recv for many frames, not three or four per frame
    assert BufferedReads(_ChunkedSocket(b"", [])).recv(10) == b""  # a closed peer still reads as closed


def _client_frames(frames):
    """Masked client frames (opcode, payload bytes, fin) as a browser would send them."""
    import os
    import struct

    out = b""
    for opcode, payload, fin in frames:
        mask = os.urandom(4)
        length = len(payload)
        first = (0x80 if fin else 0) | opcode
        if length > 65535:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        elif length > 125:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BB", first, 0x80 | length)
        out += header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return out


class _RecordingSocket(_ChunkedSocket):
    """A _ChunkedSocket that also takes what the websocket writes back (pongs, close frames)."""

    def __init__(self, data, sizes):
        super().__init__(data, sizes)
        self.written = b""

    def sendall(self, data):
        self.written += data

    def shutdown(self, how):
        pass

    def close(self):
        pass


def _one_step_frames_case(frames, sizes):
    """The messages (and what was written back) of eventlet's parser and of fast_wait's."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from eventlet.websocket import RFC6455WebSocket

    from allynet.transport.eventlet_ws import BufferedReads, fast_wait

    original = getattr(RFC6455WebSocket.wait, "allynet_original", RFC6455WebSocket.wait)
    slow_calls = []
    fast = fast_wait(lambda ws: slow_calls.append(1) or original(ws))
    stream = _client_frames(frames)
    results = []
    for wait, wrap in ((original, lambda s: s), (fast, BufferedReads)):
        raw = _RecordingSocket(stream, list(sizes))
        ws = RFC6455WebSocket(wrap(raw), {}, client=False)
        messages = []
        for _ in range(len(frames) + 2):
            try:
                messages.append(wait(ws))
            except Exception as exc:  # noqa: BLE001 - the same failure from both
                messages.append(type(exc).__name__)
                break
        results.append((messages, raw.written[:4]))
    return results + [len(slow_calls)]


@pytest.mark.parametrize("sizes", [[], [1] * 200, [2, 3, 5, 7, 11, 13] * 40, [65536]])
def test_one_step_frames_read_what_eventlets_parser_reads(sizes):
    text = '42["party:update",{"party_id":"5f0c9a1e2b3c4d5e6f708192","location":{"lat":1,"lng":2}}]'
    frames = [(1, text.encode(), True), (1, b"", True), (1, ("\u00e9" * 70).encode(), True),
              (9, b"ping", True),  # a ping between two messages: answered, then the next message
              (1, "Straße → 東京".encode(), True), (1, b"x" * 300, True), (1, b"y" * 70000, True),
              (1, b"frag", False), (0, b"mented", True),  # a fragmented message
              (2, b"\x00\x01", True),  # binary
              (1, b"last", True)]
    plain, fast, slow_calls = _one_step_frames_case(frames, sizes)
    assert fast == plain
    assert fast[0][:3] == [text, "", "\u00e9" * 70]
    assert fast[0][-2:] == [None, None]  # the peer closed: every later wait returns None
    if sizes in ([], [65536]):  # whole frames in the buffer: the plain text ones took one step
        assert slow_calls < len(frames) - 3
    else:
        assert slow_calls >= len(frames) - 2  # partial frames: eventlet's parser


def test_a_burst_of_updates_takes_one_step_each():
    frames = [(1, ('42["party:update",{"n":%d}]' % n).encode(), True) for n in range(50)]
    plain, fast, slow_calls = _one_step_frames_case(frames, [])
    assert fast == plain and fast[0][:50] == ['42["party:update",{"n":%d}]' % n for n in range(50)]
    assert slow_calls == 1  # only the wait after the peer closed


@pytest.mark.parametrize("frames", [
    [(1, b"ok", True), (1, b"\xff\xfe bad utf-8", True), (1, b"never read", True)],
    [(1, b"ok", True), (8, b"\x03\xe8", True), (1, b"after close", True)],  # a close frame
    [(1, b"ok", True), (0, b"continuation without a start", True)],
])
def test_one_step_frames_fail_the_way_eventlet_fails(frames):
    plain, fast, _ = _one_step_frames_case(frames, [])
    assert fast == plain
    assert fast[0][0] == "ok"


# ---- party:update without a Flask request context ---------------------------

@fast_only
def test_party_update_runs_straight_on_the_socketio_server(app):
    from allynet import sockets

    assert "party:update" in sockets.BARE_EVENTS
    handler = app.extensions["socketio"].server.handlers["/"]["party:update"]
    assert handler.__qualname__.startswith("in_app_context")  # not Flask-SocketIO's request-context wrapper


class _DispatchServer:
    """Just what _bare_event_dispatch uses of a python-socketio server."""

    def __init__(self):
        from types import SimpleNamespace

        self._binary_packet = {}
        self.passed_on, self.sent = [], []
        connected = {"eio-1": "sid-1"}
        self.manager = SimpleNamespace(sid_from_eio_sid=lambda eio_sid, ns: connected.get(eio_sid),
                                       is_connected=lambda sid, ns: sid is not None)
        self.eio = SimpleNamespace(sockets={})

    def _handle_eio_message(self, eio_sid, data):
        self.passed_on.append(data)

    def _send_eio_packet(self, eio_sid, pkt):
        self.sent.append((eio_sid, pkt.data))


def test_bare_events_are_dispatched_and_acked_like_python_socketio_does():
    import socketio

    from allynet.transport.dispatch import bare_event_dispatch as _bare_event_dispatch

    server, calls = _DispatchServer(), []
    handle = _bare_event_dispatch(server, {"party:update": lambda sid, *args: calls.append((sid, args)) or
                                           {"ok": True, "n": len(calls)}})
    handle("eio-1", '27["party:update",{"a":1}]')
    handle("eio-1", '2["party:update",{"a":2}]')  # no ack id: no ack
    handle("eio-1", '2012["party:update",{"a":3},"extra"]')
    assert calls == [("sid-1", ({"a": 1},)), ("sid-1", ({"a": 2},)), ("sid-1", ({"a": 3}, "extra"))]
    expected = [socketio.packet.Packet(socketio.packet.ACK, id=7, data=[{"ok": True, "n": 1}]).encode(),
                socketio.packet.Packet(socketio.packet.ACK, id=12, data=[{"ok": True, "n": 3}]).encode()]
    assert server.sent == [("eio-1", expected[0]), ("eio-1", expected[1])]
    assert server.passed_on == []
    others = ['21["party:message",{}]', '2/admin,1["party:update",{}]', '21["party:update"]', '21["party:update",{',
              '2\u00b2["party:update",{}]', '2' + '9' * 30 + '["party:update",{}]', '21-["party:update",{}]',
              '0{"token":"t"}', '31[{}]', '451-["party:update",{"_placeholder":true,"num":0}]']
    for data in others:
        handle("eio-1", data)
    handle("eio-gone", '21["party:update",{}]')  # not connected on "/": python-socketio decides
    server._binary_packet["eio-1"] = object()  # attachments pending: they belong to that packet
    handle("eio-1", '21["party:update",{}]')
    assert server.passed_on == others + ['21["party:update",{}]'] * 2
    assert len(calls) == 3 and len(server.sent) == 2


def test_bare_handler_acks_errors_like_the_others(client, make_user, socket_client):
    ann = make_user()
    sio = socket_client(ann)
    ack = sio.emit("party:update", {"party_id": "5f0c9a1e2b3c4d5e6f708192", "location": {"lat": 1, "lng": 2}},
                   callback=True)
    assert ack["ok"] is False and ack["error"]["code"] in ("not_found", "forbidden")
    ack = sio.emit("party:update", "not an object", callback=True)
    assert ack["ok"] is False and ack["error"]["code"] in ("validation_error", "bad_request")
    assert sio.is_connected()


# ---- the real server under eventlet (direct fan-out writes active) ----------

@pytest.fixture(scope="module")
def eventlet_server():
    from tests.scaleout_support import WsgiProcess

    process = WsgiProcess({"SOCKETIO_ASYNC_MODE": "eventlet", "MAX_UPDATE_HZ": "1000",
                           "RATELIMIT_ENABLED": "0"})
    try:
        yield process.wait_ready(timeout=30).url
    finally:
        process.stop()


def test_fan_out_over_real_websockets_arrives_complete_and_in_order(eventlet_server):
    import threading

    import requests
    import socketio

    api = f"{eventlet_server}/api/v1"
    riders = []
    for i in range(4):
        body = {"email": f"fast{i}@example.com", "password": "a good password", "display_name": f"r{i}"}
        response = requests.post(f"{api}/auth/register", json=body, timeout=10)
        assert response.status_code == 201, response.text
        riders.append(response.json()["data"])
    tokens = [rider["access_token"] for rider in riders]
    headers = [{"Authorization": f"Bearer {token}"} for token in tokens]
    party = requests.post(f"{api}/parties", json={"name": "fast"}, headers=headers[0], timeout=10).json()["data"]
    for h in headers[1:3]:  # riders 0-2 are members; rider 3 is connected but outside
        assert requests.post(f"{api}/parties/join", json={"invite_code": party["invite_code"]},
                             headers=h, timeout=10).status_code == 200

    received = [[] for _ in tokens]
    lock = threading.Lock()
    clients = []
    for i, token in enumerate(tokens):
        client = socketio.Client(reconnection=False)
        client.on("party:update", lambda data, i=i: (lock.acquire(), received[i].append(data), lock.release()))
        # Rider 1 starts on long-polling and upgrades: the direct path must wait for the upgrade.
        transports = ["polling", "websocket"] if i == 1 else ["websocket"]
        client.connect(eventlet_server, auth={"token": token}, transports=transports, wait_timeout=10)
        clients.append(client)
    try:
        rounds = 40
        for n in range(rounds):  # a burst: frames queue up behind each other on the way out
            for sender in (0, 2):
                ack = clients[sender].call("party:update", {
                    "party_id": party["id"], "location": {"lat": 45 + n / 1000, "lng": 5.0},
                    "heading": n, "status": "riding"}, timeout=10)
                assert ack["ok"], ack
        wait_until(lambda: len(received[1]) >= 2 * rounds and len(received[0]) >= rounds
                   and len(received[2]) >= rounds, timeout=10, message="every update")
        clients[3].call("party:join", {"party_id": party["id"]}, timeout=10)  # a round trip on the outsider
        with lock:
            for member, senders in ((0, [2]), (1, [0, 2]), (2, [0])):
                got = received[member]
                assert len(got) == rounds * len(senders)  # each once, never its own
                for sender in senders:
                    headings = [u["heading"] for u in got if u["user_id"] == _user_id(riders[sender])]
                    assert headings == [float(n) for n in range(rounds)], (member, sender)  # in order
            assert received[3] == []
    finally:
        for client in clients:
            client.disconnect()


def _user_id(registered):
    return registered["user"]["id"]


# ---- direct writes: the decisions, with stand-in sockets ---------------------

class _FakeFd:
    def __init__(self, accept):
        self.accept, self.sent = accept, b""

    def send(self, data):
        if self.accept == "eagain":
            import errno

            raise BlockingIOError(errno.EAGAIN, "would block")
        n = len(data) if self.accept is None else min(self.accept, len(data))
        self.sent += bytes(data[:n])
        return n


class _FakeGreenSocket:
    def __init__(self, accept):
        self.fd = _FakeFd(accept)
        self.rest = b""

    def sendall(self, data):
        self.rest += data


class _FakeQueue:
    """What send_direct reads of eventlet's Queue: queued packets, greenlets waiting in get()
    (tests/eventlet_reader_cases.py checks these against a real Queue's qsize() and getting())."""

    def __init__(self, queued=0, waiting=1):
        self.queue = [object()] * queued
        self.getters = {object() for _ in range(waiting)}


def _fake_socket(accept=None, queued=0, waiting=1, extensions=None):
    import warnings
    from types import SimpleNamespace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's import-time deprecation notice
        from eventlet.semaphore import Semaphore  # what eventlet's websocket uses as its send lock

    ws = SimpleNamespace(websocket_closed=False, extensions=extensions or {}, _sendlock=Semaphore(),
                         socket=_FakeGreenSocket(accept))
    return SimpleNamespace(_allynet_ws=ws, closed=False, upgraded=True, upgrading=False,
                           queue=_FakeQueue(queued, waiting))


def _lock_free(sock):
    if sock._allynet_ws._sendlock.acquire(blocking=False):
        sock._allynet_ws._sendlock.release()
        return True
    return False


def test_direct_write_sends_one_shared_frame_to_idle_websockets():
    from allynet.transport.eventlet_ws import send_direct, text_frame

    cache = {}
    socks = [_fake_socket() for _ in range(3)]
    assert all(send_direct(sock, '42["party:update",{}]', cache) for sock in socks)
    frame = text_frame('42["party:update",{}]')
    assert [sock._allynet_ws.socket.fd.sent for sock in socks] == [frame] * 3
    assert all(_lock_free(sock) for sock in socks)


def test_direct_write_never_overtakes_or_blocks():
    from allynet.transport.eventlet_ws import send_direct

    for sock in (_fake_socket(queued=1), _fake_socket(waiting=0), _fake_socket(accept="eagain"),
                 _fake_socket(extensions={"permessage-deflate": {}}), None):
        assert send_direct(sock, "42[]", {}) is False  # the caller queues it through Engine.IO
        if sock is not None:
            assert sock._allynet_ws.socket.fd.sent == b"" and _lock_free(sock)
    upgrading = _fake_socket()
    upgrading.upgrading = True
    assert send_direct(upgrading, "42[]", {}) is False
    finishing = _fake_socket()
    finishing._allynet_ws._sendlock.acquire()  # the rest of a partial write is still going out
    assert send_direct(finishing, "42[]", {}) is False and finishing._allynet_ws.socket.fd.sent == b""


def test_a_partial_write_is_finished_under_the_socket_lock():
    from allynet.transport.eventlet_ws import send_direct, text_frame

    spawned = []
    sock = _fake_socket(accept=5)
    text = '42["party:update",{"x":"' + "y" * 300 + '"}]'
    assert send_direct(sock, text, {}, spawn=spawned.append) is True
    assert not _lock_free(sock)  # the writer (or another fan-out) waits for the rest
    spawned[0]()
    ws = sock._allynet_ws
    assert ws.socket.fd.sent + ws.socket.rest == text_frame(text) and _lock_free(sock)


def test_single_packets_such_as_acks_take_the_direct_write_when_it_is_safe():
    from types import SimpleNamespace

    import socketio

    from allynet.transport.delivery import direct_send_packet as _direct_send_packet
    from allynet.transport.eventlet_ws import text_frame

    queued = []
    idle, busy = _fake_socket(), _fake_socket(queued=1)
    server = SimpleNamespace(eio=SimpleNamespace(sockets={"idle": idle, "busy": busy},
                                                 send=lambda sid, data: queued.append((sid, data))))
    send_packet = _direct_send_packet(None)
    ack = socketio.packet.Packet(socketio.packet.ACK, data=[{"ok": True}], id=7)
    send_packet(server, "idle", ack)
    assert idle._allynet_ws.socket.fd.sent == text_frame("4" + ack.encode()) and queued == []
    send_packet(server, "busy", ack)  # something is queued: behind it, through Engine.IO
    send_packet(server, "gone", ack)
    assert queued == [("busy", ack.encode()), ("gone", ack.encode())]
    assert busy._allynet_ws.socket.fd.sent == b""
    queued.clear()
    binary = socketio.packet.Packet(socketio.packet.EVENT, data=["file", b"\x00\x01"])
    send_packet(server, "idle", binary)  # attachments keep Engine.IO's framing
    assert [sid for sid, _ in queued] == ["idle", "idle"]


@pytest.mark.parametrize("size", [0, 5, 125, 126, 200, 65535, 65536, 70000])
def test_text_frame_is_what_eventlet_would_send(size):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from eventlet.websocket import RFC6455WebSocket

    from allynet.transport.eventlet_ws import text_frame

    ws = RFC6455WebSocket.__new__(RFC6455WebSocket)
    ws.extensions, ws.client = {}, False
    text = "é" * (size // 2) + "x" * (size % 2)
    assert text_frame(text) == ws._pack_message(text)


def test_websocket_connections_send_without_nagle_delay():
    import socket
    from types import SimpleNamespace

    from allynet.transport.eventlet_ws import BufferedReads, _keep_websocket

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        ws = SimpleNamespace(socket=SimpleNamespace(fd=accepted))
        seen = []
        _keep_websocket(lambda self, ws: seen.append(ws.socket))(SimpleNamespace(), ws)
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert isinstance(seen[0], BufferedReads) and ws._allynet_fd is accepted
    finally:
        for sock in (client, accepted, listener):
            sock.close()


# ---- Engine.IO MESSAGE packets handed to the server from the websocket reader ----

def _dispatch_socket(**overrides):
    from types import SimpleNamespace

    handled, logged = [], []

    def handler(sid, data):
        if data == "2boom":
            raise RuntimeError("handler failed")
        handled.append((sid, data))

    server = SimpleNamespace(async_handlers=False, max_http_buffer_size=100, handlers={"message": handler},
                             logger=SimpleNamespace(exception=logged.append))
    for key, value in overrides.items():
        setattr(server, key, value)
    return SimpleNamespace(server=server, sid="eio1", upgraded=True, upgrading=False), handled, logged


def test_message_packets_go_to_the_engineio_message_handler_as_engineio_sends_them():
    import engineio.packet

    from allynet.transport.eventlet_ws import engineio_dispatch

    eio_socket, handled, logged = _dispatch_socket()
    dispatch = engineio_dispatch(eio_socket)
    for text in ('42["party:update",{"a":1}]', "40", '421["x"]'):
        assert dispatch(text) is True
        # What Engine.IO's own read loop would hand the handler for the same text.
        assert handled[-1] == ("eio1", engineio.packet.Packet(encoded_packet=text).data)
    assert dispatch("42boom") is True and logged == ["message handler error"]  # logged, swallowed
    # Left to Engine.IO's loop: other packet types, a body it would JSON-decode, too large.
    for text in ("3", "2probe", "5", "4", '4{"a":1}', "4" + "2" * 100, "1"):
        assert dispatch(text) is False
    assert len(handled) == 3


def test_message_packets_stay_with_engineio_during_an_upgrade_or_with_async_handlers():
    from allynet.transport.eventlet_ws import engineio_dispatch

    upgrading, handled, _ = _dispatch_socket()
    upgrading.upgrading = True
    assert engineio_dispatch(upgrading)("42[]") is False
    polling, _, _ = _dispatch_socket()
    polling.upgraded = False
    assert engineio_dispatch(polling)("42[]") is False
    spawning, _, _ = _dispatch_socket(async_handlers=True)
    assert engineio_dispatch(spawning)("42[]") is False and handled == []
    from types import SimpleNamespace

    assert engineio_dispatch(SimpleNamespace()) is None  # not an Engine.IO socket: nothing to dispatch


def test_the_reader_dispatches_messages_and_returns_everything_else_in_order():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from eventlet.websocket import RFC6455WebSocket

    from allynet.transport.eventlet_ws import BufferedReads, engineio_dispatch, fast_wait

    original = getattr(RFC6455WebSocket.wait, "allynet_original", RFC6455WebSocket.wait)
    wait = fast_wait(original)
    texts = ['42["a"]', "3", '42["b"]', '42["c"]', "2probe", "x" * 300, '42["d"]']
    stream = _client_frames([(1, t.encode(), True) for t in texts])
    eio_socket, handled, _ = _dispatch_socket(max_http_buffer_size=1000)
    ws = RFC6455WebSocket(BufferedReads(_RecordingSocket(stream, [])), {}, client=False)
    ws._allynet_dispatch = engineio_dispatch(eio_socket)
    returned = [wait(ws) for _ in range(4)]
    assert returned == ["3", "2probe", "x" * 300, None]  # what Engine.IO's loop still sees, then closed
    assert [data for _, data in handled] == ['2["a"]', '2["b"]', '2["c"]', '2["d"]']
