"""Left-behind / stopped episodes: the rules with plain values, and as riders meet them when
decided from Mongo (riders on other processes, quiet riders)."""
from datetime import datetime, timedelta

import pytest

from allynet.parties import episodes, live, scheduled
from tests.helpers import events_named
from tests.test_parties_service import create, join, point

CONFIG = {"LEFT_BEHIND_M": 2000, "PARTY_STOPPED_ALERT_SECONDS": 300}
NOW = datetime(2026, 6, 1, 12, 0, 0)


# ---- the rules -------------------------------------------------------------------

@pytest.mark.parametrize("distance_m, alerted, change", [
    (2500, False, True),  # far, no episode yet: one starts
    (2500, True, None),  # far, already alerted: nothing new
    (1500, True, False),  # back within reach: the episode ends
    (1500, False, None),
    (2000, False, None),  # exactly at the limit is not "more than"
])
def test_left_behind_rule(distance_m, alerted, change):
    assert episodes.left_behind_change(distance_m, alerted, CONFIG) is change


@pytest.mark.parametrize("status, stopped_for, alerted, change", [
    ("stopped", 300, False, True),  # stopped long enough: due (if someone else rides)
    ("stopped", 299, False, None),  # not yet
    ("stopped", 900, True, None),  # already alerted for this stop
    ("stopped", None, True, False),  # no stop time: not an episode, the flag is cleared
    ("riding", None, True, False),  # moving again: the episode ends
    ("riding", None, False, None),
    ("paused", None, False, None),
])
def test_stopped_rule(status, stopped_for, alerted, change):
    since = None if stopped_for is None else NOW - timedelta(seconds=stopped_for)
    assert episodes.stopped_change(status, since, alerted, NOW, CONFIG) is change


def test_riding_needs_the_status_and_a_recent_update():
    fresh = NOW - timedelta(seconds=episodes.RIDING_FRESH_SECONDS)
    stale = fresh - timedelta(seconds=1)
    assert episodes.is_riding("riding", fresh, NOW) is True
    assert episodes.is_riding("riding", stale, NOW) is False
    assert episodes.is_riding("riding", None, NOW) is False
    assert episodes.is_riding("stopped", NOW, NOW) is False


# ---- episodes decided from Mongo (riders on other processes, quiet riders) ------

MUNICH = {"lat": 48.137, "lng": 11.575}


def test_sweep_alerts_a_quiet_stopped_rider_once(app, db, client, make_user, socket_client, clock):
    alice, bob, carol = make_user(), make_user(), make_user()
    party = create(client, alice)
    join(client, bob, party)
    join(client, carol, party)
    sio = {name: socket_client(user) for name, user in (("alice", alice), ("bob", bob), ("carol", carol))}
    sio["alice"].emit("party:update", {"party_id": party["id"], "location": MUNICH, "status": "riding"}, callback=True)
    sio["bob"].emit("party:update", {"party_id": party["id"], "location": MUNICH, "status": "stopped"}, callback=True)
    clock.advance(seconds=250)
    sio["alice"].emit("party:update", {"party_id": party["id"], "location": MUNICH, "status": "riding"}, callback=True)
    clock.advance(seconds=60)  # nobody sends anything now
    sio["carol"].get_received()
    with app.app_context():
        assert scheduled.sweep_episodes(app) == 1
        assert scheduled.sweep_episodes(app) == 0
    alerts = events_named(sio["carol"], "party:alert")
    assert [(a["type"], a["user_id"]) for a in alerts] == [("member_stopped", bob.id)]


def test_sweep_left_behind_episode_from_stored_positions(app, db, client, make_user, socket_client, clock):
    from bson import ObjectId

    alice, bob = make_user(), make_user()
    party = create(client, alice)
    join(client, bob, party)
    alice_sio = socket_client(alice)
    alice_sio.emit("party:update", {"party_id": party["id"], "location": MUNICH}, callback=True)
    alice_sio.get_received()

    def bob_at(lat_offset, seconds_ago):
        # As another server process would have written it, Bob's last update `seconds_ago`.
        db.party_members.update_one({"party_id": ObjectId(party["id"]), "user_id": bob["_id"]},
                                    {"$set": {"last_location": point(MUNICH["lat"] + lat_offset, MUNICH["lng"]),
                                              "status": "riding",
                                              "last_update_at": clock.current - timedelta(seconds=seconds_ago)}})

    quiet = episodes.QUIET_SECONDS + 1
    with app.app_context():
        bob_at(0.05, seconds_ago=0)
        assert scheduled.sweep_episodes(app) == 0  # still sending: his own updates decide, on his server
        bob_at(0.05, seconds_ago=quiet)
        assert scheduled.sweep_episodes(app) == 1  # gone quiet far behind: the sweep's
        assert scheduled.sweep_episodes(app) == 0
        bob_at(0.001, seconds_ago=quiet)
        assert scheduled.sweep_episodes(app) == 0  # back: episode closed
        bob_at(0.05, seconds_ago=quiet)
        assert scheduled.sweep_episodes(app) == 1
    alerts = events_named(alice_sio, "party:alert")
    assert [(a["type"], a["user_id"]) for a in alerts] == [("member_left_behind", bob.id)] * 2


def test_sweep_alerts_a_stopped_rider_whose_riding_mates_are_on_another_server(
        app, db, client, make_user, socket_client, clock):
    """Bob keeps sending `stopped` here; Alice and Carol ride on another process (their positions
    only in Mongo), so no update of this process sees anyone riding: the sweep decides."""
    from bson import ObjectId

    alice, bob, carol = make_user(), make_user(), make_user()
    party = create(client, alice)
    join(client, bob, party)
    join(client, carol, party)
    bob_sio = socket_client(bob)
    start = clock.current

    def riding_elsewhere(user):
        db.party_members.update_one({"party_id": ObjectId(party["id"]), "user_id": user["_id"]},
                                    {"$set": {"last_location": point(MUNICH["lat"], MUNICH["lng"]),
                                              "status": "riding", "last_update_at": clock.current}})

    limit = app.config["PARTY_STOPPED_ALERT_SECONDS"]
    while clock.current - start <= timedelta(seconds=limit + 5):
        assert bob_sio.emit("party:update", {"party_id": party["id"], "location": MUNICH, "status": "stopped"},
                            callback=True)["ok"]
        riding_elsewhere(alice)
        riding_elsewhere(carol)
        clock.advance(seconds=5)
    assert events_named(bob_sio, "party:alert") == []  # nobody here rides: the live path cannot tell
    with app.app_context():
        assert scheduled.sweep_episodes(app) == 1
        assert scheduled.sweep_episodes(app) == 0
    alerts = events_named(bob_sio, "party:alert")
    assert [(a["type"], a["user_id"]) for a in alerts] == [("member_stopped", bob.id)]


def test_leader_on_another_process_is_read_from_mongo(app_factory, db, make_user, clock):
    """Two server processes sharing the store (no queue): the rider's server finds the leader's position."""
    first = app_factory(SOCKETIO_PRIVATE_INSTANCE=True)
    second = app_factory(SOCKETIO_PRIVATE_INSTANCE=True)
    alice, bob = make_user(), make_user()
    party = create(first.test_client(), alice)
    join(first.test_client(), bob, party)
    alice_sio = first.extensions["socketio"].test_client(first, auth={"token": alice["access_token"]})
    bob_sio = second.extensions["socketio"].test_client(second, auth={"token": bob["access_token"]})
    try:
        assert alice_sio.emit("party:update", {"party_id": party["id"], "location": MUNICH}, callback=True)["ok"]
        with first.app_context():
            assert live.flush_positions(first) == 1  # the first server's flush loop runs
        far = {"lat": MUNICH["lat"] + 0.05, "lng": MUNICH["lng"]}
        assert bob_sio.emit("party:update", {"party_id": party["id"], "location": far}, callback=True)["ok"]
        alerts = events_named(bob_sio, "party:alert")  # the second server's room: Bob's own socket
        assert [(a["type"], a["user_id"]) for a in alerts] == [("member_left_behind", bob.id)]
    finally:
        alice_sio.disconnect()
        bob_sio.disconnect()
