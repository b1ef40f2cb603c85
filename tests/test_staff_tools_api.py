"""Staff tools: editing and withdrawing official alerts, the filtered audit log and its CSV, the queues."""
import csv
import io
from datetime import timedelta

import pytest

from allynet import clock as clock_module
from allynet.fields import iso
from tests.helpers import error_code

API = "/api/v1"
HERE = {"lat": 45.764, "lng": 4.8357}


def later(hours=1):
    return iso(clock_module.now() + timedelta(hours=hours))


def new_alert(client, author, description="Road works"):
    response = client.post(f"{API}/alerts", headers=author.headers, json={
        "type": "hazard", "location": HERE, "description": description, "expires_at": later()})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def feed(client, user):
    response = client.get(f"{API}/alerts?lat={HERE['lat']}&lng={HERE['lng']}", headers=user.headers)
    return {item["id"]: item for item in response.get_json()["data"]}


# ---- official alerts ------------------------------------------------------------------------------

def test_staff_edit_an_alert_and_the_feed_shows_it_audited(client, db, make_user, moderator, admin):
    alert = new_alert(client, admin)
    response = client.patch(f"{API}/alerts/{alert['id']}", headers=moderator.headers,
                            json={"description": "Lane closed", "type": "road_closure"})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["description"] == "Lane closed" and data["type"] == "road_closure" and data["updated_at"]
    assert feed(client, make_user())[alert["id"]]["description"] == "Lane closed"
    entry = db.audit_log.find_one({"action": "alert.update"})
    assert entry["actor_id"] == moderator["_id"]
    assert entry["before"] == {"description": "Road works", "type": "hazard"}


def test_staff_delete_an_alert_it_leaves_the_feed_audited(client, db, make_user, moderator, admin):
    alert = new_alert(client, admin)
    response = client.delete(f"{API}/alerts/{alert['id']}", headers=moderator.headers)
    assert response.status_code == 200
    assert alert["id"] not in feed(client, make_user())
    assert db.audit_log.count_documents({"action": "alert.delete"}) == 1
    again = client.delete(f"{API}/alerts/{alert['id']}", headers=moderator.headers)
    assert again.status_code == 404 and error_code(again) == "not_found"


def test_expired_alerts_are_404_to_edit(client, admin, clock):
    alert = new_alert(client, admin)
    clock.advance(hours=2)
    response = client.patch(f"{API}/alerts/{alert['id']}", headers=admin.headers, json={"description": "x"})
    assert response.status_code == 404


@pytest.mark.parametrize("body", [{}, {"type": "meteor"}, {"description": ""}, {"expires_at": "2000-01-01T00:00:00Z"},
                                  {"location": {"lat": 91, "lng": 0}}, {"created_by": "x"}])
def test_bad_alert_edits_are_400_and_change_nothing(client, make_user, admin, body):
    alert = new_alert(client, admin)
    response = client.patch(f"{API}/alerts/{alert['id']}", headers=admin.headers, json=body)
    assert response.status_code == 400
    assert feed(client, make_user())[alert["id"]]["description"] == "Road works"


def test_plain_users_cannot_edit_or_delete_alerts(client, make_user, admin):
    alert = new_alert(client, admin)
    user = make_user()
    assert client.patch(f"{API}/alerts/{alert['id']}", headers=user.headers,
                        json={"description": "x"}).status_code == 403
    assert client.delete(f"{API}/alerts/{alert['id']}", headers=user.headers).status_code == 403
    assert client.delete(f"{API}/alerts/{alert['id']}").status_code == 401
    assert feed(client, user)[alert["id"]]["description"] == "Road works"


# ---- the audit log --------------------------------------------------------------------------------

def test_moderators_read_the_audit_log_with_filters(client, make_user, moderator, admin, clock):
    start = iso(clock_module.now())
    first = new_alert(client, admin)
    clock.advance(minutes=5)
    middle = iso(clock_module.now())
    second = new_alert(client, moderator)
    client.delete(f"{API}/alerts/{first['id']}", headers=moderator.headers)

    def entries(query):
        response = client.get(f"{API}/audit-log?{query}", headers=moderator.headers)
        assert response.status_code == 200, response.get_json()
        return [(e["action"], e["target_id"]) for e in response.get_json()["data"]]

    assert entries(f"actor={admin.id}") == [("alert.create", first["id"])]
    assert entries("action=alert.delete") == [("alert.delete", first["id"])]
    assert entries(f"target_type=alert&target_id={second['id']}") == [("alert.create", second["id"])]
    assert entries(f"since={middle}") == [("alert.delete", first["id"]), ("alert.create", second["id"])]
    assert entries(f"since={start}&until={middle}") == [("alert.create", first["id"])]


@pytest.mark.parametrize("query", ["actor=nope", "since=yesterday", "until=1", "limit=500", "who=me"])
def test_bad_audit_filters_are_400(client, moderator, query):
    response = client.get(f"{API}/audit-log?{query}", headers=moderator.headers)
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_admins_export_the_audit_log_as_csv(client, make_user, admin):
    new_alert(client, admin, description="=cmd|' /C calc'!A0")
    target = make_user()
    client.post(f"{API}/users/{target.id}/suspend", headers=admin.headers, json={"reason": "=HYPERLINK(1)"})
    response = client.get(f"{API}/audit-log/export?target_type=user", headers=admin.headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["at", "actor_id", "action", "target_type", "target_id", "reason", "before", "after"]
    assert len(rows) == 2
    assert rows[1][2] == "user.suspend" and rows[1][4] == target.id
    assert rows[1][5] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet


def test_an_empty_export_still_has_its_header(client, admin):
    response = client.get(f"{API}/audit-log/export?action=none.such", headers=admin.headers)
    assert response.get_data(as_text=True).strip() == "at,actor_id,action,target_type,target_id,reason,before,after"


@pytest.mark.parametrize("role", ["user", "moderator"])
def test_only_admins_export(client, make_user, role):
    assert client.get(f"{API}/audit-log/export", headers=make_user(role=role).headers).status_code == 403


def test_plain_users_cannot_read_the_audit_log(client, make_user):
    assert client.get(f"{API}/audit-log", headers=make_user().headers).status_code == 403


# ---- the moderators' queues -----------------------------------------------------------------------

@pytest.mark.parametrize("status", ["pending"])
def test_the_pending_queue_is_oldest_first_and_pages(client, make_user, moderator, clock, status):
    cameras = []
    for _ in range(3):
        clock.advance(seconds=1)
        response = client.post(f"{API}/reports", headers=make_user().headers,
                               json={"type": "speed_camera", "location": HERE})
        cameras.append(response.get_json()["data"]["id"])
    first = client.get(f"{API}/reports?status={status}&limit=2", headers=moderator.headers).get_json()
    cursor = first["meta"]["next_cursor"]
    rest = client.get(f"{API}/reports?status={status}&limit=2&cursor={cursor}", headers=moderator.headers)
    assert [r["id"] for r in first["data"]] + [r["id"] for r in rest.get_json()["data"]] == cameras
