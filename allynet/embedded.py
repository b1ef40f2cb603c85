"""The embedded store: mongomock made faithful enough to serve the contract.

mongomock runs each write as read-then-modify in Python, so two threads can
both pass a compare-and-set filter. MongoDB makes every single-document write
atomic; here one lock per client serialises writes so `find_one_and_update`
with a status in its filter, unique indexes and `$inc` behave as they do on
a server. Geo queries come from `geo_mongomock`, `$text` from
`text_mongomock`. Lookups by `_id` go straight to the document instead of
scanning the collection, as the server's `_id` index does.
"""
import functools
import threading

import mongomock
from mongomock.collection import Collection
from mongomock.filtering import filter_applies

from allynet import geo_mongomock, text_mongomock

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


def _with_id_lookup(original):
    @functools.wraps(original)
    def _iter_documents(self, filter):  # noqa: A002 - mongomock's name
        key = _by_id(filter)
        if key is None:
            return original(self, filter)
        try:
            document = self._store[key]
        except KeyError:
            return iter(())
        return iter([document] if filter_applies(filter, document) else [])

    return _iter_documents


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
        Collection._iter_documents = _with_id_lookup(Collection._iter_documents)
        _installed = True


def make_client():
    """A fresh in-process store."""
    install()
    return mongomock.MongoClient(tz_aware=False)
