"""The embedded store: mongomock made faithful enough to serve the contract.

mongomock runs each write as read-then-modify in Python, so two threads can
both pass a compare-and-set filter. MongoDB makes every single-document write
atomic; here one lock per client serialises writes so `find_one_and_update`
with a status in its filter, unique indexes and `$inc` behave as they do on
a server. Geo queries come from `geo_mongomock`.
"""
import functools
import threading

import mongomock
from mongomock.collection import Collection

from allynet import text_mongomock


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


def install():
    """Patch mongomock once: geo queries plus atomic single-document writes."""
    global _installed
    try:
        from allynet import geo_mongomock
    except ImportError:  # being written; geo queries unavailable until it lands
        geo_mongomock = None
    if geo_mongomock is not None:
        geo_mongomock.install()
    text_mongomock.install()
    with _install_lock:
        if _installed:
            return
        for name in _WRITE_METHODS:
            setattr(Collection, name, _serialised(getattr(Collection, name)))
        _installed = True


def make_client():
    """A fresh in-process store."""
    install()
    return mongomock.MongoClient(tz_aware=False)
