"""The OpenAPI document is valid and covers every REST endpoint."""
import re

from openapi_spec_validator import validate

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _served(app):
    """{(OpenAPI path, method)} of every route Flask serves (HEAD and OPTIONS are automatic)."""
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule.rule)
        served.update((path, method) for method in rule.methods & METHODS)
    return served


def _documented(spec):
    return {(path, method.upper()) for path, item in spec["paths"].items() for method in item
            if method.upper() in METHODS}


def test_openapi_document_is_valid_and_matches_the_url_map_both_ways(app, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    served, documented = _served(app), _documented(spec)
    assert sorted(served - documented) == [], "served but not documented"
    assert sorted(documented - served) == [], "documented but not served"
    for path in ("/healthz", "/readyz", "/api/v1/openapi.json"):
        assert (path, "GET") in documented


def test_openapi_describes_schemas_and_security(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    register = spec["paths"]["/api/v1/auth/register"]["post"]
    body = register["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/Register")
    assert "password" in spec["components"]["schemas"]["Register"]["properties"]
    assert "security" not in register
    assert spec["paths"]["/api/v1/profile"]["get"]["security"] == [{"bearerAuth": []}]
    assert "201" in register["responses"] and "400" in register["responses"]


def _spec(client):
    return client.get("/api/v1/openapi.json").get_json()


def _statuses(spec, path, method):
    return set(spec["paths"][path][method]["responses"])


def test_each_operation_lists_the_statuses_it_can_answer(client):
    spec = _spec(client)
    assert _statuses(spec, "/healthz", "get") == {"200"}
    assert _statuses(spec, "/readyz", "get") == {"200", "503"}
    assert _statuses(spec, "/api/v1/openapi.json", "get") == {"200"}
    register = _statuses(spec, "/api/v1/auth/register", "post")
    assert "401" not in register and {"201", "400", "409", "413", "429", "503"} <= register
    assert _statuses(spec, "/api/v1/auth/login", "post") >= {"401", "429"}
    create = _statuses(spec, "/api/v1/emergencies", "post")
    assert {"201", "400", "401", "409", "422", "429"} <= create
    responses = spec["paths"]["/api/v1/emergencies"]["post"]["responses"]
    assert "idempotency_key_reused" in responses["422"]["description"]
    assert "active_emergency_exists" in responses["409"]["description"]
    # No body and no query: no 400 or 413; an id in the path: 404; no rate limit: no 429.
    assert _statuses(spec, "/api/v1/profile", "get") == {"200", "401", "503"}
    assert _statuses(spec, "/api/v1/skills/{skill_id}", "get") == {"200", "401", "404", "503"}
    # A role: 403.
    assert "403" in _statuses(spec, "/api/v1/audit-log", "get")
    assert "403" not in _statuses(spec, "/api/v1/routes", "get")
    # 405 is documented once, for the whole app, not per operation.
    assert "Allow" in spec["components"]["responses"]["MethodNotAllowed"]["headers"]
    assert all("405" not in op["responses"] for item in spec["paths"].values() for op in item.values()
               if isinstance(op, dict) and "responses" in op)


def test_request_schemas_are_as_strict_as_the_server(client):
    spec = _spec(client)
    schemas = spec["components"]["schemas"]
    location = schemas["CreateEmergency"]["properties"]["location"]
    assert location == {"type": "object", "required": ["lat", "lng"], "additionalProperties": False,
                        "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                       "lng": {"type": "number", "minimum": -180, "maximum": 180}}}
    assert schemas["CreateEmergency"]["additionalProperties"] is False
    assert schemas["Register"]["properties"]["password"]["minLength"] == 8
    assert schemas["PartyJoin"]["properties"]["invite_code"]["pattern"] == "^[A-HJKMNP-Za-hjkmnp-z2-9]{8}$"
    assert "EUR" in schemas["Money"]["properties"]["currency"]["enum"]
    assert schemas["CreateEmergency"]["properties"]["type"]["enum"][0] == "medical"
    assert schemas["Accept"]["properties"]["offer_id"]["pattern"] == "^[0-9a-fA-F]{24}$"
    assert schemas["AlertCreate"]["properties"]["expires_at"]["format"] == "date-time"
    assert schemas["ProfileUpdate"]["minProperties"] == 1
    name = schemas["HelpRequestCreate"]["properties"]["title"]
    assert (name["minLength"], name["maxLength"]) == (3, 120) and name["pattern"].startswith("^")
    routes = schemas["RouteCreate"]["properties"]["waypoints"]
    assert (routes["minItems"], routes["maxItems"]) == (2, 500)
    params = {p["name"]: p for p in spec["paths"]["/api/v1/alerts"]["get"]["parameters"]}
    assert params["lat"]["required"] and params["lat"]["schema"]["maximum"] == 90
    assert params["limit"]["schema"]["type"] == "integer"
    assert "police" in params["types"]["schema"]["pattern"]
    history = {p["name"]: p for p in spec["paths"]["/api/v1/parties/{party_id}/history"]["get"]["parameters"]}
    assert history["cursor"]["schema"]["pattern"] == "^[A-Za-z0-9_-]*$"
    budget = schemas["HelpRequestCreate"]["properties"]["budget"]
    assert budget == {"allOf": [{"$ref": "#/components/schemas/Money"}], "nullable": True}
    near = {p["name"]: p for p in spec["paths"]["/api/v1/emergencies"]["get"]["parameters"]}["near"]
    assert near["schema"]["type"] == "string" and "pattern" in near["schema"]


def test_geojson_is_documented_where_format_geojson_is_served(app, client, make_user):
    spec = _spec(client)
    content = spec["paths"]["/api/v1/alerts"]["get"]["responses"]["200"]["content"]
    assert content["application/geo+json"]["schema"]["properties"]["type"]["enum"] == ["FeatureCollection"]
    user = make_user()
    served = client.get("/api/v1/alerts?lat=1&lng=2&format=geojson", headers=user.headers)
    assert served.mimetype == "application/geo+json"
    # Wherever the query schema accepts format=geojson the document says so, and nowhere else.
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            formats = [p for p in operation.get("parameters", []) if p["name"] == "format"]
            geojson = any("geojson" in p["schema"].get("enum", []) for p in formats)
            documented = any("application/geo+json" in r.get("content", {})
                             for r in operation["responses"].values())
            assert geojson == documented, (method, path)


def test_text_patterns_mean_what_stripping_means():
    from allynet.fields import stripped_min_length_pattern

    three = re.compile(stripped_min_length_pattern(3))
    assert three.search("abc") and three.search(" a b ") and three.search("\u3000abc\x1c")
    assert not three.search("ab") and not three.search("  ab\x1c ") and not three.search("a\u00a0")
    one = re.compile(stripped_min_length_pattern(1))
    assert one.search(" x ") and not one.search(" \t\u2028\x85")
