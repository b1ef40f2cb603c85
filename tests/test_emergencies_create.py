"""POST /emergencies: who is alerted (and who is not), ranking, the 50 cap, party first, bad input."""
import pytest
from bson import ObjectId

from allynet.emergencies import service
from allynet.parties import service as parties_service
from tests.emergencies_helpers import CENTER, SOS_BODY, north_of, place_helper, sos
from tests.helpers import error_code, events_named


@pytest.fixture
def app(app_factory):
    return app_factory(EMERGENCY_CREATE_RATE_LIMIT="1000/minute")


def test_only_fresh_verified_on_duty_helpers_in_range_are_alerted(client, make_user, socket_client, db):
    requester = make_user(is_helper=True, verified=True, location=CENTER)  # a helper, but never self-alerted
    near = place_helper(make_user, 1000)
    too_far = place_helper(make_user, 6000)
    unverified = place_helper(make_user, 800, verified=False)
    off_duty = place_helper(make_user, 700, is_helper=False)
    stale = place_helper(make_user, 600, stale=True)
    people = {name: socket_client(user) for name, user in [
        ("requester", requester), ("near", near), ("too_far", too_far), ("unverified", unverified),
        ("off_duty", off_duty), ("stale", stale)]}

    response = sos(client, requester, description="Chest pain")

    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["notified_helpers"] == 1
    emergency = data["emergency"]
    assert emergency["status"] == "active" and emergency["type"] == "medical"
    assert emergency["user_id"] == requester.id and emergency["radius_m"] == 5000
    assert emergency["location"] == {"lat": CENTER[0], "lng": CENTER[1]}
    assert [entry["status"] for entry in emergency["timeline"]] == ["active"]
    assert "_id" not in emergency and "notified_helper_ids" not in emergency
    alerts = events_named(people["near"], "emergency.created")
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["id"] == emergency["id"] == alert["emergency_id"]
    assert alert["type"] == "medical" and alert["description"] == "Chest pain" and alert["wave"] == 1
    assert alert["distance_m"] == pytest.approx(1000, abs=1)
    for name in ("requester", "too_far", "unverified", "off_duty", "stale"):
        assert events_named(people[name], "emergency.created") == [], name
    assert db.users.find_one({"_id": requester["_id"]})["active_emergency_id"] == ObjectId(emergency["id"])


def test_radius_defaults_to_the_requesters_setting_and_the_body_overrides_it(client, make_user, socket_client):
    at_1500 = socket_client(place_helper(make_user, 1500))
    at_2500 = socket_client(place_helper(make_user, 2500))
    small = make_user(location=CENTER, emergency_radius_m=2000)
    first = sos(client, small)
    assert first.status_code == 201 and first.get_json()["data"]["emergency"]["radius_m"] == 2000
    assert len(events_named(at_1500, "emergency.created")) == 1
    assert events_named(at_2500, "emergency.created") == []

    other = make_user(location=CENTER, emergency_radius_m=2000)
    second = sos(client, other, radius_m=3000)
    assert second.get_json()["data"]["notified_helpers"] == 2
    assert len(events_named(at_2500, "emergency.created")) == 1


def test_helpers_are_ranked_by_trust_then_distance(app, db, make_user):
    trusted_far = place_helper(make_user, 3000, trust_score=95)    # 0.57 + 0.4*0.4  = 0.73
    average_near = place_helper(make_user, 200, trust_score=50)    # 0.30 + 0.4*0.96 = 0.684
    average_mid = place_helper(make_user, 2000, trust_score=50)    # 0.30 + 0.4*0.6  = 0.54
    distrusted_near = place_helper(make_user, 100, trust_score=0)  # 0.00 + 0.4*0.98 = 0.392
    with app.app_context():
        ranked = service.find_nearby_helpers(db=db, location={"type": "Point", "coordinates": [CENTER[1], CENTER[0]]},
                                             radius_m=5000)
    assert [t.user_id for t in ranked] == [trusted_far["_id"], average_near["_id"], average_mid["_id"],
                                           distrusted_near["_id"]]
    assert ranked[0].distance_m == pytest.approx(3000, abs=1)
    # equal trust: the nearer first
    assert service.helper_rank(50, 100, 5000) > service.helper_rank(50, 200, 5000)


def test_at_most_50_helpers_are_alerted_the_best_ranked(client, make_user, socket_client):
    for index in range(50):
        place_helper(make_user, 500 + index * 20, trust_score=80)
    low = [place_helper(make_user, 100, trust_score=0) for _ in range(3)]  # nearest, least trusted
    best = place_helper(make_user, 1000, trust_score=100)  # 0.92: outranks every 0.76..0.84
    watchers = [socket_client(user) for user in low]
    best_socket = socket_client(best)
    requester = make_user(location=CENTER)

    response = sos(client, requester)

    assert response.get_json()["data"]["notified_helpers"] == 50
    assert len(events_named(best_socket, "emergency.created")) == 1
    assert all(events_named(watcher, "emergency.created") == [] for watcher in watchers)
    emergency_id = response.get_json()["data"]["emergency"]["id"]
    assert client.get(f"/api/v1/emergencies/{emergency_id}", headers=low[0].headers).status_code == 404
    assert client.get(f"/api/v1/emergencies/{emergency_id}", headers=best.headers).status_code == 200


def test_party_members_are_alerted_first_at_any_distance(client, make_user, socket_client, monkeypatch):
    requester = make_user(location=CENTER)
    far_friend = make_user(location=north_of(30000))  # not a helper, 30 km away
    helper = place_helper(make_user, 1000)
    calls = []

    def members(*, db, user_id):
        calls.append(user_id)
        return [far_friend["_id"], requester["_id"]]

    monkeypatch.setattr(parties_service, "active_party_member_ids", members)
    friend_socket, helper_socket = socket_client(far_friend), socket_client(helper)
    order = []
    from allynet import realtime

    original = realtime.emit_to_room
    monkeypatch.setattr(realtime, "emit_to_room",
                        lambda room, event, data, skip_sid=None: order.append(room) or original(
                            room, event, data, skip_sid=skip_sid))

    response = sos(client, requester)

    assert calls == [requester["_id"]]
    assert response.get_json()["data"]["notified_helpers"] == 2
    friend_alert = events_named(friend_socket, "emergency.created")
    assert len(friend_alert) == 1 and friend_alert[0]["party_member"] is True
    assert friend_alert[0]["distance_m"] == pytest.approx(30000, abs=5)
    assert events_named(helper_socket, "emergency.created")[0]["party_member"] is False
    assert order[:2] == [f"user:{far_friend.id}", f"user:{helper.id}"]


def test_sos_goes_out_when_the_party_lookup_fails(client, make_user, socket_client, monkeypatch):
    def broken(*, db, user_id):
        raise RuntimeError("parties down")

    monkeypatch.setattr(parties_service, "active_party_member_ids", broken)
    helper_socket = socket_client(place_helper(make_user, 1000))
    response = sos(client, make_user(location=CENTER))
    assert response.status_code == 201 and response.get_json()["data"]["notified_helpers"] == 1
    assert len(events_named(helper_socket, "emergency.created")) == 1


BAD_BODIES = [
    ({"type": "medical"}, "location"),
    ({"type": "medical", "location": {"lat": 91, "lng": 0}}, "location"),
    ({"type": "medical", "location": {"lat": 0, "lng": -180.5}}, "location"),
    ({"type": "medical", "location": {"lat": "north", "lng": 0}}, "location"),
    ({"type": "medical", "location": {"lat": 10}}, "location"),
    ({"type": "medical", "location": [2.35, 48.85]}, "location"),
    ({"type": "medical", "location": {"lat": True, "lng": 0}}, "location"),
    ({"type": "tornado", "location": SOS_BODY["location"]}, "type"),
    ({"location": SOS_BODY["location"]}, "type"),
    ({**SOS_BODY, "radius_m": 99}, "radius_m"),
    ({**SOS_BODY, "radius_m": 20001}, "radius_m"),
    ({**SOS_BODY, "radius_m": "far"}, "radius_m"),
    ({**SOS_BODY, "description": "x" * 1001}, "description"),
    ({**SOS_BODY, "status": "resolved"}, "status"),
    ({**SOS_BODY, "user_id": "5f0000000000000000000000"}, "user_id"),
    ({**SOS_BODY, "request_id": ""}, "request_id"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES)
def test_bad_input_is_400_and_changes_nothing(client, make_user, db, body, field):
    requester = make_user(location=CENTER)
    response = client.post("/api/v1/emergencies", json=body, headers=requester.headers)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.emergencies.count_documents({}) == 0
    assert db.users.find_one({"_id": requester["_id"]})["active_emergency_id"] is None


def test_nan_and_non_object_bodies_are_refused(client, make_user, db):
    requester = make_user(location=CENTER)
    headers = {**requester.headers, "Content-Type": "application/json"}
    nan = client.post("/api/v1/emergencies", data='{"type":"fire","location":{"lat":NaN,"lng":0}}', headers=headers)
    assert nan.status_code == 400 and error_code(nan) == "validation_error"
    listed = client.post("/api/v1/emergencies", data="[1, 2]", headers=headers)
    assert listed.status_code == 400 and error_code(listed) == "bad_request"
    assert client.post("/api/v1/emergencies", json=SOS_BODY).status_code == 401
    assert db.emergencies.count_documents({}) == 0


def test_accepts_every_type_and_the_range_limits(client, make_user):
    for kind in ("medical", "fire", "crime", "accident", "breakdown", "other"):
        response = sos(client, make_user(location=CENTER), type=kind, radius_m=100)
        assert response.status_code == 201, kind
    edge = sos(client, make_user(), radius_m=20000, description="d" * 1000,
               location={"lat": -90, "lng": 180})
    assert edge.status_code == 201
    assert edge.get_json()["data"]["emergency"]["radius_m"] == 20000


def test_openapi_documents_every_emergency_endpoint_and_the_idempotency_header(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    for path, method in [("/api/v1/emergencies", "post"), ("/api/v1/emergencies", "get"),
                         ("/api/v1/emergencies/mine", "get"), ("/api/v1/emergencies/{emergency_id}", "get"),
                         ("/api/v1/emergencies/{emergency_id}/respond", "post"),
                         ("/api/v1/emergencies/{emergency_id}/decline", "post"),
                         ("/api/v1/emergencies/{emergency_id}/resolve", "post"),
                         ("/api/v1/emergencies/{emergency_id}/cancel", "post")]:
        assert method in paths[path], (path, method)
    create = paths["/api/v1/emergencies"]["post"]
    assert "201" in create["responses"]
    assert any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert "requestBody" in create
    assert any(p["name"] == "near" for p in paths["/api/v1/emergencies"]["get"]["parameters"])
