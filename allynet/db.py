"""The data layer: one place that builds the Mongo client and declares every index.

`MONGO_URI` set: pymongo against a real server (short server-selection
timeout so an outage is a quick 503, not a hang). Unset: the embedded
mongomock store. Every collection's indexes are declared in INDEXES and
created at start-up by `ensure_indexes`; when MongoDB does not answer then,
the server retries in the background (`create_pending_indexes`, started by
`allynet.background.start`) and `/readyz` says `indexes: "pending"` meanwhile.
"""
import logging

import pymongo
from flask import current_app
from pymongo import ASCENDING, DESCENDING, GEOSPHERE, TEXT, UpdateOne
from pymongo.errors import OperationFailure

from allynet import embedded
from allynet.errors import MONGO_DOWN_ERRORS

log = logging.getLogger(__name__)

EXTENSION_KEY = "allynet_db"
# app.extensions[INDEXES_KEY]: "ready" once every declared index was ensured, else "pending".
INDEXES_KEY = "allynet_indexes"

# (collection, keys, options). Options may hold callables of the config
# (for TTLs taken from settings) and "real_mongo_only" for what mongomock
# cannot express faithfully.
INDEXES = [
    # users
    ("users", [("email", ASCENDING)], {"unique": True, "name": "email_unique"}),
    ("users", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("users", [("is_helper", ASCENDING), ("verified", ASCENDING)], {"name": "helper_flags"}),
    # auth
    ("revoked_tokens", [("expires_at", ASCENDING)], {"expireAfterSeconds": 0, "name": "expires_ttl"}),
    ("idempotency_keys", [("user_id", ASCENDING), ("key", ASCENDING), ("scope", ASCENDING)],
     {"unique": True, "name": "user_key_unique"}),
    ("idempotency_keys", [("created_at", ASCENDING)],
     {"expireAfterSeconds": 24 * 3600, "name": "created_ttl"}),
    # emergencies
    ("emergencies", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("emergencies", [("user_id", ASCENDING)],
     {"unique": True, "partialFilterExpression": {"is_open": True}, "name": "one_open_per_user"}),
    ("emergencies", [("user_id", ASCENDING), ("created_at", DESCENDING)], {"name": "user_created"}),
    ("emergencies", [("status", ASCENDING), ("next_wave_at", ASCENDING)], {"name": "escalation_due"}),
    ("emergencies", [("notified_helper_ids", ASCENDING)], {"name": "notified_helpers"}),
    ("emergencies", [("responses.helper_id", ASCENDING)],
     {"partialFilterExpression": {"is_open": True}, "name": "open_responders"}),
    ("emergency_messages", [("emergency_id", ASCENDING), ("created_at", ASCENDING)], {"name": "emergency_ts"}),
    # help requests and skills
    ("help_requests", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("help_requests", [("status", ASCENDING), ("category", ASCENDING)], {"name": "status_category"}),
    ("help_requests", [("user_id", ASCENDING)], {"name": "owner"}),
    # GET /help-requests/mine: requester, and helper (offered on or assigned to), newest first.
    ("help_requests", [("user_id", ASCENDING), ("created_at", DESCENDING)], {"name": "owner_created"}),
    ("help_requests", [("offers.user_id", ASCENDING), ("created_at", DESCENDING)], {"name": "offerer_created"}),
    ("help_requests", [("helper_id", ASCENDING), ("created_at", DESCENDING)], {"name": "helper_created"}),
    ("skills", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("skills", [("user_id", ASCENDING)], {"name": "owner"}),
    # Newest-first lists: a user's skills, and search without `near` or `q`.
    ("skills", [("user_id", ASCENDING), ("created_at", DESCENDING)], {"name": "owner_created"}),
    ("skills", [("created_at", DESCENDING)], {"name": "created"}),
    # language "none": plain tokens, no stemming or stop words, so the server and the embedded
    # store's $text (allynet/embedded/text.py) match the same documents.
    ("skills", [("name", TEXT), ("description", TEXT)], {"name": "skills_text", "default_language": "none"}),
    # businesses (promotions embedded)
    ("businesses", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("businesses", [("owner_id", ASCENDING)], {"name": "owner"}),
    ("businesses", [("promotions.ends_at", ASCENDING)], {"name": "promotion_ends"}),
    # parties
    ("parties", [("invite_code", ASCENDING)],
     {"unique": True, "partialFilterExpression": {"is_active": True}, "name": "invite_code_active"}),
    ("parties", [("members.user_id", ASCENDING), ("is_active", ASCENDING)], {"name": "member_active"}),
    ("party_members", [("party_id", ASCENDING), ("user_id", ASCENDING)], {"unique": True, "name": "party_user"}),
    # One active party per user, enforced by the database.
    ("party_members", [("user_id", ASCENDING)],
     {"unique": True, "partialFilterExpression": {"active": True}, "name": "one_active_party_per_user"}),
    ("party_members", [("last_location", GEOSPHERE)], {"name": "last_location_2dsphere"}),
    # GET /parties: a user's parties, the latest joined first.
    ("party_members", [("user_id", ASCENDING), ("joined_at", DESCENDING)], {"name": "user_joined"}),
    # The episode sweep's candidates: stopped riders and quiet ones (parties/episodes.py: sweep).
    ("party_members", [("status", ASCENDING)],
     {"partialFilterExpression": {"active": True}, "name": "active_status"}),
    ("party_members", [("last_update_at", ASCENDING)],
     {"partialFilterExpression": {"active": True}, "name": "active_last_update"}),
    ("trail_points", [("party_id", ASCENDING), ("ts", ASCENDING)], {"name": "party_ts"}),
    # TTL, and the traffic job's reads of what was stored since its last run (mapdata/traffic.py).
    ("trail_points", [("ts", ASCENDING)],
     {"expireAfterSeconds": lambda cfg: int(cfg["TRAIL_RETENTION_DAYS"] * 86400), "name": "ts_ttl"}),
    ("trail_points", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("party_messages", [("party_id", ASCENDING), ("ts", ASCENDING)], {"name": "party_ts"}),
    ("party_events", [("party_id", ASCENDING), ("ts", ASCENDING)], {"name": "party_ts"}),
    ("routes", [("user_id", ASCENDING), ("created_at", DESCENDING)], {"name": "owner_created"}),
    ("routes", [("waypoints", GEOSPHERE)], {"name": "waypoints_2dsphere"}),
    # reports and alerts
    ("reports", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("reports", [("expires_at", ASCENDING)], {"expireAfterSeconds": 0, "name": "expires_ttl"}),
    ("reports", [("status", ASCENDING), ("created_at", DESCENDING)], {"name": "status_created"}),
    ("report_votes", [("report_id", ASCENDING), ("user_id", ASCENDING)], {"unique": True, "name": "one_vote"}),
    ("alerts", [("location", GEOSPHERE)], {"name": "location_2dsphere"}),
    ("alerts", [("expires_at", ASCENDING)], {"expireAfterSeconds": 0, "name": "expires_ttl"}),
    # organizations
    ("organizations", [("service_area", GEOSPHERE)], {"name": "service_area_2dsphere"}),
    ("organizations", [("members.user_id", ASCENDING)], {"name": "member"}),
    ("organizations", [("created_at", DESCENDING)], {"name": "created"}),
    ("organization_invitations", [("code", ASCENDING)], {"unique": True, "name": "code_unique"}),
    ("organization_invitations", [("expires_at", ASCENDING)], {"name": "expires"}),
    ("parties", [("organization_id", ASCENDING), ("created_at", DESCENDING)],
     {"partialFilterExpression": {"organization_id": {"$exists": True}}, "name": "organization_created"}),
    # organization plans (allynet/payments/subscriptions.py): events find the organization by its
    # subscription; the grace sweep reads the graces that ran out, then the cancels still to send.
    ("organizations", [("subscription_id", ASCENDING)],
     {"partialFilterExpression": {"subscription_id": {"$exists": True}}, "name": "subscription"}),
    ("organizations", [("plan_grace_until", ASCENDING)], {"name": "plan_grace"}),
    ("organizations", [("subscription_cancel_pending", ASCENDING)],
     {"partialFilterExpression": {"subscription_cancel_pending": {"$exists": True}},
      "name": "subscription_cancel_pending"}),
    # map data (allynet/mapdata/): published traffic cells expire one window after their update
    ("traffic_cells", [("center", GEOSPHERE)], {"name": "center_2dsphere"}),
    ("traffic_cells", [("expires_at", ASCENDING)], {"expireAfterSeconds": 0, "name": "expires_ttl"}),
    ("weather_cache", [("expires_at", ASCENDING)], {"expireAfterSeconds": 0, "name": "expires_ttl"}),
    ("weather_episodes", [("party_id", ASCENDING)], {"name": "party"}),
    # An episode no check has seen for a day belongs to a party that ended.
    ("weather_episodes", [("checked_at", ASCENDING)], {"expireAfterSeconds": 86400, "name": "checked_ttl"}),
    # payments (allynet/payments/): one record per origin; events processed once (their _id)
    ("payments", [("origin", ASCENDING)], {"unique": True, "name": "origin_unique"}),
    ("payments", [("payer_id", ASCENDING), ("created_at", DESCENDING)], {"name": "payer_created"}),
    ("payments", [("payee_id", ASCENDING), ("created_at", DESCENDING)], {"name": "payee_created"}),
    ("payments", [("organization_id", ASCENDING), ("created_at", DESCENDING)],
     {"partialFilterExpression": {"organization_id": {"$exists": True}}, "name": "organization_created"}),
    ("payments", [("help_request_id", ASCENDING)],
     {"partialFilterExpression": {"help_request_id": {"$exists": True}}, "name": "help_request"}),
    ("payments", [("provider_intent_id", ASCENDING)],
     {"unique": True, "partialFilterExpression": {"provider_intent_id": {"$type": "string"}},
      "name": "provider_intent_unique"}),
    ("payment_events", [("received_at", ASCENDING)], {"name": "received"}),
    ("payment_accounts", [("account_id", ASCENDING)], {"unique": True, "name": "account_unique"}),
    ("audit_log", [("at", DESCENDING)], {"name": "at"}),
    ("audit_log", [("target_type", ASCENDING), ("target_id", ASCENDING), ("at", DESCENDING)], {"name": "target"}),
]


def make_client(config):
    """The Mongo client for this config: shared, real, or embedded."""
    if config.get("MONGO_CLIENT") is not None:
        return config["MONGO_CLIENT"]
    if config.get("MONGO_URI"):
        timeout = config["MONGO_SERVER_SELECTION_TIMEOUT_MS"]
        return pymongo.MongoClient(
            config["MONGO_URI"], serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout,
            socketTimeoutMS=max(timeout * 3, 10000), tz_aware=False, appname="allynet",
        )
    return embedded.make_client()


def is_embedded(client):
    """True for the in-process mongomock store."""
    return not isinstance(client, pymongo.MongoClient)


def init_app(app):
    """Bind a database to the app and create its indexes."""
    client = make_client(app.config)
    db = client[app.config["MONGO_DB"]]
    app.extensions[EXTENSION_KEY] = db
    app.extensions[INDEXES_KEY] = "pending"
    if not create_pending_indexes(app):
        # Start anyway: /readyz reports the outage (and the missing indexes), requests answer 503.
        log.error("MongoDB unreachable at start-up; indexes will be created when it answers")
    return db


def indexes_ready(app):
    """True once every declared index of the app's database has been ensured."""
    return app.extensions.get(INDEXES_KEY) == "ready"


def create_pending_indexes(app):
    """Ensure the declared indexes if that has not succeeded yet; True when they are in place.

    A fresh database without them would run without the unique email, TTL, 2dsphere and
    one-open-SOS indexes, so a server started during an outage keeps calling this (with
    backoff, `allynet.background.start`) until it succeeds.
    """
    if indexes_ready(app):
        return True
    try:
        ensure_indexes(app.extensions[EXTENSION_KEY], app.config)
    except MONGO_DOWN_ERRORS as exc:
        log.warning("indexes not created yet, MongoDB unreachable: %s", type(exc).__name__)
        return False
    app.extensions[INDEXES_KEY] = "ready"
    return True


def get_db():
    """The current app's database."""
    return current_app.extensions[EXTENSION_KEY]


def _resolved(options, config):
    return {key: (value(config) if callable(value) else value)
            for key, value in options.items() if key != "real_mongo_only"}


def ensure_indexes(db, config, dry_run=False):
    """Create every declared index; report what was created, present or conflicting."""
    report = {"created": [], "present": [], "conflicts": []}
    embedded_store = is_embedded(db.client)
    existing = {}
    for collection, keys, options in INDEXES:
        if options.get("real_mongo_only") and embedded_store:
            continue
        opts = _resolved(options, config)
        name = opts["name"]
        label = f"{collection}.{name}"
        if collection not in existing:
            existing[collection] = db[collection].index_information()
        current = existing[collection].get(name)
        if current is not None:
            if _same_index(current, keys, opts):
                report["present"].append(label)
                continue
            report["conflicts"].append(label)
            if not dry_run:
                log.warning("index %s differs from its declaration; leaving it as it is", label)
            continue
        if dry_run:
            report["created"].append(label)
            continue
        try:
            db[collection].create_index(keys, **opts)
            report["created"].append(label)
        except OperationFailure as exc:
            report["conflicts"].append(label)
            log.warning("index %s not created: %s", label, exc)
    return report


def _same_index(current, keys, opts):
    current_keys = [(field, kind if isinstance(kind, str) else int(kind)) for field, kind in current["key"]]
    if current_keys and current_keys[0] == ("_fts", "text"):  # how a server reports text indexes
        return set(current.get("weights", {})) == {field for field, _ in keys}
    wanted = [(field, kind if isinstance(kind, str) else int(kind)) for field, kind in keys]
    if current_keys != wanted:
        return False
    for option in ("unique", "expireAfterSeconds", "partialFilterExpression"):
        if option in opts and current.get(option) != opts[option]:
            return False
    return True


def update_batch(collection, updates):
    """Apply [(filter, update)] as one unordered bulk write; returns how many matched.

    mongomock's bulk_write does not take the UpdateOne of pymongo 4.x, so the
    embedded store gets the same updates one by one.
    """
    if is_embedded(collection.database.client):
        return sum(collection.update_one(query, update).matched_count for query, update in updates)
    return collection.bulk_write([UpdateOne(query, update) for query, update in updates], ordered=False).matched_count
