"""JSON encoding of ObjectId and datetimes, in one place, for HTTP and Socket.IO.

`dumps`/`loads` (the Socket.IO `json` module: every packet in and out goes
through them) use orjson, several times faster than the stdlib on the
real-time path (issue 9), and fall back to the stdlib for anything orjson
refuses (non-string keys, integers beyond 64 bits, NaN on input, extra
options), so the output is always valid JSON the stdlib would also accept.
"""
import json
from datetime import datetime

import orjson

from bson import ObjectId
from flask.json.provider import DefaultJSONProvider

from allynet.fields import iso


def default(value):
    """Encode the Mongo types that reach the wire (ObjectId, datetime)."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME  # datetimes go through `default`: iso(), "...Z"
_COMPACT = (",", ":")


def dumps(obj, **kwargs):
    """json.dumps that knows ObjectId and datetime (the Socket.IO `json` module API)."""
    if not kwargs or (len(kwargs) == 1 and tuple(kwargs.get("separators") or ()) == _COMPACT):
        try:
            return orjson.dumps(obj, default=default, option=_ORJSON_OPTIONS).decode()
        except TypeError:
            pass  # orjson.JSONEncodeError: let the stdlib decide (or raise the usual error)
    kwargs.setdefault("default", default)
    kwargs.setdefault("separators", (",", ":"))
    return json.dumps(obj, **kwargs)


def loads(text, **kwargs):
    """json.loads (the Socket.IO `json` module API)."""
    if not kwargs:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # NaN/Infinity and other stdlib leniencies
    return json.loads(text, **kwargs)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with the same encoding rules."""

    sort_keys = False

    @staticmethod
    def default(o):
        try:
            return default(o)
        except TypeError:
            return DefaultJSONProvider.default(o)
