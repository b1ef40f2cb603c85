"""A deep copy for stored documents, several times faster than `copy.deepcopy`.

mongomock deep-copies a document on every update (a rollback snapshot), on
every read it returns and in several aggregation stages; `copy.deepcopy`
spends most of that time in its generic dispatch and memo bookkeeping. A
stored document is a tree of dicts (plain or ordered) and lists whose leaves are
immutable BSON values, so copying the containers and sharing the leaves
gives the same result. Anything else (SON, tuples, sets, mutable custom
types) goes to `copy.deepcopy`, so the result is always a faithful copy.

`install()` points mongomock's `copy` module references at this one.
"""
import copy as _copy
import datetime
import decimal
import re
import types
import uuid
from collections import OrderedDict

from bson import Decimal128, ObjectId, Timestamp
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey

# Values that are never changed in place: sharing them is copying them.
IMMUTABLE = frozenset((str, int, float, bool, type(None), bytes, complex, ObjectId, Int64, Decimal128,
                       Timestamp, MinKey, MaxKey, datetime.datetime, datetime.date, datetime.time,
                       datetime.timedelta, decimal.Decimal, uuid.UUID, re.Pattern))


def copy_document(value, memo=None):
    """A deep copy of `value` (same signature as `copy.deepcopy`)."""
    kind = type(value)
    if kind is dict:
        return {key: copy_document(item) for key, item in value.items()}
    if kind is list:
        return [copy_document(item) for item in value]
    if kind is OrderedDict:  # how mongomock keeps some documents
        return OrderedDict([(key, copy_document(item)) for key, item in value.items()])
    if kind in IMMUTABLE:
        return value
    return _copy.deepcopy(value, memo)


# Leaves mongomock's datetime patch returns as they are (exact types: a subclass goes the long way).
_UNPATCHED = frozenset((str, int, float, bool, type(None), bytes, ObjectId))
_patch_datetimes = None  # mongomock's own patch_datetime_awareness_in_document (install())


def patch_datetime_awareness(value):
    """mongomock's `patch_datetime_awareness_in_document` (every document written and every
    filter: datetimes to naive UTC milliseconds, tuples to lists, new containers), with the
    common containers and leaves answered by exact type before its chain of isinstance checks;
    everything else (datetimes, OrderedDicts, tuples, Timestamps, subclasses) is its own."""
    kind = type(value)
    if kind is dict:
        return {key: patch_datetime_awareness(item) for key, item in value.items()}
    if kind in _UNPATCHED:
        return value
    if kind is list:
        return [patch_datetime_awareness(item) for item in value]
    return _patch_datetimes(value)


# Stands in for the `copy` module inside mongomock: the same functions, a faster deepcopy.
module = types.SimpleNamespace(copy=_copy.copy, deepcopy=copy_document, Error=_copy.Error)


def install():
    """Use `copy_document` for mongomock's deep copies and `patch_datetime_awareness` for its
    datetime patch (idempotent)."""
    global _patch_datetimes
    from mongomock import aggregate, collection, helpers

    collection.copy = module
    aggregate.copy = module
    if _patch_datetimes is None:
        _patch_datetimes = helpers.patch_datetime_awareness_in_document
        helpers.patch_datetime_awareness_in_document = patch_datetime_awareness
