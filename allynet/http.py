"""Request parsing and response helpers shared by every view.

Views parse with ``use_body``/``use_query`` (marshmallow schemas, unknown
fields rejected), call one service, and answer through ``ok``/``ok_list``
(which also answers geographic lists as GeoJSON).
The decorators also record what the OpenAPI generator needs.
"""
import functools
import json

from flask import jsonify, request
from marshmallow import Schema
from werkzeug.routing import BaseConverter, ValidationError as RoutingValidationError
from bson import ObjectId

from allynet import geo, inputgate
from allynet.errors import BadRequest

GEOJSON_MIMETYPE = "application/geo+json"


def ok(data=None, status=200, message=None, meta=None):
    """The contract's success envelope."""
    body = {"success": True, "data": data}
    if message:
        body["message"] = message
    if meta is not None:
        body["meta"] = meta
    return jsonify(body), status


def ok_list(items, next_cursor=None, status=200, fmt="json"):
    """A list envelope with `meta.next_cursor` and `meta.count`; `fmt="geojson"` answers the same items
    and meta as a bare GeoJSON FeatureCollection (application/geo+json)."""
    meta = {"next_cursor": next_cursor, "count": len(items)}
    if fmt == "geojson":
        # No envelope, so that a map library loads the response as is.
        response = jsonify(geo.feature_collection(items, meta))
        response.mimetype = GEOJSON_MIMETYPE
        return response, status
    return ok(items, status=status, meta=meta)


def json_body(optional=False):
    """The request body as a dict, through the input gate (allynet/inputgate.py).

    400 bad_request for non-JSON, non-objects or nesting deeper than MAX_JSON_DEPTH;
    400 validation_error naming the field for values the gate refuses.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest("Request body must be a JSON object")
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise BadRequest("Content-Type must be application/json")
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise BadRequest(inputgate.TOO_DEEP) from exc
    except ValueError as exc:
        raise BadRequest("Request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    inputgate.check(body)
    return body


def record_doc(fn, **spec):
    """Add `spec` to the OpenAPI facts kept on `fn` (`__apispec__`), which allynet.ops.openapi reads."""
    meta = dict(getattr(fn, "__apispec__", {}))
    meta.update(spec)
    fn.__apispec__ = meta
    return fn


def use_body(schema, optional=False):
    """Load the JSON body with `schema`; the view gets it as `data`."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            kwargs["data"] = schema.load(json_body(optional=optional))
            return view(*args, **kwargs)

        return record_doc(wrapper, body=schema, body_optional=optional)

    return decorator


def use_query(schema):
    """Load the query string with `schema`; the view gets it as `query`."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            args_dict = {key: values[-1] if len(values) == 1 else values
                         for key, values in request.args.lists()}
            inputgate.check(args_dict)
            kwargs["query"] = schema.load(args_dict)
            return view(*args, **kwargs)

        return record_doc(wrapper, query=schema)

    return decorator


class EmptyBodySchema(Schema):
    """An action with no parameters: no body or `{}`; any field is refused."""


empty_body_schema = EmptyBodySchema()


def no_body(view):
    """Refuse every body but none or `{}` (unknown fields 400, non-objects 400)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        empty_body_schema.load(json_body(optional=True))
        return view(*args, **kwargs)

    return record_doc(wrapper, empty_body=True)


def doc(*, summary, response=None, status=200, many=False, tags=None, auth=True, errors=None,
        envelope=True, db=True, **extra):
    """Describe a view for the OpenAPI document (no behaviour).

    The error statuses default from what the other decorators record (auth -> 401, roles ->
    403, body or query -> 400, body -> 413, an `<oid:...>` path segment -> 404, a rate limit
    -> 429, `db` -> 503 when MongoDB is down); `errors` adds `{status: "code, code"}` and
    removes a default with `{status: None}`. `envelope=False`: the response body is the
    `response` JSON schema itself, not the success envelope.
    """

    def decorator(view):
        return record_doc(view, summary=summary, response=response, status=status, many=many, tags=tags,
                          auth=auth, errors=dict(errors or {}), envelope=envelope, db=db, **extra)

    return decorator


class ObjectIdConverter(BaseConverter):
    """`<oid:name>`: a 24-hex path segment as an ObjectId; anything else is a 404."""

    # Only 24-hex segments match: a malformed id then matches no rule at all, so every method
    # gets 404 (a converter that refuses after matching makes werkzeug answer 405 to methods
    # of other rules on the same path, e.g. PATCH /users/<bad>).
    regex = "[0-9a-fA-F]{24}"

    def to_python(self, value):
        if len(value) == 24 and ObjectId.is_valid(value):
            return ObjectId(value)
        raise RoutingValidationError()

    def to_url(self, value):
        return str(value)
