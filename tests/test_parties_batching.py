"""Opt-in batched positions (`party:batch` -> `party:updates`, allynet/transport/batching.py).

A socket that opts in gets, once per tick, one `party:updates` event carrying exactly the
`party:update` payloads it would have received, oldest first, never its own; everyone else is
unchanged; every other event reaches it after the positions relayed before it; leaving a party
stops them at once. Tests run one tick with `batcher.flush()` (no background loop in tests).
"""
import pytest

from allynet import realtime
from allynet.parties import live
from allynet.transport import batching, wire
from config import ConfigError, load
from tests.helpers import events_named
from tests.scaleout_support import cluster, quiet_werkzeug, redis_prefix, wait_until  # noqa: F401
from tests.test_parties_sockets import ride  # noqa: F401  (alice, bob, carol in a party; eve outside)

API = "/api/v1"
MUNICH = {"lat": 48.137, "lng": 11.575}


@pytest.fixture(params=["fast", "plain"])
def app_factory(app_factory, request):
    """Every app here runs on both transports: the plain one (ALLYNET_TRANSPORT=plain, no patches)
    stays covered by the ordinary run."""

    def build(**overrides):
        overrides.setdefault("ALLYNET_TRANSPORT", request.param)
        return app_factory(**overrides)

    return build


def batcher_of(app):
    return batching.of(app.extensions["socketio"].server)


def opt_in(sio, enabled=True):
    return sio.emit("party:batch", {"enabled": enabled}, callback=True)


def update(sio, party_id, clock, **fields):
    clock.advance(seconds=1)  # under MAX_UPDATE_HZ
    ack = sio.emit("party:update", {"party_id": party_id, "location": MUNICH, **fields}, callback=True)
    assert ack["ok"] is True, ack
    return ack


def test_opting_in_is_acknowledged_with_the_tick(ride, app):
    assert opt_in(ride.sio["alice"]) == {"ok": True, "enabled": True, "interval_ms": 200}
    assert opt_in(ride.sio["alice"], enabled=False) == {"ok": True, "enabled": False, "interval_ms": 200}


@pytest.mark.parametrize("payload", [{}, {"enabled": "true"}, {"enabled": 1}, {"enabled": None},
                                     {"enabled": True, "extra": 1}, [], "on", None, 5])
def test_bad_opt_ins_are_refused_and_change_nothing(ride, app, clock, payload):
    ack = ride.sio["alice"].emit("party:batch", payload, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] in ("validation_error", "bad_request")
    assert batcher_of(app).eio_sids == set()
    update(ride.sio["bob"], ride.id, clock)
    assert len(events_named(ride.sio["alice"], "party:update")) == 1  # still one event per position


def test_a_tick_carries_what_party_update_would_have_carried(ride, app, clock):
    opt_in(ride.sio["alice"])
    first = update(ride.sio["bob"], ride.id, clock, speed_kmh=40.5, client_ts=1.5)
    second = update(ride.sio["carol"], ride.id, clock, status="stopped")
    third = update(ride.sio["bob"], ride.id, clock, heading=90)
    # Nothing for alice before the tick; the others still get one party:update each, at once.
    assert ride.sio["alice"].get_received() == []
    carol_saw = events_named(ride.sio["carol"], "party:update")
    bob_saw = events_named(ride.sio["bob"], "party:update")
    assert [event["ts"] for event in carol_saw] == [first["ts"], third["ts"]]
    assert [event["ts"] for event in bob_saw] == [second["ts"]]

    assert batcher_of(app).flush() == 1
    received = ride.sio["alice"].get_received()
    assert [event["name"] for event in received] == ["party:updates"]
    batch = received[0]["args"][0]
    assert batch == {"party_id": ride.id, "updates": [carol_saw[0], bob_saw[0], carol_saw[1]]}
    assert batch["updates"][0]["speed_kmh"] == 40.5 and batch["updates"][0]["client_ts"] == 1.5
    assert batcher_of(app).flush() == 0  # nothing new, nothing sent
    assert ride.sio["alice"].get_received() == []
    assert ride.sio["eve"].get_received() == []


def test_own_positions_stay_out_and_members_who_sent_nothing_share_a_frame(ride, app, clock):
    for name in ("alice", "bob", "carol"):
        opt_in(ride.sio[name])
    own = update(ride.sio["alice"], ride.id, clock)
    bobs = update(ride.sio["bob"], ride.id, clock)
    assert batcher_of(app).flush() == 3
    batches = {name: events_named(ride.sio[name], "party:updates") for name in ("alice", "bob", "carol")}
    assert [u["ts"] for u in batches["alice"][0]["updates"]] == [bobs["ts"]]
    assert [u["ts"] for u in batches["bob"][0]["updates"]] == [own["ts"]]
    assert [u["ts"] for u in batches["carol"][0]["updates"]] == [own["ts"], bobs["ts"]]
    assert [u["user_id"] for u in batches["carol"][0]["updates"]] == [ride.users["alice"].id, ride.users["bob"].id]


def test_other_events_come_after_the_positions_relayed_before_them(ride, app, clock):
    opt_in(ride.sio["alice"])
    update(ride.sio["bob"], ride.id, clock)
    message = ride.sio["bob"].emit("party:message", {"party_id": ride.id, "text": "coffee stop"}, callback=True)
    assert message["ok"] is True
    names = [event["name"] for event in ride.sio["alice"].get_received()]
    assert names == ["party:updates", "party:message"]
    assert batcher_of(app).flush() == 0  # already sent


def test_opting_out_sends_what_is_pending_then_one_event_per_position(ride, app, clock):
    opt_in(ride.sio["alice"])
    pending = update(ride.sio["bob"], ride.id, clock)
    assert opt_in(ride.sio["alice"], enabled=False)["ok"] is True
    batch = events_named(ride.sio["alice"], "party:updates")
    assert [u["ts"] for u in batch[0]["updates"]] == [pending["ts"]]
    after = update(ride.sio["bob"], ride.id, clock)
    assert [u["ts"] for u in events_named(ride.sio["alice"], "party:update")] == [after["ts"]]


def test_leaving_the_party_stops_pending_positions(ride, app, clock):
    opt_in(ride.sio["alice"])
    update(ride.sio["bob"], ride.id, clock)
    left = ride.sio["alice"].emit("party:leave", {"party_id": ride.id}, callback=True)
    assert left["ok"] is True
    batcher_of(app).flush()
    assert events_named(ride.sio["alice"], "party:updates") == []


def test_a_disconnected_socket_is_forgotten(ride, app, clock):
    opt_in(ride.sio["alice"])
    update(ride.sio["bob"], ride.id, clock)
    ride.sio["alice"].disconnect()
    batcher = batcher_of(app)
    assert batcher.eio_sids == set() and batcher.pending == {}
    assert batcher.flush() == 0


def test_the_flag_is_per_connection(ride, app, clock, socket_client):
    second_device = socket_client(ride.users["alice"])
    second_device.get_received()
    opt_in(ride.sio["alice"])
    pos = update(ride.sio["bob"], ride.id, clock)
    assert [u["ts"] for u in events_named(second_device, "party:update")] == [pos["ts"]]
    batcher_of(app).flush()
    assert [u["ts"] for u in events_named(ride.sio["alice"], "party:updates")[0]["updates"]] == [pos["ts"]]


def test_a_socket_that_changes_party_within_a_tick_gets_each_partys_batch_apart(app, ride, clock):
    if not app.extensions["socketio"].server.allynet_fast:
        pytest.skip("feeds the fast transport's delivery directly")
    batcher = batcher_of(app)
    opt_in(ride.sio["alice"])
    eio_sid = ride.sio["alice"].eio_sid
    sid = app.extensions["socketio"].server.manager.sid_from_eio_sid(eio_sid, "/")
    with app.app_context():
        realtime.enter_room(sid, "party:other")
        message = wire.SOURCE_PREFIX + '{"n":1}]'
        from allynet.transport.delivery import deliver_encoded

        deliver_encoded(app.extensions["socketio"].server, realtime.party_room(ride.id), message)
        deliver_encoded(app.extensions["socketio"].server, "party:other", wire.SOURCE_PREFIX + '{"n":2}]')
    assert [e["args"][0] for e in ride.sio["alice"].get_received()] == [
        {"party_id": ride.id, "updates": [{"n": 1}]}]
    batcher.flush()
    assert [e["args"][0] for e in ride.sio["alice"].get_received()] == [{"party_id": "other", "updates": [{"n": 2}]}]


def test_batched_positions_still_feed_the_party_rules(ride, app, db, clock):
    """Only delivery changes: positions are stored and trails sampled as before."""
    opt_in(ride.sio["alice"])
    update(ride.sio["bob"], ride.id, clock)
    with app.app_context():
        live.flush_positions(app)
    stored = db.party_members.find_one({"user_id": ride.users["bob"]["_id"], "active": True})
    assert stored["last_location"]["coordinates"] == [MUNICH["lng"], MUNICH["lat"]]


def test_payload_of_reads_only_relayed_positions():
    assert wire.payload_of('2["party:update",{"a":1}]') == '{"a":1}'
    assert wire.payload_of('2["party:message",{"a":1}]') is None
    assert wire.payload_of('21["party:update",{"a":1}]') is None  # an ack id: not a relay
    assert wire.batch_message("party:abc", ['{"a":1}', '{"b":2}']) == \
        '42["party:updates",{"party_id":"abc","updates":[{"a":1},{"b":2}]}]'


@pytest.mark.parametrize("value", [0, 19, 1001, -5, 2.5, True, "200"])
def test_tick_outside_20_to_1000_ms_is_refused(value):
    with pytest.raises(ConfigError, match="PARTY_BATCH_MS"):
        load("testing", overrides={"PARTY_BATCH_MS": value})


def test_tick_reads_the_environment():
    assert load("development", environ={"PARTY_BATCH_MS": "500"})["PARTY_BATCH_MS"] == 500
    with pytest.raises(ConfigError, match="PARTY_BATCH_MS"):
        load("development", environ={"PARTY_BATCH_MS": "fast"})


def test_positions_from_the_other_server_are_batched_where_they_are_delivered(cluster, make_user):
    a, b = cluster(2)
    ann, ben, cat = (make_user(display_name=name) for name in ("ann", "ben", "cat"))
    ann_sock, ben_sock, cat_sock = cluster.connect(a, ann), cluster.connect(b, ben), cluster.connect(b, cat)
    room = "party:batched-test"
    for server, user in ((a, ann), (b, ben), (b, cat)):
        with server.app.app_context():
            for sid in list(server.sio.server.manager.rooms["/"][realtime.user_room(user.id)]):
                realtime.enter_room(sid, room)
    assert ben_sock.call("party:batch", {"enabled": True})["ok"] is True
    payload = {"party_id": "batched-test", "user_id": ann.id, "n": 1}
    wait_until(lambda: a.sio.server.manager.has_remote_members(room), timeout=5)
    with a.app.app_context():
        assert realtime.relay_to_room(room, "party:update", payload)
    assert cat_sock.wait_for("party:update") == payload  # not opted in: at once, as before
    batcher = batching.of(b.sio.server)
    wait_until(lambda: batcher.pending, timeout=5)
    assert batcher.flush() == 1
    assert ben_sock.wait_for("party:updates") == {"party_id": "batched-test", "updates": [payload]}
    assert ben_sock.received("party:update") == []
