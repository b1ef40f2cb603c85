"""Where the offline provider keeps its objects: the app's own database (`offline_provider`), so every
process of an embedded or MongoDB deployment sees the same intents, customers and subscriptions.

Objects are Stripe-shaped dicts keyed by their id (``pi_offline_...``); ``new_id`` makes one.
"""
import secrets

from allynet.db import get_db

COLLECTION = "offline_provider"


def new_id(prefix):
    """A provider-style id: ``pi_offline_3kQ...``."""
    return f"{prefix}_offline_{secrets.token_urlsafe(12).replace('-', 'x').replace('_', 'y')}"


def save(obj):
    """Insert or replace `obj` (by its ``id``); returns it."""
    get_db()[COLLECTION].replace_one({"_id": obj["id"]}, {"_id": obj["id"], "obj": obj}, upsert=True)
    return obj


def load(obj_id):
    """The object with this id, or None."""
    found = get_db()[COLLECTION].find_one({"_id": obj_id})
    return None if found is None else found["obj"]


def swap(obj, *, expected):
    """Replace the stored object by `obj` only if it is still exactly `expected` (a compare-and-set:
    of two concurrent changes one wins). True when replaced."""
    result = get_db()[COLLECTION].update_one({"_id": obj["id"], "obj": expected}, {"$set": {"obj": obj}})
    return result.modified_count == 1


def recalled(key):
    """The id of the object an earlier call with idempotency key `key` produced, or None."""
    found = get_db()[COLLECTION].find_one({"_id": f"idem:{key}"})
    return None if found is None else found["obj_id"]


def remember(key, obj_id):
    """Tie an idempotency key to the object it created; returns the id already tied to it, or None."""
    from pymongo.errors import DuplicateKeyError

    try:
        get_db()[COLLECTION].insert_one({"_id": f"idem:{key}", "obj_id": obj_id})
    except DuplicateKeyError:
        return get_db()[COLLECTION].find_one({"_id": f"idem:{key}"})["obj_id"]
    return None
