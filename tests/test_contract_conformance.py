"""Contract conformance: the cross-cutting rules of /work/shared/API.md, checked for every endpoint.

Route tables come from `app.url_map`, so a new endpoint is checked as soon as it exists
(and must be classified here: public or role-restricted). Success shapes are checked on one
representative call per feature, walking every JSON body and socket payload for `_id`,
GeoJSON leaking out, and times without `Z`.
"""
import re

import pytest

from allynet import create_app
from tests.helpers import error_code, events_named

API = "/api/v1"
# Reachable without a token (the contract's auth section and Operations).
PUBLIC = {"auth.register", "auth.login", "ops.healthz", "ops.readyz", "ops.openapi", "ops.asyncapi", "static",
          "mapdata.get_tilejson", "mapdata.get_tile"}  # public map layers, cacheable by CDNs
# Not behind the bearer access token of every other endpoint: the refresh token.
REFRESH_ONLY = {"auth.refresh"}
# Stripe's webhook: no token, and a body trusted only through its Stripe-Signature, so every
# unsigned request is 400 bad_request before any field is read (tests/test_payments_webhooks.py).
SIGNED = {"payments.stripe_webhook"}
PUBLIC |= SIGNED
BODY_METHODS = {"POST", "PUT", "PATCH"}
MISSING_ID = "0" * 24
MALFORMED_IDS = ("zzzz", "0" * 23, "0" * 25, "g" * 24, "null")
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
PARIS = {"lat": 48.8566, "lng": 2.3522}
NEAR_PARIS = {"lat": 48.8570, "lng": 2.3530}




def _routes():
    """(method, rule, endpoint, query parameter names) of every REST endpoint, read from a throw-away app."""
    app = create_app("testing")

    def query_fields(endpoint):
        schema = getattr(app.view_functions[endpoint], "__apispec__", {}).get("query")
        return tuple(sorted(schema.fields)) if schema is not None else ()

    return sorted((method, rule.rule, rule.endpoint, query_fields(rule.endpoint))
                  for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"}
                  # the operator console's HTML pages (/console) are not REST: tests/test_console_pages.py
                  if rule.endpoint != "static" and not rule.endpoint.startswith("console."))


ROUTES = _routes()


def _params(routes):
    return [pytest.param(route, id=f"{route[0]} {route[1]}")
            for route in routes]


ID_ROUTES = _params(route for route in ROUTES if "<oid:" in route[1])
AUTHED_ROUTES = _params(route for route in ROUTES if route[2] not in PUBLIC)
BODY_ROUTES = _params(route for route in ROUTES if route[0] in BODY_METHODS and route[2] not in REFRESH_ONLY | SIGNED)
QUERY_ROUTES = _params(route for route in ROUTES if route[0] == "GET" and route[3])
CURSOR_ROUTES = _params(route for route in ROUTES if "cursor" in route[3])


def _fill(rule, value=MISSING_ID):
    return re.sub(r"<oid:\w+>", value, rule)


@pytest.fixture
def app(app_factory):
    """No rate limits here: these tests send many requests on purpose."""
    return app_factory(RATELIMIT_ENABLED=False)


@pytest.fixture
def admin(make_user):
    return make_user(role="admin", location=(PARIS["lat"], PARIS["lng"]))


@pytest.fixture(scope="module")
def shared(mongo_session):
    """(client, admin headers) of one app for the table tests: they only send refused requests."""
    from allynet.auth import service as auth_service
    from allynet.users import service as users_service

    overrides = {"RATELIMIT_ENABLED": False}
    if mongo_session is not None:
        overrides.update(MONGO_CLIENT=mongo_session[0], MONGO_DB=mongo_session[1])
    app = create_app("testing", **overrides)
    with app.app_context():
        db = app.extensions["allynet_db"]
        user = users_service.create_user(db=db, email="conformance-admin@example.com", password="password123",
                                         display_name="Admin", role="admin", is_helper=False, verified=False,
                                         location=None)
        token = auth_service.issue_tokens(user)["access_token"]
    yield app.test_client(), {"Authorization": f"Bearer {token}"}, str(user["_id"])
    if mongo_session is not None:
        db.users.delete_many({"_id": user["_id"]})


def assert_error(response, status, code):
    """The contract's error shape with this status and code."""
    body = response.get_json()
    assert response.status_code == status, (response.status_code, body)
    assert response.mimetype == "application/json"
    assert body["success"] is False and set(body) == {"success", "error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) <= {"code", "message", "details"}


def walk_wire(value, path="$"):
    """Every contract rule on an outgoing JSON value: no `_id`, times end in Z, locations are {lat, lng}."""
    problems = []
    if isinstance(value, dict):
        if "_id" in value:
            problems.append(f"{path}: has _id")
        if value.get("type") == "Point" and "coordinates" in value:
            problems.append(f"{path}: GeoJSON point instead of {{lat, lng}}")
        for key, child in value.items():
            if key in ("location", "last_location") and child is not None:
                if not (isinstance(child, dict) and set(child) == {"lat", "lng"}):
                    problems.append(f"{path}.{key}: not {{lat, lng}}: {child!r}")
            problems.extend(walk_wire(child, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            problems.extend(walk_wire(child, f"{path}[{index}]"))
    elif isinstance(value, str) and ISO_TIME.match(value) and not value.endswith("Z"):
        problems.append(f"{path}: time without Z: {value}")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        problems.append(f"{path}: not a JSON value: {value!r}")  # e.g. a datetime a test client let through
    return problems


def assert_ok(response, status=200, resource=True):
    """The success envelope; `resource`: data is one object with an `id`."""
    body = response.get_json()
    assert response.status_code == status, (response.status_code, body)
    assert response.mimetype == "application/json"
    assert body["success"] is True and "data" in body, body
    assert set(body) <= {"success", "data", "message", "meta"}
    assert walk_wire(body) == []
    if resource:
        assert isinstance(body["data"], dict) and isinstance(body["data"].get("id"), str), body
        assert re.fullmatch(r"[0-9a-f]{24}", body["data"]["id"])
    return body["data"]


def assert_list(response):
    """A list envelope: data is an array, meta holds exactly next_cursor and count."""
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["success"] is True and isinstance(body["data"], list), body
    assert set(body["meta"]) == {"next_cursor", "count"}, body["meta"]
    assert body["meta"]["count"] == len(body["data"])
    assert walk_wire(body) == []
    for item in body["data"]:
        assert "id" in item, item
    return body["data"]


# ---- every endpoint --------------------------------------------------------------------------

def test_every_endpoint_is_classified_and_documented(app, client):
    """New endpoints show up here: each is public, refresh-only, or needs an access token."""
    spec = client.get(f"{API}/openapi.json").get_json()
    for method, rule, endpoint, _ in ROUTES:
        if endpoint in PUBLIC - {"auth.register", "auth.login"}:
            continue
        path = re.sub(r"<oid:(\w+)>", r"{\1}", rule)
        assert method.lower() in spec["paths"].get(path, {}), f"{method} {rule} not in openapi.json"


@pytest.mark.parametrize("route", ID_ROUTES, )
@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
def test_malformed_id_is_404_for_every_method(shared, route, bad_id):
    client, headers, _ = shared
    method, rule = route[:2]
    response = client.open(_fill(rule, bad_id), method=method, headers=headers, json={})
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("route", ID_ROUTES, )
def test_unknown_id_is_4xx_never_500(shared, route):
    client, headers, _ = shared
    method, rule = route[:2]
    response = client.open(_fill(rule), method=method, headers=headers)
    assert 400 <= response.status_code < 500, response.get_json()
    assert response.get_json()["success"] is False


@pytest.mark.parametrize("route", AUTHED_ROUTES, )
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic abc", "Bearer "])
def test_missing_or_bad_token_is_401(shared, route, authorization):
    client = shared[0]
    method, rule = route[:2]
    headers = {"Authorization": authorization} if authorization else {}
    response = client.open(_fill(rule), method=method, headers=headers, json={"bogus": 1})
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize("route", BODY_ROUTES, )
def test_unknown_body_field_is_400_validation_error(shared, route):
    client, headers, _ = shared
    method, rule = route[:2]
    response = client.open(_fill(rule), method=method, headers=headers, json={"bogus_field": 1})
    assert_error(response, 400, "validation_error")
    assert "bogus_field" in response.get_json()["error"]["details"]


@pytest.mark.parametrize("path,method,body,field", [
    ("/profile/location", "PUT", {"lat": 1, "lng": 2, "alt": 3}, "alt"),
    ("/profile", "PATCH", {"preferences": {"theme": "dark"}}, "preferences"),
    ("/emergencies", "POST", {"type": "fire", "location": {"lat": 1, "lng": 2, "alt": 3}}, "location"),
    ("/help-requests", "POST", {"title": "abc", "description": "d", "category": "pets", "location": PARIS,
                                "budget": {"amount": 1, "currency": "EUR", "tip": 1}}, "budget"),
    ("/skills", "POST", {"name": "ab", "category": "pets", "location": PARIS,
                         "rate": {"amount": 1, "currency": "EUR", "unit": "hour", "x": 1}}, "rate"),
    ("/routes", "POST", {"name": "r", "waypoints": [PARIS, {"lat": 1, "lng": 2, "z": 0}]}, "waypoints"),
    ("/reports", "POST", {"type": "police", "location": {"lat": 1, "lng": 2, "geometry": {}}}, "location"),
])
def test_unknown_nested_fields_are_400(shared, path, method, body, field):
    client, headers, _ = shared
    response = client.open(API + path, method=method, headers=headers, json=body)
    assert_error(response, 400, "validation_error")
    assert field in response.get_json()["error"]["details"]


def test_too_deep_and_too_large_bodies(shared, app):
    client, headers, _ = shared
    deep = {}
    cursor = deep
    for _ in range(100):
        cursor["a"] = {}
        cursor = cursor["a"]
    assert_error(client.put(f"{API}/profile", headers=headers, json={"preferences": deep}), 400, "bad_request")
    big = '{"display_name": "' + "x" * (client.application.config["MAX_CONTENT_LENGTH"] + 1) + '"}'
    assert_error(client.put(f"{API}/profile", headers=headers, data=big, content_type="application/json"),
                 413, "payload_too_large")


@pytest.mark.parametrize("route", BODY_ROUTES, )
@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "42", "null", "{not json", "{\"a\": 1"])
def test_non_object_or_non_json_body_is_400_bad_request(shared, route, raw):
    client, headers, _ = shared
    method, rule = route[:2]
    response = client.open(_fill(rule), method=method, headers=headers, data=raw,
                           content_type="application/json")
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_non_json_content_type_is_400_bad_request(shared, route):
    client, headers, _ = shared
    method, rule = route[:2]
    response = client.open(_fill(rule), method=method, headers=headers, data="a=1",
                           content_type="application/x-www-form-urlencoded")
    assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("route", QUERY_ROUTES)
def test_unknown_query_parameter_is_400_validation_error(shared, route):
    """Every endpoint that takes query parameters refuses unknown ones."""
    client, headers, _ = shared
    response = client.get(f"{_fill(route[1])}?bogus_param=1", headers=headers)
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize("route", CURSOR_ROUTES)
def test_forged_cursor_is_400_validation_error(shared, route):
    client, headers, admin_id = shared
    path = route[1].replace("<oid:user_id>", admin_id)
    if "<oid:party_id>" in path:  # the caller must be a member to reach the cursor
        party = client.post(f"{API}/parties", headers=headers, json={"name": "cursor"}).get_json()["data"]
        path = path.replace("<oid:party_id>", party["id"])
    # The nearby list needs `near` without a profile location.
    near = "&near=48.85,2.35" if route[2] in ("help_requests.list_help_requests", "businesses.list_businesses") else ""
    response = client.get(f"{_fill(path)}?cursor=not-a-cursor{near}", headers=headers)
    assert_error(response, 400, "validation_error")
    assert "cursor" in response.get_json()["error"]["details"]


def test_unknown_paths_and_methods_answer_the_error_shape(client, admin):
    assert_error(client.get(f"{API}/nope", headers=admin.headers), 404, "not_found")
    response = client.delete(f"{API}/emergencies/{MISSING_ID}", headers=admin.headers)
    assert response.status_code == 405 and response.get_json()["success"] is False


# ---- bodies actions without parameters still refuse ---------------------------------------------

def _help_request(client, owner, helper):
    created = assert_ok(client.post(f"{API}/help-requests", headers=owner.headers, json={
        "title": "Need a jump start", "description": "Flat battery", "category": "repairs",
        "location": PARIS}), 201)
    return created["id"]


@pytest.mark.parametrize("action", ["complete", "cancel"])
@pytest.mark.parametrize("body,code", [({"bogus": 1}, "validation_error"), ([1], "bad_request")])
def test_help_request_actions_refuse_unknown_fields_and_change_nothing(client, make_user, action, body, code):
    owner, helper = make_user(), make_user()
    request_id = _help_request(client, owner, helper)
    response = client.post(f"{API}/help-requests/{request_id}/{action}", headers=owner.headers, json=body)
    assert_error(response, 400, code)
    assert client.get(f"{API}/help-requests/{request_id}", headers=owner.headers).get_json()["data"]["status"] == "open"
    # The action itself still works with no body or an empty object.
    assert client.post(f"{API}/help-requests/{request_id}/cancel", headers=owner.headers).status_code == 200


def test_refresh_refuses_unknown_body_fields(client, make_user):
    user = make_user()
    headers = {"Authorization": f"Bearer {user['refresh_token']}"}
    assert_error(client.post(f"{API}/auth/refresh", headers=headers, json={"bogus": 1}), 400, "validation_error")
    assert_error(client.post(f"{API}/auth/refresh", headers=headers, json=[1]), 400, "bad_request")
    # Refused before the rotation: the refresh token still works.
    assert set(assert_ok(client.post(f"{API}/auth/refresh", headers=headers), resource=False)) == {
        "access_token", "refresh_token"}


@pytest.mark.parametrize("action", ["leave", "end"])
def test_party_actions_refuse_unknown_fields(client, make_user, action):
    leader = make_user()
    party = assert_ok(client.post(f"{API}/parties", headers=leader.headers, json={"name": "ride"}), 201)
    response = client.post(f"{API}/parties/{party['id']}/{action}", headers=leader.headers, json={"bogus": 1})
    assert_error(response, 400, "validation_error")


# ---- booleans and numbers --------------------------------------------------------------------

@pytest.mark.parametrize("path,method,field_body", [
    ("/profile", "PUT", {"is_helper": "yes"}),
    ("/profile", "PATCH", {"is_helper": 1}),
    ("/profile", "PATCH", {"preferences": {"notifications": "on"}}),
    ("/profile", "PATCH", {"preferences": {"share_location": 0}}),
    ("/users/{admin}", "PATCH", {"verified": "true"}),
    ("/users/{admin}", "PATCH", {"verified": 1}),
])
def test_booleans_accept_only_json_true_false(client, admin, path, method, field_body):
    response = client.open(API + path.format(admin=admin.id), method=method, headers=admin.headers,
                           json=field_body)
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize("path,raw", [
    ("/profile/location", '{"lat": NaN, "lng": 2}'),
    ("/profile/location", '{"lat": 1, "lng": Infinity}'),
    ("/profile/location", '{"lat": true, "lng": 2}'),
    ("/emergencies", '{"type": "fire", "location": {"lat": 48.8, "lng": 2.3}, "radius_m": Infinity}'),
    ("/emergencies", '{"type": "fire", "location": {"lat": NaN, "lng": 2.3}}'),
    ("/help-requests", '{"title": "abc", "description": "d", "category": "pets", '
                       '"location": {"lat": 1, "lng": 2}, "budget": {"amount": NaN, "currency": "EUR"}}'),
    ("/reports", '{"type": "police", "location": {"lat": 1, "lng": -Infinity}}'),
    ("/skills", '{"name": "Tyres", "category": "repairs", "location": {"lat": 1, "lng": 2}, '
                '"rate": {"amount": Infinity, "currency": "EUR", "unit": "hour"}}'),
])
def test_non_finite_numbers_are_400(client, admin, path, raw):
    method = "PUT" if path == "/profile/location" else "POST"
    response = client.open(API + path, method=method, headers=admin.headers, data=raw,
                           content_type="application/json")
    assert_error(response, 400, "validation_error")


@pytest.mark.parametrize("path", [
    "/emergencies?near=48.85,2.35&radius_m={r}",
    "/help-requests?near=48.85,2.35&radius_m={r}",
    "/skills?near=48.85,2.35&radius_m={r}",
    "/reports?near=48.85,2.35&radius_m={r}",
    "/alerts?lat=48.85&lng=2.35&radius_m={r}",
])
@pytest.mark.parametrize("radius", ["0", "-5", "99", "nan", "inf", "1e12", "abc"])
def test_radius_m_out_of_range_is_400(client, make_user, path, radius):
    helper = make_user(is_helper=True, verified=True, location=(48.85, 2.35))
    response = client.get(API + path.format(r=radius), headers=helper.headers)
    assert_error(response, 400, "validation_error")
    assert "radius_m" in response.get_json()["error"]["details"]


def test_sos_radius_m_range(client, make_user):
    user = make_user()
    for radius in (99, 20001, True):
        response = client.post(f"{API}/emergencies", headers=user.headers,
                               json={"type": "fire", "location": PARIS, "radius_m": radius})
        assert_error(response, 400, "validation_error")


# ---- roles -----------------------------------------------------------------------------------

@pytest.mark.parametrize("role,method,path,body", [
    ("user", "PATCH", "/users/{me}", {"verified": True}),
    ("moderator", "PATCH", "/users/{me}", {"role": "admin"}),
    ("user", "POST", f"/reports/{MISSING_ID}/moderate", {"action": "approve"}),
    ("user", "POST", "/alerts", {"type": "hazard", "location": PARIS, "description": "x",
                                 "expires_at": "2099-01-01T00:00:00Z"}),
    ("user", "GET", "/reports?status=flagged", None),
    ("user", "GET", "/audit-log", None),
    ("moderator", "GET", "/audit-log/export", None),
])
def test_role_checks_are_403_forbidden(client, make_user, role, method, path, body):
    user = make_user(role=role)
    response = client.open(API + path.format(me=user.id), method=method, headers=user.headers, json=body)
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("field,value", [("role", "admin"), ("verified", True), ("trust_score", 99),
                                         ("email", "x@example.com"), ("password_hash", "x")])
def test_profile_refuses_protected_fields(client, make_user, field, value):
    user = make_user()
    response = client.patch(f"{API}/profile", headers=user.headers, json={"display_name": "X", field: value})
    assert_error(response, 400, "validation_error")
    assert field in response.get_json()["error"]["details"]
    profile = assert_ok(client.get(f"{API}/profile", headers=user.headers))
    assert profile["display_name"] != "X" and profile["role"] == "user"


# ---- success shapes, one representative flow per feature --------------------------------------

def test_auth_and_users_shapes(client, make_user):
    response = client.post(f"{API}/auth/register", json={"email": "New@Example.com", "password": "password123",
                                                         "display_name": "New", "vehicle_type": "car"})
    body = assert_ok(response, 201, resource=False)
    assert set(body) == {"user", "access_token", "refresh_token"} and "password_hash" not in body["user"]
    assert body["user"]["email"] == "new@example.com" and "id" in body["user"]
    login = assert_ok(client.post(f"{API}/auth/login", json={"email": "new@example.com",
                                                             "password": "password123"}), resource=False)
    assert set(login) == {"user", "access_token", "refresh_token"}
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    assert_ok(client.put(f"{API}/profile/location", headers=headers, json={**PARIS, "accuracy_m": 5}))
    profile = assert_ok(client.put(f"{API}/profile", headers=headers, json={"is_helper": True}))
    assert profile["location"] == PARIS and profile["location_updated_at"].endswith("Z")
    other = make_user()
    public = assert_ok(client.get(f"{API}/users/{profile['id']}", headers=other.headers))
    assert set(public) == {"id", "display_name", "vehicle_type", "is_helper", "verified", "trust_score"}
    assert client.post(f"{API}/auth/logout", headers=headers,
                       json={"refresh_token": login["refresh_token"]}).status_code == 200


def test_emergency_shapes_http_and_sockets(client, make_user, socket_client):
    owner = make_user(location=(PARIS["lat"], PARIS["lng"]))
    helper = make_user(is_helper=True, verified=True, location=(NEAR_PARIS["lat"], NEAR_PARIS["lng"]))
    helper_sio, owner_sio = socket_client(helper), socket_client(owner)
    created = assert_ok(client.post(f"{API}/emergencies", headers=owner.headers,
                                    json={"type": "medical", "location": PARIS}), 201, resource=False)
    assert set(created) == {"emergency", "notified_helpers"} and created["notified_helpers"] == 1
    emergency_id = created["emergency"]["id"]
    alerts = events_named(helper_sio, "emergency.created")
    assert len(alerts) == 1 and walk_wire(alerts) == []
    assert alerts[0]["id"] == emergency_id and isinstance(alerts[0]["distance_m"], (int, float))

    stranger = make_user()
    assert_error(client.get(f"{API}/emergencies/{emergency_id}", headers=stranger.headers), 404, "not_found")
    ack = socket_client(stranger).emit("emergency:join", {"emergency_id": emergency_id}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"  # the room is the owner's and responders'
    assert_error(client.get(f"{API}/emergencies/{emergency_id}/messages", headers=stranger.headers), 404,
                 "not_found")
    assert_ok(client.get(f"{API}/emergencies/{emergency_id}", headers=helper.headers))
    ack = helper_sio.emit("emergency:join", {"emergency_id": emergency_id}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"  # alerted, not responding yet
    nearby = assert_list(client.get(f"{API}/emergencies?near=48.857,2.353&radius_m=1000", headers=helper.headers))
    assert nearby[0]["id"] == emergency_id and "distance_m" in nearby[0]
    responded = assert_ok(client.post(f"{API}/emergencies/{emergency_id}/respond", headers=helper.headers,
                                      json={"eta_minutes": 4}))
    assert responded["status"] == "responding" and responded["responses"][0]["helper_id"] == helper.id
    joined = events_named(owner_sio, "helper.joined")
    assert joined == [{"emergency_id": emergency_id, "helper_id": helper.id, "eta_minutes": 4}]
    ack = owner_sio.emit("emergency:message", {"emergency_id": emergency_id, "text": "thanks"}, callback=True)
    assert ack["ok"] is True and walk_wire(ack) == []
    assert events_named(helper_sio, "emergency:message") == [ack["message"]]  # joined the room by responding
    sent = events_named(owner_sio, "emergency:message")
    ack = helper_sio.emit("emergency:join", {"emergency_id": emergency_id}, callback=True)
    assert ack["ok"] is True and ack["messages"] == sent and sent[0]["text"] == "thanks"
    assert walk_wire(ack) == []

    resolved = assert_ok(client.post(f"{API}/emergencies/{emergency_id}/resolve", headers=owner.headers))
    assert resolved["status"] == "resolved"
    assert [entry["status"] for entry in resolved["timeline"]][-1] == "resolved"
    received = helper_sio.get_received()
    payloads = [event["args"][0] for event in received]
    assert walk_wire(payloads) == []
    assert {"emergency_id": emergency_id, "status": "resolved"} in [
        p for e, p in zip(received, payloads) if e["name"] == "emergency.status_changed"]
    assert "emergency.resolved" in [event["name"] for event in received]
    mine = assert_list(client.get(f"{API}/emergencies/mine", headers=owner.headers))
    assert [item["id"] for item in mine] == [emergency_id]
    assert_error(client.post(f"{API}/emergencies/{emergency_id}/cancel", headers=owner.headers),
                 409, "invalid_transition")


def test_help_request_and_skill_shapes(client, make_user):
    owner = make_user(location=(PARIS["lat"], PARIS["lng"]))
    helper = make_user(location=(NEAR_PARIS["lat"], NEAR_PARIS["lng"]))
    request_id = _help_request(client, owner, helper)
    listed = assert_list(client.get(f"{API}/help-requests?near=48.857,2.353&radius_m=1000", headers=helper.headers))
    assert listed[0]["id"] == request_id and isinstance(listed[0]["distance_m"], (int, float))
    offer = assert_ok(client.post(f"{API}/help-requests/{request_id}/offers", headers=helper.headers,
                                  json={"message": "On my way", "price": {"amount": 10, "currency": "eur"}}), 201)
    accepted = assert_ok(client.post(f"{API}/help-requests/{request_id}/accept", headers=owner.headers,
                                     json={"offer_id": offer["id"]}))
    assert accepted["status"] == "assigned" and accepted["payment"]["amount"] == 1000
    # a priced offer is paid: the requester confirms the payment before completing
    assert_error(client.post(f"{API}/help-requests/{request_id}/complete", headers=owner.headers),
                 409, "payment_not_secured")
    payment_id = accepted["payment"]["id"]
    assert assert_ok(client.post(f"{API}/payments/{payment_id}/confirm", headers=owner.headers,
                                 json={"payment_method": "pm_card_visa"}))["status"] == "requires_capture"
    assert assert_ok(client.post(f"{API}/help-requests/{request_id}/complete", headers=owner.headers),
                     )["status"] == "completed"
    assert assert_ok(client.get(f"{API}/payments/{payment_id}", headers=helper.headers))["status"] == "succeeded"
    assert_list(client.get(f"{API}/payments", headers=helper.headers))

    skill = assert_ok(client.post(f"{API}/skills", headers=helper.headers, json={
        "name": "Tyre change", "category": "repairs", "rate": {"amount": 20, "currency": "EUR", "unit": "hour"}}),
        201)
    assert skill["location"] == NEAR_PARIS
    found = assert_list(client.get(f"{API}/skills?near=48.857,2.353&radius_m=1000", headers=owner.headers))
    assert found[0]["id"] == skill["id"] and "distance_m" in found[0]
    assert_list(client.get(f"{API}/users/{helper.id}/skills", headers=owner.headers))
    assert_ok(client.patch(f"{API}/skills/{skill['id']}", headers=helper.headers, json={"description": "fast"}))
    assert_error(client.delete(f"{API}/skills/{skill['id']}", headers=owner.headers), 403, "forbidden")


def _tomorrow():
    from datetime import timedelta

    from allynet import clock
    from allynet.fields import iso

    return iso((clock.now() + timedelta(days=1)).replace(microsecond=0))


def test_report_and_alert_shapes(client, make_user):
    reporter, voter = make_user(), make_user()
    moderator = make_user(role="moderator")
    report = assert_ok(client.post(f"{API}/reports", headers=reporter.headers,
                                   json={"type": "hazard", "location": PARIS}), 201)
    voted = assert_ok(client.post(f"{API}/reports/{report['id']}/vote", headers=voter.headers, json={"value": "up"}))
    assert voted["upvotes"] == 1 and voted["downvotes"] == 0
    assert_list(client.get(f"{API}/reports?near=48.857,2.353&radius_m=1000", headers=voter.headers))
    moderated = assert_ok(client.post(f"{API}/reports/{report['id']}/moderate", headers=moderator.headers,
                                      json={"action": "approve"}))
    assert moderated["id"] == report["id"]
    alert = assert_ok(client.post(f"{API}/alerts", headers=moderator.headers, json={
        "type": "weather", "location": NEAR_PARIS, "description": "Storm", "expires_at": _tomorrow()}), 201)
    feed = assert_list(client.get(f"{API}/alerts?lat=48.857&lng=2.353&radius_m=1000", headers=voter.headers))
    assert {item["id"] for item in feed} == {report["id"], alert["id"]}
    assert all(isinstance(item["distance_m"], (int, float)) for item in feed)
    geo = client.get(f"{API}/alerts?lat=48.857&lng=2.353&radius_m=1000&format=geojson", headers=voter.headers)
    assert geo.status_code == 200
    collection = geo.get_json()
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 2
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        assert "_id" not in feature["properties"] and feature["properties"]["expires_at"].endswith("Z")
    by_id = {feature["id"]: feature["geometry"]["coordinates"] for feature in collection["features"]}
    assert by_id[alert["id"]] == [NEAR_PARIS["lng"], NEAR_PARIS["lat"]]  # GeoJSON order: [lng, lat]


def test_party_and_route_shapes_http_and_sockets(client, make_user, socket_client):
    leader, rider, outsider = make_user(), make_user(), make_user()
    party = assert_ok(client.post(f"{API}/parties", headers=leader.headers, json={"name": "ride"}), 201)
    assert re.fullmatch(r"[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{8}", party["invite_code"])
    joined = assert_ok(client.post(f"{API}/parties/join", headers=rider.headers,
                                   json={"invite_code": party["invite_code"]}))
    assert joined["id"] == party["id"]
    leader_sio, rider_sio, outsider_sio = (socket_client(u) for u in (leader, rider, outsider))
    for sio in (leader_sio, rider_sio):
        ack = sio.emit("party:join", {"party_id": party["id"]}, callback=True)
        assert ack["ok"] is True and walk_wire(ack) == []
    for sio in (leader_sio, rider_sio, outsider_sio):
        sio.get_received()
    ack = rider_sio.emit("party:update", {"party_id": party["id"], "location": PARIS, "speed_kmh": 30,
                                          "status": "riding"}, callback=True)
    assert ack["ok"] is True
    updates = events_named(leader_sio, "party:update")
    assert len(updates) == 1 and updates[0]["user_id"] == rider.id and updates[0]["ts"].endswith("Z")
    assert updates[0]["speed_kmh"] == 30 and walk_wire(updates) == []
    assert events_named(rider_sio, "party:update") == [] and outsider_sio.get_received() == []
    ack = leader_sio.emit("party:message", {"party_id": party["id"], "text": "regroup"}, callback=True)
    assert ack["ok"] is True
    message = events_named(rider_sio, "party:message")[0]
    assert {"id", "user_id", "text", "ts"} <= set(message) and message["ts"].endswith("Z")
    state = assert_ok(client.get(f"{API}/parties/{party['id']}", headers=leader.headers))
    for member in state["members"]:
        assert {"last_location", "last_speed_kmh", "status", "online"} <= set(member)
    assert_list(client.get(f"{API}/parties/{party['id']}/history", headers=leader.headers))
    assert_error(client.get(f"{API}/parties/{party['id']}", headers=outsider.headers), 404, "not_found")
    ack = rider_sio.emit("party:leave", {"party_id": party["id"]}, callback=True)
    presence = events_named(leader_sio, "party:presence")
    assert ack["ok"] is True and presence[-1] == {"party_id": party["id"], "online": [leader.id]}

    route = assert_ok(client.post(f"{API}/routes", headers=leader.headers,
                                  json={"name": "loop", "waypoints": [PARIS, NEAR_PARIS]}), 201)
    assert route["waypoints"] == [PARIS, NEAR_PARIS]
    assert_list(client.get(f"{API}/routes", headers=leader.headers))
    assert_ok(client.delete(f"{API}/routes/{route['id']}", headers=leader.headers))


# ---- sockets: every client event refuses bad payloads through its ack ----------------------------

CLIENT_EVENTS = ["emergency:join", "emergency:message", "party:create", "party:join", "party:leave",
                 "party:update", "party:message", "party:alert"]


@pytest.mark.parametrize("event", CLIENT_EVENTS)
@pytest.mark.parametrize("payload", [None, [1], "text", 5, {}, {"bogus": 1}])
def test_socket_events_refuse_bad_payloads_through_the_ack(make_user, socket_client, event, payload):
    sio = socket_client(make_user())
    ack = sio.emit(event, payload, callback=True)
    assert ack["ok"] is False and set(ack) == {"ok", "error"}, ack
    assert ack["error"]["code"] in ("bad_request", "validation_error") and ack["error"]["message"]
    assert sio.is_connected()
    assert sio.emit("party:create", {"name": "still here"}, callback=True)["ok"] is True


@pytest.mark.parametrize("event,payload", [
    ("emergency:join", {"emergency_id": "zzzz"}),
    ("emergency:join", {"emergency_id": MISSING_ID}),
    ("emergency:message", {"emergency_id": MISSING_ID, "text": "hi"}),
    ("party:leave", {"party_id": MISSING_ID}),
    ("party:message", {"party_id": MISSING_ID, "text": "x" * 1001}),
    ("party:message", {"party_id": MISSING_ID, "text": ""}),
    ("party:update", {"party_id": MISSING_ID, "location": PARIS, "status": "flying"}),
    ("party:update", {"party_id": MISSING_ID, "location": PARIS, "speed_kmh": True}),
])
def test_socket_refusals_have_the_error_shape(make_user, socket_client, event, payload):
    ack = socket_client(make_user()).emit(event, payload, callback=True)
    assert ack["ok"] is False and isinstance(ack["error"]["code"], str) and ack["error"]["message"]


@pytest.mark.parametrize("event,payload", [
    ("party:create", {"name": "ride", "bogus": 1}),
    ("party:join", {"party_id": MISSING_ID, "bogus": 1}),
    ("party:leave", {"party_id": MISSING_ID, "bogus": 1}),
    ("party:update", {"party_id": MISSING_ID, "location": PARIS, "bogus": 1}),
    ("party:update", {"party_id": MISSING_ID, "location": {**PARIS, "alt": 1}}),
    ("party:message", {"party_id": MISSING_ID, "text": "hi", "bogus": 1}),
    ("party:alert", {"party_id": MISSING_ID, "type": "police", "location": PARIS, "bogus": 1}),
    ("emergency:join", {"emergency_id": MISSING_ID, "bogus": 1}),
    ("emergency:message", {"emergency_id": MISSING_ID, "text": "hi", "bogus": 1}),
])
def test_socket_unknown_fields_are_validation_errors(make_user, socket_client, event, payload):
    ack = socket_client(make_user()).emit(event, payload, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "validation_error", ack


def test_socket_connection_needs_a_valid_token(app, make_user, socket_client):
    assert not socket_client(token="garbage").is_connected()
    assert not socket_client().is_connected()
    user = make_user()
    assert not socket_client(token=user["refresh_token"]).is_connected()
    assert socket_client(user).is_connected()
    # The query-string form of the token works too.
    assert socket_client(query_string=f"token={user['access_token']}").is_connected()
    assert not socket_client(query_string="token=garbage").is_connected()


def test_error_helper_matches(client):
    assert error_code(client.get(f"{API}/profile")) == "unauthorized"


# ---- numbers and vocabularies the contract names ------------------------------------------------

def test_contract_defaults_and_vocabularies():
    from datetime import timedelta

    import config
    from allynet.emergencies import schemas as emergency_schemas
    from allynet.emergencies import service as emergency_service
    from allynet.parties import schemas as party_schemas
    from allynet.reports import schemas as report_schemas
    from allynet.reports import service as report_service
    from allynet.users import schemas as user_schemas

    assert config.Config.JWT_ACCESS_TOKEN_EXPIRES == timedelta(minutes=15)
    assert config.Config.JWT_REFRESH_TOKEN_EXPIRES == timedelta(days=30)
    assert (config.Config.ESCALATION_SECONDS, config.Config.LEFT_BEHIND_M, config.Config.TRAIL_RETENTION_DAYS,
            config.Config.PARTY_STOPPED_ALERT_SECONDS) == (60, 2000, 30, 300)
    assert (emergency_service.DEFAULT_RADIUS_M, emergency_service.MAX_RADIUS_M, emergency_service.MAX_EXTRA_WAVES,
            emergency_service.MAX_HELPERS_PER_WAVE) == (5000, 20000, 3, 50)
    assert set(emergency_schemas.EMERGENCY_TYPES) == {"medical", "fire", "crime", "accident", "breakdown", "other"}
    assert set(report_schemas.REPORT_TYPES) == {"speed_camera", "police", "hazard", "accident", "road_closure",
                                                "traffic", "weather"}
    assert set(report_schemas.MODERATION_ACTIONS) == {"approve", "reject", "hide"}
    assert {kind: lifetime.total_seconds() / 3600 for kind, lifetime in report_service.LIFETIMES.items()
            if lifetime is not None} == {"police": 2, "accident": 3, "traffic": 1, "weather": 6, "hazard": 24,
                                         "road_closure": 24}
    assert report_service.LIFETIMES.get("speed_camera") is None  # approved cameras stay
    assert set(party_schemas.STATUSES) == {"riding", "stopped", "paused", "sos"}
    assert party_schemas.INVITE_CODE_LENGTH == 8 and not set("01OIL") & set(party_schemas.INVITE_ALPHABET)
    assert set(user_schemas.ROLES) == {"user", "moderator", "admin"}
