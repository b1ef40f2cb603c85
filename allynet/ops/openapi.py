"""The OpenAPI 3 document, generated from the routes and their marshmallow schemas."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

ENVELOPE_ERRORS = {
    "400": "validation_error or bad_request",
    "401": "unauthorized, token_expired or token_revoked",
    "403": "forbidden",
    "404": "not_found",
    "409": "conflict, active_emergency_exists, invalid_transition, request_in_progress or last_admin",
    "413": "payload_too_large",
    "414": "uri_too_long (request line over HTTP_MAX_URL_BYTES)",
    "431": "headers_too_large (a header over HTTP_MAX_HEADER_BYTES)",
    "429": "rate_limited (with Retry-After)",
    "503": "service_unavailable",
}
_PATH_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")


def _schema_name(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name


def build_spec(app):
    """The OpenAPI document for every REST endpoint of `app`."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(title="AllyNet API", version="1.0.0", openapi_version="3.0.3", plugins=[plugin],
                   info={"description": "The AllyNet API: see docs/API.md in the repository."})
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Error", {
        "type": "object", "required": ["success", "error"],
        "properties": {"success": {"type": "boolean", "enum": [False]},
                       "error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                                "details": {"type": "object"}}}}})
    converter = plugin.converter
    paths = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        meta = getattr(view, "__apispec__", None)
        if meta is None or rule.endpoint == "static":
            continue
        path = _PATH_PARAM.sub(lambda m: "{%s}" % m.group("name"), rule.rule)
        parameters = [
            {"in": "path", "name": m.group("name"), "required": True,
             "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"} if m.group("conv") == "oid"
             else {"type": "string"}}
            for m in _PATH_PARAM.finditer(rule.rule)
        ]
        entry = paths.setdefault(path, {"parameters": parameters, "operations": {}})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            entry["operations"][method.lower()] = _operation(meta, converter, rule.endpoint, method)
    for path, entry in paths.items():
        spec.path(path=path, operations=entry["operations"], parameters=entry["parameters"] or None)
    return spec.to_dict()


def _operation(meta, converter, endpoint, method):
    data_schema = {"type": "object", "nullable": True}
    if meta.get("response") is not None:
        ref = converter.resolve_nested_schema(meta["response"])
        data_schema = {"type": "array", "items": ref} if meta.get("many") else ref
    envelope = {"type": "object", "required": ["success", "data"],
                "properties": {"success": {"type": "boolean", "enum": [True]}, "data": data_schema,
                               "message": {"type": "string"}}}
    if meta.get("many"):
        envelope["properties"]["meta"] = {
            "type": "object",
            "properties": {"next_cursor": {"type": "string", "nullable": True}, "count": {"type": "integer"}}}
    responses = {str(meta.get("status", 200)): {
        "description": "Success", "content": {"application/json": {"schema": envelope}}}}
    if meta.get("geojson"):  # format=geojson: the same items as Features, no envelope
        responses[str(meta.get("status", 200))]["content"]["application/geo+json"] = {"schema": {
            "type": "object", "required": ["type", "features"],
            "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                           "features": {"type": "array", "items": {"type": "object"}},
                           "meta": envelope["properties"]["meta"]}}}
    if meta.get("content"):  # a success that is not the envelope (tiles, TileJSON, bare GeoJSON)
        responses[str(meta.get("status", 200))]["content"] = meta["content"]
    for status, description in ENVELOPE_ERRORS.items():
        responses[status] = {"description": description, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation = {"summary": meta.get("summary", endpoint), "operationId": f"{endpoint}_{method.lower()}",
                 "tags": meta.get("tags") or [endpoint.split(".")[0]], "responses": responses}
    if meta.get("auth", True):
        operation["security"] = [{"bearerAuth": []}]
    if meta.get("roles"):
        operation["description"] = "Roles: " + ", ".join(meta["roles"])
    if meta.get("body") is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": converter.resolve_nested_schema(meta["body"])}}}
    if meta.get("query") is not None:
        operation["parameters"] = converter.schema2parameters(meta["query"], location="query")
    if meta.get("headers"):
        operation.setdefault("parameters", []).extend(meta["headers"])
    return operation
