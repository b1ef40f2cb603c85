"""Contract fuzzing: schemathesis drives the app in-process from its own OpenAPI document.

Every operation gets generated requests (valid and invalid, from the same schemas the
server validates with), as a regular user and as an admin, and stateful sequences follow
the links between operations (an id a response returns, used by the next request). Checks:
no 5xx, each response (status, content type, body) is what the document says, valid data
is accepted and invalid data refused.

Bounded by default (a few examples per operation, fixed seed, no deadline) so it runs in
seconds and reproducibly; `FUZZ_EXAMPLES=500 python -m pytest tests/test_contract_fuzz.py`
runs the long version.
"""
import math
import os
from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
STATEFUL_EXAMPLES = max(12, FUZZ_EXAMPLES)
STATEFUL_STEPS = int(os.environ.get("FUZZ_STATEFUL_STEPS", "10"))
SEED = int(os.environ.get("FUZZ_SEED", "20261206"))
SCHEMA_PATH = "/api/v1/openapi.json"
# The coverage phase (every boundary and every single-field violation of each schema) is
# systematic but costs hundreds of calls per operation: on in the long run, or with FUZZ_COVERAGE=1.
COVERAGE = os.environ.get("FUZZ_COVERAGE", "1" if FUZZ_EXAMPLES >= 50 else "0") == "1"




def _config():
    # The actor's token is sent with every call, so the Authorization header is not generated
    # (nor dropped or mangled in invalid cases: the token put back would make them valid).
    return schemathesis.Config.from_dict({"seed": SEED, "phases": {"coverage": {"enabled": COVERAGE}},
                                          "generation": {"with-security-parameters": False}})


SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)

# 400s that a valid-per-schema request may still get, because the rule is not one a JSON
# schema can state: an opaque cursor only the server can make, a password's limit in UTF-8
# bytes, and rules across fields or against stored state.
UNEXPRESSIBLE_400 = (
    "Not a valid cursor.",
    "Password must be at most",
    "are the same point",
    "Only with near=lat,lng.",
    "Near queries return one page",
    "Required when your profile has no location.",
    "must be in the future",
    "days ahead",
    "Not a valid refresh token.",
    "Required with format=geojson.",
    "Not a valid URL.",
    "Must be an international number",  # separators are dropped before the E.164 check
    "Not a phone number",  # 5..20 digits among the separators
    "Not an IANA time zone",  # the zone database, not a pattern  # a schema's uri format is looser than a URL with a host and a top-level domain
    # a service area's geometry: closed rings, MongoDB's indexing rules, its area
    "Must be a GeoJSON object with type Polygon or MultiPolygon",
    "Not a valid Polygon", "Not a valid MultiPolygon", "km²", "vertices",
    # money: the decimals an amount may have depend on its currency (JPY 0, EUR 2, KWD 3)
    "amounts have no decimals", "amounts have at most",
    "Not a valid Stripe signature",  # an HMAC of the raw body with the webhook's secret
)


def _known_400(response):
    """True when a 400's every message is one of the rules the document cannot state."""
    if response.status_code != 400:
        return False
    details = (response.json().get("error") or {}).get("details") or {}
    messages = []

    def collect(value):
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        else:
            messages.append(str(value))

    collect(details)
    return bool(messages) and all(any(rule.lower() in message.lower() for rule in UNEXPRESSIBLE_400)
                                  for message in messages)


def valid_data_accepted(ctx, response, case):
    """positive_data_acceptance, except for the 400s of UNEXPRESSIBLE_400."""
    if _known_400(response):
        return None
    # Generated cases share Idempotency-Key values: a key seen with another body is refused by design.
    if response.status_code == 422 and response.json()["error"]["code"] == "idempotency_key_reused":
        return None
    return openapi_checks.positive_data_acceptance(ctx, response, case)


# No 5xx; status, content type and body as documented; invalid data refused, valid data accepted.
CHECKS = [not_a_server_error, openapi_checks.status_code_conformance, openapi_checks.content_type_conformance,
          openapi_checks.response_schema_conformance, openapi_checks.negative_data_rejection, valid_data_accepted]


class Actors:
    """The run's users: the actor whose token is sent, and an admin's own id to protect."""

    def __init__(self, headers, protected_user_ids=()):
        self.headers = headers
        self.protected_user_ids = set(protected_user_ids)


NOBODY = "0" * 24


def _protect(case, actors):
    """Point a PATCH /users/{id} at the running admin's own account elsewhere (a 404)."""
    # The admin demoting itself would turn the rest of its run into 403s.
    if case.method.upper() == "PATCH" and case.path_parameters and \
            case.path_parameters.get("user_id") in actors.protected_user_ids:
        case.path_parameters["user_id"] = NOBODY


# Inputs the input gate refuses with 400 (tests/test_inputgate_*.py prove it, and that nothing is
# stored) by rules the OpenAPI document cannot express, so schemathesis would count them as valid
# data refused; they are left out of this run:
# - a lone UTF-16 surrogate ("\ud800") or a NUL in any JSON string,
# - a saved route whose consecutive waypoints are (nearly) antipodal, or nearly the same point
#   without being equal ((0, 0) then (5e-324, 0): the 2dsphere index sees one vertex),
# - integers beyond what MongoDB stores (8 bytes) or floats beyond exact integers.
HUGE = 2 ** 53


def _values(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _values(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _values(item)
    else:
        yield value


def _lone_surrogate(value):
    """A string the gate refuses in any field: a lone surrogate or a NUL."""
    return isinstance(value, str) and any("\ud800" <= char <= "\udfff" or char == "\x00" for char in value)


def _huge(value, text=False):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return abs(value) >= HUGE
    # A query string's numbers arrive as text.
    return text and isinstance(value, str) and len(value.strip().lstrip("+-").split(".")[0]) > 15 \
        and value.strip().lstrip("+-").split(".")[0].isdigit()


def _unit(point):
    lat, lng = math.radians(point["lat"]), math.radians(point["lng"])
    return math.cos(lat) * math.cos(lng), math.cos(lat) * math.sin(lng), math.sin(lat)


def _degenerate_route(case):
    waypoints = case.body.get("waypoints") if isinstance(case.body, dict) else None
    if not isinstance(waypoints, list):
        return False
    points = [p for p in waypoints if isinstance(p, dict) and all(
        isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool) for k in ("lat", "lng"))]
    for a, b in zip(points, points[1:]):
        # Angle between the two points on the sphere (poles included: any longitude is the pole).
        cosine = sum(x * y for x, y in zip(_unit(a), _unit(b)))
        if cosine < -0.9998 or (cosine > 1 - 1e-12 and a != b):
            return True
    return False


def _refused_by_the_gate(case):
    """True for a case the input gate refuses by a rule the document cannot express (above)."""
    parts = [case.body, case.query, case.path_parameters, case.headers]
    values = [value for part in parts if part for value in _values(part)]
    query = list(_values(case.query)) if case.query else []
    return (any(_lone_surrogate(v) or _huge(v) for v in values) or any(_huge(v, text=True) for v in query)
            or _degenerate_route(case))


def _fuzz_app(app_factory):
    return app_factory(RATELIMIT_ENABLED=False)


def _load(app):
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, app, config=_config())

    @schema.hook
    def filter_case(context, case):
        return not _refused_by_the_gate(case)

    return schema


@pytest.fixture
def user_schema(app_factory, make_user):
    app = _fuzz_app(app_factory)
    user = make_user(is_helper=True, verified=True, location=(52.52, 13.405))
    schema = _load(app)
    app.extensions["fuzz_actors"] = Actors(user.headers)
    return schema


@pytest.fixture
def admin_schema(app_factory, make_user):
    app = _fuzz_app(app_factory)
    admin = make_user(role="admin", is_helper=True, verified=True, location=(48.85, 2.35))
    make_user(role="admin")  # a second admin: the run may demote it, never the one it runs as
    schema = _load(app)
    app.extensions["fuzz_actors"] = Actors(admin.headers, protected_user_ids=[admin.id])
    return schema


def _run(case):
    actors = case.operation.schema.app.extensions["fuzz_actors"]
    _protect(case, actors)
    case.call_and_validate(headers=actors.headers, checks=CHECKS)


user_lazy = schemathesis.pytest.from_fixture("user_schema")
admin_lazy = schemathesis.pytest.from_fixture("admin_schema")


@user_lazy.parametrize()
@SETTINGS
def test_fuzz_as_a_regular_user(case):
    _run(case)


@admin_lazy.parametrize()
@SETTINGS
def test_fuzz_as_an_admin(case):
    _run(case)


def _run_stateful(schema):
    actors = schema.app.extensions["fuzz_actors"]
    linked = []  # successful calls on a resource whose id an earlier response gave

    class Machine(schema.as_state_machine()):
        def before_call(self, case):
            _protect(case, actors)

        def after_call(self, response, case):
            if response.status_code < 300 and case.path_parameters and NOBODY not in case.formatted_path:
                linked.append(case.formatted_path)

        def get_call_kwargs(self, case):
            return {"headers": actors.headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Machine.run(settings=settings(SETTINGS, max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS))
    # Which sequences run depends on the process (rule order), so how many reach a linked
    # resource varies; that the document gives the machine links to follow does not.
    print(f"stateful: {len(linked)} successful calls on linked resources")
    assert schema.statistic.transitions.total > 0, "no links between operations"


def test_stateful_sequences_as_a_regular_user(user_schema):
    _run_stateful(user_schema)


def test_stateful_sequences_as_an_admin(admin_schema):
    _run_stateful(admin_schema)


def _case(method="POST", body=None, query=None, path_parameters=None):
    return SimpleNamespace(method=method, body=body, query=query, path_parameters=path_parameters, headers={})


def test_the_run_never_lets_the_admin_patch_its_own_account():
    actors = Actors({}, protected_user_ids=["a" * 24])
    own = _case("PATCH", path_parameters={"user_id": "a" * 24})
    other = _case("PATCH", path_parameters={"user_id": "b" * 24})

    _protect(own, actors)
    _protect(other, actors)

    assert own.path_parameters["user_id"] == NOBODY and other.path_parameters["user_id"] == "b" * 24


@pytest.mark.parametrize("budget", [{"amount": 0.5, "currency": "JPY"}, {"amount": 0.125, "currency": "EUR"},
                                    {"amount": 0.0625, "currency": "KWD"}])
def test_an_amount_with_too_many_decimals_for_its_currency_is_a_documented_400(client, make_user, budget):
    # Valid per the document (any number >= 0, any listed code), refused by a rule across the two fields.
    response = client.post("/api/v1/help-requests", headers=make_user().headers, json={
        "title": "Need a lift", "description": "To the station", "category": "transport",
        "location": {"lat": 0, "lng": 0}, "budget": budget})
    as_schemathesis_sees_it = SimpleNamespace(status_code=response.status_code, json=response.get_json)
    assert response.status_code == 400 and _known_400(as_schemathesis_sees_it)


def test_only_what_the_gate_refuses_is_left_out():
    route = {"name": "r", "waypoints": [{"lat": 10.0, "lng": 20.0}, {"lat": 11.0, "lng": 21.0}]}
    assert not _refused_by_the_gate(_case(body=route, query={"limit": "20", "near": "52.520008,13.404954"}))
    assert not _refused_by_the_gate(_case(body={"title": "Help \U0001F600", "amount": 10 ** 9}))
    assert _refused_by_the_gate(_case(body={"title": "lone \ud800"}))
    assert _refused_by_the_gate(_case(body={"amount": 10 ** 30}))
    assert _refused_by_the_gate(_case(query={"limit": "1" + "0" * 20}))
    antipodal = {"name": "r", "waypoints": [{"lat": 10.0, "lng": 20.0}, {"lat": -10.2, "lng": -159.9}]}
    almost_same = {"name": "r", "waypoints": [{"lat": 0.0, "lng": 0.0}, {"lat": 5e-324, "lng": 0.0}]}
    poles = {"name": "r", "waypoints": [{"lat": -90.0, "lng": 43.7}, {"lat": 90.0, "lng": -1e-45}]}
    assert _refused_by_the_gate(_case(body=antipodal)) and _refused_by_the_gate(_case(body=almost_same))
    assert _refused_by_the_gate(_case(body=poles))
