"""Opaque cursors for list endpoints: `meta.next_cursor` in, `?cursor=` back."""
import base64
import json
import math
from datetime import datetime, timezone

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING

from allynet.errors import ValidationFailed
from allynet.fields import object_id


def encode_cursor(values):
    """Encode a list of JSON-able values (ObjectIds as strings) as an opaque cursor."""
    raw = json.dumps([str(v) if isinstance(v, ObjectId) else v for v in values],
                     separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor, length):
    """Decode a cursor made by encode_cursor; 400 validation_error when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]}) from exc
    if not isinstance(values, list) or len(values) != length:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]})
    return values


def decode_ranked_cursor(cursor):
    """(distance or score, id) of the last item of the previous page; 400 when it is not one."""
    rank, last_id = decode_cursor(cursor, 2)
    last_id = object_id(last_id)
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) or not math.isfinite(rank) \
            or last_id is None:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]})
    return float(rank), last_id


def page_of(items, limit, rank_field):
    """Cut a fetched `limit + 1` batch to a page; the cursor holds the last item's (rank, id)."""
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, encode_cursor([items[-1][rank_field], items[-1]["_id"]])


def nearest_page(collection, *, near, radius_m, query, limit, cursor=None, projection=None, keep=None):
    """One page of `collection` within `radius_m` of `near` ({lat, lng}), nearest first, with `distance_m`.

    `$geoNear` is the first stage (distances come from the database); ties in
    distance are ordered by id, so pages never skip or repeat an item. `keep`, a
    test on each document that no query can express, reads on until a page passes it.
    """
    point = {"type": "Point", "coordinates": [near["lng"], near["lat"]]}
    pipeline = [
        {"$geoNear": {"near": point, "key": "location", "distanceField": "distance_m",
                      "maxDistance": radius_m, "spherical": True, "query": query}},
        {"$sort": {"distance_m": 1, "_id": 1}},
    ]
    if cursor:
        last_distance, last_id = decode_ranked_cursor(cursor)
        pipeline.append({"$match": {"$or": [{"distance_m": {"$gt": last_distance}},
                                             {"distance_m": last_distance, "_id": {"$gt": last_id}}]}})
    if keep is None:
        pipeline.append({"$limit": limit + 1})
    if projection:
        pipeline.append({"$project": projection})
    if keep is None:
        return page_of(list(collection.aggregate(pipeline)), limit, "distance_m")
    kept = []
    for document in collection.aggregate(pipeline):
        if keep(document):
            kept.append(document)
            if len(kept) > limit:
                break
    return page_of(kept, limit, "distance_m")


def decode_time_cursor(cursor):
    """(time, id) of the last item of a newest-first page; 400 validation_error when it is not one."""
    stamp, raw_id = decode_cursor(cursor, 2)
    last_id = object_id(raw_id)
    try:
        last_at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        last_at = None
    if last_id is None or last_at is None:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]})
    if last_at.tzinfo is not None:  # stored times are naive UTC
        last_at = last_at.astimezone(timezone.utc).replace(tzinfo=None)
    return last_at, last_id


def time_ordered_page(collection, *, query, limit, cursor=None, time_field="created_at", projection=None,
                      oldest_first=False):
    """One page of `collection` matching `query` in `time_field` order (ties by id), newest first unless
    `oldest_first`; (items, next_cursor).

    The cursor holds the last item's (time, id), so the next page starts strictly
    after it and items sharing a time are neither skipped nor repeated.
    """
    beyond, direction = ("$gt", ASCENDING) if oldest_first else ("$lt", DESCENDING)
    if cursor:
        last_at, last_id = decode_time_cursor(cursor)
        query = {"$and": [query, {"$or": [{time_field: {beyond: last_at}},
                                          {time_field: last_at, "_id": {beyond: last_id}}]}]}
    items = list(collection.find(query, projection=projection)
                 .sort([(time_field, direction), ("_id", direction)]).limit(limit + 1))
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    last = items[-1]
    return items, encode_cursor([last[time_field].isoformat(), last["_id"]])


def newest_first_page(collection, *, query, limit, cursor=None, time_field="created_at", projection=None):
    """`time_ordered_page`, newest first: the order of every list of one's own things."""
    return time_ordered_page(collection, query=query, limit=limit, cursor=cursor, time_field=time_field,
                             projection=projection)
