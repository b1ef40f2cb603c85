"""The OpenAPI document is valid and covers every REST endpoint."""
from openapi_spec_validator import validate

IGNORED = {"static", "ops.openapi", "ops.asyncapi", "ops.healthz", "ops.readyz"}


def test_openapi_document_is_valid_and_complete(app, client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    documented = {(path, method.upper()) for path, item in spec["paths"].items()
                  for method in item if method != "parameters"}
    missing = []
    for rule in app.url_map.iter_rules():
        # The operator console's HTML pages and forms (/console) are not part of the REST API.
        if rule.endpoint in IGNORED or rule.endpoint.startswith("console."):
            continue
        path = rule.rule
        for converter in ("<oid:", "<"):
            path = path.replace(converter, "{")
        path = path.replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (path, method) not in documented:
                missing.append(f"{method} {path}")
    assert not missing, f"endpoints missing from the OpenAPI document: {missing}"


def test_openapi_describes_schemas_and_security(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    register = spec["paths"]["/api/v1/auth/register"]["post"]
    body = register["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/Register")
    assert "password" in spec["components"]["schemas"]["Register"]["properties"]
    assert "security" not in register
    assert spec["paths"]["/api/v1/profile"]["get"]["security"] == [{"bearerAuth": []}]
    assert "201" in register["responses"] and "400" in register["responses"]
