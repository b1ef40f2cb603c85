"""Injection and bad input on every REST route that takes a body or a query.

The routes are discovered from the URL map and the `__apispec__` metadata that `@doc`,
`@use_body` and `@use_query` record, so a route added later is walked too. Every field
of each body/query schema gets each bad value (lone surrogates, NUL, NaN/Infinity/1e400,
integers beyond 64 bits, `{"$gt": ""}`, dotted keys, 1,000-deep JSON, huge strings and
arrays): each is answered 4xx in the envelope, never 5xx, and the database is unchanged.
The caller is an admin, so role checks let every request reach its validation.
"""
import json
import re

import pytest
from bson import ObjectId

from allynet import create_app
from tests.inputgate_cases import DEEP, GATE_VALUES, OTHER_VALUES, snapshot

API = "/api/v1"
HERE = {"lat": 48.137, "lng": 11.575}

_CONVERTER = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>")


def _discover():
    app = create_app("testing")
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        meta = getattr(app.view_functions[rule.endpoint], "__apispec__", None)
        if meta is None:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, meta.get("body"), meta.get("query")))
    return found


ROUTES = _discover()
# Stripe's webhook reads no field before the body's Stripe-Signature holds: every unsigned body is
# 400 bad_request and changes nothing (tests/test_payments_webhooks.py sends it junk of every kind).
SIGNED = {"/api/v1/payments/webhooks/stripe"}
BODY_ROUTES = [(m, r, body) for m, r, body, _ in ROUTES if body is not None and r not in SIGNED]
QUERY_ROUTES = [(m, r, query) for m, r, _, query in ROUTES if query is not None]
# Actions without parameters (`no_body`: none or `{}`) and the like; DELETE reads no body.
OTHER_WRITES = [(m, r) for m, r, body, _ in ROUTES if body is None and m in ("POST", "PUT", "PATCH")]


def field_names(schema):
    return sorted(field.data_key or name for name, field in schema.load_fields.items())


@pytest.fixture
def world(app_factory, make_user):
    """An admin, another user, and one of each resource a path can name, created as clients create them."""
    app = app_factory(RATELIMIT_ENABLED=False)
    client = app.test_client()
    admin = make_user(role="admin", location=(HERE["lat"], HERE["lng"]))
    other = make_user(is_helper=True, verified=True, location=(HERE["lat"], HERE["lng"]))

    def create(user, path, body):
        response = client.post(f"{API}{path}", json=body, headers=user.headers)
        assert response.status_code == 201, response.get_json()
        data = response.get_json()["data"]
        return data.get("emergency", data)["id"]

    ids = {
        "user_id": other.id,
        "party_id": create(admin, "/parties", {"name": "Ride"}),
        "route_id": create(admin, "/routes", {"name": "Loop", "waypoints": [HERE, {"lat": 48.2, "lng": 11.6}]}),
        "skill_id": create(admin, "/skills", {"name": "Welding", "category": "repairs"}),
        "request_id": create(other, "/help-requests", {"title": "A lift", "description": "to town",
                                                       "category": "transport", "location": HERE}),
        "report_id": create(other, "/reports", {"type": "police", "location": HERE}),
        "emergency_id": create(other, "/emergencies", {"type": "medical", "location": HERE}),
    }

    def path_of(rule):
        return _CONVERTER.sub(lambda m: ids.get(m.group("name"), str(ObjectId())), rule)

    class World:
        pass

    world = World()
    world.app, world.client, world.admin, world.path_of = app, client, admin, path_of
    world.db = app.extensions["allynet_db"]
    return world


def assert_envelope_4xx(response, context):
    assert 400 <= response.status_code < 500, (context, response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert body["success"] is False and body["error"]["code"], context


@pytest.mark.parametrize("method, rule, schema", BODY_ROUTES, ids=[f"{m} {r}" for m, r, _ in BODY_ROUTES])
def test_bad_values_in_every_body_field_are_refused_and_change_nothing(world, method, rule, schema):
    path, client, headers = world.path_of(rule), world.client, world.admin.headers
    before = snapshot(world.db)

    def send(text):
        return client.open(path, method=method, data=text, content_type="application/json", headers=headers)

    for field in field_names(schema) + ["zz_extra"]:
        for label, value in GATE_VALUES.items():
            response = send(f'{{"{field}": {value}}}')
            context = (method, rule, field, label)
            assert response.status_code == 400, (context, response.get_data(as_text=True)[:300])
            assert response.get_json()["error"]["code"] == "validation_error", context
            assert field in response.get_json()["error"]["details"], (context, response.get_json())
        for label, value in OTHER_VALUES.items():
            assert_envelope_4xx(send(f'{{"{field}": {value}}}'), (method, rule, field, label))
        response = send(f'{{"{field}": {DEEP}}}')
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request", (rule, field)
    for label, value in {**GATE_VALUES, "deep": DEEP}.items():  # the whole body
        assert_envelope_4xx(send(value), (method, rule, "body", label))
    response = send(json.dumps({"x": "x" * (world.app.config["MAX_CONTENT_LENGTH"] + 1)}))
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload_too_large"
    assert snapshot(world.db) == before


@pytest.mark.parametrize("method, rule", OTHER_WRITES, ids=[f"{m} {r}" for m, r in OTHER_WRITES])
def test_writes_without_a_body_schema_refuse_bad_bodies_without_a_5xx(world, method, rule):
    path = world.path_of(rule)
    before = snapshot(world.db)
    for label, value in {**GATE_VALUES, "deep": DEEP, "$gt body": '{"$gt": ""}', "dotted": '{"a.b": 1}'}.items():
        response = world.client.open(path, method=method, data=value, content_type="application/json",
                                     headers=world.admin.headers)
        assert_envelope_4xx(response, (method, rule, label))
    assert snapshot(world.db) == before


QUERY_GATE_VALUES = {"NUL": "a%00b", "NUL alone": "%00"}
QUERY_OTHER_VALUES = {
    "NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e400": "1e400",
    "10**400": "1" + "0" * 400, "10**5000": "1" + "0" * 5000, "2**63": str(2 ** 63),
    "UTF-8 of a lone surrogate": "%ED%A0%80", "invalid UTF-8": "%FF%FE", "huge": "x" * 20000,
    "$gt": "%24gt", "json operator": "%7B%22%24gt%22%3A%22%22%7D", "numeric string": "12.5",
    "near-antipodal pair": "-90,180",
}


@pytest.mark.parametrize("method, rule, schema", QUERY_ROUTES, ids=[f"{m} {r}" for m, r, _ in QUERY_ROUTES])
def test_bad_values_in_every_query_field_are_answered_without_a_5xx_and_change_nothing(world, method, rule, schema):
    path, client, headers = world.path_of(rule), world.client, world.admin.headers
    before = snapshot(world.db)
    for field in field_names(schema):
        for label, value in QUERY_GATE_VALUES.items():
            response = client.open(f"{path}?{field}={value}", method=method, headers=headers)
            assert response.status_code == 400, (rule, field, label, response.get_data(as_text=True)[:300])
            assert field in response.get_json()["error"]["details"], (rule, field, label)
        for label, value in QUERY_OTHER_VALUES.items():
            response = client.open(f"{path}?{field}={value}", method=method, headers=headers)
            assert response.status_code < 500, (rule, field, label, response.get_data(as_text=True)[:300])
            if response.status_code >= 400:
                assert_envelope_4xx(response, (rule, field, label))
    for key in ("%24gt", "a.b", "%24where", "near%00"):
        response = client.open(f"{path}?{key}=1", method=method, headers=headers)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "validation_error", \
            (rule, key, response.get_data(as_text=True)[:300])
    assert snapshot(world.db) == before


def test_the_walk_covers_the_routes_it_should():
    # Discovery works: the walk sees the routes that take bodies and queries today.
    bodies = {(m, r) for m, r, _ in BODY_ROUTES}
    queries = {(m, r) for m, r, _ in QUERY_ROUTES}
    assert {("POST", "/api/v1/routes"), ("POST", "/api/v1/auth/register"), ("PATCH", "/api/v1/profile"),
            ("PUT", "/api/v1/profile/location"), ("POST", "/api/v1/reports")} <= bodies
    assert {("GET", "/api/v1/reports"), ("GET", "/api/v1/alerts"), ("GET", "/api/v1/skills")} <= queries
