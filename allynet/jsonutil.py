"""JSON encoding of ObjectId and datetimes, in one place, for HTTP and Socket.IO."""
import json
from datetime import datetime

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


def dumps(obj, **kwargs):
    """json.dumps that knows ObjectId and datetime (the Socket.IO `json` module API)."""
    kwargs.setdefault("default", default)
    kwargs.setdefault("separators", (",", ":"))
    return json.dumps(obj, **kwargs)


def loads(text, **kwargs):
    """json.loads (the Socket.IO `json` module API)."""
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
