"""Near queries, the alerts feed (JSON and GeoJSON), official alerts and the push to nearby parties."""
import math
from datetime import timedelta

import pytest
from bson import ObjectId

from allynet import geo
from allynet.fields import iso
from allynet.parties import service as parties_service
from tests.helpers import error_code, events_named

REPORTS = "/api/v1/reports"
ALERTS = "/api/v1/alerts"
CENTRE = (48.8566, 2.3522)  # Paris


def offset(metres_north, metres_east=0.0, origin=CENTRE):
    """A point about that many metres from `origin` (small distances)."""
    lat, lng = origin
    return {"lat": lat + metres_north / 111320.0,
            "lng": lng + metres_east / (111320.0 * math.cos(math.radians(lat)))}


def new_report(client, user, type_, location, description="seen"):
    response = client.post(REPORTS, headers=user.headers,
                           json={"type": type_, "location": location, "description": description})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def new_alert(client, user, type_, location, expires_at, description="official"):
    return client.post(ALERTS, headers=user.headers, json={
        "type": type_, "location": location, "description": description, "expires_at": expires_at})


def feed(client, user, query="", lat=CENTRE[0], lng=CENTRE[1]):
    response = client.get(f"{ALERTS}?lat={lat}&lng={lng}{query}", headers=user.headers)
    assert response.status_code == 200, response.get_json()
    return response


def test_reports_near_sorted_by_distance_with_radius_and_type(client, make_user):
    user = make_user()
    far = new_report(client, user, "hazard", offset(3000))
    near = new_report(client, user, "hazard", offset(200))
    middle = new_report(client, user, "police", offset(0, 1500))
    new_report(client, user, "hazard", offset(9000))  # outside the default 5 km
    response = client.get(f"{REPORTS}?near={CENTRE[0]},{CENTRE[1]}", headers=user.headers)
    data = response.get_json()["data"]
    assert [item["id"] for item in data] == [near["id"], middle["id"], far["id"]]
    for item, metres in zip(data, (200, 1500, 3000)):
        assert item["distance_m"] == pytest.approx(metres, rel=0.01)
    assert response.get_json()["meta"] == {"next_cursor": None, "count": 3}
    small = client.get(f"{REPORTS}?near={CENTRE[0]},{CENTRE[1]}&radius_m=1000", headers=user.headers)
    assert [item["id"] for item in small.get_json()["data"]] == [near["id"]]
    typed = client.get(f"{REPORTS}?near={CENTRE[0]},{CENTRE[1]}&type=police", headers=user.headers)
    assert [item["id"] for item in typed.get_json()["data"]] == [middle["id"]]


def test_feed_merges_official_alerts_and_credible_reports(client, db, make_user, moderator, clock):
    reporter = make_user()
    hazard = new_report(client, reporter, "hazard", offset(800))
    pending_camera = new_report(client, reporter, "speed_camera", offset(100))
    hidden = new_report(client, reporter, "police", offset(150))
    for _ in range(3):
        client.post(f"{REPORTS}/{hidden['id']}/vote", headers=make_user().headers, json={"value": "down"})
    rejected = new_report(client, reporter, "accident", offset(120))
    client.post(f"{REPORTS}/{rejected['id']}/moderate", headers=moderator.headers, json={"action": "reject"})
    short = new_report(client, reporter, "traffic", offset(50))  # 1 h
    official = new_alert(client, moderator, "road_closure", offset(0, 400),
                         iso(clock.current + timedelta(hours=5)), description="Marathon")
    assert official.status_code == 201
    official = official.get_json()["data"]
    new_report(client, reporter, "weather", offset(20000))  # out of range

    data = feed(client, reporter).get_json()["data"]
    assert [(item["id"], item["source"]) for item in data] == [
        (short["id"], "report"), (official["id"], "official"), (hazard["id"], "report")]
    assert [item["distance_m"] for item in data] == sorted(item["distance_m"] for item in data)
    assert data[1]["distance_m"] == pytest.approx(400, rel=0.01)
    assert data[1]["description"] == "Marathon" and data[1]["upvotes"] is None
    assert data[0]["upvotes"] == 0 and data[0]["location"] == offset(50)
    assert pending_camera["id"] not in [item["id"] for item in data]

    clock.advance(hours=1)  # the traffic report has expired, TTL sweep or not
    assert [item["id"] for item in feed(client, reporter).get_json()["data"]] == [official["id"], hazard["id"]]
    clock.advance(hours=4)  # and now the official alert
    assert [item["id"] for item in feed(client, reporter).get_json()["data"]] == [hazard["id"]]
    assert db.alerts.count_documents({}) == 1  # still stored: the query filter hid it


def test_feed_types_and_radius(client, make_user, moderator, clock):
    user = make_user()
    police = new_report(client, user, "police", offset(100))
    new_report(client, user, "hazard", offset(200))
    weather = new_alert(client, moderator, "weather", offset(300), iso(clock.current + timedelta(hours=1)))
    weather_id = weather.get_json()["data"]["id"]
    data = feed(client, user, "&types=police,weather").get_json()["data"]
    assert [item["id"] for item in data] == [police["id"], weather_id]
    data = feed(client, user, "&radius_m=150").get_json()["data"]
    assert [item["id"] for item in data] == [police["id"]]


def test_feed_geojson_is_a_drawable_feature_collection(client, make_user, moderator, clock):
    user = make_user()
    report = new_report(client, user, "hazard", offset(300, 200), description="Oil")
    alert = new_alert(client, moderator, "other", offset(-100), iso(clock.current + timedelta(hours=2)),
                      description="Bridge works").get_json()["data"]
    response = feed(client, user, "&format=geojson")
    assert response.mimetype == "application/geo+json"
    body = response.get_json()
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 2
    official, community = body["features"]
    for feature in body["features"]:
        assert feature["type"] == "Feature"
        assert feature["geometry"]["type"] == "Point"
        assert len(feature["geometry"]["coordinates"]) == 2
        assert set(feature["properties"]) >= {"id", "source", "type", "description", "upvotes", "downvotes",
                                              "expires_at", "distance_m"}
    expected = offset(300, 200)
    assert community["geometry"]["coordinates"] == [expected["lng"], expected["lat"]]  # [lng, lat]
    assert community["properties"]["id"] == report["id"] and community["properties"]["source"] == "report"
    assert community["properties"]["type"] == "hazard" and community["properties"]["description"] == "Oil"
    assert community["properties"]["upvotes"] == 0 and community["properties"]["downvotes"] == 0
    assert community["properties"]["expires_at"] == report["expires_at"]
    assert official["properties"]["id"] == alert["id"] and official["properties"]["source"] == "official"
    assert official["properties"]["distance_m"] == pytest.approx(100, rel=0.01)
    assert official["geometry"]["coordinates"] == [offset(-100)["lng"], offset(-100)["lat"]]
    # Coordinates are valid GeoJSON positions (longitude first, in range).
    for feature in body["features"]:
        lng, lat = feature["geometry"]["coordinates"]
        assert geo.valid_lng_lat(lng, lat)


def test_empty_feed_in_both_formats(client, make_user):
    user = make_user()
    assert feed(client, user).get_json() == {"success": True, "data": [],
                                             "meta": {"next_cursor": None, "count": 0}}
    assert feed(client, user, "&format=geojson").get_json() == {
        "type": "FeatureCollection", "features": [], "meta": {"next_cursor": None, "count": 0}}


@pytest.mark.parametrize("query, field", [
    ("lng=2.35", "lat"), ("lat=48.85", "lng"), ("lat=91&lng=2", "lat"), ("lat=48&lng=181", "lng"),
    ("lat=nan&lng=2", "lat"), ("lat=48&lng=2&radius_m=99", "radius_m"),
    ("lat=48&lng=2&radius_m=50001", "radius_m"), ("lat=48&lng=2&types=ufo", "types"),
    ("lat=48&lng=2&types=", "types"), ("lat=48&lng=2&format=kml", "format"),
    ("lat=48&lng=2&limit=0", "limit"), ("lat=48&lng=2&extra=1", "extra"),
])
def test_feed_rejects_bad_queries(client, make_user, query, field):
    response = client.get(f"{ALERTS}?{query}", headers=make_user().headers)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]


def test_radius_bounds_are_inclusive(client, make_user):
    user = make_user()
    assert feed(client, user, "&radius_m=100").status_code == 200
    assert feed(client, user, "&radius_m=50000").status_code == 200


def test_create_official_alert_is_audited(client, db, make_user, clock):
    admin = make_user(role="admin")
    response = new_alert(client, admin, "weather", offset(0), iso(clock.current + timedelta(hours=3)),
                         description="  Hail  ")
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["source"] == "official" and data["description"] == "Hail"
    assert data["created_by"] == admin.id and data["location"] == offset(0)
    entries = client.get(f"/api/v1/audit-log?target_type=alert&target_id={data['id']}",
                         headers=admin.headers).get_json()["data"]
    assert [entry["action"] for entry in entries] == ["alert.create"]


@pytest.mark.parametrize("change, field", [
    ({"type": "ufo"}, "type"), ({"description": ""}, "description"), ({"description": "x" * 501}, "description"),
    ({"location": {"lat": 100, "lng": 0}}, "location"), ({"expires_at": "tomorrow"}, "expires_at"),
    ({"expires_at": "PAST"}, "expires_at"), ({"expires_at": "FAR"}, "expires_at"), ({"upvotes": 3}, "upvotes"),
])
def test_create_official_alert_rejects_bad_input(client, db, moderator, clock, change, field):
    body = {"type": "hazard", "location": offset(0), "description": "x",
            "expires_at": iso(clock.current + timedelta(hours=1))}
    body.update(change)
    if body["expires_at"] == "PAST":
        body["expires_at"] = iso(clock.current - timedelta(seconds=1))
    elif body["expires_at"] == "FAR":
        body["expires_at"] = iso(clock.current + timedelta(days=31))
    response = client.post(ALERTS, headers=moderator.headers, json=body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.alerts.count_documents({}) == 0 and db.audit_log.count_documents({}) == 0


# --- the push to nearby parties ------------------------------------------------

@pytest.fixture
def captured_pushes(monkeypatch):
    """Record party:alert emits instead of sending them (other events, e.g. the console's, are not kept)."""
    from allynet import realtime

    calls = []

    def record(rooms, event, data):
        if event == "party:alert":
            calls.append((rooms, event, data))

    monkeypatch.setattr(realtime, "emit_to_rooms", record)
    return calls


def test_push_goes_to_the_parties_the_parties_service_finds(client, monkeypatch, make_user, captured_pushes):
    party_a, party_b = ObjectId(), ObjectId()
    asked = []

    def fake_near(*, db, location, radius_m):
        asked.append((location, radius_m))
        return [party_a, party_b]

    monkeypatch.setattr(parties_service, "active_parties_near", fake_near)
    report = new_report(client, make_user(), "accident", offset(10), description="Two cars")
    assert asked == [({"type": "Point", "coordinates": [offset(10)["lng"], offset(10)["lat"]]}, 5000.0)]
    assert captured_pushes == [([f"party:{party_a}", f"party:{party_b}"], "party:alert", {
        "type": "accident", "source": "report", "id": report["id"], "location": offset(10),
        "description": "Two cars"})]


def test_pending_camera_is_pushed_only_when_approved(client, monkeypatch, make_user, captured_pushes):
    party = ObjectId()
    monkeypatch.setattr(parties_service, "active_parties_near", lambda **kwargs: [party])
    camera = new_report(client, make_user(), "speed_camera", offset(0))
    assert captured_pushes == []
    moderator = make_user(role="moderator")
    client.post(f"{REPORTS}/{camera['id']}/moderate", headers=moderator.headers, json={"action": "approve"})
    assert [(rooms, data["id"], data["source"]) for rooms, _, data in captured_pushes] == [
        ([f"party:{party}"], camera["id"], "report")]


def test_official_alert_push_and_configured_radius(app_factory, monkeypatch, make_user, captured_pushes, clock):
    app = app_factory(ALERT_PUSH_RADIUS_M=1234.0)
    client = app.test_client()
    radii = []
    monkeypatch.setattr(parties_service, "active_parties_near",
                        lambda *, db, location, radius_m: radii.append(radius_m) or [ObjectId()])
    alert = new_alert(client, make_user(role="admin"), "weather", offset(0),
                      iso(clock.current + timedelta(hours=1)), description="Storm").get_json()["data"]
    assert radii == [1234.0]
    assert captured_pushes[0][2] == {"type": "weather", "source": "official", "id": alert["id"],
                                     "location": offset(0), "description": "Storm"}


def test_failing_party_lookup_keeps_the_report(client, db, monkeypatch, make_user, captured_pushes):
    def broken(**kwargs):
        raise RuntimeError("parties down")

    monkeypatch.setattr(parties_service, "active_parties_near", broken)
    new_report(client, make_user(), "hazard", offset(0))
    assert captured_pushes == [] and db.reports.count_documents({}) == 1


def ride(sio, party_id, location):
    ack = sio.emit("party:update", {"party_id": party_id, "location": location, "speed_kmh": 30},
                   callback=True)
    assert ack["ok"] is True, ack


def start_party(socket_client, leader, name):
    sio = socket_client(leader)
    ack = sio.emit("party:create", {"name": name}, callback=True)
    assert ack["ok"] is True, ack
    return sio, ack["party"]


def join_party(socket_client, user, party):
    sio = socket_client(user)
    ack = sio.emit("party:join", {"invite_code": party["invite_code"]}, callback=True)
    assert ack["ok"] is True, ack
    return sio


def test_only_members_of_nearby_parties_get_the_alert(client, make_user, socket_client):
    pytest.importorskip("allynet.parties.events")
    near_leader, near_member, far_leader, far_member, loner = (make_user() for _ in range(5))
    near_sio, near_party = start_party(socket_client, near_leader, "Near")
    near_member_sio = join_party(socket_client, near_member, near_party)
    far_sio, far_party = start_party(socket_client, far_leader, "Far")
    far_member_sio = join_party(socket_client, far_member, far_party)
    loner_sio = socket_client(loner)  # within range but in no party
    # One member of the near party is 3 km away (the other is 30 km away); the far party is 30 km away.
    ride(near_sio, near_party["id"], offset(30000))
    ride(near_member_sio, near_party["id"], offset(3000))
    ride(far_sio, far_party["id"], offset(-30000))
    ride(far_member_sio, far_party["id"], offset(0, 30000))
    for sio in (near_sio, near_member_sio, far_sio, far_member_sio, loner_sio):
        sio.get_received()

    reporter = make_user()
    report = new_report(client, reporter, "accident", offset(0), description="Pile-up")
    expected = {"type": "accident", "source": "report", "id": report["id"], "location": offset(0),
                "description": "Pile-up"}
    assert events_named(near_sio, "party:alert") == [expected]  # the leader is far, the party is near
    assert events_named(near_member_sio, "party:alert") == [expected]
    assert events_named(far_sio, "party:alert") == []
    assert events_named(far_member_sio, "party:alert") == []
    assert events_named(loner_sio, "party:alert") == []
