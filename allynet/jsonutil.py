"""JSON encoding of ObjectId and datetimes, in one place, for HTTP and Socket.IO.

`dumps`/`loads` (the Socket.IO `json` module: every packet in and out goes
through them) use orjson, several times faster than the stdlib on the
real-time path (party positions), and fall back to the stdlib for anything orjson
refuses (non-string keys, integers beyond 64 bits, NaN on input, extra
options; on input also text too long to be safe with orjson 3.8, see ORJSON_MAX_CHARS),
so the output is always valid JSON the stdlib would also accept.
On input, what orjson refuses and the stdlib reads (lone surrogates, NaN, numbers
beyond a double) is the only JSON that can carry those values, so the input gate
(allynet/inputgate.py) checks Socket.IO event arguments there, at no cost to the
packets orjson reads.
"""
import json
import re
from datetime import datetime

import orjson

from bson import ObjectId
from marshmallow import ValidationError
from flask.json.provider import DefaultJSONProvider

from allynet import inputgate
from allynet.errors import BadRequest
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


# orjson 3.8 has no nesting limit when decoding (CVE-2024-27454): a document nested some
# 50,000+ levels deep overflows the C stack and kills the process. Nothing this short can
# nest that deep; longer text (only where MAX_CONTENT_LENGTH was raised) goes to the stdlib,
# which raises RecursionError instead.
ORJSON_MAX_CHARS = 64 * 1024


def loads(text, **kwargs):
    """json.loads (the Socket.IO `json` module API); event arguments the input gate refuses are
    replaced by `inputgate.Refused` (see `_loads_lenient`)."""
    if not kwargs and len(text) <= ORJSON_MAX_CHARS:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # NaN/Infinity, lone surrogates, numbers beyond a double: the stdlib reads them
    if not kwargs:
        return _loads_lenient(text)
    return json.loads(text, **kwargs)


# The event name at the head of a Socket.IO event packet's JSON: `["name", ...`.
_EVENT_HEAD = re.compile(r'\s*\[\s*("(?:[^"\\]|\\.)*")\s*,')


def _loads_lenient(text):
    """The stdlib's reading of `text`. In a Socket.IO event (`["name", arg, ...]`) each argument
    the input gate refuses becomes an `inputgate.Refused`, and valid JSON the stdlib still
    cannot read (nested beyond its recursion limit, integers beyond its 4300 digits) becomes
    `["name", Refused]`: the event's handler acks the error instead of running, and the
    connection carries on. Malformed JSON raises, as before."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        head = _EVENT_HEAD.match(text) if isinstance(text, str) else None
        try:
            name = json.loads(head.group(1)) if head else None
        except ValueError:
            name = None
        if name is None:
            raise
        if isinstance(exc, RecursionError):
            return [name, inputgate.Refused(BadRequest(inputgate.TOO_DEEP))]
        return [name, inputgate.Refused(ValidationError({"_schema": [inputgate.OUT_OF_RANGE]}))]
    if type(value) is list and value and type(value[0]) is str:
        for index in range(1, len(value)):
            found = inputgate.problem(value[index])
            if found is not None:
                value[index] = inputgate.Refused(inputgate.error_for(found))
    return value


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with the same encoding rules."""

    sort_keys = False

    @staticmethod
    def default(o):
        try:
            return default(o)
        except TypeError:
            return DefaultJSONProvider.default(o)
