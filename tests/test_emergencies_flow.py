"""Respond / decline / resolve / cancel, room events, chat, visibility and the state machine."""
import threading

import pytest

from allynet import realtime
from tests.emergencies_helpers import CENTER, act, east_of, names, place_helper, sos
from tests.helpers import error_code, events_named


@pytest.fixture
def app(app_factory):
    return app_factory(EMERGENCY_CREATE_RATE_LIMIT="1000/minute")


@pytest.fixture
def scene(client, make_user):
    """An owner's open SOS with two alerted helpers, a verified helper out of range and a stranger."""
    owner = make_user(location=CENTER)
    first = place_helper(make_user, 500)
    second = place_helper(make_user, 900)
    outsider = place_helper(make_user, 9000)  # verified helper, never alerted
    stranger = make_user(location=CENTER)
    response = sos(client, owner)
    assert response.get_json()["data"]["notified_helpers"] == 2
    return {"owner": owner, "first": first, "second": second, "outsider": outsider, "stranger": stranger,
            "id": response.get_json()["data"]["emergency"]["id"]}


def _join(sio_client, emergency_id):
    return sio_client.emit("emergency:join", {"emergency_id": emergency_id}, callback=True)


def test_full_respond_and_resolve_flow_with_room_events(client, scene, socket_client, db):
    sid = scene["id"]
    owner_socket = socket_client(scene["owner"])
    first_socket = socket_client(scene["first"])
    second_socket = socket_client(scene["second"])
    stranger_socket = socket_client(scene["stranger"])
    assert _join(owner_socket, sid) == {"ok": True, "emergency_id": sid, "status": "active", "messages": []}
    for outsider in (first_socket, stranger_socket):  # alerted but not responding; never alerted
        refused = _join(outsider, sid)
        assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    for payload in ({"emergency_id": "nope"}, {}, "just a string"):
        bad = stranger_socket.emit("emergency:join", payload, callback=True)
        assert bad["ok"] is False and bad["error"]["code"] in ("validation_error", "bad_request"), payload
    assert stranger_socket.is_connected()
    for sio_client in (owner_socket, first_socket, second_socket, stranger_socket):
        sio_client.get_received()

    responded = act(client, scene["first"], sid, "respond", {"eta_minutes": 7})

    assert responded.status_code == 200
    body = responded.get_json()["data"]
    assert body["status"] == "responding"
    assert [(r["helper_id"], r["eta_minutes"]) for r in body["responses"]] == [(scene["first"].id, 7)]
    joined = {"emergency_id": sid, "helper_id": scene["first"].id, "eta_minutes": 7}
    owner_events = owner_socket.get_received()
    assert [(e["name"], e["args"][0]) for e in owner_events] == [
        ("helper.joined", joined), ("emergency.status_changed", {"emergency_id": sid, "status": "responding"})]
    assert names(first_socket) == ["helper.joined", "emergency.status_changed"]
    assert names(second_socket) == [] and names(stranger_socket) == []

    again = act(client, scene["first"], sid, "respond", {"eta_minutes": 3})
    assert again.status_code == 200 and len(again.get_json()["data"]["responses"]) == 1
    assert again.get_json()["data"]["responses"][0]["eta_minutes"] == 7
    assert names(owner_socket) == []

    second = act(client, scene["second"], sid, "respond")
    assert second.status_code == 200 and len(second.get_json()["data"]["responses"]) == 2
    assert [e["name"] for e in owner_socket.get_received()] == ["helper.joined"]

    chat = owner_socket.emit("emergency:message", {"emergency_id": sid, "text": " on my way? "}, callback=True)
    assert chat["ok"] is True and chat["message"]["text"] == "on my way?"
    # both responders' connections were put in the room by their respond
    assert events_named(second_socket, "emergency:message") == [chat["message"]]
    heard = events_named(first_socket, "emergency:message")
    assert heard == [chat["message"]] and heard[0]["user_id"] == scene["owner"].id
    assert events_named(owner_socket, "emergency:message") == [chat["message"]]  # the sender is in the room
    assert db.emergency_messages.count_documents({}) == 1

    resolved = act(client, scene["owner"], sid, "resolve")

    assert resolved.status_code == 200
    data = resolved.get_json()["data"]
    assert data["status"] == "resolved" and data["resolved_at"]
    assert [entry["status"] for entry in data["timeline"]] == ["active", "responding", "resolved"]
    assert data["timeline"][1]["by"] == scene["first"].id and data["timeline"][2]["by"] == scene["owner"].id
    for sio_client in (owner_socket, first_socket, second_socket):
        events = sio_client.get_received()
        assert [e["name"] for e in events] == ["emergency.status_changed", "emergency.resolved"]
        assert events[0]["args"][0] == {"emergency_id": sid, "status": "resolved"}
    assert names(stranger_socket) == []
    # the room is closed: nothing sent to it reaches the sockets that were in it
    with client.application.app_context():
        realtime.emit_to_room(realtime.emergency_room(sid), "probe", {})
    assert names(owner_socket) == [] and names(first_socket) == [] and names(second_socket) == []
    # the slot is free again
    assert db.users.find_one({"_id": scene["owner"]["_id"]})["active_emergency_id"] is None
    assert sos(client, scene["owner"]).status_code == 201


def test_chat_is_for_the_owner_and_responders_only(client, scene, socket_client):
    sid = scene["id"]
    second_socket = socket_client(scene["second"])  # alerted, not responding
    stranger_socket = socket_client(scene["stranger"])
    first_socket = socket_client(scene["first"])
    not_yet = second_socket.emit("emergency:message", {"emergency_id": sid, "text": "hi"}, callback=True)
    assert not_yet["ok"] is False and not_yet["error"]["code"] == "forbidden"
    hidden = stranger_socket.emit("emergency:message", {"emergency_id": sid, "text": "hi"}, callback=True)
    assert hidden["ok"] is False and hidden["error"]["code"] == "not_found"
    for payload in ({"emergency_id": sid, "text": ""}, {"emergency_id": sid, "text": "x" * 1001},
                    {"emergency_id": "nope", "text": "hi"}, {"emergency_id": sid}, ["not", "an", "object"]):
        ack = first_socket.emit("emergency:message", payload, callback=True)
        assert ack["ok"] is False and ack["error"]["code"] in ("validation_error", "bad_request"), payload
    act(client, scene["first"], sid, "respond")
    assert first_socket.emit("emergency:message", {"emergency_id": sid, "text": "5 min"}, callback=True)["ok"]
    assert first_socket.is_connected()


def test_cancel_closes_the_room_and_tells_alerted_helpers(client, scene, socket_client, db):
    sid = scene["id"]
    owner_socket, first_socket = socket_client(scene["owner"]), socket_client(scene["first"])
    _join(owner_socket, sid)
    owner_socket.get_received()

    cancelled = act(client, scene["owner"], sid, "cancel")

    assert cancelled.status_code == 200 and cancelled.get_json()["data"]["status"] == "cancelled"
    assert [(e["name"], e["args"][0]) for e in owner_socket.get_received()] == [
        ("emergency.status_changed", {"emergency_id": sid, "status": "cancelled"})]
    assert events_named(first_socket, "emergency.status_changed") == [{"emergency_id": sid, "status": "cancelled"}]
    assert db.users.find_one({"_id": scene["owner"]["_id"]})["active_emergency_id"] is None
    assert db.emergencies.find_one({"status": "cancelled"})["is_open"] is False
    closed = _join(owner_socket, sid)
    assert closed["ok"] is False and closed["error"]["code"] == "conflict"


@pytest.mark.parametrize("first_action,then,who", [
    ("cancel", "resolve", "owner"), ("resolve", "cancel", "owner"), ("resolve", "resolve", "owner"),
    ("cancel", "respond", "first"), ("resolve", "decline", "second"),
])
def test_closed_emergencies_refuse_transitions(client, scene, first_action, then, who, db):
    sid = scene["id"]
    assert act(client, scene["owner"], sid, first_action).status_code == 200
    before = db.emergencies.find_one({})
    response = act(client, scene[who], sid, then)
    assert response.status_code == 409 and error_code(response) == "invalid_transition"
    assert db.emergencies.find_one({}) == before


def test_two_helpers_responding_at_once_both_land_and_status_moves_once(app, scene, db):
    barrier = threading.Barrier(2)
    results = {}

    def respond(name):
        client = app.test_client()
        barrier.wait()
        results[name] = act(client, scene[name], scene["id"], "respond")

    threads = [threading.Thread(target=respond, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results["first"].status_code == results["second"].status_code == 200
    stored = db.emergencies.find_one({})
    assert sorted(str(r["helper_id"]) for r in stored["responses"]) == sorted(
        [scene["first"].id, scene["second"].id])
    assert [entry["status"] for entry in stored["timeline"]] == ["active", "responding"]


def test_who_may_respond(client, scene, make_user):
    sid = scene["id"]
    plain = make_user(location=CENTER)
    unverified = make_user(is_helper=True, verified=False, location=CENTER)
    owner_helper = make_user(is_helper=True, verified=True, location=CENTER)
    own = sos(client, owner_helper).get_json()["data"]["emergency"]["id"]
    for user in (plain, unverified):
        response = act(client, user, sid, "respond")
        assert response.status_code == 403 and error_code(response) == "forbidden"
    assert error_code(act(client, owner_helper, own, "respond")) == "forbidden"
    missing = act(client, scene["outsider"], "5f0000000000000000000000", "respond")
    assert missing.status_code == 404
    assert act(client, scene["outsider"], "not-an-id", "respond").status_code == 404
    for body in ({"eta_minutes": -1}, {"eta_minutes": "soon"}, {"eta_minutes": 100000}, {"eta_minutes": 2.5},
                 {"note": "x"}):
        bad = act(client, scene["first"], sid, "respond", body)
        assert bad.status_code == 400 and error_code(bad) == "validation_error", body
    # a verified helper who was not alerted may still respond, and then may see it
    assert act(client, scene["outsider"], sid, "respond").status_code == 200
    assert client.get(f"/api/v1/emergencies/{sid}", headers=scene["outsider"].headers).status_code == 200


def test_visibility_rule(client, scene, make_user, socket_client):
    sid = scene["id"]
    url = f"/api/v1/emergencies/{sid}"
    for name in ("owner", "first", "second"):
        assert client.get(url, headers=scene[name].headers).status_code == 200, name
    for role in ("moderator", "admin"):
        staff = make_user(role=role)
        assert client.get(url, headers=staff.headers).status_code == 200, role
        assert _join(socket_client(staff), sid)["ok"] is True, role
    for user in (scene["stranger"], scene["outsider"]):
        hidden = client.get(url, headers=user.headers)
        assert hidden.status_code == 404 and error_code(hidden) == "not_found"
    assert client.get("/api/v1/emergencies/5f0000000000000000000000", headers=scene["owner"].headers
                      ).status_code == 404
    assert client.get("/api/v1/emergencies/zzz", headers=scene["owner"].headers).status_code == 404
    assert client.get(url).status_code == 401


def test_who_may_resolve_and_cancel(client, scene, make_user, db):
    sid = scene["id"]
    moderator, admin = make_user(role="moderator"), make_user(role="admin")
    assert error_code(act(client, scene["stranger"], sid, "resolve")) == "not_found"
    assert error_code(act(client, scene["stranger"], sid, "cancel")) == "not_found"
    for user in (scene["first"], moderator):
        assert error_code(act(client, user, sid, "resolve")) == "forbidden"
    for user in (scene["first"], moderator, admin):
        assert error_code(act(client, user, sid, "cancel")) == "forbidden"
    assert db.emergencies.find_one({})["status"] == "active"
    assert act(client, scene["owner"], sid, "resolve", {"status": "x"}).status_code == 400
    resolved = act(client, admin, sid, "resolve")
    assert resolved.status_code == 200 and resolved.get_json()["data"]["status"] == "resolved"
    assert db.audit_log.find_one({"action": "emergency.resolve"})["actor_id"] == admin["_id"]
    assert db.users.find_one({"_id": scene["owner"]["_id"]})["active_emergency_id"] is None


def test_decline(client, scene, make_user, db):
    sid = scene["id"]
    declined = act(client, scene["second"], sid, "decline")
    assert declined.status_code == 200 and declined.get_json()["data"]["status"] == "active"
    assert act(client, scene["second"], sid, "decline").status_code == 200  # twice: no-op
    assert db.emergencies.find_one({})["declined_helper_ids"] == [scene["second"]["_id"]]
    assert error_code(act(client, scene["outsider"], sid, "decline")) == "not_found"
    assert error_code(act(client, scene["owner"], sid, "decline")) == "forbidden"
    act(client, scene["first"], sid, "respond")
    assert error_code(act(client, scene["first"], sid, "decline")) == "conflict"


def test_mine_lists_newest_first_with_a_cursor(client, make_user, clock):
    owner, other = make_user(location=CENTER), make_user(location=CENTER)
    ids = []
    for kind in ("fire", "crime", "other"):
        created = sos(client, owner, type=kind).get_json()["data"]["emergency"]["id"]
        ids.append(created)
        act(client, owner, created, "cancel")
        clock.advance(seconds=5)
    sos(client, other)
    page = client.get("/api/v1/emergencies/mine?limit=2", headers=owner.headers).get_json()
    assert [item["id"] for item in page["data"]] == ids[::-1][:2]
    assert page["meta"]["count"] == 2 and page["meta"]["next_cursor"]
    rest = client.get(f"/api/v1/emergencies/mine?limit=2&cursor={page['meta']['next_cursor']}",
                      headers=owner.headers).get_json()
    assert [item["id"] for item in rest["data"]] == [ids[0]] and rest["meta"]["next_cursor"] is None
    for query in ("limit=0", "limit=x", "cursor=garbage", "sort=asc"):
        bad = client.get(f"/api/v1/emergencies/mine?{query}", headers=owner.headers)
        assert bad.status_code == 400 and error_code(bad) == "validation_error", query


def test_open_emergencies_near_for_verified_helpers(client, make_user):
    near_owner, far_owner, closed_owner = (make_user(location=CENTER) for _ in range(3))
    near = sos(client, near_owner, location={"lat": east_of(1000)[0], "lng": east_of(1000)[1]})
    sos(client, far_owner, location={"lat": east_of(9000)[0], "lng": east_of(9000)[1]})
    closed = sos(client, closed_owner)
    act(client, closed_owner, closed.get_json()["data"]["emergency"]["id"], "resolve")
    helper = place_helper(make_user, 0)

    listed = client.get(f"/api/v1/emergencies?near={CENTER[0]},{CENTER[1]}&radius_m=5000", headers=helper.headers)

    assert listed.status_code == 200
    items = listed.get_json()["data"]
    assert [item["id"] for item in items] == [near.get_json()["data"]["emergency"]["id"]]
    assert items[0]["distance_m"] == pytest.approx(1000, abs=5) and items[0]["status"] == "active"
    wide = client.get("/api/v1/emergencies?radius_m=20000", headers=helper.headers).get_json()["data"]
    assert len(wide) == 2 and wide[0]["distance_m"] < wide[1]["distance_m"]  # own location, nearest first
    for user in (make_user(location=CENTER), make_user(is_helper=True, verified=False, location=CENTER)):
        assert error_code(client.get("/api/v1/emergencies", headers=user.headers)) == "forbidden"
    for query in ("near=91,0", "near=abc", "near=1,2,3", f"near={CENTER[0]},{CENTER[1]}&radius_m=50",
                  f"near={CENTER[0]},{CENTER[1]}&radius_m=30000"):
        bad = client.get(f"/api/v1/emergencies?{query}", headers=helper.headers)
        assert bad.status_code == 400 and error_code(bad) == "validation_error", query
    nowhere = make_user(is_helper=True, verified=True)
    assert error_code(client.get("/api/v1/emergencies", headers=nowhere.headers)) == "validation_error"
