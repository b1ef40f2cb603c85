"""Provider events, each processed once: the Stripe webhook and the offline provider's event feed.

``handle(db, event)`` records the event id in ``payment_events`` (its ``_id``: unique) before running
the handler for its type, so two deliveries of one event (concurrent or not) have one effect; a
handler that fails deletes the mark, so the provider's retry runs it again. Events of a type no
handler takes are acknowledged and kept. Handlers are safe against events out of order: they move
records forward only (records.advance) and re-read the object from the provider when in doubt.
"""
from pymongo.errors import DuplicateKeyError

from allynet import clock

COLLECTION = "payment_events"

_handlers = {}


def handles(*event_types):
    """Decorator: `fn(db, provider, event)` handles events of these types."""
    def register(fn):
        for event_type in event_types:
            _handlers[event_type] = fn
        return fn
    return register


def handled_types():
    """The event types some handler takes (the README lists them for the webhook's set-up)."""
    return sorted(_handlers)


def handle(*, db, provider, event, source):
    """Process `event` (a provider-shaped dict) once. Returns ``{"received": True, "duplicate": bool,
    "handled": bool}``."""
    event_id, event_type = event["id"], event["type"]
    handler = _handlers.get(event_type)
    try:
        db[COLLECTION].insert_one({"_id": event_id, "type": event_type, "source": source,
                                   "handled": handler is not None, "received_at": clock.now()})
    except DuplicateKeyError:
        return {"received": True, "duplicate": True, "handled": handler is not None}
    if handler is not None:
        try:
            handler(db, provider, event)
        except Exception:
            db[COLLECTION].delete_one({"_id": event_id})
            raise
    return {"received": True, "duplicate": False, "handled": handler is not None}
