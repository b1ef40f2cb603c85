"""Idempotent create endpoints: one outcome per (user, key, scope), replayed for 24 h.

A client that retries a create after a timeout must not create twice. The
first request with a key inserts a *pending* record holding a hash of the
request body; the unique index ``(user_id, key, scope)`` makes that insert
the lock. Whoever loses the insert inspects the record:

- same body, finished: the stored response (status and body) is replayed;
- same body, still pending: 409 ``request_in_progress`` (the client retries);
- another body: 422 ``idempotency_key_reused``.

On success the response is stored on the record; on any failure the record
is deleted, so a retry runs afresh (nothing half-written is remembered). A
pending record whose request died with its process is taken over after
``PENDING_TIMEOUT_S`` by one atomic compare-and-set. The TTL index on
``created_at`` (db.py) forgets keys after 24 h.
"""
import hashlib
import json
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from allynet import clock
from allynet.errors import AllyNetError, ValidationFailed

COLLECTION = "idempotency_keys"
# The OpenAPI parameter of an endpoint that takes Idempotency-Key (its view's @doc(headers=...)).
HEADER_DOC = [{
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    "description": "Retries with the same key (per user, kept 24 h) replay the first response; another body "
                   "gives 422 idempotency_key_reused, a retry while the first runs 409 request_in_progress.",
}]
MAX_KEY_LENGTH = 128
# A request still pending after this long died with its process: the next retry takes over.
PENDING_TIMEOUT_S = 120


def request_in_progress():
    """The 409 a retry gets while the first request with its key is still running."""
    return AllyNetError("A request with this Idempotency-Key is still in progress; retry shortly",
                        status=409, code="request_in_progress")


def key_reused():
    """The 422 for a key sent again with another body."""
    return AllyNetError("This Idempotency-Key was already used with a different request body",
                        status=422, code="idempotency_key_reused")


def clean_key(key, field="Idempotency-Key"):
    """A client key checked for shape (1..128 printable characters); None stays None."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(details={field: [f"Must be 1 to {MAX_KEY_LENGTH} printable characters."]})
    return key.strip()


def body_hash(payload):
    """A stable hash of a (validated) request body: key order and ObjectId/datetime types do not matter."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _claim(*, db, user_id, key, scope, digest):
    """Insert the pending record, or return the existing one when the key is taken."""
    now = clock.now()
    record = {"user_id": user_id, "key": key, "scope": scope, "body_hash": digest,
              "state": "pending", "started_at": now, "created_at": now}
    try:
        db[COLLECTION].insert_one(record)
        return record, None
    except DuplicateKeyError:
        existing = db[COLLECTION].find_one({"user_id": user_id, "key": key, "scope": scope})
        return None, existing


def run(*, db, user_id, key, scope, payload, fn):
    """Run `fn() -> (body, status)` at most once per (user, key, scope) and replay its response.

    Without a key `fn` simply runs. `body` must be JSON-able (it is stored).
    """
    if key is None:
        return fn()
    digest = body_hash(payload)
    record = None
    for _ in range(3):  # the existing record may expire or be deleted between insert and read
        record, existing = _claim(db=db, user_id=user_id, key=key, scope=scope, digest=digest)
        if record is not None:
            break
        if existing is None:
            continue
        if existing["body_hash"] != digest:
            raise key_reused()
        if existing["state"] == "done":
            return existing["response_body"], existing["response_status"]
        stale_before = clock.now() - timedelta(seconds=PENDING_TIMEOUT_S)
        record = db[COLLECTION].find_one_and_update(
            {"_id": existing["_id"], "state": "pending", "started_at": {"$lte": stale_before}},
            {"$set": {"started_at": clock.now()}}, return_document=True)
        if record is None:
            raise request_in_progress()
        break
    if record is None:
        raise request_in_progress()
    try:
        body, status = fn()
    except BaseException:
        db[COLLECTION].delete_one({"_id": record["_id"], "state": "pending"})
        raise
    db[COLLECTION].update_one(
        {"_id": record["_id"]},
        {"$set": {"state": "done", "response_status": status, "response_body": body,
                  "finished_at": clock.now()}})
    return body, status
