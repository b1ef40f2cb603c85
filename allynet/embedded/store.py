"""The embedded store: mongomock made faithful enough to serve the contract.

mongomock runs each write as read-then-modify in Python, so two threads can
both pass a compare-and-set filter. MongoDB makes every single-document write
atomic; here one lock per client serialises writes so `find_one_and_update`
with a status in its filter, unique indexes and `$inc` behave as they do on
a server. Geo queries come from `geo`, `$text` from
`text`. Lookups by `_id` go straight to the document instead of
scanning the collection, as the server's `_id` index does.

Two costs of mongomock grow with every write and would make the embedded
server slow long before MongoDB would be: each unique-index check and each
query runs the full filter over every document, and every access to a
collection with a TTL index rescans it for expired documents. Here plain
equality and `$in` conditions pick the candidate documents from hash indexes
(`indexes`; the full filter still decides), and the TTL sweep runs at most
once a minute per collection, as MongoDB's own TTL monitor does.

A background job that keeps its own aggregate of a big collection (the traffic
job and the trail points) reads it whole once (`follow`), then only what was
stored or removed since (`changes`, from the change log `indexes` keeps for a
followed collection): what a change stream gives on a MongoDB replica set.
"""
import functools
import threading
import time
from datetime import datetime

import mongomock
from bson import BSON, ObjectId
from mongomock import filtering as mongomock_filtering
from mongomock import helpers as mongomock_helpers
from mongomock.collection import Collection
from mongomock.filtering import filter_applies
from mongomock.store import CollectionStore

from allynet.embedded import copies, geo, indexes, text

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
# MongoDB's TTL monitor deletes expired documents once a minute (ttlMonitorSleepSecs = 60), so
# readers never rely on a sooner sweep; mongomock's sweep scans every document of the
# collection, and trail points alone grow by one per rider every few seconds.
TTL_SWEEP_SECONDS = 60.0


def _conditions(filter_):
    """(field, condition) of the top level and of `$and` (recursively): what every match satisfies."""
    stack = [filter_]
    while stack:
        for field, condition in stack.pop().items():
            if field == "$and" and isinstance(condition, list):
                stack.extend(item for item in condition if isinstance(item, dict))
            elif not field.startswith("$"):
                yield field, condition


def _plain_in(condition):
    """The `$in` list of a condition when every value in it is plain, else None."""
    if isinstance(condition, dict) and isinstance(condition.get("$in"), list) and \
            all(value is None or isinstance(value, _PLAIN) for value in condition["$in"]):
        return condition["$in"]
    return None


def _plain_equalities(filter_):
    """(path, value) pairs every matching document must equal."""
    pairs = []
    for field, condition in _conditions(filter_):
        if isinstance(condition, dict) and set(condition) == {"$eq"}:
            if isinstance(condition["$eq"], _PLAIN):
                pairs.append((field, condition["$eq"]))
        elif isinstance(condition, _PLAIN):
            pairs.append((field, condition))
    return pairs


def _plain_in_lists(filter_):
    """(path, values) for each `{path: {$in: [plain values]}}` every matching document must meet."""
    return [(field, values) for field, values in
            ((field, _plain_in(condition)) for field, condition in _conditions(filter_)) if values is not None]


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
        elif not field.startswith("$") and _plain_in(condition) is not None:
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
            # The most selective equality: the first field's index, or a narrower one another
            # query already built ({party_id, user_id}: the user's one or two memberships, not
            # the party's eight).
            path, value = indexes.narrowest(self._store, pairs) if len(pairs) > 1 else pairs[0]
            candidates = indexes.candidate_documents(self._store, path, value)
        if in_lists:
            path, values = min(in_lists, key=lambda item: len(item[1]))
            if candidates is None or len(values) < len(candidates):
                narrower = indexes.candidate_documents_any(self._store, path, values)
                if candidates is None or len(narrower) < len(candidates):
                    candidates = narrower
            filter = _with_hashed_in(filter)  # noqa: A001 - mongomock's name
        if not candidates:
            filter_applies(filter, {})  # malformed filters still fail, as on an empty collection
        return (document for document in candidates if filter_applies(filter, document))

    return _iter_documents


def _set_fields(document):
    """The fields of an update that only `$set`s top-level fields (not `_id`), else None."""
    if type(document) is not dict or len(document) != 1 or "$set" not in document:
        return None
    fields = document["$set"]
    if type(fields) is not dict or not fields:
        return None
    for name in fields:
        if type(name) is not str or not name or name == "_id" or name[0] == "$" or "." in name or "\0" in name:
            return None
    return fields


def _index_fields(index):
    """Top-level field names an index reads: its keys and its partial filter's."""
    names = {key.split(".")[0] for key, _ in geo.key_pairs(index.get("key", []))}
    stack = [index.get("partialFilterExpression") or {}]
    while stack:
        for key, value in stack.pop().items():
            if key.startswith("$"):
                stack.extend(item for item in (value if isinstance(value, list) else [value])
                             if isinstance(item, dict))
            else:
                names.add(key.split(".")[0])
    return names


def _described_indexes(store):
    """[(index, fields it reads, unique?, 2dsphere?)] of a collection store, worked out again only
    when its indexes change (the list holds the index objects, so identity tells)."""
    described = tuple(store.indexes.values())
    state = vars(store)
    cached = state.get("_allynet_described")
    if cached is None or len(cached) != len(described) or any(
            entry[0] is not index for entry, index in zip(cached, described)):
        cached = state["_allynet_described"] = [
            (index, frozenset(_index_fields(index)), bool(index.get("unique")),
             any(kind == "2dsphere" for _, kind in geo.key_pairs(index.get("key", []))))
            for index in described]
    return cached


def _with_fast_set(original):
    """mongomock's `_update` for the common case, `{$set: {top-level fields}}` without upsert:
    the matched documents are changed in place without mongomock's per-document deep-copy
    snapshot, generic updater walk and full re-validation; what MongoDB would refuse (a value
    BSON cannot hold, an invalid geo key, a unique index violation) is refused the same way,
    leaving the document as it was."""

    @functools.wraps(original)
    def _update(self, spec, document, upsert=False, manipulate=False, multi=False, check_keys=False,
                hint=None, session=None, collation=None, let=None, array_filters=None, **kwargs):
        fields = None if (upsert or manipulate or check_keys or hint or session or collation or let
                          or array_filters or kwargs) else _set_fields(document)
        if fields is None or not isinstance(spec, dict):
            return original(self, spec, document, upsert, manipulate, multi, check_keys, hint=hint,
                            session=session, collation=collation, let=let, array_filters=array_filters,
                            **kwargs)
        spec = mongomock_helpers.patch_datetime_awareness_in_document(spec)
        fields = mongomock_helpers.patch_datetime_awareness_in_document(fields)
        BSON.encode(fields)  # what the driver would refuse to send
        names = set(fields)
        described = _described_indexes(self._store)
        check_unique = [index for index, read, unique, _ in described if unique and names & read]
        check_geo = any(geo and names & read for _, read, _, geo in described)
        matched = modified = 0
        for existing in list(self._iter_documents(spec)):
            matched += 1
            missing = object()
            before = {name: existing.get(name, missing) for name in fields}
            if any(old is missing or old != fields[name] or type(old) is not type(fields[name])
                   for name, old in before.items()):
                for name, value in fields.items():
                    existing[name] = copies.copy_document(value)
                try:
                    problem = geo.write_problem(self, existing) if check_geo else None
                    if problem:
                        raise geo.write_error(problem)
                    if check_unique:
                        indexes.reindex(self._store, existing["_id"])
                        self._ensure_uniques(existing)
                except Exception:
                    for name, old in before.items():
                        if old is missing:
                            existing.pop(name, None)
                        else:
                            existing[name] = old
                    indexes.reindex(self._store, existing["_id"])
                    raise
                indexes.reindex(self._store, existing["_id"])
                indexes.log_update(self._store, existing["_id"])
                modified += 1
            if not multi:
                break
        return {"connectionId": self.database.client._id, "err": None, "n": matched,
                "nModified": modified, "ok": 1, "upserted": None, "updatedExisting": matched > 0}

    return _update


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
    geo.install()
    text.install()
    with _install_lock:
        if _installed:
            return
        for name in _WRITE_METHODS:
            setattr(Collection, name, _serialised(getattr(Collection, name)))
        Collection._iter_documents = _with_fast_paths(Collection._iter_documents)
        Collection._update = _with_fast_set(Collection._update)
        CollectionStore._remove_expired_documents = _throttled_expiry(
            CollectionStore._remove_expired_documents)
        indexes.install()
        copies.install()
        # $nin calls the module-level _in_op; $in goes through the (one) filterer's operator map.
        mongomock_filtering._in_op = _fast_in_op(mongomock_filtering._in_op)
        mongomock_filtering._filterer_inst._operator_map["$in"] = mongomock_filtering._in_op
        _installed = True


def scan_since(collection, field, since):
    """The documents of `find({field: {"$gte": since}})`, without mongomock's per-document filter
    and copy, for background jobs reading many documents of a big collection (trail points).

    `since` is a datetime and so are the values that match (as on MongoDB, other types never
    compare); expired documents are left out as `find` would. The documents are the store's own:
    read them, never mutate them.
    """
    store = collection._store
    with _client_lock(collection):
        documents = list(store.documents)
    found = []
    for n, document in enumerate(documents):
        if n % 5000 == 4999:
            time.sleep(0)  # a cooperative yield under eventlet: a long scan lets the live path run
        value = document.get(field)
        if isinstance(value, datetime) and value >= since:
            found.append(document)
    return found


def follow(collection):
    """Start following `collection`'s changes (see `changes`); returns the documents it holds now.

    For background jobs that keep their own aggregate of a big collection (trail points): they
    read it whole once, then only what changed. The documents are the store's own: read them,
    never mutate them.
    """
    store = collection._store
    with _client_lock(collection):
        # The log first: a document deleted from here on shows up as a removal. No TTL sweep
        # here (a scan of the whole collection): the documents it removes later show up so too.
        indexes.start_change_log(store)
        documents = list(store._documents.values())
    return documents


def changes(collection):
    """What changed in a followed `collection` since `follow` or the last call, in order:
    (ADDED, document), (REMOVED, _id) or (RESET, None) when it was dropped; None when it is
    not followed (never, or too long unread: follow it again).

    A document added and then removed again before this call is left out of ADDED (its REMOVED
    still comes). The documents are the store's own: read them, never mutate them.
    """
    store = collection._store
    with _client_lock(collection):
        log = indexes.take_change_log(store)
    if log is None:
        return None
    return _resolved(store, log)


def _resolved(store, log):
    documents = store._documents
    for n, (change, key) in enumerate(log):
        if n % 5000 == 4999:
            time.sleep(0)  # a cooperative yield under eventlet
        if change == indexes.ADDED:
            document = documents.get(key)
            if document is not None:
                yield change, document
        else:
            yield change, key


ADDED, REMOVED, RESET = indexes.ADDED, indexes.REMOVED, indexes.RESET


def make_client():
    """A fresh in-process store."""
    install()
    return mongomock.MongoClient(tz_aware=False)
