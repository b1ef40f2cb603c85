"""The OpenAPI 3 document, generated from the routes and their marshmallow schemas.

The request schemas are the ones the server validates with (unknown fields refused, so
`additionalProperties: false`); custom fields describe themselves with an
`openapi_property()` method (allynet/fields.py). Each operation lists the error statuses
it can answer: defaults from its decorators, plus `@doc(errors=...)`.
"""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

# The contract's error codes behind each status (docs/API.md).
ERROR_CODES = {
    400: "validation_error or bad_request",
    401: "unauthorized, token_expired or token_revoked",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed (with Allow)",
    409: "conflict",
    414: "uri_too_long (request line over HTTP_MAX_URL_BYTES)",
    413: "payload_too_large",
    422: "idempotency_key_reused",
    431: "headers_too_large (a header over HTTP_MAX_HEADER_BYTES)",
    429: "rate_limited (with Retry-After)",
    503: "service_unavailable",
}
GEOJSON = "application/geo+json"
_PATH_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")
_HEX24 = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}


def _schema_name(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    return name[:-6] if name.endswith("Schema") and len(name) > 6 else name


def _custom_field(self, field, ret, **kwargs):
    """apispec attribute function: a field's own `openapi_property()`, when it has one.

    Also a nullable nested schema: apispec writes `anyOf: [{type: object, nullable}, $ref]`,
    which lets any object through; `allOf: [$ref]` + `nullable` is the schema or null.
    """
    if isinstance(field, fields.Nested) and field.allow_none and "anyOf" in ret:
        refs = [item for item in ret.pop("anyOf") if "$ref" in item]
        return {"allOf": refs, "nullable": True}
    describe = getattr(field, "openapi_property", None)
    return describe() if callable(describe) else {}


class _Plugin(MarshmallowPlugin):
    """MarshmallowPlugin plus a schema's own `OPENAPI` keywords (e.g. minProperties)."""

    def schema_helper(self, name, _, schema=None, **kwargs):
        definition = super().schema_helper(name, _, schema=schema, **kwargs)
        cls = schema if isinstance(schema, type) else type(schema)
        if definition is not None and getattr(cls, "OPENAPI", None):
            definition.update(cls.OPENAPI)
        return definition


def build_spec(app):
    """The OpenAPI document for every route of `app`."""
    plugin = _Plugin(schema_name_resolver=_schema_name)
    spec = APISpec(title="AllyNet API", version="1.1.0", openapi_version="3.0.3", plugins=[plugin],
                   info={"description": "The AllyNet API: see docs/API.md in the repository. A method a path "
                                        "does not serve is answered 405 method_not_allowed with an Allow "
                                        "header on every path (components/responses/MethodNotAllowed); an "
                                        "over-long URL 414 and over-large headers 431, likewise."})
    plugin.converter.add_attribute_function(_custom_field)
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Error", {
        "type": "object", "required": ["success", "error"],
        "properties": {"success": {"type": "boolean", "enum": [False]},
                       "error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                                "details": {"type": "object"}}}}})
    spec.components.response("MethodNotAllowed", {
        "description": ERROR_CODES[405], "headers": {"Allow": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    # Answered by the HTTP server before any route, on every path, in the same envelope.
    for name, status in (("UriTooLong", 414), ("HeadersTooLarge", 431)):
        spec.components.response(name, {"description": ERROR_CODES[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
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
             "schema": dict(_HEX24) if m.group("conv") == "oid" else {"type": "string"}}
            for m in _PATH_PARAM.finditer(rule.rule)
        ]
        entry = paths.setdefault(path, {"parameters": parameters, "operations": {}})
        errors = _error_statuses(app, rule, view, meta)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            entry["operations"][method.lower()] = _operation(meta, converter, rule.endpoint, method, errors)
    for path, entry in paths.items():
        spec.path(path=path, operations=entry["operations"], parameters=entry["parameters"] or None)
    return spec.to_dict()


def _rate_limited(app, view):
    from flask_limiter.util import get_qualified_name

    from allynet.extensions import limiter

    if app.config.get("RATELIMIT_DEFAULT") or app.config.get("RATELIMIT_APPLICATION"):
        return True
    return bool(limiter.limit_manager.decorated_limits(get_qualified_name(view)))


def _error_statuses(app, rule, view, meta):
    """{status: description} of every error this route can answer."""
    statuses = set()
    reads_body = meta.get("body") is not None or meta.get("empty_body")
    if reads_body or meta.get("query") is not None:
        statuses.add(400)
    if reads_body:
        statuses.add(413)
    if meta.get("auth", True):
        statuses.add(401)
    if meta.get("roles"):
        statuses.add(403)
    if any(m.group("conv") == "oid" for m in _PATH_PARAM.finditer(rule.rule)):
        statuses.add(404)
    if _rate_limited(app, view):
        statuses.add(429)
    if meta.get("db", True):
        statuses.add(503)
    errors = {status: ERROR_CODES[status] for status in statuses}
    for status, text in (meta.get("errors") or {}).items():
        if text is None:
            errors.pop(int(status), None)
        else:
            errors[int(status)] = text
    return dict(sorted(errors.items()))


def _geojson_query(meta):
    """True when the query schema accepts format=geojson."""
    if meta.get("geojson"):
        return True
    query = meta.get("query")
    field = query.fields.get("format") if query is not None else None
    if field is None:
        return False
    validators = field.validators if isinstance(field.validators, (list, tuple)) else [field.validators]
    return any("geojson" in getattr(validator, "choices", ()) for validator in validators)


def _feature_collection(item_schema):
    """A GeoJSON FeatureCollection whose features carry `item_schema` minus location as properties."""
    return {
        "type": "object", "required": ["type", "features"],
        "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "items": {
                "type": "object", "required": ["type", "geometry", "properties"],
                "properties": {
                    "type": {"type": "string", "enum": ["Feature"]},
                    "id": {"type": "string"},
                    "geometry": {"type": "object", "required": ["type", "coordinates"], "properties": {
                        "type": {"type": "string", "enum": ["Point"]},
                        "coordinates": {"type": "array", "minItems": 2, "maxItems": 2,
                                        "items": {"type": "number"}}}},
                    "properties": item_schema}}}}}


def _operation(meta, converter, endpoint, method, errors):
    data_schema = {"type": "object", "nullable": True}
    if meta.get("response") is not None:
        ref = (meta["response"] if isinstance(meta["response"], dict)
               else converter.resolve_nested_schema(meta["response"]))
        data_schema = {"type": "array", "items": ref} if meta.get("many") else ref
    if meta.get("envelope", True):
        body = {"type": "object", "required": ["success", "data"],
                "properties": {"success": {"type": "boolean", "enum": [True]}, "data": data_schema,
                               "message": {"type": "string"}}}
        if meta.get("many"):
            body["properties"]["meta"] = {
                "type": "object",
                "properties": {"next_cursor": {"type": "string", "nullable": True}, "count": {"type": "integer"}}}
    else:
        body = data_schema
    content = {"application/json": {"schema": body}}
    if _geojson_query(meta):
        item = data_schema["items"] if meta.get("many") else data_schema
        content[GEOJSON] = {"schema": _feature_collection(item)}
    responses = {str(meta.get("status", 200)): {"description": "Success", "content": content}}
    for status, description in errors.items():
        responses[str(status)] = {"description": description, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation = {"summary": meta.get("summary", endpoint), "operationId": f"{endpoint}_{method.lower()}",
                 "tags": meta.get("tags") or [endpoint.split(".")[0]], "responses": responses}
    if meta.get("auth", True):
        operation["security"] = [{"bearerAuth": []}]
    if meta.get("roles"):
        operation["description"] = "Roles: " + ", ".join(meta["roles"])
    if meta.get("body") is not None:
        operation["requestBody"] = {"required": not meta.get("body_optional"), "content": {
            "application/json": {"schema": converter.resolve_nested_schema(meta["body"])}}}
    elif meta.get("empty_body"):
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "maxProperties": 0}}}}
    if meta.get("query") is not None:
        operation["parameters"] = converter.schema2parameters(meta["query"], location="query")
    if meta.get("headers"):
        operation.setdefault("parameters", []).extend(meta["headers"])
    return operation
