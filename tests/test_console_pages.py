"""The operator console through the Flask test client: who gets in, the session cookie, CSRF, CSP,
escaping, and each page's actions (the browser tests in test_console_browser.py drive the same pages)."""
import re
from datetime import timedelta

import pytest

from allynet import clock as clock_module

HERE = {"lat": 45.764, "lng": 4.8357}
SCRIPT = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def sign_in(client, user):
    return client.post("/console/login", data={"email": user["email"], "password": user["password"]})


def csrf_of(client):
    """The CSRF value the signed-in console's forms carry."""
    page = client.get("/console/reports").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.fixture
def moderator(make_user):
    return make_user(role="moderator", display_name="Mod")


@pytest.fixture
def admin(make_user):
    return make_user(role="admin", display_name="Admin")


@pytest.fixture
def staff_client(app, moderator):
    client = app.test_client()
    assert sign_in(client, moderator).status_code == 303
    return client


def new_camera(client, user, description="camera"):
    response = client.post("/api/v1/reports", headers=user.headers,
                           json={"type": "speed_camera", "location": HERE, "description": description})
    assert response.status_code == 201
    return response.get_json()["data"]


# ---- who gets in --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/console/", "/console/reports", "/console/users", "/console/alerts",
                                  "/console/audit", "/console/map"])
def test_anonymous_visitors_get_the_sign_in_page(client, path):
    response = client.get(path)
    assert response.status_code == 303 and response.headers["Location"].endswith("/console/login")
    assert "Sign in" in client.get("/console/login").get_data(as_text=True)


def test_a_plain_user_is_refused_and_gets_no_session(client, make_user):
    user = make_user()
    response = sign_in(client, user)
    assert response.status_code == 403 and "moderators and admins" in response.get_data(as_text=True)
    assert client.get_cookie("allynet_console", path="/console") is None
    assert client.get("/console/reports").status_code == 303


def test_wrong_password_and_suspended_accounts_stay_out(client, make_user, admin):
    assert client.post("/console/login", data={"email": admin["email"], "password": "nope"}).status_code == 401
    other = make_user(role="moderator")
    assert client.post(f"/api/v1/users/{other.id}/suspend", headers=admin.headers,
                       json={"reason": "x"}).status_code == 200
    response = sign_in(client, other)
    assert response.status_code == 401 and "suspended" in response.get_data(as_text=True)


def test_the_session_cookie_is_httponly_samesite_strict_and_console_only(client, moderator):
    response = sign_in(client, moderator)
    assert response.status_code == 303
    session = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("allynet_console=")][0]
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/console" in session
    assert client.get("/console/reports").status_code == 200


def test_the_console_token_is_refused_by_the_api_and_api_tokens_by_the_console(app, client, moderator):
    sign_in(client, moderator)
    token = client.get_cookie("allynet_console", path="/console").value
    response = client.get("/api/v1/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert not app.extensions["socketio"].test_client(app, auth={"token": token}).is_connected()
    bearer_only = app.test_client()
    assert bearer_only.get("/console/reports", headers=moderator.headers).status_code == 303


def test_a_demoted_moderator_sees_the_403_page(client, db, moderator):
    sign_in(client, moderator)
    db.users.update_one({"_id": moderator["_id"]}, {"$set": {"role": "user"}})
    response = client.get("/console/reports")
    assert response.status_code == 403 and "moderators and admins only" in response.get_data(as_text=True)


def test_a_suspended_moderator_is_signed_out(client, moderator, admin):
    sign_in(client, moderator)
    client.post(f"/api/v1/users/{moderator.id}/suspend", headers=admin.headers, json={"reason": "x"})
    assert client.get("/console/reports").status_code == 303


def test_sign_out_ends_the_session(staff_client):
    token = staff_client.get_cookie("allynet_console", path="/console").value
    assert staff_client.post("/console/logout", data={"csrf_token": csrf_of(staff_client)}).status_code == 303
    staff_client.set_cookie("allynet_console", token, path="/console")
    assert staff_client.get("/console/reports").status_code == 303  # the token itself is revoked


# ---- headers, CSRF, escaping --------------------------------------------------------------------

def test_every_console_page_sends_a_strict_csp(staff_client):
    for path in ("/console/login", "/console/reports", "/console/static/console.css"):
        csp = staff_client.get(path).headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp


def test_a_form_without_the_csrf_value_is_refused_and_changes_nothing(staff_client, make_user, db):
    camera = new_camera(staff_client, make_user())
    url = f"/console/reports/{camera['id']}/moderate"
    response = staff_client.post(url, data={"action": "approve"})
    assert response.status_code == 403
    assert staff_client.post(url, data={"action": "approve", "csrf_token": "forged"}).status_code == 403
    assert db.reports.find_one({})["status"] == "pending"
    assert staff_client.post(url, data={"action": "approve", "csrf_token": csrf_of(staff_client)}).status_code == 303
    assert db.reports.find_one({})["status"] == "approved"


def test_user_text_is_escaped(staff_client, make_user):
    new_camera(staff_client, make_user(display_name=SCRIPT), description=SCRIPT)
    page = staff_client.get("/console/reports").get_data(as_text=True)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    users = staff_client.get("/console/users").get_data(as_text=True)
    assert "<script>alert" not in users and "&lt;script&gt;" in users


# ---- pages and actions --------------------------------------------------------------------------

def test_queue_lists_pending_and_moderation_leaves_it_audited(staff_client, make_user, db, moderator):
    camera = new_camera(staff_client, make_user(), description="Camera on the bridge")
    assert "Camera on the bridge" in staff_client.get("/console/reports").get_data(as_text=True)
    staff_client.post(f"/console/reports/{camera['id']}/moderate",
                      data={"action": "reject", "reason": "duplicate", "csrf_token": csrf_of(staff_client)})
    assert "Camera on the bridge" not in staff_client.get("/console/reports").get_data(as_text=True)
    entry = db.audit_log.find_one({"action": "report.reject"})
    assert entry["actor_id"] == moderator["_id"] and entry["reason"] == "duplicate"


def test_bad_form_values_answer_400_pages(staff_client, make_user):
    camera = new_camera(staff_client, make_user())
    response = staff_client.post(f"/console/reports/{camera['id']}/moderate",
                                 data={"action": "explode", "csrf_token": csrf_of(staff_client)})
    assert response.status_code == 400 and "check the form" in response.get_data(as_text=True)
    assert staff_client.get("/console/users?role=root").status_code == 400
    assert staff_client.get("/console/audit?since=yesterday").status_code == 400


def test_admin_suspends_and_lifts_from_the_users_page(app, admin, make_user, db):
    client = app.test_client()
    sign_in(client, admin)
    target = make_user(display_name="Troll")
    page = client.get("/console/users?q=Troll").get_data(as_text=True)
    assert "Troll" in page and "Suspend" in page
    response = client.post(f"/console/users/{target.id}/suspend",
                           data={"reason": "abuse", "csrf_token": csrf_of(client), "q": "Troll"})
    assert response.status_code == 303
    assert client.get("/api/v1/profile", headers=target.headers).status_code == 401
    assert "Suspended" in client.get("/console/users?q=Troll").get_data(as_text=True)
    client.post(f"/console/users/{target.id}/update",
                data={"role": "user", "verified": "on", "is_helper": "on", "csrf_token": csrf_of(client)})
    assert db.users.find_one({"_id": target["_id"]})["is_helper"] is True
    client.post(f"/console/users/{target.id}/unsuspend", data={"csrf_token": csrf_of(client)})
    assert client.get("/api/v1/profile", headers=target.headers).status_code == 200


def test_the_last_admin_cannot_suspend_themselves_from_the_console(app, admin):
    client = app.test_client()
    sign_in(client, admin)
    response = client.post(f"/console/users/{admin.id}/suspend", data={"reason": "x", "csrf_token": csrf_of(client)})
    assert response.status_code == 409 and "last admin" in response.get_data(as_text=True)


def test_moderators_cannot_suspend_and_see_no_suspend_form(staff_client, make_user, db):
    target = make_user(display_name="Someone")
    assert "Suspend" not in staff_client.get("/console/users?q=Someone").get_data(as_text=True)
    response = staff_client.post(f"/console/users/{target.id}/suspend",
                                 data={"reason": "x", "csrf_token": csrf_of(staff_client)})
    assert response.status_code == 403
    assert db.users.find_one({"_id": target["_id"]}).get("suspension") is None


def test_alerts_are_created_edited_and_deleted(staff_client, db):
    expires = (clock_module.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    token = csrf_of(staff_client)
    assert staff_client.post("/console/alerts", data={
        "type": "hazard", "lat": "45.76", "lng": "4.83", "description": "Oil on road", "expires_at": expires,
        "csrf_token": token}).status_code == 303
    alert = db.alerts.find_one({})
    assert "Oil on road" in staff_client.get("/console/alerts").get_data(as_text=True)
    staff_client.post(f"/console/alerts/{alert['_id']}/update", data={"description": "Cleared soon",
                                                                      "csrf_token": token})
    assert db.alerts.find_one({})["description"] == "Cleared soon"
    staff_client.post(f"/console/alerts/{alert['_id']}/delete", data={"csrf_token": token})
    assert db.alerts.count_documents({}) == 0
    bad = staff_client.post("/console/alerts", data={"type": "hazard", "lat": "north", "lng": "4", "description": "x",
                                                     "expires_at": expires, "csrf_token": token})
    assert bad.status_code == 400 and db.alerts.count_documents({}) == 0


def test_audit_page_filters_and_the_admin_csv(app, staff_client, admin, make_user):
    camera = new_camera(staff_client, make_user())
    staff_client.post(f"/console/reports/{camera['id']}/moderate",
                      data={"action": "approve", "csrf_token": csrf_of(staff_client)})
    page = staff_client.get("/console/audit?action=report.approve").get_data(as_text=True)
    assert "report.approve" in page
    assert "report.approve" not in staff_client.get("/console/audit?action=user.suspend").get_data(as_text=True)
    assert staff_client.get("/console/audit/export").status_code == 403  # moderators: no CSV
    client = app.test_client()
    sign_in(client, admin)
    csv_response = client.get("/console/audit/export?action=report.approve")
    assert csv_response.mimetype == "text/csv" and "report.approve" in csv_response.get_data(as_text=True)


def test_the_map_lists_open_sos_visible_reports_and_alerts(staff_client, make_user):
    requester = make_user()
    staff_client.post("/api/v1/emergencies", headers=requester.headers, json={"type": "medical", "location": HERE})
    staff_client.post("/api/v1/reports", headers=make_user().headers,
                      json={"type": "hazard", "location": HERE, "description": "Pothole"})
    page = staff_client.get("/console/map").get_data(as_text=True)
    assert "medical" in page and "Pothole" in page and "45.76400, 4.83570" in page
