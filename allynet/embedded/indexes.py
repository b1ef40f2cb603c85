"""Hash indexes for the embedded store, so equality lookups don't scan.

MongoDB answers `{user_id: X}`, `{user_id: {$in: [...]}}` or a unique-index check from a B-tree;
mongomock runs the whole filter over every document, which makes every write
O(n) and bulk inserts O(n^2). This keeps, per collection and per field path
that an equality query has used, a map value -> document ids, maintained at
the three places documents change: the store's item assignment and deletion
and mongomock's in-place update. Lookups return a superset of the matching
documents (arrays, sub-documents and values that compare equal across types
fall back to "may match"); the full filter still decides, so results are the
same as without the index, in the same (insertion) order.
"""
import functools
import itertools

from mongomock.collection import Collection
from mongomock.store import CollectionStore

_MISSING = object()
_COMPLEX = object()
_sequence = itertools.count()


def _bucket(document, path):
    node = document
    for part in path.split("."):
        if not isinstance(node, dict):
            return _COMPLEX if isinstance(node, list) else _MISSING
        if part not in node:
            return _MISSING
        node = node[part]
    if isinstance(node, (list, dict)):
        return _COMPLEX
    try:
        hash(node)
    except TypeError:
        return _COMPLEX
    return node


class _PathIndex:
    """value -> ids for one field path of one collection."""

    def __init__(self, path, documents):
        self.path = path
        self.ids = {}
        self.value_of = {}
        for key, document in documents.items():
            self.add(key, document)

    def add(self, key, document):
        value = _bucket(document, self.path)
        old = self.value_of.get(key, _MISSING_ENTRY)
        if old is not _MISSING_ENTRY:
            if old == value and type(old) is type(value):
                return
            self._discard(key, old)
        self.value_of[key] = value
        self.ids.setdefault(value, set()).add(key)

    def remove(self, key):
        old = self.value_of.pop(key, _MISSING_ENTRY)
        if old is not _MISSING_ENTRY:
            self._discard(key, old)

    def _discard(self, key, value):
        bucket = self.ids.get(value)
        if bucket is not None:
            bucket.discard(key)
            if not bucket:
                del self.ids[value]

    def count(self, value):
        """How many documents `candidates(value)` would return (no set built)."""
        total = len(self.ids.get(value, ())) + len(self.ids.get(_COMPLEX, ()))
        if value is None:
            total += len(self.ids.get(_MISSING, ()))
        return total

    def candidates(self, value):
        found = set(self.ids.get(value, ()))
        found |= self.ids.get(_COMPLEX, set())
        if value is None:
            found |= self.ids.get(_MISSING, set())
        return found


_MISSING_ENTRY = object()


def _state(store):
    state = vars(store)
    if "_allynet_paths" not in state:
        state["_allynet_paths"] = {}
        state["_allynet_seq"] = {key: next(_sequence) for key in store._documents}
    return state


def reindex(store, key):
    """Bring every path index of `store` up to date for the document at `key`."""
    state = vars(store)
    paths = state.get("_allynet_paths")
    if not paths:
        return
    document = store._documents.get(key)
    for index in paths.values():
        if document is None:
            index.remove(key)
        else:
            index.add(key, document)


def narrowest(store, pairs):
    """Of (path, value) equality pairs, the one whose index holds the fewest candidates. The first
    pair's path is indexed as before (so the choice is never worse than taking it); the others
    count only where a query has indexed their path already."""
    paths = _state(store)["_allynet_paths"]
    best, best_count = pairs[0], _index_for(store, pairs[0][0]).count(pairs[0][1])
    for pair in pairs[1:]:
        index = paths.get(pair[0])
        if index is not None:
            count = index.count(pair[1])  # plain values (embedded._PLAIN): hashable
            if count < best_count:
                best, best_count = pair, count
    return best


def _index_for(store, path):
    """The path index of `store` for `path`, built on first use."""
    paths = _state(store)["_allynet_paths"]
    index = paths.get(path)
    if index is None:
        index = paths[path] = _PathIndex(path, store._documents)
    return index


def candidate_documents(store, path, value):
    """The documents that may hold `value` at `path`, in insertion order."""
    return candidate_documents_any(store, path, (value,))


def candidate_documents_any(store, path, values):
    """The documents that may hold any of `values` at `path` (an `$in`), in insertion order."""
    index = _index_for(store, path)
    seq = _state(store)["_allynet_seq"]
    found = set()
    for value in values:
        found |= index.candidates(value)
    keys = sorted(found, key=lambda k: seq.get(k, 0))
    documents = store._documents
    return [documents[key] for key in keys if key in documents]


# The change log of a followed store: ("+", key) for a document stored (inserted or replaced),
# ("-", key) for one gone (deleted, or the old version of a replaced or updated one), in order;
# (RESET, None) when the collection was dropped. Background jobs that keep their own aggregate of
# a big collection read it instead of rescanning the collection (`store.follow`).
ADDED, REMOVED, RESET = "+", "-", "reset"
_CHANGES = "_allynet_changes"
CHANGE_LOG_LIMIT = 2_000_000  # a log nobody reads any more stops here (its reader starts over)


def _log_change(state, key, *, replaced, added):
    log = state.get(_CHANGES)
    if log is None:
        return
    if len(log) >= CHANGE_LOG_LIMIT:
        del state[_CHANGES]
        return
    if replaced:
        log.append((REMOVED, key))
    if added:
        log.append((ADDED, key))


def log_update(store, key):
    """Log an in-place update of the document at `key` (as its removal and its new version)."""
    _log_change(vars(store), key, replaced=True, added=True)


def start_change_log(store):
    """Log `store`'s changes from now on (an empty log; any earlier one is discarded)."""
    vars(store)[_CHANGES] = []


def take_change_log(store):
    """The changes logged since the last call (the log starts empty again), or None when
    `store` is not logged (never started, or its reader fell too far behind)."""
    state = vars(store)
    log = state.get(_CHANGES)
    if log is None:
        return None
    state[_CHANGES] = []
    return log


def _patch_setitem(original):
    @functools.wraps(original)
    def __setitem__(self, key, value):
        state = vars(self)
        is_new = key not in self._documents
        original(self, key, value)
        _log_change(state, key, replaced=not is_new, added=True)
        if "_allynet_seq" in state:
            if is_new:
                state["_allynet_seq"][key] = next(_sequence)
            reindex(self, key)

    return __setitem__


def _patch_delitem(original):
    @functools.wraps(original)
    def __delitem__(self, key):
        original(self, key)
        state = vars(self)
        _log_change(state, key, replaced=True, added=False)
        if "_allynet_seq" in state:
            state["_allynet_seq"].pop(key, None)
            reindex(self, key)

    return __delitem__


def _patch_drop(original):
    @functools.wraps(original)
    def drop(self):
        original(self)
        vars(self).pop("_allynet_paths", None)
        vars(self).pop("_allynet_seq", None)
        log = vars(self).get(_CHANGES)
        if log is not None:
            log.clear()
            log.append((RESET, None))

    return drop


def _patch_apply_update(original):
    @functools.wraps(original)
    def apply(self, existing_document, *args, **kwargs):
        result = original(self, existing_document, *args, **kwargs)
        key = existing_document.get("_id")
        if key is not None and key in self._store._documents:
            log_update(self._store, key)
            reindex(self._store, key)
        return result

    return apply


def install():
    """Hook index maintenance into mongomock (call once, after other patches)."""
    CollectionStore.__setitem__ = _patch_setitem(CollectionStore.__setitem__)
    CollectionStore.__delitem__ = _patch_delitem(CollectionStore.__delitem__)
    CollectionStore.drop = _patch_drop(CollectionStore.drop)
    Collection._apply_update_document = _patch_apply_update(Collection._apply_update_document)
    Collection._apply_update_pipeline = _patch_apply_update(Collection._apply_update_pipeline)
