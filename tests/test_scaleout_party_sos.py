"""Parties and SOS across two servers sharing Redis (see test_scaleout_rooms for the controls).

Members on both servers get every party:update, party:message and party:presence; an SOS
created through server A reaches a helper on server B (and the helper's answer comes back);
escalation run by a worker with no server reaches sockets through the queue, once even when
two processes sweep at the same time; a rider who drops mid-ride and reconnects to the other
server gets the party back in its join ack, with nothing it sent lost.

With MONGO_TEST_URI set the servers are real `wsgi.py` processes on that MongoDB; otherwise two
in-process servers on one mongomock store.
"""
import threading
from datetime import timedelta

import requests

from allynet import clock
from allynet.emergencies import service as emergencies
from tests.emergencies_helpers import SOS_BODY, north_of, place_helper
from tests.scaleout_support import cluster, quiet_werkzeug, redis_prefix, wait_until  # noqa: F401

API = "/api/v1"
FAST_UPDATES = {"MAX_UPDATE_HZ": 1000}


def create_party(server, user, name="ride"):
    response = requests.post(f"{server.url}{API}/parties", json={"name": name}, headers=user.headers, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def position(i, j=0):
    return {"lat": 48.85 + i / 1000, "lng": 2.35 + j / 1000}


def test_party_split_over_two_servers_gets_every_event(cluster, make_user):
    a, b = cluster(2, processes_ok=True, **FAST_UPDATES)
    riders = [make_user(display_name=name) for name in ("ann", "ben", "cat", "dan")]
    homes = [a, a, b, b]
    sockets = [cluster.connect(server, rider) for server, rider in zip(homes, riders)]
    everyone = sorted(rider.id for rider in riders)

    party = create_party(a, riders[0])
    for sock in sockets:
        ack = sock.call("party:join", {"invite_code": party["invite_code"]})
        assert ack["ok"], ack
    assert ack["party"]["online"] == everyone  # the last joiner sees everyone, on both servers
    for sock in sockets:
        sock.wait_for("party:presence", lambda p: p["party_id"] == party["id"] and p["online"] == everyone)

    sent_messages = []
    for round_ in range(3):
        for i, sock in enumerate(sockets):
            ack = sock.call("party:update", {"party_id": party["id"], "location": position(i, round_),
                                             "speed_kmh": 20 + round_, "status": "riding"})
            assert ack["ok"], ack
        for i, sock in enumerate(sockets):
            ack = sock.call("party:message", {"party_id": party["id"], "text": f"m{round_}-{i}"})
            assert ack["ok"], ack
            sent_messages.append(ack["message"]["id"])

    for i, sock in enumerate(sockets):
        others = [rider.id for j, rider in enumerate(riders) if j != i]
        wait_until(lambda: len(sock.received("party:message")) >= len(sent_messages), timeout=5,
                   message=f"rider {i} to get every message")
        assert [m["id"] for m in sock.received("party:message")] == sent_messages  # all, in order, once
        wait_until(lambda: len(sock.received("party:update")) >= 9, timeout=5,
                   message=f"rider {i} to get every update")
        updates = sock.received("party:update")
        assert len(updates) == 9  # 3 rounds x 3 other riders, never its own
        assert sorted({u["user_id"] for u in updates}) == sorted(others)
        for other in others:  # each rider's updates arrive in the order they were sent
            assert [u["speed_kmh"] for u in updates if u["user_id"] == other] == [20, 21, 22]

    # A member leaving through server B is seen leaving by members on A.
    left = requests.post(f"{b.url}{API}/parties/{party['id']}/leave", headers=riders[3].headers, timeout=5)
    assert left.status_code == 200
    remaining = sorted(rider.id for rider in riders[:3])
    for sock in sockets[:3]:
        sock.wait_for("party:presence", lambda p: p["online"] == remaining)


def test_sos_through_server_a_reaches_a_helper_on_server_b_and_back(cluster, make_user):
    a, b = cluster(2, processes_ok=True)
    helper = place_helper(make_user, 800)
    requester = make_user()
    helper_socket = cluster.connect(b, helper)
    owner_socket = cluster.connect(a, requester)

    created = requests.post(f"{a.url}{API}/emergencies", json=SOS_BODY, headers=requester.headers, timeout=5)
    assert created.status_code == 201, created.text
    emergency_id = created.json()["data"]["emergency"]["id"]
    alert = helper_socket.wait_for("emergency.created", lambda e: e["id"] == emergency_id)
    assert 700 < alert["distance_m"] < 900

    responded = requests.post(f"{b.url}{API}/emergencies/{emergency_id}/respond", json={"eta_minutes": 4},
                              headers=helper.headers, timeout=5)
    assert responded.status_code == 200, responded.text
    joined = owner_socket.wait_for("helper.joined", lambda e: e["emergency_id"] == emergency_id)
    assert joined["helper_id"] == helper.id and joined["eta_minutes"] == 4
    owner_socket.wait_for("emergency.status_changed", lambda e: e["status"] == "responding")


def test_sos_alerts_a_party_member_on_the_other_server_at_any_distance(cluster, make_user):
    a, b = cluster(2, processes_ok=True)
    rider = make_user()
    friend = make_user(location=north_of(60_000))  # 60 km away, not a helper
    friend_socket = cluster.connect(b, friend)
    party = create_party(a, rider)
    assert friend_socket.call("party:join", {"invite_code": party["invite_code"]})["ok"]

    created = requests.post(f"{a.url}{API}/emergencies", json=SOS_BODY, headers=rider.headers, timeout=5)
    assert created.status_code == 201, created.text
    alert = friend_socket.wait_for("emergency.created")
    assert alert["id"] == created.json()["data"]["emergency"]["id"] and alert["party_member"] is True


def test_escalation_from_a_worker_reaches_helpers_once_across_processes(cluster, make_user, db):
    # Escalation runs in background loops of every process; each wave is claimed atomically in
    # MongoDB (find_one_and_update on wave + next_wave_at), so two sweepers at once alert once.
    # The sweepers here are apps that serve nothing: their emits cross through the queue.
    b = cluster(1, processes_ok=True)[0]
    sweepers = [cluster.worker(), cluster.worker()]
    far_helper = place_helper(make_user, 7000)  # outside wave 1 (5 km), inside wave 2 (10 km)
    helper_socket = cluster.connect(b, far_helper)
    requester = make_user()
    created = requests.post(f"{b.url}{API}/emergencies", json=SOS_BODY, headers=requester.headers, timeout=5)
    assert created.status_code == 201 and created.json()["data"]["notified_helpers"] == 0
    emergency_id = created.json()["data"]["emergency"]["id"]

    later = clock.now() + timedelta(seconds=emergencies.escalation_seconds() + 1)
    results = []
    barrier = threading.Barrier(len(sweepers))

    def sweep(app):
        with app.app_context():
            barrier.wait()
            results.append(emergencies.escalate_due(db=app.extensions["allynet_db"], now=later))

    threads = [threading.Thread(target=sweep, args=(app,)) for app in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    waves = [entry for result in results for entry in result if str(entry[0]) == emergency_id]
    assert [(wave, alerted) for _, wave, alerted in waves] == [(2, 1)]
    alert = helper_socket.wait_for("emergency.created", lambda e: e["id"] == emergency_id)
    assert alert["wave"] == 2
    # A marker sent after the sweep arrives after any duplicate would have: there is none.
    with sweepers[0].app_context():
        from allynet import realtime

        realtime.emit_to_user(far_helper.id, "test:marker", {})
    helper_socket.wait_for("test:marker")
    assert len([e for e in helper_socket.received("emergency.created") if e["id"] == emergency_id]) == 1


def test_rider_dropping_mid_ride_reconnects_to_the_other_server_with_nothing_lost(cluster, make_user):
    a, b = cluster(2, processes_ok=True, **FAST_UPDATES)
    ann, ben = make_user(), make_user()
    ann_socket, ben_socket = cluster.connect(a, ann), cluster.connect(b, ben)
    party = create_party(a, ann)
    assert ann_socket.call("party:join", {"party_id": party["id"]})["ok"]
    assert ben_socket.call("party:join", {"invite_code": party["invite_code"]})["ok"]

    last = position(7, 3)
    for i, where in enumerate([position(1), position(2), last]):
        assert ann_socket.call("party:update", {"party_id": party["id"], "location": where,
                                                "speed_kmh": 30 + i})["ok"]
    sent = ann_socket.call("party:message", {"party_id": party["id"], "text": "tunnel ahead"})
    assert sent["ok"]

    ann_socket.drop()  # no close handshake, like a phone losing signal
    ben_socket.wait_for("party:presence", lambda p: p["online"] == [ben.id])

    again = cluster.connect(b, ann)  # the load balancer sent her to the other server
    ack = again.call("party:join", {"party_id": party["id"]})
    assert ack["ok"], ack
    state = ack["party"]
    assert state["online"] == sorted([ann.id, ben.id])
    mine = next(member for member in state["members"] if member["user_id"] == ann.id)
    assert mine["last_location"] == last and mine["last_speed_kmh"] == 32
    ben_socket.wait_for("party:presence", lambda p: p["online"] == sorted([ann.id, ben.id]))

    history = requests.get(f"{b.url}{API}/parties/{party['id']}/history", headers=ann.headers, timeout=5)
    assert history.status_code == 200
    texts = [item["text"] for item in history.json()["data"] if item["kind"] == "message"]
    assert texts == ["tunnel ahead"]

    # And she rides on from server B: ben gets her updates again.
    ben_socket.clear()
    assert again.call("party:update", {"party_id": party["id"], "location": position(8, 3)})["ok"]
    assert ben_socket.wait_for("party:update")["user_id"] == ann.id


def test_a_script_closes_a_party_room_on_every_server(cluster, make_user):
    # What `scripts/maintenance.py expire` does for an idle party: no app, only the queue.
    from allynet import realtime
    from tests.scaleout_support import REDIS_TEST_URL

    a, b = cluster(2, processes_ok=True)
    ann, ben = make_user(), make_user()
    ann_socket, ben_socket = cluster.connect(a, ann), cluster.connect(b, ben)
    party = create_party(a, ann)
    assert ann_socket.call("party:join", {"party_id": party["id"]})["ok"]
    assert ben_socket.call("party:join", {"invite_code": party["invite_code"]})["ok"]
    room = realtime.party_room(party["id"])

    realtime.external_emitter(REDIS_TEST_URL, channel=f"{cluster.prefix}-socketio")
    try:
        realtime.emit_to_room(room, "party:ended", {"party_id": party["id"]})
        realtime.close_room(room)
        realtime.emit_to_room(room, "party:update", {"party_id": party["id"], "user_id": "nobody"})
        for sock, user in ((ann_socket, ann), (ben_socket, ben)):
            realtime.emit_to_user(user.id, "test:marker", {})
    finally:
        realtime.uninstall_external_emitter()
    for sock in (ann_socket, ben_socket):
        sock.wait_for("test:marker")  # sent last, on the same channel: everything before it arrived
        assert sock.received("party:ended") == [{"party_id": party["id"]}]
        assert [u for u in sock.received("party:update") if u["user_id"] == "nobody"] == []
