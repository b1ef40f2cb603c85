"""Inputs an outside probe turned into 500s or stored: each is now a 4xx (or an ack error) and stores nothing."""
import json

import pytest
from pymongo.errors import WriteError

from tests.helpers import emit_raw

API = "/api/v1"
HERE = {"lat": 48.137, "lng": 11.575}
SURROGATE = "\ud800"  # serialised by the stdlib as the JSON escape "\ud800", a lone surrogate


def send(client, method, path, body, headers=None):
    """A JSON body as the stdlib writes it (lone surrogates become `\\ud800` escapes)."""
    return getattr(client, method)(f"{API}{path}", data=json.dumps(body), content_type="application/json",
                                   headers=headers or {})


def counts(db):
    return {name: db[name].count_documents({}) for name in db.list_collection_names()}


def assert_refused(response, field, code="validation_error"):
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False and body["error"]["code"] == code
    if field is not None:
        assert field in body["error"]["details"], body["error"]["details"]


def assert_ack_refused(ack, field, code="validation_error"):
    assert ack["ok"] is False and ack["error"]["code"] == code, ack
    if field is not None:
        assert field in ack["error"]["details"], ack


@pytest.fixture
def user(make_user):
    return make_user(location=(HERE["lat"], HERE["lng"]))


# ---- lone surrogates ---------------------------------------------------------------------------

TEXT_FIELD_BODIES = [
    ("post", "/reports", {"type": "police", "location": HERE, "description": SURROGATE}, "description"),
    ("post", "/auth/register", {"email": "new@example.com", "password": "password123",
                                "display_name": SURROGATE}, "display_name"),
    ("patch", "/profile", {"display_name": SURROGATE}, "display_name"),
    ("post", "/help-requests", {"title": "A lift", "description": SURROGATE, "category": "transport",
                                "location": HERE}, "description"),
    ("post", "/skills", {"name": "Welding", "category": "repairs", "description": SURROGATE}, "description"),
    ("post", "/parties", {"name": SURROGATE}, "name"),
    ("post", "/routes", {"name": SURROGATE, "waypoints": [HERE, {"lat": 48.2, "lng": 11.6}]}, "name"),
    ("post", "/emergencies", {"type": "medical", "location": HERE, "description": SURROGATE}, "description"),
]


@pytest.mark.parametrize("method, path, body, field", TEXT_FIELD_BODIES,
                         ids=[f"{m} {p}" for m, p, _, _ in TEXT_FIELD_BODIES])
def test_a_lone_surrogate_in_a_text_field_is_a_validation_error(client, db, user, method, path, body, field):
    before = counts(db)
    response = send(client, method, path, body, user.headers)
    assert_refused(response, field)
    assert counts(db) == before
    assert db.users.find_one({"_id": user["_id"]})["display_name"] == user["display_name"]


def test_a_lone_surrogate_in_party_create_is_acked_as_a_validation_error(db, user, socket_client):
    before = counts(db)
    ack = socket_client(user).emit("party:create", {"name": SURROGATE}, callback=True)
    assert_ack_refused(ack, "name")
    assert counts(db) == before


def test_a_lone_surrogate_in_an_emergency_message_is_acked_as_a_validation_error(client, db, user,
                                                                                 socket_client):
    created = send(client, "post", "/emergencies", {"type": "medical", "location": HERE}, user.headers)
    emergency_id = created.get_json()["data"]["emergency"]["id"] if "emergency" in created.get_json()["data"] \
        else created.get_json()["data"]["id"]
    before = counts(db)
    ack = socket_client(user).emit("emergency:message", {"emergency_id": emergency_id, "text": SURROGATE},
                                   callback=True)
    assert_ack_refused(ack, "text")
    assert counts(db) == before


# ---- near-antipodal routes ---------------------------------------------------------------------

@pytest.mark.parametrize("waypoints", [
    [{"lat": 90, "lng": 10}, {"lat": -90, "lng": 50}],
    [{"lat": 1e-200, "lng": 0}, {"lat": 0, "lng": 180}],
    [{"lat": 89.9999999, "lng": 0}, {"lat": -89.9999999, "lng": 0}],
    [HERE, {"lat": 10, "lng": 10}, {"lat": -10.0000001, "lng": -170}],
    # found by the contract fuzzing: the two poles at any longitudes, and a vertex the index sees twice
    [{"lat": -90.0, "lng": 43.7}, {"lat": 90.0, "lng": -1e-45}],
    [{"lat": 0.0, "lng": 0.0}, {"lat": 5e-324, "lng": 0.0}],
])
def test_near_antipodal_waypoints_are_a_validation_error(client, db, user, waypoints):
    response = send(client, "post", "/routes", {"name": "Far", "waypoints": waypoints}, user.headers)
    assert_refused(response, "waypoints")
    assert db.routes.count_documents({}) == 0


def test_a_route_the_geo_index_still_refuses_is_a_validation_error_not_a_500(client, db, user, monkeypatch):
    # A geometry that gets past the schema (here: a service that stores it anyway) is refused
    # by the 2dsphere index with "Can't extract geo keys" (code 16755): the client's bad input.
    from allynet.routes import service

    def store_bad_line(*, db, user_id, name, waypoints):
        db.routes.insert_one({"user_id": user_id, "name": name,
                              "waypoints": {"type": "LineString", "coordinates": [[0, 1e-200], [180, 0]]}})

    monkeypatch.setattr(service, "create_route", store_bad_line)
    response = send(client, "post", "/routes", {"name": "r", "waypoints": [HERE, {"lat": 1, "lng": 1}]},
                    user.headers)
    assert_refused(response, None)
    assert db.routes.count_documents({}) == 0


def test_a_geo_write_error_in_a_socket_event_is_acked_as_a_validation_error(db, user, socket_client,
                                                                          monkeypatch):
    from allynet.parties import service

    def refuse(**kwargs):
        raise WriteError("Can't extract geo keys: ...", 16755, {"code": 16755, "errmsg": "Can't extract geo keys"})

    monkeypatch.setattr(service, "create_party", refuse)
    ack = socket_client(user).emit("party:create", {"name": "Ride"}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "validation_error", ack


# ---- huge numbers in party:update ---------------------------------------------------------------

@pytest.fixture
def member(client, user, socket_client):
    party = send(client, "post", "/parties", {"name": "Ride"}, user.headers).get_json()["data"]
    sio = socket_client(user)
    sio.get_received()
    return sio, party["id"]


@pytest.mark.parametrize("payload, field", [
    ({"location": {"lat": 10 ** 400, "lng": 1}}, "location"),
    ({"location": HERE, "client_ts": 10 ** 400}, "client_ts"),
    ({"location": HERE, "speed_kmh": 10 ** 400}, "speed_kmh"),
])
def test_huge_numbers_in_party_update_are_a_validation_error(db, member, payload, field):
    sio, party_id = member
    ack = sio.emit("party:update", {"party_id": party_id, **payload}, callback=True)
    assert_ack_refused(ack, field)
    assert db.party_members.find_one({"last_location": {"$ne": None}}) is None


@pytest.mark.parametrize("raw, field", [
    ('{"party_id": "%s", "location": {"lat": NaN, "lng": 1}}', "location"),
    ('{"party_id": "%s", "location": {"lat": 1e400, "lng": 1}}', "location"),
    ('{"party_id": "%s", "location": {"lat": 1, "lng": 1}, "client_ts": Infinity}', "client_ts"),
])
def test_non_finite_numbers_in_party_update_are_a_validation_error(member, raw, field):
    sio, party_id = member
    ack = emit_raw(sio, "party:update", raw % party_id)
    assert_ack_refused(ack, field)


# ---- numeric strings as coordinates ------------------------------------------------------------

@pytest.mark.parametrize("method, path, body, field", [
    ("post", "/reports", {"type": "police", "location": {"lat": "12.5", "lng": 11.5}}, "location"),
    ("put", "/profile/location", {"lat": "12.5", "lng": 11.5}, "lat"),
    ("put", "/profile/location", {"lat": 12.5, "lng": "11.5"}, "lng"),
    ("post", "/routes", {"name": "r", "waypoints": [{"lat": "12.5", "lng": 0}, HERE]}, "waypoints"),
    ("post", "/emergencies", {"type": "medical", "location": {"lat": 48.1, "lng": "11.5"}}, "location"),
    ("post", "/help-requests", {"title": "A lift", "description": "d", "category": "transport",
                                "location": {"lat": "48.1", "lng": 11.5}}, "location"),
    ("post", "/emergencies", {"type": "medical", "location": HERE, "radius_m": "5000"}, "radius_m"),
])
def test_numeric_strings_are_refused_where_numbers_are_required(client, db, user, method, path, body, field):
    before = counts(db)
    response = send(client, method, path, body, user.headers)
    assert_refused(response, field)
    assert counts(db) == before
    assert db.users.find_one({"_id": user["_id"]})["location"]["coordinates"] == [HERE["lng"], HERE["lat"]]


def test_a_numeric_string_location_in_a_party_alert_is_acked_as_a_validation_error(member):
    sio, party_id = member
    ack = sio.emit("party:alert", {"party_id": party_id, "type": "hazard", "location": {"lat": "1", "lng": 2}},
                   callback=True)
    assert_ack_refused(ack, "location")


def test_numbers_in_query_strings_are_still_text(client, user):
    response = client.get(f"{API}/alerts?lat=48.1&lng=11.5&radius_m=1000", headers=user.headers)
    assert response.status_code == 200
    response = client.get(f"{API}/reports?near=48.1,11.5&radius_m=1000", headers=user.headers)
    assert response.status_code == 200


# ---- control characters in names ---------------------------------------------------------------

NAME_BODIES = [
    ("post", "/auth/register", {"email": "n@example.com", "password": "password123", "display_name": "A{}B"},
     "display_name"),
    ("patch", "/profile", {"display_name": "A{}B"}, "display_name"),
    ("post", "/parties", {"name": "A{}B"}, "name"),
    ("post", "/routes", {"name": "A{}B", "waypoints": [HERE, {"lat": 48.2, "lng": 11.6}]}, "name"),
    ("post", "/skills", {"name": "A{}B", "category": "repairs"}, "name"),
    ("post", "/help-requests", {"title": "A{}lift", "description": "d", "category": "transport",
                                "location": HERE}, "title"),
]


@pytest.mark.parametrize("control", ["\x01", "\n", "\x1b", "\x7f", "\x85", "\u2028"])
@pytest.mark.parametrize("method, path, body, field", NAME_BODIES, ids=[f"{m} {p}" for m, p, _, _ in NAME_BODIES])
def test_control_characters_in_names_are_refused(client, db, user, method, path, body, field, control):
    body = {key: value.format(control) if isinstance(value, str) else value for key, value in body.items()}
    before = counts(db)
    response = send(client, method, path, body, user.headers)
    assert_refused(response, field)
    assert counts(db) == before
    assert db.users.find_one({"_id": user["_id"]})["display_name"] == user["display_name"]


def test_a_control_character_in_a_socket_party_name_is_acked_as_a_validation_error(db, user, socket_client):
    ack = socket_client(user).emit("party:create", {"name": "Ride\x00"}, callback=True)
    assert_ack_refused(ack, "name")
    ack = socket_client(user).emit("party:create", {"name": "Ride\x07"}, callback=True)
    assert_ack_refused(ack, "name")
    assert db.parties.count_documents({}) == 0


def test_names_keep_emoji_and_accents(client, user):
    response = send(client, "post", "/parties", {"name": "Ça roule 🏍️‍🔥"}, user.headers)
    assert response.status_code == 201
    assert response.get_json()["data"]["name"] == "Ça roule 🏍️‍🔥"


# ---- times at the ends of the calendar ---------------------------------------------------------

@pytest.mark.parametrize("expires_at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_time_that_leaves_the_calendar_in_utc_is_a_validation_error(client, db, make_user, expires_at):
    moderator = make_user(role="moderator")
    response = send(client, "post", "/alerts", {"type": "police", "location": HERE, "description": "Checkpoint",
                                                "expires_at": expires_at}, moderator.headers)
    assert_refused(response, "expires_at")
    assert db.alerts.count_documents({}) == 0


# ---- nesting deep enough to overflow a C decoder ----------------------------------------------

def test_a_socket_payload_nested_deeper_than_a_c_stack_is_acked_not_a_crash(app_factory, make_user):
    # orjson 3.8 recurses without a limit (CVE-2024-27454): 200,000 levels overflowed the
    # stack and killed the process. Reachable where MAX_CONTENT_LENGTH is raised.
    app = app_factory(MAX_CONTENT_LENGTH=1024 * 1024)
    sio = app.extensions["socketio"].test_client(app, auth={"token": make_user()["access_token"]})
    deep = '{"a":' * 200_000 + "1" + "}" * 200_000
    for event in ("party:create", "party:update"):
        ack = emit_raw(sio, event, deep)
        assert ack["ok"] is False and ack["error"]["code"] == "bad_request", ack
    assert sio.emit("party:create", {"name": "Still here"}, callback=True)["ok"] is True
    sio.disconnect()


@pytest.mark.parametrize("name", ["\rMorning loop ", "Morning loop\n", "\tMorning loop"])
def test_a_name_with_a_control_character_at_either_end_is_refused_as_documented(client, db, user, name):
    """The documented pattern refuses control characters anywhere; stripping must not hide one at an end."""
    before = counts(db)
    response = send(client, "post", "/routes", {"name": name, "waypoints": [HERE, {"lat": 48.2, "lng": 11.6}]},
                    headers=user.headers)
    assert_refused(response, "name")
    assert counts(db) == before
    padded = {"name": "  Morning loop  ", "waypoints": [HERE, {"lat": 48.2, "lng": 11.6}]}
    assert send(client, "post", "/routes", padded, headers=user.headers).get_json()["data"]["name"] == "Morning loop"
