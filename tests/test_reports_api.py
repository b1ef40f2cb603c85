"""Community reports through the HTTP API: creation, lifetimes, votes, cameras, trust, bad input."""
from datetime import datetime, timedelta

import pytest
from bson import ObjectId

from allynet import trust
from tests.helpers import error_code

REPORTS = "/api/v1/reports"
HERE = {"lat": 48.8566, "lng": 2.3522}


def parse(ts):
    return datetime.fromisoformat(ts.rstrip("Z"))


def file_report(client, user, type_="police", location=HERE, description="checkpoint", **extra):
    body = {"type": type_, "location": location, **extra}
    if description is not None:
        body["description"] = description
    return client.post(REPORTS, headers=user.headers, json=body)


def new_report(client, user, type_="police", **kwargs):
    response = file_report(client, user, type_, **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def cast(client, user, report_id, value):
    return client.post(f"{REPORTS}/{report_id}/vote", headers=user.headers, json={"value": value})


def test_create_returns_201_with_public_fields(client, db, make_user, clock):
    user = make_user()
    response = file_report(client, user, "hazard", description="  debris on the road  ")
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert set(data) == {"id", "type", "location", "description", "status", "upvotes", "downvotes",
                         "expires_at", "created_at"}
    assert data["type"] == "hazard" and data["status"] == "active"
    assert data["location"] == HERE and data["description"] == "debris on the road"
    assert data["upvotes"] == 0 and data["downvotes"] == 0
    assert parse(data["expires_at"]) - parse(data["created_at"]) == timedelta(hours=24)
    stored = db.reports.find_one({"_id": ObjectId(data["id"])})
    assert stored["location"] == {"type": "Point", "coordinates": [HERE["lng"], HERE["lat"]]}
    assert stored["user_id"] == user["_id"]
    fetched = client.get(f"{REPORTS}/{data['id']}", headers=make_user().headers)
    assert fetched.status_code == 200 and fetched.get_json()["data"] == data


@pytest.mark.parametrize("type_, hours", [
    ("police", 2), ("accident", 3), ("traffic", 1), ("weather", 6), ("hazard", 24), ("road_closure", 24),
])
def test_lifetime_per_type_then_404(client, make_user, clock, type_, hours):
    reporter, reader = make_user(), make_user()
    report = new_report(client, reporter, type_)
    assert parse(report["expires_at"]) == clock.current + timedelta(hours=hours)
    url = f"{REPORTS}/{report['id']}"
    clock.advance(hours=hours, seconds=-1)
    assert client.get(url, headers=reader.headers).status_code == 200
    clock.advance(seconds=1)  # the TTL sweep has not run: the query filter alone hides it
    expired = client.get(url, headers=reader.headers)
    assert expired.status_code == 404 and error_code(expired) == "not_found"
    listed = client.get(REPORTS, headers=reader.headers).get_json()["data"]
    assert report["id"] not in [item["id"] for item in listed]
    gone_vote = cast(client, reader, report["id"], "up")
    assert gone_vote.status_code == 404


def test_each_upvote_extends_by_a_quarter_and_toggling_does_not(client, make_user, clock):
    reporter = make_user()
    report = new_report(client, reporter, "police")  # 2 h: a quarter is 30 min
    created = parse(report["created_at"])
    voters = [make_user() for _ in range(3)]
    first = cast(client, voters[0], report["id"], "up")
    assert first.status_code == 200
    data = first.get_json()["data"]
    assert data["upvotes"] == 1
    assert parse(data["expires_at"]) == created + timedelta(hours=2, minutes=30)
    data = cast(client, voters[1], report["id"], "up").get_json()["data"]
    assert parse(data["expires_at"]) == created + timedelta(hours=3)
    # Down then up again: no second extension for the same voter.
    cast(client, voters[1], report["id"], "down")
    data = cast(client, voters[1], report["id"], "up").get_json()["data"]
    assert (data["upvotes"], data["downvotes"]) == (2, 0)
    assert parse(data["expires_at"]) == created + timedelta(hours=3)
    # The extension is real: alive past its base lifetime, gone after the extended one.
    clock.advance(hours=2, minutes=59)
    assert client.get(f"{REPORTS}/{report['id']}", headers=voters[2].headers).status_code == 200
    clock.advance(minutes=1)
    assert client.get(f"{REPORTS}/{report['id']}", headers=voters[2].headers).status_code == 404


def test_votes_are_one_per_user_and_changeable(client, make_user):
    reporter, voter = make_user(), make_user()
    report = new_report(client, reporter, "traffic")
    assert cast(client, voter, report["id"], "up").get_json()["data"]["upvotes"] == 1
    again = cast(client, voter, report["id"], "up")
    assert again.status_code == 200
    assert (again.get_json()["data"]["upvotes"], again.get_json()["data"]["downvotes"]) == (1, 0)
    changed = cast(client, voter, report["id"], "down").get_json()["data"]
    assert (changed["upvotes"], changed["downvotes"]) == (0, 1)


def test_reporter_cannot_vote_on_own_report(client, db, make_user):
    reporter = make_user()
    report = new_report(client, reporter)
    response = cast(client, reporter, report["id"], "up")
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert db.report_votes.count_documents({}) == 0
    assert db.reports.find_one({"_id": ObjectId(report["id"])})["upvotes"] == 0


def test_three_more_downvotes_than_upvotes_hide_it(client, make_user):
    reporter, reader = make_user(), make_user()
    report = new_report(client, reporter, "accident")
    url = f"{REPORTS}/{report['id']}"
    cast(client, make_user(), report["id"], "up")
    down = [make_user() for _ in range(4)]
    for voter in down[:3]:
        data = cast(client, voter, report["id"], "down").get_json()["data"]
        assert data["status"] == "active"  # net -2 at most so far
    hidden = cast(client, down[3], report["id"], "down")
    assert hidden.status_code == 200
    assert hidden.get_json()["data"]["status"] == "hidden"
    assert (hidden.get_json()["data"]["upvotes"], hidden.get_json()["data"]["downvotes"]) == (1, 4)
    # Hidden: not listed, not readable by others, not votable (404, as for a report they cannot see).
    assert client.get(url, headers=reader.headers).status_code == 404
    assert report["id"] not in [item["id"] for item in client.get(REPORTS, headers=reader.headers)
                                .get_json()["data"]]
    blocked = cast(client, reader, report["id"], "up")
    assert blocked.status_code == 404 and error_code(blocked) == "not_found"
    moderator = make_user(role="moderator")
    closed = cast(client, moderator, report["id"], "up")  # staff may see it: it exists, takes no votes
    assert closed.status_code == 409 and error_code(closed) == "conflict"
    # Its reporter still sees it, hidden.
    assert client.get(url, headers=reporter.headers).get_json()["data"]["status"] == "hidden"


def test_speed_camera_waits_pending_and_never_expires(client, make_user, clock):
    reporter, reader = make_user(), make_user()
    camera = new_report(client, reporter, "speed_camera", description="fixed camera")
    assert camera["status"] == "pending" and camera["expires_at"] is None
    url = f"{REPORTS}/{camera['id']}"
    assert client.get(url, headers=reader.headers).status_code == 404  # not public while pending
    assert client.get(url, headers=reporter.headers).get_json()["data"]["status"] == "pending"
    blocked = cast(client, reader, camera["id"], "up")  # as unknown to them as GET says
    assert blocked.status_code == 404 and error_code(blocked) == "not_found"
    moderator = make_user(role="moderator")
    approved = client.post(f"{url}/moderate", headers=moderator.headers, json={"action": "approve"})
    assert approved.status_code == 200 and approved.get_json()["data"]["status"] == "approved"
    clock.advance(days=400)
    data = client.get(url, headers=reader.headers).get_json()["data"]
    assert data["status"] == "approved" and data["expires_at"] is None


def test_trusted_reporter_skips_pending(client, app, make_user):
    trusted = make_user(trust_score=app.config["TRUSTED_REPORTER_SCORE"])
    almost = make_user(trust_score=app.config["TRUSTED_REPORTER_SCORE"] - 0.5)
    assert new_report(client, trusted, "speed_camera")["status"] == "active"
    assert new_report(client, almost, "speed_camera")["status"] == "pending"


def test_trusted_threshold_is_configurable(app_factory, make_user):
    app = app_factory(TRUSTED_REPORTER_SCORE=60.0)
    client = app.test_client()
    user = make_user(trust_score=65.0)
    assert new_report(client, user, "speed_camera")["status"] == "active"


def test_confirmation_by_net_upvotes_raises_trust_once(client, db, make_user):
    reporter = make_user()
    report = new_report(client, reporter, "hazard")
    voters = [make_user() for _ in range(trust.CONFIRM_UPVOTES + 2)]
    for voter in voters[:trust.CONFIRM_UPVOTES - 1]:
        cast(client, voter, report["id"], "up")
    assert db.users.find_one({"_id": reporter["_id"]})["trust_score"] == trust.BASE_SCORE
    cast(client, voters[trust.CONFIRM_UPVOTES - 1], report["id"], "up")
    confirmed = trust.BASE_SCORE + trust.TRUST_DELTAS["report_confirmed"]
    assert db.users.find_one({"_id": reporter["_id"]})["trust_score"] == confirmed
    # Dropping below and reaching the mark again does not count twice.
    cast(client, voters[0], report["id"], "down")
    cast(client, voters[0], report["id"], "up")
    for voter in voters[trust.CONFIRM_UPVOTES:]:
        cast(client, voter, report["id"], "up")
    assert db.users.find_one({"_id": reporter["_id"]})["trust_score"] == confirmed
    public = client.get(f"/api/v1/users/{reporter.id}", headers=voters[0].headers).get_json()["data"]
    assert public["trust_score"] == confirmed


def test_report_rate_limit_gives_429_with_retry_after(app_factory, make_user):
    app = app_factory(REPORT_RATE_LIMIT="2/minute")
    client = app.test_client()
    user, other = make_user(), make_user()
    assert file_report(client, user).status_code == 201
    assert file_report(client, user).status_code == 201
    limited = file_report(client, user)
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Per user: someone else still reports.
    assert file_report(client, other).status_code == 201
    db = app.extensions["allynet_db"]
    assert db.reports.count_documents({"user_id": user["_id"]}) == 2


LOCATION_ERRORS = [
    None, "here", {"lat": 91, "lng": 0}, {"lat": 0, "lng": -181}, {"lat": "NaN", "lng": 0},
    {"lat": 10}, {"lat": True, "lng": 0}, [2.35, 48.85],
]


@pytest.mark.parametrize("body, field", [
    ({"type": "ufo", "location": HERE}, "type"),
    ({"location": HERE}, "type"),
    ({"type": "police"}, "location"),
    *[({"type": "police", "location": bad}, "location") for bad in LOCATION_ERRORS],
    ({"type": "police", "location": HERE, "description": "x" * 501}, "description"),
    ({"type": "police", "location": HERE, "description": 12}, "description"),
    ({"type": "police", "location": HERE, "status": "approved"}, "status"),
    ({"type": "police", "location": HERE, "upvotes": 99}, "upvotes"),
])
def test_create_rejects_bad_input_and_stores_nothing(client, db, make_user, body, field):
    response = client.post(REPORTS, headers=make_user().headers, json=body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.reports.count_documents({}) == 0


def test_description_of_500_characters_is_fine(client, make_user):
    assert new_report(client, make_user(), description="x" * 500)["description"] == "x" * 500


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_create_rejects_non_object_bodies(client, db, make_user, body):
    response = client.post(REPORTS, headers={**make_user().headers, "Content-Type": "application/json"},
                           data=body)
    assert response.status_code == 400 and error_code(response) == "bad_request"
    assert db.reports.count_documents({}) == 0


def test_requires_authentication(client):
    assert client.post(REPORTS, json={"type": "police", "location": HERE}).status_code == 401
    assert client.get(REPORTS).status_code == 401
    assert client.get("/api/v1/alerts?lat=1&lng=2").status_code == 401


@pytest.mark.parametrize("bad_id", ["nope", "123", "0" * 23, "g" * 24, "0" * 25])
def test_malformed_ids_are_404(client, make_user, bad_id):
    user = make_user(role="moderator")
    for response in (client.get(f"{REPORTS}/{bad_id}", headers=user.headers),
                     cast(client, user, bad_id, "up"),
                     client.post(f"{REPORTS}/{bad_id}/moderate", headers=user.headers,
                                 json={"action": "approve"})):
        assert response.status_code == 404 and error_code(response) == "not_found"


def test_unknown_report_is_404_everywhere(client, make_user):
    user = make_user()
    missing = str(ObjectId())
    assert client.get(f"{REPORTS}/{missing}", headers=user.headers).status_code == 404
    assert cast(client, user, missing, "up").status_code == 404


@pytest.mark.parametrize("body", [{}, {"value": "sideways"}, {"value": 1}, {"value": "up", "weight": 5}])
def test_vote_rejects_bad_values_and_changes_nothing(client, db, make_user, body):
    report = new_report(client, make_user())
    response = client.post(f"{REPORTS}/{report['id']}/vote", headers=make_user().headers, json=body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert db.report_votes.count_documents({}) == 0
    stored = db.reports.find_one({"_id": ObjectId(report["id"])})
    assert (stored["upvotes"], stored["downvotes"]) == (0, 0)


@pytest.mark.parametrize("query, field", [
    ("near=48.8,2.3&radius_m=99", "radius_m"),
    ("near=48.8,2.3&radius_m=50001", "radius_m"),
    ("near=48.8,2.3&radius_m=abc", "radius_m"),
    ("near=91,2.3", "near"),
    ("near=48.8", "near"),
    ("near=a,b", "near"),
    ("radius_m=1000", "radius_m"),
    ("type=ufo", "type"),
    ("status=everything", "status"),
    ("cursor=@@@", "cursor"),
    ("limit=0", "limit"),
    ("colour=red", "colour"),
])
def test_list_rejects_bad_queries(client, make_user, query, field):
    response = client.get(f"{REPORTS}?{query}", headers=make_user().headers)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]


def test_list_newest_first_with_cursor_and_type(client, make_user, clock):
    user = make_user()
    ids = []
    for index in range(5):
        ids.append(new_report(client, user, "traffic" if index % 2 else "weather")["id"])
        clock.advance(seconds=1)
    first = client.get(f"{REPORTS}?limit=2", headers=user.headers).get_json()
    assert [item["id"] for item in first["data"]] == ids[::-1][:2]
    assert first["meta"]["count"] == 2 and first["meta"]["next_cursor"]
    second = client.get(f"{REPORTS}?limit=2&cursor={first['meta']['next_cursor']}",
                        headers=user.headers).get_json()
    assert [item["id"] for item in second["data"]] == ids[::-1][2:4]
    third = client.get(f"{REPORTS}?limit=2&cursor={second['meta']['next_cursor']}",
                       headers=user.headers).get_json()
    assert [item["id"] for item in third["data"]] == ids[:1] and third["meta"]["next_cursor"] is None
    weather = client.get(f"{REPORTS}?type=weather", headers=user.headers).get_json()["data"]
    assert [item["id"] for item in weather] == [ids[4], ids[2], ids[0]]


def test_default_report_limit_is_ten_a_minute(client, app, make_user):
    assert app.config["REPORT_RATE_LIMIT"] == "10/minute;100/day"
    user = make_user()
    statuses = [file_report(client, user).status_code for _ in range(11)]
    assert statuses == [201] * 10 + [429]
