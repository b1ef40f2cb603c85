"""The one gate every client input passes before a schema sees it.

JSON bodies (``http.json_body``), query strings (``http.use_query``) and Socket.IO
payloads (``sockets.socket_event``; ``jsonutil.loads`` for what only the stdlib
decoder lets through) are checked here, so whatever the route, no value reaches a
service that the database cannot store or would read as an operator:

- strings, keys included: valid Unicode (no lone UTF-16 surrogate) without NUL;
- numbers: finite, integers within BSON's signed 64 bits;
- keys: no ``$`` prefix, no ``.`` (never a Mongo operator or a dotted path);
- nesting: at most ``MAX_JSON_DEPTH`` levels (config).

A refused value is a marshmallow ``ValidationError`` naming the field the way a schema
would (``{"location": {"lat": ["..."]}}``), so it reaches clients as
``validation_error``; nesting too deep is a ``BadRequest`` (``bad_request``).
"""
import math

from marshmallow import ValidationError

from allynet.errors import BadRequest

DEFAULT_MAX_DEPTH = 20
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

NOT_UNICODE = "Not valid Unicode text (lone surrogate)."
HAS_NUL = "Must not contain NUL characters."
NOT_FINITE = "Must be a finite number."
OUT_OF_RANGE = "Number out of range (integers must fit in 64 bits)."
BAD_KEY = "Field names must not start with '$' or contain '.'."
TOO_DEEP = "JSON nested too deeply"


def text_problem(text):
    """Why `text` is no storable text (lone surrogate, NUL), or None."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return NOT_UNICODE
    if "\x00" in text:
        return HAS_NUL
    return None


def _number_problem(number):
    if type(number) is float:
        return None if math.isfinite(number) else NOT_FINITE
    return None if INT64_MIN <= number <= INT64_MAX else OUT_OF_RANGE


def _key_problem(key):
    if not isinstance(key, str):
        return "Field names must be strings."
    return text_problem(key) or (BAD_KEY if key.startswith("$") or "." in key else None)


def _printable(key):
    """A field name safe to echo in an error (lone surrogates escaped)."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(key, str) else str(key)


def _details(path, message):
    """marshmallow-shaped details for the value at `path` (keys and list indexes)."""
    if not path:
        return {"_schema": [message]}
    details = [message]
    for key in reversed(path):
        details = {key if isinstance(key, int) else _printable(key): details}
    return details


def problem(value, max_depth=None):
    """The first thing the gate refuses in `value` as `(kind, details)`, or None.

    kind is "value" (a ValidationError's details) or "depth" (nesting beyond `max_depth`;
    None: no depth limit). Iterative: no recursion however deep the value.
    """
    stack = [(value, ())]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is str:
            message = text_problem(item)
        elif kind is int or kind is float:
            message = _number_problem(item)
        elif kind is dict or kind is list:
            if max_depth is not None and len(path) >= max_depth:
                return "depth", TOO_DEEP
            if kind is dict:
                for key in item:
                    message = _key_problem(key)
                    if message:
                        return "value", _details(path + (key,), message)
                children = [(child, path + (key,)) for key, child in item.items()]
            else:
                children = [(child, path + (index,)) for index, child in enumerate(item)]
            stack.extend(reversed(children))  # popped in document order
            continue
        else:
            message = None  # None, booleans (and anything a JSON decoder never yields)
        if message:
            return "value", _details(path, message)
    return None


def error_for(found):
    """The exception for a `problem()` result."""
    kind, details = found
    return BadRequest(details) if kind == "depth" else ValidationError(details)


def check(value, max_depth=None):
    """Raise ValidationError (or BadRequest when nested deeper than `max_depth`) if the gate refuses `value`.

    `max_depth` None: the app's MAX_JSON_DEPTH.
    """
    if max_depth is None:
        max_depth = _configured_depth()
    found = problem(value, max_depth)
    if found is not None:
        raise error_for(found)


def _configured_depth():
    from flask import current_app

    try:
        return current_app.config.get("MAX_JSON_DEPTH", DEFAULT_MAX_DEPTH)
    except RuntimeError:  # no app context
        return DEFAULT_MAX_DEPTH


class Refused:
    """A Socket.IO event argument the JSON decoder refused; the handler acks `error` instead of running."""

    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error

    def __repr__(self):
        return f"Refused({self.error!r})"
