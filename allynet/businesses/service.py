"""Business rules: profiles, opening hours, staff verification, embedded promotions, safe places.

Who may do what:
- anyone signed in creates a business and becomes its `owner_id`;
- a business that is not hidden is public (GET, lists, promotions); a hidden one is 404 to all but
  its owner and staff (moderators, admins);
- its owner and staff edit or delete it and its promotions (403 `forbidden` for anyone else who can
  see it); `verified` and `hidden` are staff-only fields (403 for the owner), and every change to
  them, and every deletion by staff, goes to the audit log;
- `safe_place` is the owner's opt-in; it takes effect (`safe_place_active`) only while the business
  is verified and not hidden.

Promotions are embedded in the business document (at most MAX_PROMOTIONS); a promotion is running
while `starts_at <= now < ends_at`. Its owner may pay to feature it for its duration
(allynet/payments/promotions.py): `featured_until` is its `ends_at` when paid, and a featured
promotion ranks before the others near a point. Nearby promotions are one aggregation: `$geoNear` on the
businesses, `$unwind` of their promotions, and the radius test against the computed distance.
"""
from datetime import datetime, timedelta

from bson import ObjectId
from flask import current_app
from pymongo import ReturnDocument

from allynet import audit, clock
from allynet.businesses import hours
from allynet.businesses.schemas import MAX_PROMOTION_DAYS, PROMOTION_RADIUS_M, business_schema
from allynet.errors import Conflict, Forbidden, NotFound, ValidationFailed
from allynet.pagination import nearest_page

STAFF_ROLES = ("moderator", "admin")
STAFF_FIELDS = ("verified", "hidden")
MAX_PROMOTIONS = 20
# Safe places: how many candidates (nearest first) are read to find the open ones, and how many are listed.
SAFE_PLACE_SCAN = 50
SAFE_PLACE_LIMIT = 5
NEVER = datetime(1970, 1, 1)  # featured_until of a promotion never featured


# ---- views of a business ------------------------------------------------------------------------

def running(promotion, now):
    """True while `starts_at <= now < ends_at`."""
    return promotion["starts_at"] <= now < promotion["ends_at"]


def _with_status(document, *, full, now):
    """The document with open_now/closes_at/safe_place_active; `full`: owner's and staff's view."""
    view = dict(document)
    view["open_now"], view["closes_at"] = hours.open_status(document.get("opening_hours"), now)
    view["safe_place_active"] = bool(document.get("safe_place") and document.get("verified")
                                     and not document.get("hidden"))
    promotions = document.get("promotions") or []
    view["promotions"] = promotions if full else [item for item in promotions if running(item, now)]
    if not full:
        view.pop("hidden", None)
    return view


def public_view(document, now=None):
    """A business as any signed-in user sees it, dumped for JSON (the map overlays use it)."""
    return business_schema.dump(_with_status(document, full=False, now=now or clock.now()))


def _is_staff(*, db, user_id):
    user = db.users.find_one({"_id": user_id}, projection={"role": 1})
    return user is not None and user.get("role") in STAFF_ROLES


def _manages(document, *, user_id, staff):
    return staff or document["owner_id"] == user_id


def _view_for(document, *, user_id, staff, now=None):
    return _with_status(document, full=_manages(document, user_id=user_id, staff=staff), now=now or clock.now())


# ---- profiles -----------------------------------------------------------------------------------

def create(*, db, user_id, data):
    """Register a business owned by the caller (unverified, visible)."""
    now = clock.now()
    document = {
        "owner_id": user_id,
        "name": data["name"],
        "category": data["category"],
        "location": data["location"],
        "address": data.get("address"),
        "phone": data.get("phone"),
        "website": data.get("website"),
        "opening_hours": data.get("opening_hours"),
        "verified": False,
        "hidden": False,
        "safe_place": data.get("safe_place", False),
        "promotions": [],
        "created_at": now,
        "updated_at": now,
    }
    db.businesses.insert_one(document)
    return _with_status(document, full=True, now=now)


def _visible_or_raise(*, db, user_id, business_id):
    """(business, caller is staff); 404 when missing, or hidden from this caller."""
    document = db.businesses.find_one({"_id": business_id})
    if document is None:
        raise NotFound("Business not found")
    staff = _is_staff(db=db, user_id=user_id)
    if document.get("hidden") and not _manages(document, user_id=user_id, staff=staff):
        raise NotFound("Business not found")
    return document, staff


def _managed_or_raise(*, db, user_id, business_id):
    """(business, caller is staff) for its owner or staff; 404 / 403 otherwise."""
    document, staff = _visible_or_raise(db=db, user_id=user_id, business_id=business_id)
    if not _manages(document, user_id=user_id, staff=staff):
        raise Forbidden("Only the owner or staff can change this business")
    return document, staff


def get_for_viewer(*, db, user_id, business_id):
    """One business as the caller may see it."""
    document, staff = _visible_or_raise(db=db, user_id=user_id, business_id=business_id)
    return _view_for(document, user_id=user_id, staff=staff)


def update(*, db, user_id, business_id, data):
    """Edit a business (owner or staff); `verified`/`hidden` by staff only, audited."""
    current, staff = _managed_or_raise(db=db, user_id=user_id, business_id=business_id)
    staff_changes = {key: data[key] for key in STAFF_FIELDS if key in data}
    if staff_changes and not staff:
        raise Forbidden("Only moderators and admins can verify or hide a business",
                        details={"fields": sorted(staff_changes)})
    changes = dict(data, updated_at=clock.now())
    # The filter holds the staff fields as read, so the audit entry's `before` is what was replaced.
    query = {"_id": business_id, **{key: current.get(key) for key in staff_changes}}
    document = db.businesses.find_one_and_update(query, {"$set": changes}, return_document=ReturnDocument.AFTER)
    if document is None:
        _visible_or_raise(db=db, user_id=user_id, business_id=business_id)  # 404 once deleted meanwhile
        raise Conflict("The business changed meanwhile; retry")
    if staff_changes:
        audit.record(db=db, actor_id=user_id, action="business.moderate", target_type="business",
                     target_id=business_id, before={key: current.get(key) for key in staff_changes},
                     after=staff_changes)
    return _view_for(document, user_id=user_id, staff=staff)


def delete(*, db, user_id, business_id):
    """Delete a business and its promotions (owner or staff; staff deletions are audited)."""
    current, staff = _managed_or_raise(db=db, user_id=user_id, business_id=business_id)
    if db.businesses.delete_one({"_id": business_id}).deleted_count and current["owner_id"] != user_id:
        audit.record(db=db, actor_id=user_id, action="business.delete", target_type="business",
                     target_id=business_id, before={"name": current["name"], "owner_id": current["owner_id"]})


def list_nearby(*, db, near, radius_m, category=None, open_now=False, limit, cursor=None):
    """Visible businesses within `radius_m` of `near`, nearest first, optionally open now: (items, next_cursor)."""
    now = clock.now()
    query = {"hidden": False}
    if category is not None:
        query["category"] = category
    if open_now:
        query["opening_hours"] = {"$ne": None}

    def open_at_now(document):  # hours are read in each business's own zone: no query can say it
        return hours.is_open(document["opening_hours"], now)

    items, next_cursor = nearest_page(db.businesses, near=near, radius_m=radius_m, query=query, limit=limit,
                                      cursor=cursor, keep=open_at_now if open_now else None)
    return [_with_status(item, full=False, now=now) for item in items], next_cursor


def _near_stage(near_point, max_distance, query):
    return {"$geoNear": {"near": near_point, "key": "location", "distanceField": "distance_m",
                         "maxDistance": max_distance, "spherical": True, "query": query}}


# ---- promotions ---------------------------------------------------------------------------------

def _check_period(starts_at, ends_at, *, now, new):
    if ends_at <= starts_at:
        raise ValidationFailed(details={"ends_at": ["Must be after starts_at."]})
    if ends_at - starts_at > timedelta(days=MAX_PROMOTION_DAYS):
        raise ValidationFailed(details={"ends_at": [f"A promotion runs at most {MAX_PROMOTION_DAYS} days."]})
    if new and ends_at <= now:
        raise ValidationFailed(details={"ends_at": ["Must be in the future."]})


def add_promotion(*, db, user_id, business_id, data):
    """Add a promotion to a business (owner or staff); at most MAX_PROMOTIONS."""
    _managed_or_raise(db=db, user_id=user_id, business_id=business_id)
    now = clock.now()
    _check_period(data["starts_at"], data["ends_at"], now=now, new=True)
    promotion = {"_id": ObjectId(), "title": data["title"], "description": data.get("description"),
                 "starts_at": data["starts_at"], "ends_at": data["ends_at"], "radius_m": data["radius_m"],
                 "created_at": now, "updated_at": now}
    updated = db.businesses.update_one(
        {"_id": business_id, f"promotions.{MAX_PROMOTIONS - 1}": {"$exists": False}},
        {"$push": {"promotions": promotion}, "$set": {"updated_at": now}})
    if not updated.matched_count:
        raise Conflict(f"A business has at most {MAX_PROMOTIONS} promotions",
                       details={"max_promotions": MAX_PROMOTIONS})
    return promotion


def _promotion_or_raise(document, promotion_id):
    for promotion in document.get("promotions") or ():
        if promotion["_id"] == promotion_id:
            return promotion
    raise NotFound("Promotion not found")


def update_promotion(*, db, user_id, business_id, promotion_id, data):
    """Edit a promotion (owner or staff)."""
    document, _staff = _managed_or_raise(db=db, user_id=user_id, business_id=business_id)
    current = _promotion_or_raise(document, promotion_id)
    now = clock.now()
    merged = dict(current, **data, updated_at=now)
    _check_period(merged["starts_at"], merged["ends_at"], now=now, new=False)
    # Compare-and-set on the period read above, so two edits cannot leave ends_at before starts_at.
    updated = db.businesses.find_one_and_update(
        {"_id": business_id, "promotions": {"$elemMatch": {
            "_id": promotion_id, "starts_at": current["starts_at"], "ends_at": current["ends_at"]}}},
        {"$set": {**{f"promotions.$.{key}": value for key, value in data.items()},
                  "promotions.$.updated_at": now, "updated_at": now}},
        return_document=ReturnDocument.AFTER)
    if updated is None:
        raise Conflict("The promotion changed meanwhile; retry")
    return _promotion_or_raise(updated, promotion_id)


def delete_promotion(*, db, user_id, business_id, promotion_id):
    """Remove a promotion (owner or staff)."""
    document, _staff = _managed_or_raise(db=db, user_id=user_id, business_id=business_id)
    _promotion_or_raise(document, promotion_id)
    db.businesses.update_one({"_id": business_id},
                             {"$pull": {"promotions": {"_id": promotion_id}}, "$set": {"updated_at": clock.now()}})


def owned_promotion(*, db, user_id, business_id, promotion_id):
    """(business, promotion) when `user_id` owns the business; 404 when either is missing (or the
    business is hidden from the caller), 403 for anyone else, staff included."""
    document, _staff = _visible_or_raise(db=db, user_id=user_id, business_id=business_id)
    if document["owner_id"] != user_id:
        raise Forbidden("Only the business's owner can feature its promotions")
    return document, _promotion_or_raise(document, promotion_id)


def find_promotion(*, db, business_id, promotion_id):
    """The promotion, or None (its business or itself deleted)."""
    document = db.businesses.find_one({"_id": business_id, "promotions._id": promotion_id},
                                      projection={"promotions": 1})
    return next((p for p in (document or {}).get("promotions") or () if p["_id"] == promotion_id), None)


def featured(promotion, now):
    """True while a paid featuring lasts."""
    return promotion.get("featured_until") is not None and promotion["featured_until"] > now


def set_featured(*, db, business_id, promotion_id, featured_until, payment_id):
    """Feature a promotion until `featured_until` (None: no longer), as its payment says."""
    db.businesses.update_one({"_id": business_id, "promotions._id": promotion_id},
                             {"$set": {"promotions.$.featured_until": featured_until,
                                       "promotions.$.featured_payment_id": payment_id}})


def promotions_near(*, db, near, limit):
    """Running promotions of visible businesses whose radius covers `near`, featured ones first, then
    nearest first (one aggregation)."""
    now = clock.now()
    point = {"type": "Point", "coordinates": [near["lng"], near["lat"]]}
    running_now = {"starts_at": {"$lte": now}, "ends_at": {"$gt": now}}
    pipeline = [
        _near_stage(point, PROMOTION_RADIUS_M[1], {"hidden": False, "promotions": {"$elemMatch": running_now}}),
        {"$unwind": "$promotions"},
        {"$match": {"promotions.starts_at": running_now["starts_at"], "promotions.ends_at": running_now["ends_at"],
                    "$expr": {"$lte": ["$distance_m", "$promotions.radius_m"]}}},
        {"$addFields": {"featured": {"$gt": [{"$ifNull": ["$promotions.featured_until", NEVER]}, now]}}},
        {"$sort": {"featured": -1, "distance_m": 1, "promotions.ends_at": 1, "promotions._id": 1}},
        {"$limit": limit},
        {"$project": {"name": 1, "verified": 1, "promotions": 1, "distance_m": 1, "featured": 1}},
    ]
    return [{"business_id": row["_id"], "business_name": row["name"], "promotion": row["promotions"],
             "distance_m": row["distance_m"], "featured": bool(row["featured"]),
             "verified": bool(row.get("verified"))}
            for row in db.businesses.aggregate(pipeline)]


def remove_expired_promotions(*, db, now=None, dry_run=False):
    """Pull every promotion that has ended (`ends_at <= now`); returns how many are (or would be) removed."""
    now = now or clock.now()
    ended = {"promotions.ends_at": {"$lte": now}}
    count = sum(sum(1 for promotion in document["promotions"] if promotion["ends_at"] <= now)
                for document in db.businesses.find(ended, projection={"promotions.ends_at": 1}))
    if count and not dry_run:
        db.businesses.update_many(ended, {"$pull": {"promotions": {"ends_at": {"$lte": now}}}})
    return count


# ---- safe places --------------------------------------------------------------------------------

def safe_places_near(*, db, location, radius_m=None, now=None):
    """Safe places open now within `radius_m` (default SAFE_PLACE_RADIUS_M) of a GeoJSON point, nearest first.

    Each is {_id, name, location, distance_m, closes_at}: verified, not hidden, opted in, open now.
    """
    now = now or clock.now()
    if radius_m is None:
        radius_m = current_app.config["SAFE_PLACE_RADIUS_M"]
    pipeline = [
        _near_stage(location, radius_m, {"verified": True, "hidden": False, "safe_place": True,
                                         "opening_hours": {"$ne": None}}),
        {"$sort": {"distance_m": 1, "_id": 1}},
        {"$limit": SAFE_PLACE_SCAN},
        {"$project": {"name": 1, "location": 1, "distance_m": 1, "opening_hours": 1}},
    ]
    places = []
    for document in db.businesses.aggregate(pipeline):
        is_open, closes_at = hours.open_status(document["opening_hours"], now)
        if is_open:
            places.append({"_id": document["_id"], "name": document["name"], "location": document["location"],
                           "distance_m": document["distance_m"], "closes_at": closes_at})
            if len(places) == SAFE_PLACE_LIMIT:
                break
    return places
