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


# Stands in for the `copy` module inside mongomock: the same functions, a faster deepcopy.
module = types.SimpleNamespace(copy=_copy.copy, deepcopy=copy_document, Error=_copy.Error)


def install():
    """Use `copy_document` for mongomock's deep copies (idempotent)."""
    from mongomock import aggregate, collection

    collection.copy = module
    aggregate.copy = module
