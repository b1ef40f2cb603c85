"""Party services other features call, presence stores, and two server processes sharing Redis
(episodes: test_parties_episodes.py)."""
import logging

import pytest
import redis

from allynet.parties import live, presence, scheduled, service
from tests.helpers import events_named

API = "/api/v1"


def point(lat, lng):
    return {"type": "Point", "coordinates": [lng, lat]}


def create(client, user, name="ride"):
    return client.post(f"{API}/parties", json={"name": name}, headers=user.headers).get_json()["data"]


def join(client, user, party):
    return client.post(f"{API}/parties/join", json={"invite_code": party["invite_code"]}, headers=user.headers)


# ---- functions used by emergencies and reports ---------------------------------

def test_active_party_member_ids(app, db, client, make_user):
    alice, bob, carol, eve = make_user(), make_user(), make_user(), make_user()
    party = create(client, alice)
    join(client, bob, party)
    join(client, carol, party)
    with app.app_context():
        assert sorted(service.active_party_member_ids(db=db, user_id=alice["_id"])) == sorted(
            [bob["_id"], carol["_id"]])
        assert service.active_party_member_ids(db=db, user_id=eve["_id"]) == []
        client.post(f"{API}/parties/{party['id']}/leave", headers=carol.headers)
        assert service.active_party_member_ids(db=db, user_id=alice["_id"]) == [bob["_id"]]
        assert service.active_party_member_ids(db=db, user_id=carol["_id"]) == []
        client.post(f"{API}/parties/{party['id']}/end", headers=alice.headers)
        assert service.active_party_member_ids(db=db, user_id=alice["_id"]) == []


def test_active_parties_near_uses_member_positions(app, db, client, make_user, socket_client, clock):
    pytest.importorskip("allynet.embedded.geo")
    riders = [make_user() for _ in range(4)]
    near_party = create(client, riders[0], "near")
    join(client, riders[1], near_party)
    far_party = create(client, riders[2], "far")
    ended_party = create(client, riders[3], "ended")
    positions = [(48.10, 11.50), (48.30, 11.50), (50.0, 8.0), (48.10, 11.50)]
    for rider, (lat, lng), party in zip(riders, positions, [near_party, near_party, far_party, ended_party]):
        ack = socket_client(rider).emit("party:update", {"party_id": party["id"], "location": {"lat": lat, "lng": lng}},
                                        callback=True)
        assert ack["ok"]
    client.post(f"{API}/parties/{ended_party['id']}/end", headers=riders[3].headers)
    with app.app_context():
        found = service.active_parties_near(db=db, location=point(48.11, 11.50), radius_m=5000)
        assert [str(pid) for pid in found] == [near_party["id"]]
        found = service.active_parties_near(db=db, location=point(48.30, 11.50), radius_m=1000)
        assert [str(pid) for pid in found] == [near_party["id"]]
        assert service.active_parties_near(db=db, location=point(0, 0), radius_m=5000) == []


def test_concurrent_joins_leave_one_active_membership(app, db, client, make_user):
    """The unique partial index keeps one active party per user even when joins race."""
    import threading

    bob = make_user()
    parties = [create(client, make_user(), f"p{i}") for i in range(4)]
    errors = []

    def go(party):
        with app.app_context():
            try:
                from allynet.errors import AllyNetError

                service.join_by_code(db=db, user_id=bob["_id"], invite_code=party["invite_code"])
            except AllyNetError as exc:
                errors.append(exc.code)
            except Exception as exc:  # surfaced in the assertion below
                errors.append(repr(exc))

    threads = [threading.Thread(target=go, args=(party,)) for party in parties]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.party_members.count_documents({"user_id": bob["_id"], "active": True}) == 1, errors
    active = db.party_members.find_one({"user_id": bob["_id"], "active": True})
    party = db.parties.find_one({"_id": active["party_id"]})
    assert bob["_id"] in [m["user_id"] for m in party["members"]]
    # Bob is listed in exactly one party's members.
    assert db.parties.count_documents({"members.user_id": bob["_id"], "is_active": True}) == 1, errors
    assert set(errors) <= {"conflict"}, errors


# ---- presence stores -----------------------------------------------------------

def test_local_presence_counts_sockets_not_users():
    store = presence.LocalPresence()
    store.add("p", "u1", "s1")
    store.add("p", "u1", "s2")
    store.add("p", "u2", "s3")
    assert store.online("p") == ["u1", "u2"]
    store.remove("p", "s1")
    assert store.online("p") == ["u1", "u2"]
    assert store.remove_user("p", "u1") == ["s2"]
    assert store.online("p") == ["u2"]
    store.clear("p")
    assert store.online("p") == []


@pytest.fixture
def redis_app(app_factory):
    from tests.conftest import REDIS_TEST_URL
    import uuid

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis at REDIS_TEST_URL (scripts/ensure_redis.sh starts one)")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    app = app_factory(REDIS_URL=REDIS_TEST_URL, RATELIMIT_STORAGE_URI=REDIS_TEST_URL,
                      REDIS_KEY_PREFIX=f"{prefix}:", SOCKETIO_CHANNEL=f"{prefix}-socketio",
                      SOCKETIO_PRIVATE_INSTANCE=True, PARTY_PRESENCE_TTL_SECONDS=30.0)
    yield app
    client = redis.Redis.from_url(REDIS_TEST_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def test_redis_presence_expires_sockets_of_a_crashed_process(redis_app, clock):
    with redis_app.app_context():
        store = presence.get_store()
        assert isinstance(store, presence.RedisPresence)
        store.add("p", "u1", "s1")
        store.add("p", "u2", "s2")
        assert store.online("p") == ["u1", "u2"]
        clock.advance(seconds=20)
        store.refresh([("p", "u2", "s2")])  # u2's process is alive, u1's crashed
        clock.advance(seconds=15)
        assert store.online("p") == ["u2"]
        assert store.remove_user("p", "u2") == ["s2"]
        assert store.online("p") == []


def test_redis_presence_is_shared_between_processes(redis_app, app_factory, clock):
    other = app_factory(**{key: redis_app.config[key] for key in (
        "REDIS_URL", "RATELIMIT_STORAGE_URI", "REDIS_KEY_PREFIX", "SOCKETIO_CHANNEL", "SOCKETIO_PRIVATE_INSTANCE",
        "PARTY_PRESENCE_TTL_SECONDS")})
    with redis_app.app_context():
        presence.get_store().add("p", "u1", "phone")
    with other.app_context():
        presence.get_store().add("p", "u1", "tablet")
        assert presence.get_store().online("p") == ["u1"]
    with redis_app.app_context():
        presence.get_store().remove("p", "phone")
        assert presence.get_store().online("p") == ["u1"]  # the tablet on the other process
    with other.app_context():
        presence.get_store().remove("p", "tablet")
        assert presence.get_store().online("p") == []


def test_refresh_presence_loop_body_covers_local_sockets(redis_app, make_user, clock):
    alice = make_user()
    party = create(redis_app.test_client(), alice)
    db = redis_app.extensions["allynet_db"]
    with redis_app.app_context():
        # What the connect hook does for a member's new socket on this process.
        assert live.socket_connected(db=db, user_id=alice["_id"], sid="sid-1") == party["id"]
    clock.advance(seconds=25)
    assert scheduled.refresh_presence(redis_app) == 1
    clock.advance(seconds=25)  # 50 s after connecting, TTL 30 s: alive thanks to the refresh
    with redis_app.app_context():
        assert presence.get_store().online(party["id"]) == [alice.id]
    clock.advance(seconds=31)  # no refresh (the process "crashed"): gone
    with redis_app.app_context():
        assert presence.get_store().online(party["id"]) == []


# ---- two servers sharing Redis ---------------------------------------------------

@pytest.fixture
def two_servers(redis_app, app_factory):
    pytest.importorskip("tests.scaleout_support")
    from tests.scaleout_support import SioClient, serve

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    other = app_factory(**{key: redis_app.config[key] for key in (
        "REDIS_URL", "RATELIMIT_STORAGE_URI", "REDIS_KEY_PREFIX", "SOCKETIO_CHANNEL", "SOCKETIO_PRIVATE_INSTANCE",
        "PARTY_PRESENCE_TTL_SECONDS")})
    servers = [serve(redis_app), serve(other)]
    for server in servers:
        server.listen()
    clients = []

    def connect(server, user):
        sio_client = SioClient(server.url, user["access_token"])
        clients.append(sio_client)
        return sio_client

    yield servers, connect
    for sio_client in clients:
        sio_client.close()
    for server in servers:
        server.stop()


def test_party_traffic_and_presence_cross_servers(two_servers, make_user):
    (a, b), connect = two_servers
    alice, bob, carol, eve = make_user(), make_user(), make_user(), make_user()
    on_a, on_b, carol_b, eve_b = connect(a, alice), connect(b, bob), connect(b, carol), connect(b, eve)
    party = on_a.call("party:create", {"name": "split"})["party"]
    ack = on_b.call("party:join", {"invite_code": party["invite_code"]})
    assert ack["ok"] and ack["party"]["online"] == sorted([alice.id, bob.id])
    on_a.wait_for("party:presence", lambda p: p["online"] == sorted([alice.id, bob.id]))
    assert carol_b.call("party:join", {"invite_code": party["invite_code"]})["ok"]
    assert on_a.call("party:update", {"party_id": party["id"], "location": {"lat": 1, "lng": 1}})["ok"]
    got = on_b.wait_for("party:update")
    assert got["user_id"] == alice.id
    # A recent update of Bob's: his position is fresh in B's memory when he leaves.
    assert on_b.call("party:update", {"party_id": party["id"], "location": {"lat": 1, "lng": 1}})["ok"]
    # Bob leaves through server A (his socket is on B): the leave crosses to B through Redis.
    import requests

    response = requests.post(f"{a.url}{API}/parties/{party['id']}/leave",
                             headers={"Authorization": f"Bearer {bob['access_token']}"}, timeout=5)
    assert response.status_code == 200
    on_a.wait_for("party:presence", lambda p: p["online"] == sorted([alice.id, carol.id]))
    on_b.clear()
    carol_b.clear()
    assert on_a.call("party:update", {"party_id": party["id"], "location": {"lat": 1, "lng": 1.001}})["ok"]
    assert on_a.call("party:message", {"party_id": party["id"], "text": "gone?"})["ok"]
    # Carol, on Bob's server, got both: had Bob still been in the room, he would have too.
    carol_b.wait_for("party:message")
    assert len(carol_b.received("party:update")) == 1
    assert on_b.received("party:update") == [] and on_b.received("party:message") == []
    assert eve_b.received("party:update") == []
    # Bob's socket on B is refused at once, not after the next flush: it left the room on B.
    ack = on_b.call("party:update", {"party_id": party["id"], "location": {"lat": 1, "lng": 1}})
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
