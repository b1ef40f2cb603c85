"""Payment records: one document per payment in `payments`, its history append-only.

A record is created once per *origin* (``help_request:<id>``, ``promotion:<business>:<promotion>``,
``invoice:<provider invoice id>``): the unique index on ``origin`` makes a retried create return the
first record, so a retry never makes a second payment. Status changes go through ``advance()``,
whose filter admits only the transitions in TRANSITIONS (the database, not the caller, refuses a
step back), and each change appends ``{status, at, cause}`` to ``history``; nothing else edits it.

After a change, the hooks registered for the record's kind run (``on_change``): the help-request
flow tells the helper their payment is secured, a paid promotion gets featured, and so on.
Every write adds one to ``version``, so a copy kept elsewhere (a help request's payment summary) can
refuse to be overwritten by an older one.
"""
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from allynet import clock

COLLECTION = "payments"
KINDS = ("help_request", "subscription", "promotion")
# The provider's PaymentIntent statuses, then ours for refunds.
STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action", "processing",
            "requires_capture", "succeeded", "canceled", "partially_refunded", "refunded")
_OPEN = ("requires_payment_method", "requires_confirmation", "requires_action", "processing")
# status -> the statuses a payment may be in to move there. A decline returns an open intent to
# requires_payment_method (as the provider does); nothing leaves canceled or refunded.
TRANSITIONS = {
    "requires_payment_method": _OPEN,
    "requires_confirmation": _OPEN,
    "requires_action": _OPEN,
    "processing": _OPEN + ("requires_capture",),
    "requires_capture": _OPEN,
    "succeeded": _OPEN + ("requires_capture",),
    "canceled": _OPEN + ("requires_capture",),
    "partially_refunded": ("succeeded", "partially_refunded"),
    "refunded": ("succeeded", "partially_refunded"),
}
FINAL = ("canceled", "refunded")

_hooks = {}


def on_change(kind):
    """Decorator: `fn(db, payment, previous_status)` runs after a `kind` payment changed status."""
    def register(fn):
        _hooks.setdefault(kind, []).append(fn)
        return fn
    return register


def create(*, db, origin, kind, payer_id, payee_id, amount, currency, fee_amount=0, status,
           cause, livemode, provider, refs=None, extra=None):
    """Insert the record for `origin`, or return the one already there (a retry). Amounts are
    integers in minor units; `refs` holds help_request_id / organization_id / business_id...;
    returns (record, created)."""
    if kind not in KINDS or status not in STATUSES:
        raise ValueError(f"kind {kind!r} / status {status!r}")
    now = clock.now()
    record = {
        "origin": origin, "kind": kind, "payer_id": payer_id, "payee_id": payee_id,
        "amount": int(amount), "fee_amount": int(fee_amount), "payee_amount": int(amount) - int(fee_amount),
        "currency": currency, "status": status, "refunded_amount": 0, "version": 1,
        "history": [{"status": status, "at": now, "cause": cause}],
        "livemode": bool(livemode), "provider": provider, "created_at": now, "updated_at": now,
        **(refs or {}), **(extra or {}),
    }
    try:
        result = db[COLLECTION].insert_one(record)
    except DuplicateKeyError:
        return db[COLLECTION].find_one({"origin": origin}), False
    record["_id"] = result.inserted_id
    return record, True


def advance(*, db, payment_id, status, cause, fields=None, expect=None, push=None):
    """Move a payment to `status` if TRANSITIONS allows it from where it is now (one atomic update),
    appending the history entry and setting `fields`; run the kind's hooks. `expect` adds
    conditions to the update's filter (e.g. the refunded amount read before), `push` more arrays to
    append to. Returns the updated record, or None when the payment was not in a state that may
    move there (a late or repeated event: nothing changes)."""
    now = clock.now()
    record = db[COLLECTION].find_one_and_update(
        {**(expect or {}), "_id": payment_id, "status": {"$in": list(TRANSITIONS[status])}},
        {"$set": {"status": status, "updated_at": now, **(fields or {})}, "$inc": {"version": 1},
         "$push": {**(push or {}), "history": {"status": status, "at": now, "cause": cause}}},
        return_document=ReturnDocument.AFTER)
    if record is None:
        return None
    # Every status change appends to the history and nothing else does: the entry before ours is
    # the status this update moved from (read in the same atomic update, no second read).
    previous = record["history"][-2]["status"]
    for hook in _hooks.get(record["kind"], ()):
        hook(db, record, previous)
    return record


def update_fields(*, db, payment_id, fields):
    """Set fields that are not the status (provider ids, last_error...); returns the record."""
    return db[COLLECTION].find_one_and_update({"_id": payment_id}, {"$set": {**fields, "updated_at": clock.now()},
                                                                    "$inc": {"version": 1}},
                                              return_document=ReturnDocument.AFTER)


def find(*, db, payment_id):
    """The record, or None."""
    return db[COLLECTION].find_one({"_id": payment_id})


def find_by(*, db, **query):
    """The one record matching `query` (e.g. provider_intent_id=...), or None."""
    return db[COLLECTION].find_one(query)
