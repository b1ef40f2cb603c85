"""The embedded store: mongomock made faithful enough to serve the contract.

mongomock runs each write as read-then-modify in Python, so two threads can
both pass a compare-and-set filter. MongoDB makes every single-document write
atomic; here one lock per client serialises writes so `find_one_and_update`
with a status in its filter, unique indexes and `$inc` behave as they do on
a server. Geo queries come from `geo_mongomock`, `$text` from
`text_mongomock`. Lookups by `_id` go straight to the document instead of
scanning the collection, as the server's `_id` index does.

Two costs of mongomock grow with every write and would make the embedded
server slow long before MongoDB would be: each unique-index check and each
query runs the full filter over every document, and every access to a
collection with a TTL index rescans it for expired documents. Here plain
equality and `$in` conditions pick the candidate documents from hash indexes
(`embedded_index`; the full filter still decides), and the TTL sweep runs at most
once a second per collection (MongoDB's own TTL monitor runs once a minute).
"""
import functools
import threading
import time
from datetime import datetime

import mongomock
from bson import ObjectId
from mongomock.collection import Collection
from mongomock import filtering as mongomock_filtering
from mongomock.filtering import filter_applies
from mongomock.store import CollectionStore

from allynet import doccopy, embedded_index, geo_mongomock, text_mongomock

_WRITE_METHODS = (
    "insert_one", "insert_many", "update_one", "update_many", "replace_one",
    "delete_one", "delete_many", "find_one_and_update", "find_one_and_replace",
    "find_one_and_delete", "bulk_write", "create_index", "create_indexes", "drop_index",
    "drop",
)
_installed = False
_install_lock = threading.Lock()


def _client_lock(collection):
    # vars(): mongomock clients answer any unknown attribute with a database.
    state = vars(collection.database.client)
    lock = state.get("_allynet_write_lock")
    if lock is None:
        with _install_lock:
            lock = state.setdefault("_allynet_write_lock", threading.RLock())
    return lock


def _serialised(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _client_lock(self):
            return method(self, *args, **kwargs)

    return wrapper


_GEO_OPERATORS = frozenset(("$near", "$nearSphere", "$geoWithin", "$geoIntersects"))


def _by_id(filter_):
    """The `_id` of a filter that names one document and needs no geo/text validation, else None."""
    if not isinstance(filter_, dict) or "_id" not in filter_:
        return None
    key = filter_["_id"]
    if isinstance(key, (dict, list)) or key is None:
        return None
    for field, condition in filter_.items():
        if field.startswith("$"):
            return None
        if isinstance(condition, dict) and _GEO_OPERATORS.intersection(condition):
            return None
    return key


_PLAIN = (str, int, float, ObjectId, datetime)
TTL_SWEEP_SECONDS = 1.0


def _plain_equalities(filter_):
    """(path, value) pairs every matching document must equal, from the top level and `$and`."""
    pairs, stack = [], [filter_]
    while stack:
        for field, condition in stack.pop().items():
            if field == "$and" and isinstance(condition, list):
                stack.extend(item for item in condition if isinstance(item, dict))
            elif field.startswith("$"):
                continue
            elif isinstance(condition, dict) and set(condition) == {"$eq"}:
                if isinstance(condition["$eq"], _PLAIN):
                    pairs.append((field, condition["$eq"]))
            elif isinstance(condition, _PLAIN):
                pairs.append((field, condition))
    return pairs


def _plain_in_lists(filter_):
    """(path, values) for each `{path: {$in: [plain values]}}` of the top level and `$and`."""
    found, stack = [], [filter_]
    while stack:
        for field, condition in stack.pop().items():
            if field == "$and" and isinstance(condition, list):
                stack.extend(item for item in condition if isinstance(item, dict))
            elif not field.startswith("$") and isinstance(condition, dict) and \
                    isinstance(condition.get("$in"), list) and \
                    all(value is None or isinstance(value, _PLAIN) for value in condition["$in"]):
                found.append((field, condition["$in"]))
    return found


class _HashedList(list):
    """An `$in` list of plain values that answers `in` from a set (mongomock tests each
    document's value with `in`, a linear scan: O(documents x values) for a batch read)."""

    def __init__(self, values):
        super().__init__(values)
        self._set = set(values)

    def __contains__(self, value):
        try:
            return value in self._set
        except TypeError:  # an unhashable document value (array, sub-document): compare as a list
            return list.__contains__(self, value)


def _fast_in_op(original):
    """mongomock's `$in` test; for a `_HashedList` without its per-document regex scan of the list."""

    @functools.wraps(original)
    def _in_op(doc_val, search_val):
        if type(search_val) is not _HashedList:
            return original(doc_val, search_val)
        if doc_val is mongomock_filtering.NOTHING:
            return None in search_val
        return any(value in search_val for value in (doc_val if isinstance(doc_val, (list, tuple)) else [doc_val]))

    return _in_op


def _with_hashed_in(filter_):
    """`filter_` with each plain `$in` list (top level and `$and`) answering `in` from a set."""
    result = {}
    for field, condition in filter_.items():
        if field == "$and" and isinstance(condition, list):
            condition = [_with_hashed_in(item) if isinstance(item, dict) else item for item in condition]
        elif not field.startswith("$") and isinstance(condition, dict) and \
                isinstance(condition.get("$in"), list) and \
                all(value is None or isinstance(value, _PLAIN) for value in condition["$in"]):
            condition = dict(condition, **{"$in": _HashedList(condition["$in"])})
        result[field] = condition
    return result


_SPECIAL = _GEO_OPERATORS | {"$text", "$where", "$expr"}


def _has_geo_or_text(value):
    """True when any level of a filter uses an operator the geo/text layers must plan."""
    if isinstance(value, dict):
        return any(key in _SPECIAL or _has_geo_or_text(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_geo_or_text(item) for item in value)
    return False


def _with_fast_paths(original):
    @functools.wraps(original)
    def _iter_documents(self, filter):  # noqa: A002 - mongomock's name
        key = _by_id(filter)
        if key is not None:
            try:
                document = self._store[key]
            except KeyError:
                return iter(())
            return iter([document] if filter_applies(filter, document) else [])
        if not isinstance(filter, dict) or _has_geo_or_text(filter):
            return original(self, filter)
        pairs = _plain_equalities(filter)
        in_lists = _plain_in_lists(filter)
        if not pairs and not in_lists:
            return original(self, filter)
        self._store._remove_expired_documents()
        candidates = None
        if pairs:
            path, value = pairs[0]
            candidates = embedded_index.candidate_documents(self._store, path, value)
        if in_lists:
            path, values = min(in_lists, key=lambda item: len(item[1]))
            if candidates is None or len(values) < len(candidates):
                narrower = embedded_index.candidate_documents_any(self._store, path, values)
                if candidates is None or len(narrower) < len(candidates):
                    candidates = narrower
            filter = _with_hashed_in(filter)  # noqa: A001 - mongomock's name
        if not candidates:
            filter_applies(filter, {})  # malformed filters still fail, as on an empty collection
        return (document for document in candidates if filter_applies(filter, document))

    return _iter_documents


def _throttled_expiry(original):
    @functools.wraps(original)
    def _remove_expired_documents(self):
        if not self._ttl_indexes:
            return
        state = vars(self)
        now = time.monotonic()
        if now - state.get("_allynet_swept_at", float("-inf")) < TTL_SWEEP_SECONDS:
            return
        state["_allynet_swept_at"] = now
        original(self)

    return _remove_expired_documents


def install():
    """Patch mongomock once: geo and text queries, atomic writes, `_id` lookups."""
    global _installed
    geo_mongomock.install()
    text_mongomock.install()
    with _install_lock:
        if _installed:
            return
        for name in _WRITE_METHODS:
            setattr(Collection, name, _serialised(getattr(Collection, name)))
        Collection._iter_documents = _with_fast_paths(Collection._iter_documents)
        CollectionStore._remove_expired_documents = _throttled_expiry(
            CollectionStore._remove_expired_documents)
        embedded_index.install()
        doccopy.install()
        # $nin calls the module-level _in_op; $in goes through the (one) filterer's operator map.
        mongomock_filtering._in_op = _fast_in_op(mongomock_filtering._in_op)
        mongomock_filtering._filterer_inst._operator_map["$in"] = mongomock_filtering._in_op
        _installed = True


def make_client():
    """A fresh in-process store."""
    install()
    return mongomock.MongoClient(tz_aware=False)
