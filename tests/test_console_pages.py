"""The operator console through the Flask test client: who gets in, the session cookie, CSRF, CSP,
escaping, and each page's actions (the browser tests in test_console_browser.py drive the same pages)."""
import re
from datetime import timedelta

import jwt
import pytest
import requests

from allynet import clock as clock_module
from allynet.organizations import service as organizations_service
from tests.scaleout_support import SioClient, cluster, quiet_werkzeug, redis_prefix  # noqa: F401 (fixtures)

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
    assert response.status_code == 403
    assert "moderators, admins and organization dispatchers" in response.get_data(as_text=True)
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
    assert response.status_code == 403
    assert "moderators, admins and organization dispatchers only" in response.get_data(as_text=True)


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


# ---- live map data, socket tokens, live events --------------------------------------------------

AREA = {"type": "Polygon", "coordinates": [[[4.80, 45.74], [4.87, 45.74], [4.87, 45.79], [4.80, 45.79], [4.80, 45.74]]]}
OUTSIDE = {"lat": 48.8566, "lng": 2.3522}


def socket_token(client):
    response = client.post("/console/socket-token", headers={"X-CSRF-TOKEN": csrf_of(client)})
    assert response.status_code == 200 and response.get_json()["expires_in"] > 0
    return response.get_json()["token"]


def console_events(sio_client):
    return [event["args"][0] for event in sio_client.get_received() if event["name"] == "console:changed"]


@pytest.fixture
def dispatcher(client, make_user, admin):
    """The dispatcher of a verified pro organization whose service area is around HERE."""
    owner, dispatcher = make_user(display_name="Owner"), make_user(display_name="Dispatcher")
    org = client.post("/api/v1/organizations", headers=owner.headers,
                      json={"name": "Lyon Rescue", "kind": "volunteer_group", "service_area": AREA}).get_json()["data"]
    invitation = client.post(f"/api/v1/organizations/{org['id']}/invitations", headers=owner.headers)
    code = invitation.get_json()["data"]["code"]
    assert client.post("/api/v1/organizations/join", headers=dispatcher.headers, json={"code": code}).status_code == 200
    assert client.patch(f"/api/v1/organizations/{org['id']}/members/{dispatcher.id}", headers=owner.headers,
                        json={"role": "dispatcher"}).status_code == 200
    assert client.patch(f"/api/v1/organizations/{org['id']}", headers=admin.headers,
                        json={"verified": True}).status_code == 200
    # Pro through its subscription: the offline provider's invoice.paid, as the real provider's would.
    subscription = client.post(f"/api/v1/organizations/{org['id']}/subscription", headers=owner.headers)
    assert client.post("/api/v1/payments/offline/events", headers=admin.headers, json={
        "type": "invoice.paid", "data": {"object": {"subscription": subscription.get_json()["data"]["id"]}},
    }).status_code == 200
    dispatcher["organization_id"] = org["id"]
    return dispatcher


def raise_sos(client, user, location):
    response = client.post("/api/v1/emergencies", headers=user.headers, json={"type": "medical", "location": location})
    assert response.status_code == 201
    return response.get_json()["data"]["emergency"]["id"]


def test_map_data_is_geojson_of_open_sos_visible_reports_and_alerts(staff_client, make_user, admin):
    requester = make_user()
    open_id = raise_sos(staff_client, requester, HERE)
    closed_id = raise_sos(staff_client, make_user(), OUTSIDE)
    staff_client.post(f"/api/v1/emergencies/{closed_id}/cancel", headers=make_user().headers)
    staff_client.post(f"/api/v1/emergencies/{closed_id}/resolve", headers=admin.headers)
    hazard = staff_client.post("/api/v1/reports", headers=make_user().headers,
                               json={"type": "hazard", "location": HERE, "description": "Pothole"}).get_json()["data"]
    pending = new_camera(staff_client, make_user())
    response = staff_client.get("/console/map/data")
    assert response.status_code == 200 and response.mimetype == "application/json"
    data = response.get_json()
    assert {name: data[name]["type"] for name in data} == {name: "FeatureCollection" for name in
                                                          ("areas", "sos", "reports", "alerts")}
    assert [f["id"] for f in data["sos"]["features"]] == [open_id]
    sos = data["sos"]["features"][0]
    assert sos["geometry"] == {"type": "Point", "coordinates": [HERE["lng"], HERE["lat"]]}
    assert sos["properties"]["status"] == "active" and sos["properties"]["type"] == "medical"
    assert [f["id"] for f in data["reports"]["features"]] == [hazard["id"]]  # not the pending camera
    assert data["reports"]["features"][0]["properties"]["description"] == "Pothole"
    assert pending["id"] not in str(data) and data["areas"]["features"] == []


def test_the_map_page_draws_with_vendored_scripts_under_its_own_strict_csp(staff_client, app):
    page = staff_client.get("/console/map")
    html = page.get_data(as_text=True)
    for path in ("vendor/maplibre-gl/maplibre-gl.js", "vendor/maplibre-gl/maplibre-gl.css",
                 "vendor/socket.io/socket.io.min.js", "console-map.js", "console-live.js"):
        assert f'/console/static/{path}"' in html
        assert staff_client.get(f"/console/static/{path}").status_code == 200
    assert "<script>" not in html and "https://unpkg" not in html and 'data-tile-url=""' in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "worker-src blob:" in csp and "unsafe" not in csp
    assert "connect-src 'self';" in csp and "child-src" not in csp
    other = staff_client.get("/console/reports").headers["Content-Security-Policy"]
    assert "worker-src" not in other and "connect-src 'self';" in other
    app.config["CONSOLE_TILE_URL"] = "https://tiles.example.org/base/{z}/{x}/{y}.png"
    page = staff_client.get("/console/map")
    csp = page.headers["Content-Security-Policy"]
    assert "connect-src 'self' https://tiles.example.org;" in csp
    assert "img-src 'self' data: https://tiles.example.org;" in csp
    assert 'data-tile-url="https://tiles.example.org/base/{z}/{x}/{y}.png"' in page.get_data(as_text=True)


def test_the_socket_token_needs_the_session_and_its_csrf_value(client, staff_client, make_user):
    assert client.post("/console/socket-token").status_code == 303  # no session: the sign-in page
    assert staff_client.post("/console/socket-token").status_code == 403  # no CSRF value
    assert staff_client.post("/console/socket-token", headers={"X-CSRF-TOKEN": "forged"}).status_code == 403
    token = socket_token(staff_client)
    assert client.get("/api/v1/profile", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    other = client.application.test_client()
    other.set_cookie("allynet_console", token, path="/console")
    assert other.get("/console/reports").status_code == 303  # not a console session either


def test_a_console_socket_hears_console_changes_and_may_send_nothing(staff_client, socket_client, make_user):
    console = socket_client(token=socket_token(staff_client))
    plain = socket_client(make_user(role="moderator"))  # an API socket, even a moderator's, is no console
    assert console.is_connected() and plain.is_connected()
    report = new_camera(staff_client, make_user())
    assert console_events(console) == [{"layer": "reports", "id": report["id"], "change": "created"}]
    assert console_events(plain) == []
    ack = console.emit("party:create", {"name": "Sneaky"}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "unauthorized"
    staff_client.post(f"/console/reports/{report['id']}/moderate",
                      data={"action": "approve", "csrf_token": csrf_of(staff_client)})
    assert console_events(console) == [{"layer": "reports", "id": report["id"], "change": "updated"}]
    sos_id = raise_sos(staff_client, make_user(), HERE)
    assert console_events(console) == [{"layer": "sos", "id": sos_id, "change": "created"}]


def test_signing_out_ends_the_console_socket_and_its_token(staff_client, socket_client):
    token = socket_token(staff_client)
    console = socket_client(token=token)
    assert console.is_connected()
    staff_client.post("/console/logout", data={"csrf_token": csrf_of(staff_client)})
    assert not console.is_connected()  # ended (session:ended {reason: logout}, then disconnected)
    assert not socket_client(token=token).is_connected()


def test_a_dispatcher_sees_the_map_and_queue_of_the_area_only(app, dispatcher, make_user, socket_client):
    client = app.test_client()
    assert sign_in(client, dispatcher).status_code == 303
    for path in ("/console/users", "/console/alerts", "/console/audit", "/console/audit/export"):
        response = client.get(path)
        assert response.status_code == 403 and "only." in response.get_data(as_text=True)
    console = socket_client(token=socket_token(client))
    inside, outside = raise_sos(client, make_user(), HERE), raise_sos(client, make_user(), OUTSIDE)
    assert console_events(console) == [{"layer": "sos", "id": inside, "change": "created"}]
    data = client.get("/console/map/data").get_json()
    assert [f["id"] for f in data["sos"]["features"]] == [inside]
    assert [f["id"] for f in data["areas"]["features"]] == [dispatcher["organization_id"]]
    page = client.get("/console/map").get_data(as_text=True)
    assert f"sos-{inside}" in page and f"sos-{outside}" not in page and "Lyon Rescue" in page
    near = new_camera(client, make_user(), description="Camera near")
    far = client.post("/api/v1/reports", headers=make_user().headers,
                      json={"type": "speed_camera", "location": OUTSIDE, "description": "Camera far"})
    far = far.get_json()["data"]
    queue = client.get("/console/reports").get_data(as_text=True)
    assert "Camera near" in queue and "Camera far" not in queue and "Approve" not in queue
    assert ">Users<" not in queue and ">Live map<" in queue
    response = client.post(f"/console/reports/{near['id']}/moderate", data={"action": "approve",
                                                                            "csrf_token": csrf_of(client)})
    assert response.status_code == 403
    assert [e["id"] for e in console_events(console)] == [near["id"]]  # not the camera far away
    assert far["id"] not in client.get("/console/map/data").get_data(as_text=True)


def test_a_dispatcher_demoted_in_the_organization_loses_the_console(app, client, dispatcher, make_user,
                                                                     socket_client, db):
    console_client = app.test_client()
    sign_in(console_client, dispatcher)
    console = socket_client(token=socket_token(console_client))
    org = db.organizations.find_one({})
    owner = next(m["user_id"] for m in org["members"] if m["role"] == "owner")
    with app.app_context():
        organizations_service.change_role(db=db, organization_id=org["_id"], actor_id=owner,
                                          user_id=dispatcher["_id"], role="member")
    raise_sos(client, make_user(), HERE)
    assert console_events(console) == []  # out of console:org:<id> at once
    assert console_client.get("/console/map").status_code == 403
    assert console_client.post("/console/socket-token",
                               headers={"X-CSRF-TOKEN": "x"}).status_code == 403


def test_console_pages_hear_changes_made_on_another_process(cluster, make_user, moderator):
    """A console page's socket on server B hears an SOS raised and a camera filed on server A (Redis queue)."""
    a, b = cluster(2)
    browser = requests.Session()
    assert browser.post(f"{b.url}/console/login", data={"email": moderator["email"], "password": "password123"},
                        allow_redirects=False, timeout=10).status_code == 303
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(f"{b.url}/console/reports", timeout=10).text)
    token = browser.post(f"{b.url}/console/socket-token", headers={"X-CSRF-TOKEN": csrf.group(1)},
                         timeout=10).json()["token"]
    page = SioClient(b.url, token)
    api_socket = cluster.connect(b, moderator)  # the same moderator's app: not a console page
    try:
        headers = {"Authorization": f"Bearer {make_user()['access_token']}"}
        sos = requests.post(f"{a.url}/api/v1/emergencies", headers=headers, timeout=10,
                            json={"type": "medical", "location": HERE}).json()["data"]["emergency"]["id"]
        assert page.wait_for("console:changed", lambda d: d["id"] == sos) == {"layer": "sos", "id": sos,
                                                                             "change": "created"}
        report = requests.post(f"{a.url}/api/v1/reports", headers=headers, timeout=10,
                               json={"type": "speed_camera", "location": HERE}).json()["data"]["id"]
        page.wait_for("console:changed", lambda d: d["id"] == report)
        assert api_socket.received("console:changed") == []
    finally:
        page.close()


def test_the_socket_token_lives_console_socket_seconds_at_most_and_never_past_the_session(app, staff_client):
    app.config["CONSOLE_SOCKET_SECONDS"] = 30
    response = staff_client.post("/console/socket-token", headers={"X-CSRF-TOKEN": csrf_of(staff_client)})
    claims = jwt.decode(response.get_json()["token"], options={"verify_signature": False})
    assert response.get_json()["expires_in"] == 30 and claims["exp"] - claims["iat"] == 30
    app.config["CONSOLE_SOCKET_SECONDS"] = 7200  # longer than the session's hour
    response = staff_client.post("/console/socket-token", headers={"X-CSRF-TOKEN": csrf_of(staff_client)})
    session = jwt.decode(staff_client.get_cookie("allynet_console", path="/console").value,
                         options={"verify_signature": False})
    claims = jwt.decode(response.get_json()["token"], options={"verify_signature": False})
    assert claims["exp"] <= session["exp"] and claims["fam"] == session["fam"] and claims["console"] == "socket"
