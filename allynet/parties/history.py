"""The ride's record: alerts as they are stored and pushed, and the history members read back.

History (`GET /parties/<id>/history`) merges the sampled trail (`trail_points`),
chat (`party_messages`) and alerts (`party_events`), oldest first. Current
members read all of it; a former member reads it up to the moment they left.
"""
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING

from allynet import clock, realtime
from allynet.errors import NotFound, ValidationFailed
from allynet.fields import iso, point_to_latlng
from allynet.pagination import decode_cursor, encode_cursor


def publish_alert(db, party_id, *, alert_type, user_id, location=None, description=None, source, extra=None):
    """Store one alert in the party's history and send `party:alert` to its room; returns the payload."""
    now = clock.now()
    doc = {"party_id": ObjectId(party_id), "type": alert_type,
           "user_id": ObjectId(user_id) if user_id else None, "location": location,
           "description": description, "source": source, "ts": now}
    if extra:
        doc["extra"] = extra
    db.party_events.insert_one(doc)
    alert = {"id": str(doc["_id"]), "party_id": party_id, "type": alert_type, "user_id": user_id,
             "location": point_to_latlng(location), "description": description, "ts": iso(now)}
    if extra:
        alert.update(extra)
    realtime.emit_to_room(realtime.party_room(party_id), "party:alert", alert)
    return alert


# (kind, collection, rank): the rank orders entries that share a timestamp.
_HISTORY_SOURCES = (("trail", "trail_points", 0), ("message", "party_messages", 1), ("alert", "party_events", 2))


def history(*, db, user_id, party_id, cursor=None, limit=100):
    """The ride's sampled trail, messages and alerts, oldest first; returns (items, next_cursor)."""
    party, membership = _viewable_party_or_former(db, user_id, party_id)
    until = None if membership.get("active") else membership.get("left_at")
    after = None
    if cursor:
        ts_text, rank, last_id = decode_cursor(cursor, 3)
        try:
            after = (datetime.fromisoformat(ts_text), int(rank), ObjectId(last_id))
        except (TypeError, ValueError) as exc:
            raise ValidationFailed(details={"cursor": ["Not a valid cursor."]}) from exc
    merged = []
    for kind, collection, rank in _HISTORY_SOURCES:
        query = {"party_id": party["_id"]}
        ts_filter = {}
        if until is not None:
            ts_filter["$lte"] = until
        if after is not None:
            c_ts, c_rank, c_id = after
            if rank > c_rank:
                ts_filter["$gte"] = c_ts
            elif rank < c_rank:
                ts_filter["$gt"] = c_ts
            else:
                query["$or"] = [{"ts": {"$gt": c_ts}}, {"ts": c_ts, "_id": {"$gt": c_id}}]
        if ts_filter:
            query["ts"] = ts_filter
        for doc in db[collection].find(query).sort([("ts", ASCENDING), ("_id", ASCENDING)]).limit(limit + 1):
            merged.append((doc["ts"], rank, doc["_id"], kind, doc))
    merged.sort(key=lambda entry: (entry[0], entry[1], entry[2]))
    page = merged[:limit]
    items = [_history_item(kind, doc) for _, _, _, kind, doc in page]
    next_cursor = None
    if len(merged) > limit:
        ts, rank, last_id = page[-1][0], page[-1][1], page[-1][2]
        next_cursor = encode_cursor([ts.isoformat(), rank, str(last_id)])
    return items, next_cursor


def _viewable_party_or_former(db, user_id, party_id):
    """History is readable by current members and, up to when they left, former ones; 404 otherwise."""
    membership = db.party_members.find_one({"party_id": party_id, "user_id": user_id},
                                           projection={"active": 1, "left_at": 1, "left_reason": 1})
    if membership is None:
        raise NotFound("Party not found")
    party = db.parties.find_one({"_id": party_id}, projection={"_id": 1})
    if party is None:
        raise NotFound("Party not found")
    return party, membership


def _history_item(kind, doc):
    item = {"kind": kind, "_id": doc["_id"], "ts": doc["ts"], "user_id": doc.get("user_id")}
    if kind == "trail":
        item.update(location=doc.get("location"), speed_kmh=doc.get("speed_kmh"),
                    heading=doc.get("heading"), status=doc.get("status"))
    elif kind == "message":
        item["text"] = doc.get("text")
    else:
        item.update(type=doc.get("type"), location=doc.get("location"), description=doc.get("description"))
    return item
