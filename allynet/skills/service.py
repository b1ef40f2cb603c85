"""Skills marketplace rules: publish, search by distance, category and free text, edit, delete.

Search plans, each one a real MongoDB server accepts:
- `near` without `q`: `$geoNear` (first stage) with the category in its query,
  nearest first, `distance_m` from the server;
- `near` with `q`: `$text` cannot be combined with `$near`/`$geoNear`, so the
  query is `$text` plus `$geoWithin: {$centerSphere}` (allowed together); the
  matches are ranked by `geo.haversine_m` here, on MongoDB's sphere;
- `q` without `near`: best match first (`{"$meta": "textScore"}`, ties newest first);
- neither: newest first (`created_at`, ties by id).
`q` only ever goes to `$search` as a string, so regex characters are text.
Pages are cursor-based: (distance or text score, id) when ranked, (created_at, id)
otherwise.
"""

from pymongo import ReturnDocument

from allynet import clock, geo
from allynet.errors import Forbidden, NotFound, ValidationFailed
from allynet.fields import object_id
from allynet.pagination import (decode_cursor, decode_ranked_cursor, encode_cursor, nearest_page,
                                newest_first_page, page_of)
from allynet.users import service as users_service


def create(*, db, user_id, data):
    """Publish a skill; its location defaults to the owner's profile location (400 when neither exists)."""
    location = data.get("location")
    if location is None:
        owner = db.users.find_one({"_id": user_id}, projection={"location": 1}) or {}
        location = owner.get("location")
    if not location:
        raise ValidationFailed(details={"location": ["Required: your profile has no location to default to."]})
    now = clock.now()
    document = {
        "user_id": user_id,
        "name": data["name"],
        "category": data["category"],
        "description": data.get("description"),
        "rate": data.get("rate"),
        "location": location,
        "created_at": now,
        "updated_at": now,
    }
    db.skills.insert_one(document)
    return document


def search(*, db, near=None, radius_m, category=None, q=None, limit, cursor=None):
    """Skills matching the filters: nearest first with `near`, else best text match with `q`, else newest.

    Returns (items, next_cursor).
    """
    query = {}
    if category is not None:
        query["category"] = category
    if near is None:
        if q is not None:
            return _best_match(db=db, query=query, q=q, limit=limit, cursor=cursor)
        return _newest_first(db=db, query=query, limit=limit, cursor=cursor)
    if q is None:
        return nearest_page(db.skills, near=near, radius_m=radius_m, query=query, limit=limit, cursor=cursor)
    return _text_near(db=db, near=near, radius_m=radius_m, query=query, q=q, limit=limit, cursor=cursor)


def list_for_user(*, db, user_id, limit, cursor=None):
    """A user's skills, newest first (404 when the user does not exist)."""
    users_service.get_or_raise(db=db, user_id=user_id)
    return _newest_first(db=db, query={"user_id": user_id}, limit=limit, cursor=cursor)


def get_or_raise(*, db, skill_id):
    """The skill, or 404."""
    document = db.skills.find_one({"_id": skill_id})
    if document is None:
        raise NotFound("Skill not found")
    return document


def update(*, db, user_id, skill_id, data):
    """Change one's own skill (403 for anyone else's)."""
    changes = {**data, "updated_at": clock.now()}
    document = db.skills.find_one_and_update({"_id": skill_id, "user_id": user_id}, {"$set": changes},
                                             return_document=ReturnDocument.AFTER)
    if document is None:
        _raise_refusal(db=db, skill_id=skill_id)
    return document


def delete(*, db, user_id, skill_id):
    """Delete one's own skill (403 for anyone else's)."""
    if db.skills.delete_one({"_id": skill_id, "user_id": user_id}).deleted_count == 0:
        _raise_refusal(db=db, skill_id=skill_id)


def _raise_refusal(*, db, skill_id):
    get_or_raise(db=db, skill_id=skill_id)
    raise Forbidden("Only the owner can change this skill")


def _text_near(*, db, near, radius_m, query, q, limit, cursor):
    area = {"$geoWithin": {"$centerSphere": [[near["lng"], near["lat"]], radius_m / geo.EARTH_RADIUS_M]}}
    found = list(db.skills.find({**query, "$text": {"$search": q}, "location": area}))
    for document in found:
        lng, lat = document["location"]["coordinates"][:2]
        document["distance_m"] = geo.haversine_m(near["lng"], near["lat"], lng, lat)
    found.sort(key=lambda document: (document["distance_m"], document["_id"]))
    if cursor:
        last = decode_ranked_cursor(cursor)
        found = [document for document in found if (document["distance_m"], document["_id"]) > last]
    return page_of(found[:limit + 1], limit, "distance_m")


def _best_match(*, db, query, q, limit, cursor):
    pipeline = [
        {"$match": {**query, "$text": {"$search": q}}},
        {"$addFields": {"text_score": {"$meta": "textScore"}}},
        # Equal scores fall back to newest first, so pages never skip or repeat one.
        {"$sort": {"text_score": -1, "_id": -1}},
    ]
    if cursor:
        last_score, last_id = decode_ranked_cursor(cursor)
        pipeline.append({"$match": {"$or": [{"text_score": {"$lt": last_score}},
                                             {"text_score": last_score, "_id": {"$lt": last_id}}]}})
    pipeline.append({"$limit": limit + 1})
    return page_of(list(db.skills.aggregate(pipeline)), limit, "text_score")


def _newest_first(*, db, query, limit, cursor):
    return newest_first_page(db.skills, query=query, limit=limit, cursor=_time_cursor(db, cursor))


def _time_cursor(db, cursor):
    """A newest-first cursor as `newest_first_page` reads it.

    Cursors handed out while these lists were ordered by id alone hold just the
    last id; they go on from that skill's creation time (400 once it is deleted).
    """
    if not cursor:
        return cursor
    try:
        (raw_id,) = decode_cursor(cursor, 1)
    except ValidationFailed:
        return cursor  # the current (time, id) form, or not a cursor: newest_first_page decides
    last_id = object_id(raw_id)
    last = db.skills.find_one({"_id": last_id}, projection={"created_at": 1}) if last_id else None
    if last is None:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]})
    return encode_cursor([last["created_at"].isoformat(), last_id])
