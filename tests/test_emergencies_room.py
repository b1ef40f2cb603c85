"""The SOS room: the owner, the responders and staff who join, and nobody else.

Who is in `emergency:<id>` decides who reads the person's messages ("bike crash", door codes):
the owner's connections from creation, every connection of a responder from the moment they
respond (REST or socket, on every process), connections that open later, and staff who join.
A helper who was only alerted gets status events in `user:<id>` and never a message. Resolving
or cancelling empties the room; what was said stays readable to the circle through
`GET /emergencies/<id>/messages` and the `emergency:join` ack.
"""
import pytest
import requests

from allynet import realtime
from tests.emergencies_helpers import CENTER, SOS_BODY, act, names, place_helper, sos
from tests.helpers import events_named
from tests.scaleout_support import cluster, quiet_werkzeug, redis_prefix  # noqa: F401

API = "/api/v1"


@pytest.fixture
def app(app_factory):
    return app_factory(EMERGENCY_CREATE_RATE_LIMIT="1000/minute")


@pytest.fixture
def scene(client, make_user, socket_client):
    """An owner (connected before raising the SOS), a responder-to-be with two devices, a helper who is
    only alerted (two devices), a stranger, a moderator and an admin."""
    people = {
        "owner": make_user(location=CENTER),
        "responder": place_helper(make_user, 400),
        "alerted": place_helper(make_user, 700),
        "stranger": make_user(location=CENTER),
        "moderator": make_user(role="moderator"),
        "admin": make_user(role="admin"),
    }
    sockets = {
        "owner": socket_client(people["owner"]),
        "responder": socket_client(people["responder"]),
        "responder_phone": socket_client(people["responder"]),
        "alerted": socket_client(people["alerted"]),
        "alerted_phone": socket_client(people["alerted"]),
        "stranger": socket_client(people["stranger"]),
    }
    created = sos(client, people["owner"])
    assert created.status_code == 201 and created.get_json()["data"]["notified_helpers"] == 2
    for sock in sockets.values():
        sock.get_received()
    return {"id": created.get_json()["data"]["emergency"]["id"], "people": people, "sockets": sockets}


def say(sock, emergency_id, text):
    ack = sock.emit("emergency:message", {"emergency_id": emergency_id, "text": text}, callback=True)
    assert ack["ok"] is True, ack
    return ack["message"]


def join(sock, emergency_id):
    return sock.emit("emergency:join", {"emergency_id": emergency_id}, callback=True)


def messages(client, user, emergency_id, query=""):
    return client.get(f"{API}/emergencies/{emergency_id}/messages{query}", headers=user.headers)


def test_a_responder_reads_what_was_said_before_and_hears_what_comes_after(client, scene):
    sid, people, sockets = scene["id"], scene["people"], scene["sockets"]
    before = say(sockets["owner"], sid, "bike crash, left leg")  # the owner is in the room from creation
    assert events_named(sockets["owner"], "emergency:message") == [before]
    assert events_named(sockets["responder"], "emergency:message") == []

    assert act(client, people["responder"], sid, "respond", {"eta_minutes": 5}).status_code == 200

    # Both of the responder's connections are in the room without asking, and hear the room's events.
    for name in ("responder", "responder_phone"):
        assert "helper.joined" in names(sockets[name])
    after = say(sockets["owner"], sid, "door code 4521")
    for name in ("responder", "responder_phone"):
        assert events_named(sockets[name], "emergency:message") == [after]
    # What was said before they came: in the join ack and through REST, oldest first.
    ack = join(sockets["responder"], sid)
    assert ack["ok"] is True and ack["status"] == "responding" and ack["messages"] == [before, after]
    listed = messages(client, people["responder"], sid)
    assert listed.status_code == 200
    assert listed.get_json()["data"] == [before, after] and listed.get_json()["meta"]["next_cursor"] is None
    # The responder talks back; the owner hears it.
    reply = say(sockets["responder_phone"], sid, "5 minutes away")
    assert events_named(sockets["owner"], "emergency:message") == [after, reply]


def test_a_helper_who_was_only_alerted_hears_no_message(client, scene):
    sid, people, sockets = scene["id"], scene["people"], scene["sockets"]
    refused = join(sockets["alerted"], sid)
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    act(client, people["responder"], sid, "respond")
    say(sockets["owner"], sid, "bike crash")
    say(sockets["responder"], sid, "on my way")
    for name in ("alerted", "alerted_phone", "stranger"):
        assert events_named(sockets[name], "emergency:message") == [], name
    # They may still see the SOS itself, but not its conversation.
    assert client.get(f"{API}/emergencies/{sid}", headers=people["alerted"].headers).status_code == 200
    for who in ("alerted", "stranger"):
        response = messages(client, people[who], sid)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found", who
    own = sockets["alerted"].emit("emergency:message", {"emergency_id": sid, "text": "hi"}, callback=True)
    assert own["ok"] is False and own["error"]["code"] == "forbidden"
    # Status events still reach them in their own room.
    act(client, people["owner"], sid, "resolve")
    assert {"emergency_id": sid, "status": "resolved"} in events_named(sockets["alerted"], "emergency.status_changed")


def test_strangers_get_the_same_refusal_whether_or_not_the_sos_exists(client, scene, make_user, socket_client):
    sid, sockets = scene["id"], scene["sockets"]
    missing = "0" * 24
    for target in (sid, missing):
        ack = join(sockets["stranger"], target)
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", target
    staff = socket_client(scene["people"]["moderator"])
    ack = join(staff, missing)
    assert ack["ok"] is False and ack["error"]["code"] == "not_found"


def test_staff_join_and_read_but_do_not_post(client, scene, socket_client):
    sid, people, sockets = scene["id"], scene["people"], scene["sockets"]
    first = say(sockets["owner"], sid, "help")
    moderator = socket_client(people["moderator"])
    ack = join(moderator, sid)
    assert ack["ok"] is True and ack["messages"] == [first]
    second = say(sockets["owner"], sid, "still here")
    assert events_named(moderator, "emergency:message") == [second]
    listed = messages(client, people["admin"], sid)
    assert listed.status_code == 200 and listed.get_json()["data"] == [first, second]
    refused = moderator.emit("emergency:message", {"emergency_id": sid, "text": "noted"}, callback=True)
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"


def test_connections_that_open_later_join_the_rooms_of_their_user(client, scene, socket_client):
    sid, people = scene["id"], scene["people"]
    act(client, people["responder"], sid, "respond")
    owner_tablet = socket_client(people["owner"])
    responder_laptop = socket_client(people["responder"])
    alerted_laptop = socket_client(people["alerted"])
    said = say(scene["sockets"]["owner"], sid, "I can hear sirens")
    assert events_named(owner_tablet, "emergency:message") == [said]
    assert events_named(responder_laptop, "emergency:message") == [said]
    assert events_named(alerted_laptop, "emergency:message") == []


def test_responding_over_the_socket_joins_every_connection(client, scene):
    sid, sockets = scene["id"], scene["sockets"]
    ack = sockets["responder_phone"].emit("emergency:respond", {"emergency_id": sid, "eta_minutes": 3},
                                          callback=True)
    assert ack["ok"] is True and ack["emergency"]["status"] == "responding"
    assert [r["eta_minutes"] for r in ack["emergency"]["responses"]] == [3]
    said = say(sockets["owner"], sid, "thank you")
    for name in ("responder", "responder_phone"):
        assert events_named(sockets[name], "emergency:message") == [said]
    own = sockets["owner"].emit("emergency:respond", {"emergency_id": sid}, callback=True)
    assert own["ok"] is False and own["error"]["code"] == "forbidden"
    bad = sockets["responder"].emit("emergency:respond", {"emergency_id": sid, "eta_minutes": -1}, callback=True)
    assert bad["ok"] is False and bad["error"]["code"] == "validation_error"


@pytest.mark.parametrize("ending", ["resolve", "cancel"])
def test_ending_the_sos_empties_the_room(client, scene, socket_client, ending):
    sid, people, sockets = scene["id"], scene["people"], scene["sockets"]
    act(client, people["responder"], sid, "respond")
    staff = socket_client(people["moderator"])
    assert join(staff, sid)["ok"] is True
    said = say(sockets["owner"], sid, "ok now")
    for sock in sockets.values():
        sock.get_received()
    staff.get_received()

    assert act(client, people["owner"], sid, ending).status_code == 200

    status = "resolved" if ending == "resolve" else "cancelled"
    for sock in (sockets["owner"], sockets["responder"], sockets["responder_phone"], staff):
        assert {"emergency_id": sid, "status": status} in events_named(sock, "emergency.status_changed")
    with client.application.app_context():
        realtime.emit_to_room(realtime.emergency_room(sid), "probe", {})
    for sock in (sockets["owner"], sockets["responder"], sockets["responder_phone"], staff):
        assert names(sock) == []  # nobody is left in the room
    for sock in (sockets["owner"], sockets["responder"]):
        late = sock.emit("emergency:message", {"emergency_id": sid, "text": "hello?"}, callback=True)
        assert late["ok"] is False and late["error"]["code"] == "conflict"
        rejoin = join(sock, sid)
        assert rejoin["ok"] is False and rejoin["error"]["code"] == "conflict"
    # A connection opened afterwards joins nothing; the conversation stays readable to the circle.
    later = socket_client(people["responder"])
    with client.application.app_context():
        realtime.emit_to_room(realtime.emergency_room(sid), "probe", {})
    assert names(later) == []
    assert messages(client, people["owner"], sid).get_json()["data"] == [said]


def test_messages_are_paged_oldest_first(client, scene):
    sid, people, sockets = scene["id"], scene["people"], scene["sockets"]
    sent = [say(sockets["owner"], sid, f"message {i}") for i in range(5)]
    seen, cursor = [], ""
    for _ in range(3):
        page = messages(client, people["owner"], sid, f"?limit=2{cursor}")
        assert page.status_code == 200
        body = page.get_json()
        seen.extend(body["data"])
        if body["meta"]["next_cursor"] is None:
            break
        cursor = f"&cursor={body['meta']['next_cursor']}"
    assert seen == sent
    for query in ("?limit=0", "?limit=abc", "?cursor=forged", "?since=yesterday"):
        bad = messages(client, people["owner"], sid, query)
        assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "validation_error", query
    assert client.get(f"{API}/emergencies/{sid}/messages").status_code == 401
    missing = messages(client, people["owner"], "0" * 24)
    assert missing.status_code == 404


def test_the_room_spans_processes_and_keeps_alerted_helpers_out(cluster, make_user):
    """Owner on A; the responder on A and B; an alerted helper on A and B (two processes over Redis)."""
    a, b = cluster(2, processes_ok=True, EMERGENCY_CREATE_RATE_LIMIT="1000/minute")
    owner = make_user()
    responder = place_helper(make_user, 500)
    alerted = place_helper(make_user, 600)
    owner_socket = cluster.connect(a, owner)
    responder_sockets = [cluster.connect(a, responder), cluster.connect(b, responder)]
    alerted_sockets = [cluster.connect(a, alerted), cluster.connect(b, alerted)]

    created = requests.post(f"{a.url}{API}/emergencies", json=SOS_BODY, headers=owner.headers, timeout=5)
    assert created.status_code == 201, created.text
    sid = created.json()["data"]["emergency"]["id"]
    for sock in alerted_sockets + responder_sockets:
        sock.wait_for("emergency.created", lambda e: e["id"] == sid)
    before = owner_socket.call("emergency:message", {"emergency_id": sid, "text": "bike crash"})["message"]

    responded = requests.post(f"{b.url}{API}/emergencies/{sid}/respond", json={}, headers=responder.headers,
                              timeout=5)
    assert responded.status_code == 200, responded.text
    for sock in responder_sockets:  # in the room on both processes: the room's own events arrive
        sock.wait_for("helper.joined", lambda e: e["emergency_id"] == sid)
    after = owner_socket.call("emergency:message", {"emergency_id": sid, "text": "door code 4521"})["message"]
    for sock in responder_sockets:
        sock.wait_for("emergency:message", lambda m: m["id"] == after["id"])
    assert responder_sockets[1].call("emergency:join", {"emergency_id": sid})["messages"] == [before, after]

    resolved = requests.post(f"{a.url}{API}/emergencies/{sid}/resolve", headers=owner.headers, timeout=5)
    assert resolved.status_code == 200
    for sock in responder_sockets + alerted_sockets:
        sock.wait_for("emergency.status_changed", lambda e: e["status"] == "resolved")
    for sock in alerted_sockets:
        assert sock.received("emergency:message") == []
    # The room is empty on both processes: a late emit from a script reaches nobody.
    from tests.scaleout_support import REDIS_TEST_URL

    realtime.external_emitter(REDIS_TEST_URL, channel=f"{cluster.prefix}-socketio")
    try:
        realtime.emit_to_room(realtime.emergency_room(sid), "probe", {})
        for user in (owner, responder):
            realtime.emit_to_user(user.id, "test:marker", {})
    finally:
        realtime.uninstall_external_emitter()
    for sock in [owner_socket] + responder_sockets:
        sock.wait_for("test:marker")  # sent after the probe on the same channel
        assert sock.received("probe") == []
