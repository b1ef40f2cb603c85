"""Parties over Socket.IO: each event reaches exactly the right members and nobody else."""
import pytest

from tests.helpers import events_named

API = "/api/v1"
MUNICH = {"lat": 48.137, "lng": 11.575}


def near(lat_offset=0.0, base=MUNICH):
    return {"lat": base["lat"] + lat_offset, "lng": base["lng"]}


@pytest.fixture
def ride(client, make_user, socket_client, clock):
    """A party led by `alice` with `bob` and `carol`, each connected once; `eve` is connected but outside."""
    users = {name: make_user(display_name=name) for name in ("alice", "bob", "carol", "eve")}
    response = client.post(f"{API}/parties", json={"name": "ride"}, headers=users["alice"].headers)
    party = response.get_json()["data"]
    for name in ("bob", "carol"):
        clock.advance(seconds=1)
        client.post(f"{API}/parties/join", json={"invite_code": party["invite_code"]},
                    headers=users[name].headers)
    sockets = {name: socket_client(user) for name, user in users.items()}
    for sio in sockets.values():
        sio.get_received()

    class Ride:
        pass

    ride = Ride()
    ride.party, ride.id, ride.users, ride.sio = party, party["id"], users, sockets
    return ride


def drain(ride):
    for sio in ride.sio.values():
        if sio.is_connected():
            sio.get_received()


def update(sio, party_id, location=None, **fields):
    return sio.emit("party:update", {"party_id": party_id, "location": location or MUNICH, **fields}, callback=True)


# ---- update ----------------------------------------------------------------

def test_update_reaches_the_others_not_the_sender_nor_outsiders(ride):
    ack = update(ride.sio["bob"], ride.id, speed_kmh=55.5, heading=180, status="riding")
    assert ack["ok"] is True and ack["ts"].endswith("Z")
    for name in ("alice", "carol"):
        events = events_named(ride.sio[name], "party:update")
        assert events == [{"party_id": ride.id, "user_id": ride.users["bob"].id, "location": MUNICH,
                           "speed_kmh": 55.5, "heading": 180.0, "status": "riding", "ts": ack["ts"]}]
    assert events_named(ride.sio["bob"], "party:update") == []
    assert ride.sio["eve"].get_received() == []


def test_client_ts_is_echoed_not_stored(ride, db):
    ack = update(ride.sio["bob"], ride.id, client_ts=1234.5)
    assert ack["client_ts"] == 1234.5
    assert events_named(ride.sio["alice"], "party:update")[0]["client_ts"] == 1234.5
    assert "client_ts" not in db.party_members.find_one({"user_id": ride.users["bob"]["_id"]})
    assert all("client_ts" not in point for point in db.trail_points.find())


def test_update_from_non_member_is_refused_and_reaches_no_one(ride):
    ack = update(ride.sio["eve"], ride.id)
    assert ack == {"ok": False, "error": {"code": "forbidden", "message": ack["error"]["message"]}}
    for sio in ride.sio.values():
        assert events_named(sio, "party:update") == []
    ack = update(ride.sio["eve"], "0" * 24)
    assert ack["error"]["code"] == "not_found"


def test_update_rate_limited_per_member(ride, clock):
    sio = ride.sio["bob"]
    acks = [update(sio, ride.id) for _ in range(6)]
    assert [ack["ok"] for ack in acks] == [True] * 5 + [False]
    assert acks[-1]["error"]["code"] == "rate_limited"
    assert len(events_named(ride.sio["alice"], "party:update")) == 5
    clock.advance(seconds=0.2)
    assert update(sio, ride.id)["ok"] is True
    assert update(sio, ride.id)["ok"] is False
    clock.advance(seconds=1)
    assert all(update(sio, ride.id)["ok"] for _ in range(5))


BAD_UPDATES = [
    {"location": MUNICH},  # missing party
    {"party_id": "nope", "location": MUNICH},
    {"party_id": None, "location": MUNICH},
    {"party_id": "PARTY"},  # missing location
    {"party_id": "PARTY", "location": {"lat": 91, "lng": 0}},
    {"party_id": "PARTY", "location": {"lat": 0, "lng": -180.5}},
    {"party_id": "PARTY", "location": {"lat": float("nan"), "lng": 0}},
    {"party_id": "PARTY", "location": {"lat": float("inf"), "lng": 0}},
    {"party_id": "PARTY", "location": {"lat": "48", "lng": 11}},
    {"party_id": "PARTY", "location": {"lat": True, "lng": 11}},
    {"party_id": "PARTY", "location": [48, 11]},
    {"party_id": "PARTY", "location": {"lat": 48, "lng": 11, "alt": 3}},
    {"party_id": "PARTY", "location": MUNICH, "speed_kmh": -1},
    {"party_id": "PARTY", "location": MUNICH, "speed_kmh": 401},
    {"party_id": "PARTY", "location": MUNICH, "speed_kmh": float("nan")},
    {"party_id": "PARTY", "location": MUNICH, "speed_kmh": "fast"},
    {"party_id": "PARTY", "location": MUNICH, "heading": 361},
    {"party_id": "PARTY", "location": MUNICH, "status": "flying"},
    {"party_id": "PARTY", "location": MUNICH, "status": None},
    {"party_id": "PARTY", "location": MUNICH, "extra": 1},
    {"party_id": "PARTY", "location": MUNICH, "client_ts": "now"},
    {"party_id": "PARTY", "location": MUNICH, "client_ts": float("nan")},
]


@pytest.mark.parametrize("payload", BAD_UPDATES)
def test_bad_updates_refused_through_ack_connection_survives(ride, payload):
    payload = {key: (ride.id if value == "PARTY" else value) for key, value in payload.items()}
    sio = ride.sio["bob"]
    ack = sio.emit("party:update", payload, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "validation_error"
    assert events_named(ride.sio["alice"], "party:update") == []
    assert sio.is_connected()
    assert update(sio, ride.id)["ok"] is True


@pytest.mark.parametrize("payload", [None, "text", 42, [1, 2], {}])
def test_non_object_payloads_refused(ride, payload):
    for event in ("party:update", "party:message", "party:alert", "party:join", "party:leave", "party:create"):
        ack = ride.sio["bob"].emit(event, payload, callback=True)
        assert ack["ok"] is False, (event, payload)
        assert ack["error"]["code"] in ("validation_error", "bad_request")
    assert ride.sio["bob"].is_connected()


def test_positions_are_written_by_the_flush_loop_and_kept_for_late_joiners(
        ride, db, clock, socket_client, make_user, client, app):
    from allynet.parties.live import flush_positions

    bob = ride.users["bob"]
    update(ride.sio["bob"], ride.id, near(0.001), speed_kmh=30, status="riding")
    clock.advance(seconds=0.5)
    update(ride.sio["bob"], ride.id, near(0.002), speed_kmh=31)
    stored = db.party_members.find_one({"user_id": bob["_id"], "active": True})
    assert stored.get("last_update_at") is None  # no Mongo write on the live path
    # ... but GET already shows it (this process overlays what it holds).
    got = client.get(f"{API}/parties/{ride.id}", headers=ride.users["alice"].headers).get_json()["data"]
    assert {m["user_id"]: m for m in got["members"]}[bob.id]["last_speed_kmh"] == 31
    clock.advance(seconds=0.5)
    update(ride.sio["bob"], ride.id, near(0.003), speed_kmh=32, status="stopped")
    update(ride.sio["carol"], ride.id, near(0.004), speed_kmh=20)
    assert flush_positions(app) == 2  # bob and carol, in one bulk write
    stored = db.party_members.find_one({"user_id": bob["_id"], "active": True})
    assert stored["last_speed_kmh"] == 32 and stored["status"] == "stopped"
    assert stored["last_location"] == {"type": "Point", "coordinates": [MUNICH["lng"], MUNICH["lat"] + 0.003]}
    assert stored["last_update_at"] == clock.current
    assert db.party_members.find_one({"user_id": ride.users["carol"]["_id"], "active": True})["last_speed_kmh"] == 20
    assert flush_positions(app) == 0  # nothing new to write
    # A late joiner gets the current state in the join ack.
    dave = make_user()
    dave_sio = socket_client(dave)
    ack = dave_sio.emit("party:join", {"invite_code": ride.party["invite_code"]}, callback=True)
    assert ack["ok"] is True
    members = {m["user_id"]: m for m in ack["party"]["members"]}
    assert members[bob.id]["last_location"] == near(0.003)
    assert members[bob.id]["status"] == "stopped"
    assert members[bob.id]["online"] is True
    assert set(ack["party"]["online"]) == {ride.users[n].id for n in ("alice", "bob", "carol")} | {dave.id}


def test_disconnect_writes_the_pending_position(ride, db, clock):
    update(ride.sio["bob"], ride.id, near(0.001))
    clock.advance(seconds=0.3)
    update(ride.sio["bob"], ride.id, near(0.005), speed_kmh=12)
    ride.sio["bob"].disconnect()
    stored = db.party_members.find_one({"user_id": ride.users["bob"]["_id"], "active": True})
    assert stored["last_location"]["coordinates"] == [MUNICH["lng"], MUNICH["lat"] + 0.005]


def test_flush_drops_a_rider_who_left_elsewhere_and_reads_back_episode_flags(ride, db, app, clock):
    from allynet.parties.live import flush_positions

    bob, carol = ride.users["bob"], ride.users["carol"]
    assert update(ride.sio["bob"], ride.id, near(0.001))["ok"]
    assert update(ride.sio["carol"], ride.id, near(0.001))["ok"]
    # Another process decided an episode for carol and took bob out (its queue message not here yet).
    db.party_members.update_one({"user_id": carol["_id"], "active": True}, {"$set": {"stopped_alerted": True}})
    db.party_members.update_one({"user_id": bob["_id"], "active": True}, {"$set": {"active": False}})
    assert flush_positions(app) == 2
    stale = db.party_members.find_one({"user_id": bob["_id"]})
    assert stale.get("last_location") is None  # an inactive membership is never written
    clock.advance(seconds=1)
    drain(ride)
    ack = update(ride.sio["bob"], ride.id, near(0.002))
    assert ack["ok"] is False and ack["error"]["code"] in ("forbidden", "not_found")
    assert events_named(ride.sio["alice"], "party:update") == []
    assert update(ride.sio["carol"], ride.id, near(0.002))["ok"]
    assert len(events_named(ride.sio["alice"], "party:update")) == 1


def test_a_failed_flush_keeps_positions_for_the_next_round(ride, db, app, monkeypatch):
    from pymongo.errors import ServerSelectionTimeoutError

    from allynet.parties import live

    assert update(ride.sio["bob"], ride.id, near(0.001), speed_kmh=44)["ok"]

    def down(*args, **kwargs):
        raise ServerSelectionTimeoutError("down")

    monkeypatch.setattr(live, "update_batch", down)
    with pytest.raises(ServerSelectionTimeoutError):
        live.flush_positions(app)
    monkeypatch.undo()
    assert live.flush_positions(app) == 1
    assert db.party_members.find_one({"user_id": ride.users["bob"]["_id"], "active": True})["last_speed_kmh"] == 44


def test_flush_writes_in_batches_and_a_failed_batch_is_kept_for_the_next_round(ride, db, app, monkeypatch):
    from pymongo.errors import AutoReconnect

    from allynet.parties import live

    monkeypatch.setattr(live, "FLUSH_BATCH", 1)
    for name, speed in (("alice", 10), ("bob", 20), ("carol", 30)):
        assert update(ride.sio[name], ride.id, near(0.001), speed_kmh=speed)["ok"]
    real, calls = live.update_batch, []

    def second_batch_fails(collection, updates):
        calls.append(len(updates))
        if len(calls) == 2:
            raise AutoReconnect("lost the server")
        return real(collection, updates)

    monkeypatch.setattr(live, "update_batch", second_batch_fails)
    with pytest.raises(AutoReconnect):
        live.flush_positions(app)
    stored = {doc["user_id"]: doc.get("last_speed_kmh") for doc in db.party_members.find({"active": True})}
    assert sorted(speed for speed in stored.values() if speed is not None) == [10]  # the first batch landed
    monkeypatch.setattr(live, "update_batch", real)
    assert live.flush_positions(app) == 2  # the failed one and the one never tried
    stored = {doc["user_id"]: doc.get("last_speed_kmh") for doc in db.party_members.find({"active": True})}
    assert sorted(stored.values()) == [10, 20, 30]
    assert live.flush_positions(app) == 0


def test_trail_is_sampled_not_written_per_update(ride, db, clock):
    for second in range(20):  # 1 Hz for 20 s
        assert update(ride.sio["bob"], ride.id, near(second / 10000))["ok"]
        assert update(ride.sio["carol"], ride.id, near(second / 10000))["ok"]
        clock.advance(seconds=1)
    party_id = db.parties.find_one()["_id"]
    for name in ("bob", "carol"):
        points = list(db.trail_points.find({"party_id": party_id, "user_id": ride.users[name]["_id"]}).sort("ts"))
        assert len(points) == 4  # at 0, 5, 10, 15 s
        gaps = [(b["ts"] - a["ts"]).total_seconds() for a, b in zip(points, points[1:])]
        assert gaps == [5.0, 5.0, 5.0]


# ---- join, presence ----------------------------------------------------------

def test_socket_create_then_join_by_code_ack_state_and_presence(client, make_user, socket_client):
    alice, bob, eve = make_user(), make_user(), make_user()
    alice_sio, bob_sio, eve_sio = socket_client(alice), socket_client(bob), socket_client(eve)
    ack = alice_sio.emit("party:create", {"name": "night ride"}, callback=True)
    assert ack["ok"] is True
    party = ack["party"]
    assert party["leader_id"] == alice.id and party["online"] == [alice.id]
    alice_sio.get_received()
    ack = bob_sio.emit("party:join", {"invite_code": party["invite_code"]}, callback=True)
    assert ack["ok"] is True
    assert [m["user_id"] for m in ack["party"]["members"]] == [alice.id, bob.id]
    assert ack["party"]["online"] == sorted([alice.id, bob.id])
    assert {m["user_id"]: m["online"] for m in ack["party"]["members"]} == {alice.id: True, bob.id: True}
    assert events_named(alice_sio, "party:presence")[-1] == {"party_id": party["id"],
                                                             "online": sorted([alice.id, bob.id])}
    assert eve_sio.get_received() == []
    # The creator's socket is in the room: it gets Bob's updates.
    update(bob_sio, party["id"])
    assert len(events_named(alice_sio, "party:update")) == 1


def test_join_by_party_id_needs_membership(ride, socket_client):
    ack = ride.sio["eve"].emit("party:join", {"party_id": ride.id}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    ack = ride.sio["eve"].emit("party:join", {"party_id": "0" * 24}, callback=True)
    assert ack["error"]["code"] == "not_found"
    ack = ride.sio["eve"].emit("party:join", {"invite_code": "ZZZZZZZZ"}, callback=True)
    assert ack["error"]["code"] == "not_found"
    ack = ride.sio["eve"].emit("party:join", {}, callback=True)
    assert ack["error"]["code"] == "validation_error"
    # A member rejoining the room by id gets the state.
    ack = ride.sio["bob"].emit("party:join", {"party_id": ride.id}, callback=True)
    assert ack["ok"] is True and ack["party"]["id"] == ride.id


def test_presence_with_two_devices(ride, socket_client):
    bob = ride.users["bob"]
    second = socket_client(bob)
    presence = events_named(ride.sio["alice"], "party:presence")
    assert bob.id in presence[-1]["online"]
    ride.sio["bob"].disconnect()
    presence = events_named(ride.sio["alice"], "party:presence")
    assert presence and bob.id in presence[-1]["online"]  # still on the phone
    # The remaining device still receives party traffic.
    update(ride.sio["carol"], ride.id)
    assert len(events_named(second, "party:update")) == 1
    second.disconnect()
    presence = events_named(ride.sio["alice"], "party:presence")
    assert presence[-1] == {"party_id": ride.id,
                            "online": sorted([ride.users["alice"].id, ride.users["carol"].id])}
    assert events_named(ride.sio["eve"], "party:presence") == []


def test_reconnecting_member_rejoins_room_on_connect(ride, socket_client):
    ride.sio["carol"].disconnect()
    drain(ride)
    again = socket_client(ride.users["carol"])
    presence = events_named(ride.sio["alice"], "party:presence")
    assert ride.users["carol"].id in presence[-1]["online"]
    update(ride.sio["bob"], ride.id)
    assert len(events_named(again, "party:update")) == 1


# ---- leave, end ----------------------------------------------------------------

def test_leaving_stops_everything_at_once_for_all_devices(ride, socket_client, client):
    bob = ride.users["bob"]
    phone = socket_client(bob)
    drain(ride)
    phone.get_received()
    ack = ride.sio["bob"].emit("party:leave", {"party_id": ride.id}, callback=True)
    assert ack["ok"] is True
    presence = events_named(ride.sio["alice"], "party:presence")
    assert presence[-1]["online"] == sorted([ride.users["alice"].id, ride.users["carol"].id])
    # Nothing of the party reaches either of Bob's sockets from now on.
    update(ride.sio["alice"], ride.id)
    ride.sio["carol"].emit("party:message", {"party_id": ride.id, "text": "where is bob?"}, callback=True)
    ride.sio["carol"].emit("party:alert", {"party_id": ride.id, "type": "police", "location": MUNICH},
                           callback=True)
    for sio in (ride.sio["bob"], phone):
        assert [e["name"] for e in sio.get_received() if e["name"].startswith("party:")] == []
    # And Bob's updates are refused.
    ack = update(phone, ride.id)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    assert events_named(ride.sio["alice"], "party:update") == []
    # Leaving again: no longer a member.
    ack = ride.sio["bob"].emit("party:leave", {"party_id": ride.id}, callback=True)
    assert ack["error"]["code"] == "forbidden"


def test_leave_through_rest_also_takes_sockets_out(ride, client):
    client.post(f"{API}/parties/{ride.id}/leave", headers=ride.users["carol"].headers)
    drain(ride)
    update(ride.sio["bob"], ride.id)
    assert events_named(ride.sio["carol"], "party:update") == []
    assert len(events_named(ride.sio["alice"], "party:update")) == 1


def test_leader_hand_over_event_reaches_members(ride):
    ride.sio["alice"].emit("party:leave", {"party_id": ride.id}, callback=True)
    expected = [{"party_id": ride.id, "leader_id": ride.users["bob"].id}]
    assert events_named(ride.sio["carol"], "party:leader") == expected
    assert events_named(ride.sio["eve"], "party:leader") == []
    assert events_named(ride.sio["alice"], "party:leader") == []
    ack = ride.sio["bob"].emit("party:join", {"party_id": ride.id}, callback=True)
    assert ack["party"]["leader_id"] == ride.users["bob"].id


def test_end_notifies_and_closes_the_room(ride, client, db):
    response = client.post(f"{API}/parties/{ride.id}/end", headers=ride.users["alice"].headers)
    assert response.status_code == 200
    for name in ("alice", "bob", "carol"):
        ended = events_named(ride.sio[name], "party:ended")
        assert len(ended) == 1 and ended[0]["party_id"] == ride.id
    assert events_named(ride.sio["eve"], "party:ended") == []
    ack = update(ride.sio["bob"], ride.id)
    assert ack["error"]["code"] == "not_found"
    assert db.party_members.count_documents({"active": True}) == 0


def test_last_member_leaving_over_sockets_ends_party(client, make_user, socket_client):
    alice = make_user()
    sio = socket_client(alice)
    party = sio.emit("party:create", {"name": "solo"}, callback=True)["party"]
    ack = sio.emit("party:leave", {"party_id": party["id"]}, callback=True)
    assert ack == {"ok": True, "party_id": party["id"], "is_active": False}


# ---- messages, alerts ----------------------------------------------------------

def test_message_stored_and_sent_to_the_room_only(ride, db):
    ack = ride.sio["bob"].emit("party:message", {"party_id": ride.id, "text": "  fuel stop in 5  "}, callback=True)
    assert ack["ok"] is True
    message = ack["message"]
    assert message["text"] == "fuel stop in 5" and message["user_id"] == ride.users["bob"].id
    assert set(message) >= {"id", "user_id", "text", "ts"}
    for name in ("alice", "bob", "carol"):
        assert events_named(ride.sio[name], "party:message") == [message]
    assert ride.sio["eve"].get_received() == []
    assert db.party_messages.count_documents({}) == 1


@pytest.mark.parametrize("payload", [{"text": ""}, {"text": "   "}, {"text": "x" * 1001}, {"text": 5},
                                     {}, {"text": "hi", "extra": 1}])
def test_bad_messages_refused(ride, payload, db):
    ack = ride.sio["bob"].emit("party:message", {"party_id": ride.id, **payload}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "validation_error"
    assert events_named(ride.sio["alice"], "party:message") == []
    assert db.party_messages.count_documents({}) == 0


def test_message_1000_chars_ok_and_outsider_refused(ride):
    assert ride.sio["bob"].emit("party:message", {"party_id": ride.id, "text": "x" * 1000}, callback=True)["ok"]
    ack = ride.sio["eve"].emit("party:message", {"party_id": ride.id, "text": "spy"}, callback=True)
    assert ack["error"]["code"] == "forbidden"
    assert [m["text"] for m in events_named(ride.sio["alice"], "party:message")] == ["x" * 1000]


def test_alert_broadcast_to_room(ride, db):
    ack = ride.sio["carol"].emit("party:alert", {"party_id": ride.id, "type": "hazard", "location": MUNICH,
                                                 "description": "gravel"}, callback=True)
    assert ack["ok"] is True
    for name in ("alice", "bob", "carol"):
        alerts = events_named(ride.sio[name], "party:alert")
        assert len(alerts) == 1
        assert alerts[0]["type"] == "hazard" and alerts[0]["user_id"] == ride.users["carol"].id
        assert alerts[0]["location"] == MUNICH and alerts[0]["description"] == "gravel"
    assert ride.sio["eve"].get_received() == []


@pytest.mark.parametrize("payload", [
    {"type": "alien", "location": MUNICH}, {"type": "hazard"}, {"type": "hazard", "location": {"lat": 100, "lng": 0}},
    {"type": "member_left_behind", "location": MUNICH},
])
def test_bad_alerts_refused(ride, payload):
    ack = ride.sio["carol"].emit("party:alert", {"party_id": ride.id, **payload}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "validation_error"
    assert events_named(ride.sio["alice"], "party:alert") == []


# ---- left behind ---------------------------------------------------------------

def alerts_of(sio, kind):
    return [a for a in events_named(sio, "party:alert") if a["type"] == kind]


def test_left_behind_once_per_episode(ride, clock):
    alice, bob = ride.sio["alice"], ride.sio["bob"]
    update(alice, ride.id, MUNICH)
    update(bob, ride.id, near(0.01))  # ~1.1 km: fine
    assert alerts_of(ride.sio["carol"], "member_left_behind") == []
    clock.advance(seconds=1)
    update(bob, ride.id, near(0.03))  # ~3.3 km: left behind
    alerts = alerts_of(ride.sio["carol"], "member_left_behind")
    assert len(alerts) == 1 and alerts[0]["user_id"] == ride.users["bob"].id
    assert alerts[0]["distance_m"] > 2000
    assert len(alerts_of(alice, "member_left_behind")) == 1
    assert events_named(ride.sio["eve"], "party:alert") == []
    for step in range(3):  # still far: no repeat
        clock.advance(seconds=1)
        update(bob, ride.id, near(0.03 + step / 1000))
    assert alerts_of(ride.sio["carol"], "member_left_behind") == []
    clock.advance(seconds=1)
    update(bob, ride.id, near(0.005))  # caught up: episode over
    clock.advance(seconds=1)
    update(bob, ride.id, near(0.04))  # dropped again: new episode
    assert len(alerts_of(ride.sio["carol"], "member_left_behind")) == 1


def test_leader_riding_away_leaves_member_behind(ride, clock):
    update(ride.sio["bob"], ride.id, MUNICH)
    update(ride.sio["alice"], ride.id, MUNICH)
    clock.advance(seconds=1)
    update(ride.sio["alice"], ride.id, near(-0.05))
    alerts = alerts_of(ride.sio["carol"], "member_left_behind")
    assert [a["user_id"] for a in alerts] == [ride.users["bob"].id]


def test_left_behind_threshold_is_configurable(app_factory, make_user):
    app = app_factory(LEFT_BEHIND_M=500.0)
    assert app.config["LEFT_BEHIND_M"] == 500.0


def test_stopped_five_minutes_while_others_ride(ride, clock):
    update(ride.sio["alice"], ride.id, MUNICH, status="riding")
    update(ride.sio["bob"], ride.id, MUNICH, status="stopped")
    for _ in range(4):
        clock.advance(seconds=60)
        update(ride.sio["alice"], ride.id, MUNICH, status="riding")
        update(ride.sio["bob"], ride.id, MUNICH, status="stopped")
    assert alerts_of(ride.sio["carol"], "member_stopped") == []
    clock.advance(seconds=61)
    # Bob has gone quiet; the leader's next update notices.
    update(ride.sio["alice"], ride.id, MUNICH, status="riding")
    alerts = alerts_of(ride.sio["carol"], "member_stopped")
    assert [a["user_id"] for a in alerts] == [ride.users["bob"].id]
    clock.advance(seconds=30)
    update(ride.sio["bob"], ride.id, MUNICH, status="stopped")
    update(ride.sio["alice"], ride.id, MUNICH, status="riding")
    assert alerts_of(ride.sio["carol"], "member_stopped") == []  # same episode
    clock.advance(seconds=1)
    update(ride.sio["bob"], ride.id, MUNICH, status="riding")  # moving again: episode over
    clock.advance(seconds=1)
    update(ride.sio["bob"], ride.id, MUNICH, status="stopped")
    clock.advance(seconds=301)
    update(ride.sio["alice"], ride.id, MUNICH, status="riding")
    assert len(alerts_of(ride.sio["carol"], "member_stopped")) == 1


def test_stopped_alone_is_not_an_alert(ride, clock):
    update(ride.sio["alice"], ride.id, MUNICH, status="stopped")
    update(ride.sio["bob"], ride.id, MUNICH, status="stopped")
    clock.advance(seconds=600)
    update(ride.sio["bob"], ride.id, MUNICH, status="stopped")
    update(ride.sio["alice"], ride.id, MUNICH, status="paused")
    assert alerts_of(ride.sio["carol"], "member_stopped") == []


def test_alerts_show_in_history(ride, client, clock):
    update(ride.sio["alice"], ride.id, MUNICH)
    clock.advance(seconds=1)
    update(ride.sio["bob"], ride.id, near(0.05))
    body = client.get(f"{API}/parties/{ride.id}/history", headers=ride.users["carol"].headers).get_json()
    alerts = [item for item in body["data"] if item["kind"] == "alert"]
    assert [a["type"] for a in alerts] == ["member_left_behind"]
    assert alerts[0]["user_id"] == ride.users["bob"].id
