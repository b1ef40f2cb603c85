"""Moderation: the flagged and pending queues, approve/reject/hide, role checks, the audit log."""
from datetime import datetime, timedelta

import pytest
from bson import ObjectId

from allynet import clock as clock_module
from allynet import trust
from allynet.fields import iso
from tests.helpers import error_code

REPORTS = "/api/v1/reports"
AUDIT = "/api/v1/audit-log"
HERE = {"lat": 45.764, "lng": 4.8357}


def new_report(client, user, type_="police", description="seen"):
    response = client.post(REPORTS, headers=user.headers,
                           json={"type": type_, "location": HERE, "description": description})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def cast(client, user, report_id, value):
    response = client.post(f"{REPORTS}/{report_id}/vote", headers=user.headers, json={"value": value})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def moderate(client, user, report_id, action, reason=None):
    body = {"action": action} if reason is None else {"action": action, "reason": reason}
    return client.post(f"{REPORTS}/{report_id}/moderate", headers=user.headers, json=body)


def ids(response):
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["data"]]


def test_flagged_queue_holds_downvoted_and_vote_hidden_reports(client, make_user, moderator):
    reporter = make_user()
    quiet = new_report(client, reporter, "hazard")
    one_down = new_report(client, reporter, "hazard")
    two_down = new_report(client, reporter, "traffic")
    voted_out = new_report(client, reporter, "police")
    cast(client, make_user(), one_down["id"], "down")
    for _ in range(2):
        cast(client, make_user(), two_down["id"], "down")
    for _ in range(3):
        last = cast(client, make_user(), voted_out["id"], "down")
    assert last["status"] == "hidden"
    response = client.get(f"{REPORTS}?status=flagged", headers=moderator.headers)
    assert set(ids(response)) == {two_down["id"], voted_out["id"]}
    by_id = {item["id"]: item for item in response.get_json()["data"]}
    assert by_id[voted_out["id"]]["hidden_by"] == "votes" and by_id[voted_out["id"]]["flagged"] is True
    assert by_id[two_down["id"]]["user_id"] == reporter.id  # moderators see the reporter
    assert quiet["id"] not in by_id


def test_pending_queue_lists_cameras(client, make_user, moderator):
    camera = new_report(client, make_user(), "speed_camera")
    new_report(client, make_user(), "police")
    assert ids(client.get(f"{REPORTS}?status=pending", headers=moderator.headers)) == [camera["id"]]


def test_approve_reviews_and_leaves_queue_until_next_downvote(client, make_user, moderator):
    reporter = make_user()
    report = new_report(client, reporter, "traffic")
    for _ in range(2):
        cast(client, make_user(), report["id"], "down")
    response = moderate(client, moderator, report["id"], "approve", reason="still there")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "approved" and data["reviewed"] is True and data["flagged"] is False
    assert data["moderated_by"] == moderator.id and data["moderation_reason"] == "still there"
    assert ids(client.get(f"{REPORTS}?status=flagged", headers=moderator.headers)) == []
    cast(client, make_user(), report["id"], "down")
    assert ids(client.get(f"{REPORTS}?status=flagged", headers=moderator.headers)) == [report["id"]]


def test_approve_restores_a_vote_hidden_report(client, make_user, moderator):
    reporter, reader = make_user(), make_user()
    report = new_report(client, reporter, "accident")
    for _ in range(3):
        cast(client, make_user(), report["id"], "down")
    assert client.get(f"{REPORTS}/{report['id']}", headers=reader.headers).status_code == 404
    assert moderate(client, moderator, report["id"], "approve").status_code == 200
    visible = client.get(f"{REPORTS}/{report['id']}", headers=reader.headers)
    assert visible.status_code == 200 and visible.get_json()["data"]["status"] == "approved"
    assert "user_id" not in visible.get_json()["data"]  # the public view keeps reporters anonymous


def test_reject_lowers_trust_and_hides(client, db, make_user, moderator):
    reporter, reader = make_user(), make_user()
    report = new_report(client, reporter, "police")
    response = moderate(client, moderator, report["id"], "reject", reason="fake")
    assert response.status_code == 200 and response.get_json()["data"]["status"] == "rejected"
    expected = trust.BASE_SCORE + trust.TRUST_DELTAS["report_rejected"]
    assert db.users.find_one({"_id": reporter["_id"]})["trust_score"] == expected
    assert client.get(f"{REPORTS}/{report['id']}", headers=reader.headers).status_code == 404
    assert ids(client.get(f"{REPORTS}?status=rejected", headers=moderator.headers)) == [report["id"]]


def test_approve_confirms_once(client, db, make_user, moderator):
    reporter = make_user()
    report = new_report(client, reporter, "speed_camera")
    assert moderate(client, moderator, report["id"], "approve").status_code == 200
    confirmed = trust.BASE_SCORE + trust.TRUST_DELTAS["report_confirmed"]
    assert db.users.find_one({"_id": reporter["_id"]})["trust_score"] == confirmed
    for _ in range(trust.CONFIRM_UPVOTES):
        cast(client, make_user(), report["id"], "up")  # already confirmed: no second event
    assert db.users.find_one({"_id": reporter["_id"]})["trust_score"] == confirmed


def test_hide_by_moderator(client, make_user, moderator):
    report = new_report(client, make_user(), "weather")
    data = moderate(client, moderator, report["id"], "hide").get_json()["data"]
    assert data["status"] == "hidden" and data["hidden_by"] == "moderator"
    assert ids(client.get(f"{REPORTS}?status=flagged", headers=moderator.headers)) == []
    assert ids(client.get(f"{REPORTS}?status=hidden", headers=moderator.headers)) == [report["id"]]


@pytest.mark.parametrize("first, second", [("approve", "approve"), ("hide", "hide"), ("reject", "reject"),
                                           ("reject", "hide"), ("reject", "approve")])
def test_impossible_transitions_are_409(client, db, make_user, moderator, first, second):
    report = new_report(client, make_user(), "hazard")
    assert moderate(client, moderator, report["id"], first).status_code == 200
    before = db.reports.find_one({"_id": ObjectId(report["id"])})
    audit_count = db.audit_log.count_documents({})
    response = moderate(client, moderator, report["id"], second)
    assert response.status_code == 409 and error_code(response) == "invalid_transition"
    assert db.reports.find_one({"_id": ObjectId(report["id"])}) == before
    assert db.audit_log.count_documents({}) == audit_count


def test_moderating_an_expired_report_is_404(client, make_user, moderator, clock):
    report = new_report(client, make_user(), "traffic")
    clock.advance(hours=1)
    response = moderate(client, moderator, report["id"], "approve")
    assert response.status_code == 404 and error_code(response) == "not_found"


@pytest.mark.parametrize("body, field", [
    ({}, "action"), ({"action": "delete"}, "action"), ({"action": "approve", "reason": "x" * 501}, "reason"),
    ({"action": "approve", "status": "active"}, "status"),
])
def test_moderate_rejects_bad_bodies(client, db, make_user, moderator, body, field):
    report = new_report(client, make_user())
    response = client.post(f"{REPORTS}/{report['id']}/moderate", headers=moderator.headers, json=body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.reports.find_one({"_id": ObjectId(report["id"])})["status"] == "active"
    assert db.audit_log.count_documents({}) == 0


def test_moderation_actions_are_audited(client, db, make_user, moderator, admin):
    reporter = make_user()
    report = new_report(client, reporter, "speed_camera")
    moderate(client, moderator, report["id"], "approve", reason="checked on site")
    moderate(client, admin, report["id"], "hide")
    response = client.get(f"{AUDIT}?target_type=report&target_id={report['id']}", headers=admin.headers)
    assert response.status_code == 200
    entries = response.get_json()["data"]
    assert [entry["action"] for entry in entries] == ["report.hide", "report.approve"]  # newest first
    hide, approve = entries
    assert approve["actor_id"] == moderator.id and approve["target_type"] == "report"
    assert approve["target_id"] == report["id"] and approve["reason"] == "checked on site"
    assert approve["before"]["status"] == "pending" and approve["after"]["status"] == "approved"
    assert approve["at"].endswith("Z")
    assert hide["actor_id"] == admin.id and hide["before"]["status"] == "approved"
    assert hide["after"] == {"status": "hidden", "hidden_by": "moderator", "expires_at": None}
    assert set(hide) == {"id", "actor_id", "action", "target_type", "target_id", "before", "after",
                         "reason", "at"}


def test_admin_user_changes_appear_in_audit_log(client, make_user, admin):
    target = make_user()
    assert client.patch(f"/api/v1/users/{target.id}", headers=admin.headers,
                        json={"role": "moderator"}).status_code == 200
    entries = client.get(f"{AUDIT}?target_type=user&target_id={target.id}", headers=admin.headers)
    entry = entries.get_json()["data"][0]
    assert entry["action"] == "user.update" and entry["actor_id"] == admin.id
    assert entry["before"] == {"role": "user"} and entry["after"] == {"role": "moderator"}


def test_audit_log_paginates_newest_first(client, db, make_user, admin, clock):
    reports = [new_report(client, make_user(), "hazard") for _ in range(5)]
    for report in reports:
        clock.advance(seconds=1)
        assert moderate(client, admin, report["id"], "approve").status_code == 200
    seen, cursor = [], None
    while True:
        url = f"{AUDIT}?target_type=report&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=admin.headers).get_json()
        seen.extend(entry["target_id"] for entry in page["data"])
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [report["id"] for report in reversed(reports)]


def test_audit_log_keeps_entries_of_the_same_instant_apart(client, db, make_user, admin, clock):
    reports = [new_report(client, make_user(), "hazard") for _ in range(3)]
    for report in reports:  # frozen clock: three entries with one timestamp
        moderate(client, admin, report["id"], "hide")
    first = client.get(f"{AUDIT}?limit=2", headers=admin.headers).get_json()
    rest = client.get(f"{AUDIT}?limit=2&cursor={first['meta']['next_cursor']}", headers=admin.headers).get_json()
    listed = [entry["id"] for entry in first["data"] + rest["data"]]
    assert len(listed) == len(set(listed)) == 3


@pytest.mark.parametrize("query, field", [("target_id=nope", "target_id"), ("cursor=%%%", "cursor"),
                                          ("limit=1000", "limit"), ("actor=me", "actor")])
def test_audit_log_rejects_bad_queries(client, admin, query, field):
    response = client.get(f"{AUDIT}?{query}", headers=admin.headers)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]


def test_audit_log_cursor_of_another_shape_is_400(client, admin):
    from allynet.pagination import encode_cursor

    for cursor in (encode_cursor(["x"]), encode_cursor(["not a time", str(ObjectId())]),
                   encode_cursor([iso(datetime(2026, 1, 1)), "nope"])):
        response = client.get(f"{AUDIT}?cursor={cursor}", headers=admin.headers)
        assert response.status_code == 400 and error_code(response) == "validation_error"


# Every moderation route and method, for each role that must be refused.
MODERATION_CALLS = [
    ("post", "/api/v1/reports/{id}/moderate", {"action": "approve"}),
    ("post", "/api/v1/reports/{id}/moderate", {"action": "reject"}),
    ("post", "/api/v1/reports/{id}/moderate", {"action": "hide"}),
    ("get", "/api/v1/reports?status=flagged", None),
    ("get", "/api/v1/reports?status=pending", None),
    ("get", "/api/v1/reports?status=hidden", None),
    ("get", "/api/v1/reports?status=rejected", None),
    ("post", "/api/v1/alerts", {"type": "weather", "location": HERE, "description": "storm",
                                "expires_at": "SOON"}),
]


def with_times(body):
    """Fill the placeholder expiry with one an hour ahead (the alert body must be valid)."""
    if body and body.get("expires_at") == "SOON":
        return {**body, "expires_at": iso(clock_module.now() + timedelta(hours=1))}
    return body


@pytest.mark.parametrize("method, path, body", MODERATION_CALLS)
def test_ordinary_users_are_refused_moderation(client, db, make_user, method, path, body):
    report = new_report(client, make_user(), "speed_camera")
    before = db.reports.find_one({"_id": ObjectId(report["id"])})
    user = make_user()
    response = getattr(client, method)(path.format(id=report["id"]), headers=user.headers,
                                       json=with_times(body))
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert db.reports.find_one({"_id": ObjectId(report["id"])}) == before
    assert db.alerts.count_documents({}) == 0 and db.audit_log.count_documents({}) == 0


def test_role_is_read_from_the_database_not_the_token(client, db, make_user):
    demoted = make_user(role="moderator")
    db.users.update_one({"_id": demoted["_id"]}, {"$set": {"role": "user"}})
    report = new_report(client, make_user(), "speed_camera")
    assert moderate(client, demoted, report["id"], "approve").status_code == 403
    assert client.get(f"{REPORTS}?status=pending", headers=demoted.headers).status_code == 403


@pytest.mark.parametrize("role", ["user"])
def test_audit_log_is_for_staff_only(client, make_user, role):
    response = client.get(AUDIT, headers=make_user(role=role).headers)
    assert response.status_code == 403 and error_code(response) == "forbidden"


def test_unauthenticated_moderation_is_401(client, make_user):
    report = new_report(client, make_user())
    assert client.post(f"{REPORTS}/{report['id']}/moderate", json={"action": "hide"}).status_code == 401
    assert client.get(AUDIT).status_code == 401
    assert client.post("/api/v1/alerts", json={}).status_code == 401


def test_moderators_see_pending_reports_by_id(client, make_user, moderator):
    camera = new_report(client, make_user(), "speed_camera")
    data = client.get(f"{REPORTS}/{camera['id']}", headers=moderator.headers).get_json()["data"]
    assert data["status"] == "pending" and data["flagged"] is False and "user_id" in data


def test_flagged_reports_expire_out_of_the_queue(client, make_user, moderator, clock):
    report = new_report(client, make_user(), "traffic")
    for _ in range(2):
        cast(client, make_user(), report["id"], "down")
    assert ids(client.get(f"{REPORTS}?status=flagged", headers=moderator.headers)) == [report["id"]]
    clock.advance(hours=1, seconds=1)
    assert ids(client.get(f"{REPORTS}?status=flagged", headers=moderator.headers)) == []


def test_flag_threshold_is_configurable(app_factory, make_user):
    app = app_factory(REPORT_FLAG_DOWNVOTES=1)
    client = app.test_client()
    moderator = make_user(role="moderator")
    report = new_report(client, make_user(), "traffic")
    cast(client, make_user(), report["id"], "down")
    assert ids(client.get(f"{REPORTS}?status=flagged", headers=moderator.headers)) == [report["id"]]


def test_approval_keeps_the_lifetime_of_expiring_types(client, make_user, moderator, clock):
    """A moderated expiring report keeps its lifetime: approval is not immortality except for cameras."""
    report = new_report(client, make_user(), "police")
    data = moderate(client, moderator, report["id"], "approve").get_json()["data"]
    assert data["expires_at"] == report["expires_at"]
    clock.advance(hours=2)
    assert client.get(f"{REPORTS}/{report['id']}", headers=moderator.headers).status_code == 404


@pytest.mark.parametrize("role", ["moderator", "admin"])
@pytest.mark.parametrize("method, path, body", MODERATION_CALLS)
def test_moderators_and_admins_pass_every_moderation_route(client, make_user, role, method, path, body):
    report = new_report(client, make_user(), "speed_camera")
    response = getattr(client, method)(path.format(id=report["id"]), headers=make_user(role=role).headers,
                                       json=with_times(body))
    assert response.status_code in (200, 201), response.get_json()


@pytest.mark.parametrize("path, methods", [
    ("/api/v1/reports/{id}/moderate", ("get", "put", "patch", "delete")),
    ("/api/v1/reports/{id}/vote", ("get", "put", "patch", "delete")),
    ("/api/v1/reports/{id}", ("put", "patch", "delete", "post")),
    ("/api/v1/alerts", ("put", "patch", "delete")),
    ("/api/v1/audit-log", ("post", "put", "patch", "delete")),
])
def test_other_methods_are_405_and_change_nothing(client, db, make_user, admin, path, methods):
    report = new_report(client, make_user(), "hazard")
    before = db.reports.find_one({"_id": ObjectId(report["id"])})
    for method in methods:
        response = getattr(client, method)(path.format(id=report["id"]), headers=admin.headers,
                                           json={"action": "hide"})
        assert response.status_code == 405 and error_code(response) == "method_not_allowed"
    assert db.reports.find_one({"_id": ObjectId(report["id"])}) == before
    assert db.audit_log.count_documents({}) == 0
