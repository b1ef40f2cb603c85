"""Emergency (SOS) rules: open one, alert the right helpers, escalate, respond, close.

The critical path. What the database guarantees, and how:

- One open SOS per user: a compare-and-set on the user document
  (``active_emergency_id`` is set only where it is null, cleared on
  resolve/cancel) plus the unique partial index ``emergencies.user_id``
  where ``is_open: true``. ``is_open`` is true exactly while the status is
  ``active`` or ``responding``. If anything fails after the slot was taken,
  the slot is released: nothing half-written stays behind.
- Every transition is one ``find_one_and_update`` with the expected status
  in the filter and a ``timeline`` entry in the same write.
- Escalation is driven by data (``wave``, ``next_wave_at`` on the SOS),
  claimed atomically by whichever process sweeps first, so it survives the
  process that created the SOS.

Helper ranking (``helper_rank``), over the helpers ``$geoNear`` finds inside
the wave's radius::

    rank = 0.6 * trust_score / 100 + 0.4 * (1 - distance_m / radius_m)

Trust weighs more than distance: a trusted helper a little further away is
preferred to an unknown one next door, but at equal trust the nearer one
wins. A helper is verified by staff (``verified``) or through a verified organization that
vouches for them (``vouched_by``, allynet/organizations/service.py); ranking does not tell
the two apart. Ties go to the nearer helper. At most ``MAX_HELPERS_PER_WAVE`` are
alerted per wave; members of the requester's active party are alerted first,
at any distance, on top of them.
"""
import logging
from collections import namedtuple
from datetime import timedelta

from bson import ObjectId
from flask import current_app, has_app_context
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from allynet import audit, clock, geo, idempotency, ratelimit, realtime
from allynet.background import periodic
from allynet.businesses import service as businesses_service
from allynet.emergencies.schemas import alert_schema, create_result_schema, message_schema
from allynet.errors import AllyNetError, Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from allynet.fields import iso
from allynet.pagination import decode_time_cursor, encode_cursor, newest_first_page
from allynet.parties import service as parties_service
from allynet.users import service as users_service
from allynet.users.service import is_verified_helper

log = logging.getLogger(__name__)

OPEN_STATUSES = ("active", "responding")
DEFAULT_RADIUS_M = 5000.0
MIN_RADIUS_M, MAX_RADIUS_M = 100.0, 20000.0
MAX_HELPERS_PER_WAVE = 50
# Nearest candidates considered for ranking; the rank then picks the best 50 of them.
CANDIDATE_POOL = 200
LOCATION_FRESHNESS = timedelta(hours=24)
MAX_EXTRA_WAVES = 3  # wave 1 at creation, then waves 2..4
TRUST_WEIGHT, DISTANCE_WEIGHT = 0.6, 0.4
# A slot on the user naming an SOS that does not exist is a create in flight for this long;
# after it, the create died between taking the slot and inserting, and the slot is reclaimed.
SLOT_GRACE = timedelta(seconds=30)
IDEMPOTENCY_SCOPE = "emergencies.create"
DEFAULT_PAGE = 20

# One person to alert in a wave.
Target = namedtuple("Target", "user_id distance_m party_member")


# ---- settings and seams ------------------------------------------------------------------------

def _setting(name, default):
    if has_app_context():
        return current_app.config.get(name, default)
    return default


def escalation_seconds():
    """Seconds between escalation waves (config ESCALATION_SECONDS)."""
    return float(_setting("ESCALATION_SECONDS", 60.0))


def dispatching_organization_ids(*, db, location):
    """Ids of the dispatching organizations whose service area covers `location`; [] on any problem.

    A seam like `party_member_ids`: dispatch is on top of the SOS, which goes out regardless.
    """
    try:
        from allynet.organizations import service as organizations_service

        return organizations_service.dispatching_organization_ids(db=db, location=location)
    except Exception:
        log.exception("organization dispatch lookup failed; alerting helpers only")
        return []


def _dispatch_rooms(emergency):
    return [realtime.organization_room(org_id) for org_id in emergency.get("dispatch_organization_ids") or ()]


def _tell_console(emergency, change):
    """The console's live map: staff, and the dispatchers of the organizations alerted at creation."""
    realtime.emit_to_rooms(realtime.console_rooms(emergency.get("dispatch_organization_ids") or ()),
                           "console:changed", {"layer": "sos", "id": str(emergency["_id"]), "change": change})


def party_member_ids(*, db, user_id):
    """Other current members of the user's active party; [] when the party lookup fails.

    An SOS must go out regardless of the parties feature, so any problem here
    means "no party".
    """
    try:
        members = parties_service.active_party_member_ids(db=db, user_id=user_id)
        return [member for member in (members or []) if isinstance(member, ObjectId)]
    except Exception:
        log.exception("party lookup failed for %s; alerting helpers only", user_id)
        return []


# ---- errors ------------------------------------------------------------------------------------

def active_emergency_exists(emergency_id):
    """409 with the id of the caller's open SOS."""
    return AllyNetError("You already have an open emergency", status=409, code="active_emergency_exists",
                        details={"emergency_id": str(emergency_id)})


def _not_found():
    return NotFound("Emergency not found")


# ---- ranking and discovery ---------------------------------------------------------------------

def helper_rank(trust_score, distance_m, radius_m):
    """Rank of a helper for one wave: 0.6 * trust/100 + 0.4 * (1 - distance/radius); higher first."""
    trust = min(max(float(trust_score if trust_score is not None else 50.0), 0.0), 100.0)
    closeness = 1.0 - min(max(distance_m / radius_m, 0.0), 1.0) if radius_m > 0 else 0.0
    return TRUST_WEIGHT * trust / 100.0 + DISTANCE_WEIGHT * closeness


def find_nearby_helpers(*, db, location, radius_m, exclude=(), limit=MAX_HELPERS_PER_WAVE, now=None):
    """Verified on-duty helpers with a fresh location within `radius_m`, best ranked first: [Target]."""
    now = now or clock.now()
    query = {
        "is_helper": True,
        # verified by staff, or vouched for by a verified organization right now
        "$or": [{"verified": True}, {"vouched_by.0": {"$exists": True}}],
        "location_updated_at": {"$gte": now - LOCATION_FRESHNESS},
        # a helper with an SOS of their own is in no position to help
        "active_emergency_id": None,
        **users_service.not_suspended(now),
    }
    excluded = list(exclude)
    if excluded:
        query["_id"] = {"$nin": excluded}
    pipeline = [
        {"$geoNear": {"near": location, "key": "location", "distanceField": "distance_m",
                      "maxDistance": float(radius_m), "spherical": True, "query": query}},
        {"$limit": CANDIDATE_POOL},
        {"$project": {"_id": 1, "trust_score": 1, "distance_m": 1}},
    ]
    candidates = list(db.users.aggregate(pipeline))
    candidates.sort(key=lambda c: (-helper_rank(c.get("trust_score"), c["distance_m"], radius_m),
                                   c["distance_m"], str(c["_id"])))
    return [Target(c["_id"], c["distance_m"], False) for c in candidates[:limit]]


def _distance_from(location, user):
    point = user.get("location") if user else None
    return geo.points_distance_m(location, point) if point else None


def _wave_targets(*, db, emergency, radius_m, now):
    """Who a wave alerts: party members not yet alerted (any distance), then ranked new helpers."""
    excluded = set(emergency.get("notified_helper_ids") or ())
    excluded.update(emergency.get("declined_helper_ids") or ())
    excluded.add(emergency["user_id"])
    targets = []
    members = [m for m in party_member_ids(db=db, user_id=emergency["user_id"]) if m not in excluded]
    if members:
        found = {u["_id"]: u for u in db.users.find({"_id": {"$in": members}}, projection={"location": 1})}
        for member in members:
            if member in found:
                targets.append(Target(member, _distance_from(emergency["location"], found[member]), True))
                excluded.add(member)
    targets.extend(find_nearby_helpers(db=db, location=emergency["location"], radius_m=radius_m,
                                       exclude=excluded, now=now))
    return targets


def radius_for_wave(base_radius_m, wave):
    """Search radius of wave 1, 2, 3, 4: doubling from the base, capped at 20 km."""
    return min(float(base_radius_m) * 2 ** (wave - 1), MAX_RADIUS_M)


def _has_next_wave(base_radius_m, wave):
    return wave < 1 + MAX_EXTRA_WAVES and radius_for_wave(base_radius_m, wave) < MAX_RADIUS_M


def _next_wave_at(base_radius_m, wave, now):
    return now + timedelta(seconds=escalation_seconds()) if _has_next_wave(base_radius_m, wave) else None


def _alert(emergency, targets, wave):
    summary = alert_schema.dump(emergency)
    for target in targets:
        payload = dict(summary, wave=wave, party_member=target.party_member,
                       distance_m=None if target.distance_m is None else round(target.distance_m, 1))
        realtime.emit_to_user(target.user_id, "emergency.created", payload)


# ---- create ------------------------------------------------------------------------------------

def create_emergency(*, db, user_id, data, idempotency_key=None):
    """Open an SOS and alert helpers, at most once per idempotency key: returns (body, status)."""
    if idempotency_key is not None:
        key = idempotency.clean_key(idempotency_key)
    else:
        key = idempotency.clean_key(data.get("request_id"), field="request_id")
    payload = {field: value for field, value in data.items() if field != "request_id"}

    def open_and_render():
        emergency, notified = open_emergency(db=db, user_id=user_id, data=payload)
        return create_result_schema.dump({"emergency": emergency, "notified_helpers": notified}), 201

    return idempotency.run(db=db, user_id=user_id, key=key, scope=IDEMPOTENCY_SCOPE, payload=payload,
                           fn=open_and_render)


def _take_slot(*, db, user_id, emergency_id, now):
    """Compare-and-set the user's single open-SOS slot; 409 active_emergency_exists when held."""
    for _ in range(3):
        if db.users.find_one_and_update(
                {"_id": user_id, "active_emergency_id": None},
                {"$set": {"active_emergency_id": emergency_id, "active_emergency_claimed_at": now}},
                projection={"_id": 1}) is not None:
            return
        user = db.users.find_one({"_id": user_id},
                                 projection={"active_emergency_id": 1, "active_emergency_claimed_at": 1})
        if user is None:
            raise NotFound("User not found")
        held = user.get("active_emergency_id")
        if held is None:
            continue  # released meanwhile: try again
        existing = db.emergencies.find_one({"_id": held}, projection={"is_open": 1})
        claimed_at = user.get("active_emergency_claimed_at")
        in_flight = existing is None and claimed_at is not None and claimed_at > now - SLOT_GRACE
        if (existing is not None and existing.get("is_open")) or in_flight:
            raise active_emergency_exists(held)
        # A closed SOS, or a create that died before inserting: reclaim the slot, CAS again.
        db.users.update_one({"_id": user_id, "active_emergency_id": held},
                            {"$set": {"active_emergency_id": None}})
    raise Conflict("Could not open the emergency; retry")


def _release_slot(*, db, user_id, emergency_id):
    db.users.update_one({"_id": user_id, "active_emergency_id": emergency_id},
                        {"$set": {"active_emergency_id": None}})


def new_emergency_document(*, emergency_id, user_id, kind, description, location, radius_m, now,
                           escalation_seconds):
    """A new active SOS at wave 1, alerting no one yet; `radius_m` None means the default, and is clamped."""
    radius = min(max(float(radius_m or DEFAULT_RADIUS_M), MIN_RADIUS_M), MAX_RADIUS_M)
    return {
        "_id": emergency_id,
        "user_id": user_id,
        "type": kind,
        "description": description,
        "location": location,
        "radius_m": radius,
        "search_radius_m": radius,
        "status": "active",
        "is_open": True,
        "wave": 1,
        "next_wave_at": now + timedelta(seconds=escalation_seconds) if _has_next_wave(radius, 1) else None,
        "responses": [],
        "notified_helper_ids": [],
        "declined_helper_ids": [],
        "timeline": [{"status": "active", "at": now, "by": user_id}],
        "created_at": now,
        "updated_at": now,
        "resolved_at": None,
        "cancelled_at": None,
    }


def open_emergency(*, db, user_id, data):
    """Take the user's slot, insert the SOS with its first wave, alert: returns (emergency, notified)."""
    user = db.users.find_one({"_id": user_id}, projection={"emergency_radius_m": 1})
    if user is None:
        raise NotFound("User not found")
    now = clock.now()
    emergency_id = ObjectId()
    _take_slot(db=db, user_id=user_id, emergency_id=emergency_id, now=now)
    try:
        emergency = new_emergency_document(
            emergency_id=emergency_id, user_id=user_id, kind=data["type"], description=data.get("description"),
            location=data["location"], radius_m=data.get("radius_m") or user.get("emergency_radius_m"), now=now,
            escalation_seconds=escalation_seconds())
        targets = _wave_targets(db=db, emergency=emergency, radius_m=emergency["radius_m"], now=now)
        emergency["notified_helper_ids"] = [target.user_id for target in targets]
        emergency["dispatch_organization_ids"] = dispatching_organization_ids(db=db, location=data["location"])
        db.emergencies.insert_one(emergency)
    except DuplicateKeyError:
        # The unique partial index saw an open SOS the slot did not (e.g. a slot cleared by hand).
        _release_slot(db=db, user_id=user_id, emergency_id=emergency_id)
        other = db.emergencies.find_one({"user_id": user_id, "is_open": True}, projection={"_id": 1})
        raise active_emergency_exists(other["_id"] if other else emergency_id) from None
    except BaseException:
        _release_slot(db=db, user_id=user_id, emergency_id=emergency_id)
        raise
    realtime.enter_user_sockets(user_id, realtime.emergency_room(emergency_id))
    _alert(emergency, targets, wave=1)
    if emergency["dispatch_organization_ids"]:
        realtime.emit_to_rooms(_dispatch_rooms(emergency), "emergency.created",
                               dict(alert_schema.dump(emergency), wave=1, party_member=False, distance_m=None))
    _tell_console(emergency, "created")
    return emergency, len(targets)


# ---- escalation --------------------------------------------------------------------------------

def _claim_wave(*, db, candidate, now):
    """Advance one due SOS to its next wave, atomically; None when someone else got there first."""
    wave = candidate["wave"] + 1
    radius = radius_for_wave(candidate["radius_m"], wave)
    return db.emergencies.find_one_and_update(
        {"_id": candidate["_id"], "status": "active", "wave": candidate["wave"],
         "next_wave_at": candidate["next_wave_at"]},
        {"$set": {"wave": wave, "search_radius_m": radius, "updated_at": now,
                  "next_wave_at": _next_wave_at(candidate["radius_m"], wave, now)}},
        return_document=ReturnDocument.AFTER)


def _run_wave(*, db, emergency, now):
    """Alert the new helpers of a claimed wave; returns how many were alerted."""
    targets = _wave_targets(db=db, emergency=emergency, radius_m=emergency["search_radius_m"], now=now)
    if not targets:
        return 0
    # Only while still unanswered: a respond between the claim and here stops the wave.
    result = db.emergencies.update_one(
        {"_id": emergency["_id"], "status": "active"},
        {"$addToSet": {"notified_helper_ids": {"$each": [t.user_id for t in targets]}}})
    if not result.matched_count:
        return 0
    _alert(emergency, targets, wave=emergency["wave"])
    return len(targets)


def escalate_due(*, db, now=None, limit=100):
    """Run every escalation wave that is due (any process may call this): [(emergency_id, wave, alerted)]."""
    now = now or clock.now()
    done = []
    for _ in range(limit):
        candidate = db.emergencies.find_one({"status": "active", "next_wave_at": {"$lte": now}},
                                            sort=[("next_wave_at", ASCENDING)])
        if candidate is None:
            break
        claimed = _claim_wave(db=db, candidate=candidate, now=now)
        if claimed is None:
            continue  # another sweeper claimed it, or a respond/cancel landed
        try:
            alerted = _run_wave(db=db, emergency=claimed, now=now)
        except Exception:
            # One SOS failing (its wave is spent) must not hold up the others due in this sweep.
            log.exception("escalation wave %s of %s failed", claimed["wave"], claimed["_id"])
            continue
        done.append((claimed["_id"], claimed["wave"], alerted))
    return done


@periodic("emergency_escalation", interval=lambda cfg: cfg.get("ESCALATION_SWEEP_SECONDS", 2.0))
def escalation_loop(app):
    """Background loop body: sweep due escalation waves on this process's database."""
    from allynet.db import get_db

    escalate_due(db=get_db())


# ---- reading -----------------------------------------------------------------------------------

def _user(*, db, user_id):
    return db.users.find_one({"_id": user_id},
                             projection={"role": 1, "is_helper": 1, "verified": 1, "vouched_by": 1,
                                         "location": 1, "emergency_radius_m": 1}) or {}


def _responder_ids(emergency):
    return {response["helper_id"] for response in emergency.get("responses") or ()}


def can_view(emergency, user_id, role):
    """Owner, alerted helpers, responders, moderators and admins may see an SOS."""
    return (emergency["user_id"] == user_id
            or role in ("moderator", "admin")
            or user_id in (emergency.get("notified_helper_ids") or ())
            or user_id in _responder_ids(emergency))


def _get_visible(*, db, emergency_id, user_id):
    """(emergency, caller's role); 404 when it does not exist or the caller may not know it does."""
    emergency = db.emergencies.find_one({"_id": emergency_id})
    if emergency is None:
        raise _not_found()
    role = _user(db=db, user_id=user_id).get("role")
    if not can_view(emergency, user_id, role):
        raise _not_found()
    return emergency, role


def get_for_viewer(*, db, emergency_id, user_id):
    """The SOS if the caller may see it, else 404; its owner and responders also get `safe_places`
    (open ones nearby while the SOS is open, else none)."""
    emergency = _get_visible(db=db, emergency_id=emergency_id, user_id=user_id)[0]
    if emergency["user_id"] == user_id or user_id in _responder_ids(emergency):
        places = businesses_service.safe_places_near(db=db, location=emergency["location"]) \
            if emergency.get("is_open") else []
        emergency = dict(emergency, safe_places=places)
    return emergency


def list_mine(*, db, user_id, cursor=None, limit=DEFAULT_PAGE):
    """The caller's emergencies, newest first: (items, next_cursor)."""
    return newest_first_page(db.emergencies, query={"user_id": user_id}, limit=limit, cursor=cursor)


def list_open_near(*, db, user_id, near=None, radius_m=None, limit=50):
    """Open SOS near a point (default: the caller's location), for verified helpers: [emergency + distance_m]."""
    user = _user(db=db, user_id=user_id)
    if not is_verified_helper(user):
        raise Forbidden("Only verified helpers can list nearby emergencies")
    if near is not None:
        point = geo.to_point(*near)
    elif user.get("location"):
        point = user["location"]
    else:
        raise ValidationFailed(details={"near": ["Required while your location is not set."]})
    radius = radius_m or user.get("emergency_radius_m") or DEFAULT_RADIUS_M
    pipeline = [
        {"$geoNear": {"near": point, "key": "location", "distanceField": "distance_m",
                      "maxDistance": float(radius), "spherical": True,
                      "query": {"is_open": True, "user_id": {"$ne": user_id}}}},
        {"$limit": limit},
    ]
    return list(db.emergencies.aggregate(pipeline))


# ---- transitions -------------------------------------------------------------------------------

def _room_and_owner(emergency):
    return [realtime.emergency_room(emergency["_id"]), realtime.user_room(emergency["user_id"])]


def _closed_or_missing(*, db, emergency_id):
    """After a failed compare-and-set: 404 if the SOS is gone, else 409 invalid_transition."""
    current = db.emergencies.find_one({"_id": emergency_id}, projection={"status": 1})
    if current is None:
        return _not_found()
    return InvalidTransition(f"Emergency is {current['status']}", details={"status": current["status"]})


def respond(*, db, emergency_id, helper_id, eta_minutes=None):
    """A verified helper joins an open SOS (active -> responding on the first); twice is a no-op."""
    helper = _user(db=db, user_id=helper_id)
    if not is_verified_helper(helper):
        raise Forbidden("Only verified helpers can respond to an emergency")
    emergency = db.emergencies.find_one({"_id": emergency_id}, projection={"user_id": 1})
    if emergency is None:
        raise _not_found()
    if emergency["user_id"] == helper_id:
        raise Forbidden("You cannot respond to your own emergency")
    now = clock.now()
    response = {"helper_id": helper_id, "responded_at": now, "eta_minutes": eta_minutes}
    not_yet = {"responses.helper_id": {"$ne": helper_id}}
    # First responder: the response, the status move and its timeline entry in one write.
    updated = db.emergencies.find_one_and_update(
        {"_id": emergency_id, "status": "active", **not_yet},
        {"$push": {"responses": response, "timeline": {"status": "responding", "at": now, "by": helper_id}},
         "$set": {"status": "responding", "next_wave_at": None, "updated_at": now}},
        return_document=ReturnDocument.AFTER)
    moved = updated is not None
    if updated is None:
        updated = db.emergencies.find_one_and_update(
            {"_id": emergency_id, "status": "responding", **not_yet},
            {"$push": {"responses": response}, "$set": {"updated_at": now}},
            return_document=ReturnDocument.AFTER)
    if updated is None:
        current = db.emergencies.find_one({"_id": emergency_id})
        if current is not None and helper_id in _responder_ids(current):
            return current  # responding twice changes nothing
        raise _closed_or_missing(db=db, emergency_id=emergency_id)
    # Every connection of the responder, on every process, joins the room before anything is said there.
    realtime.enter_user_sockets(helper_id, realtime.emergency_room(emergency_id))
    rooms = _room_and_owner(updated)
    realtime.emit_to_rooms(rooms, "helper.joined", {"emergency_id": str(emergency_id),
                                                    "helper_id": str(helper_id), "eta_minutes": eta_minutes})
    if moved:
        realtime.emit_to_rooms(rooms + _dispatch_rooms(updated), "emergency.status_changed",
                               {"emergency_id": str(emergency_id), "status": "responding"})
        _tell_console(updated, "updated")
    return updated


def _close(*, db, emergency, status, actor_id, owner_only):
    """active|responding -> resolved/cancelled in one write; frees the slot, tells everyone, closes the room."""
    now = clock.now()
    query = {"_id": emergency["_id"], "status": {"$in": list(OPEN_STATUSES)}}
    if owner_only:
        query["user_id"] = actor_id
    changes = {"status": status, "is_open": False, "next_wave_at": None, "updated_at": now,
               f"{status}_at": now, f"{status}_by": actor_id}
    updated = db.emergencies.find_one_and_update(
        query, {"$set": changes, "$push": {"timeline": {"status": status, "at": now, "by": actor_id}}},
        return_document=ReturnDocument.AFTER)
    if updated is None:
        raise _closed_or_missing(db=db, emergency_id=emergency["_id"])
    _release_slot(db=db, user_id=updated["user_id"], emergency_id=updated["_id"])
    emergency_id = str(updated["_id"])
    declined = set(updated.get("declined_helper_ids") or ())
    # Alerted helpers who have not joined the room must learn the SOS is over too.
    alerted = [realtime.user_room(h) for h in updated.get("notified_helper_ids") or () if h not in declined]
    realtime.emit_to_rooms(_room_and_owner(updated) + alerted + _dispatch_rooms(updated),
                           "emergency.status_changed", {"emergency_id": emergency_id, "status": status})
    if status == "resolved":
        realtime.emit_to_rooms(_room_and_owner(updated), "emergency.resolved",
                               {"emergency_id": emergency_id, "status": status,
                                "resolved_at": now, "resolved_by": str(actor_id)})
    realtime.close_room(realtime.emergency_room(updated["_id"]))
    _tell_console(updated, "removed")
    return updated


def resolve(*, db, emergency_id, actor_id):
    """Owner or admin marks the SOS resolved (strangers get 404, other viewers 403)."""
    emergency, role = _get_visible(db=db, emergency_id=emergency_id, user_id=actor_id)
    is_owner = emergency["user_id"] == actor_id
    if not is_owner and role != "admin":
        raise Forbidden("Only the owner or an admin can resolve this emergency")
    updated = _close(db=db, emergency=emergency, status="resolved", actor_id=actor_id, owner_only=False)
    if not is_owner:
        audit.record(db=db, actor_id=actor_id, action="emergency.resolve", target_type="emergency",
                     target_id=emergency_id, before={"status": emergency["status"]},
                     after={"status": "resolved"})
    return updated


def cancel(*, db, emergency_id, actor_id):
    """The owner calls the SOS off (strangers get 404, other viewers 403)."""
    emergency, _ = _get_visible(db=db, emergency_id=emergency_id, user_id=actor_id)
    if emergency["user_id"] != actor_id:
        raise Forbidden("Only the owner can cancel this emergency")
    return _close(db=db, emergency=emergency, status="cancelled", actor_id=actor_id, owner_only=True)


def cancel_as_system(*, db, emergency):
    """The system calls off an SOS (maintenance: open too long); `by` is None in the timeline."""
    return _close(db=db, emergency=emergency, status="cancelled", actor_id=None, owner_only=False)


def decline(*, db, emergency_id, helper_id):
    """An alerted helper declines: never alerted again for this SOS; declining twice is a no-op."""
    emergency, _ = _get_visible(db=db, emergency_id=emergency_id, user_id=helper_id)
    if helper_id not in (emergency.get("notified_helper_ids") or ()):
        raise Forbidden("Only an alerted helper can decline this emergency")
    updated = db.emergencies.find_one_and_update(
        {"_id": emergency_id, "status": {"$in": list(OPEN_STATUSES)}, "notified_helper_ids": helper_id,
         "declined_helper_ids": {"$ne": helper_id}, "responses.helper_id": {"$ne": helper_id}},
        {"$addToSet": {"declined_helper_ids": helper_id}, "$set": {"updated_at": clock.now()}},
        return_document=ReturnDocument.AFTER)
    if updated is not None:
        return updated
    current = db.emergencies.find_one({"_id": emergency_id})
    if current is None:
        raise _not_found()
    if current["status"] not in OPEN_STATUSES:
        raise InvalidTransition(f"Emergency is {current['status']}", details={"status": current["status"]})
    if helper_id in _responder_ids(current):
        raise Conflict("You are responding to this emergency")
    return current  # already declined


# ---- real time: the room is the owner, the responders and staff who join --------------------

STAFF_ROLES = ("moderator", "admin")
JOIN_BACKLOG = 50  # messages in the emergency:join ack


def in_room_circle(emergency, user_id, role):
    """Owner, responders and staff: who may be in `emergency:<id>` and read its messages."""
    return emergency["user_id"] == user_id or role in STAFF_ROLES or user_id in _responder_ids(emergency)


def _get_for_room(*, db, emergency_id, user_id, missing):
    """(emergency, role) when the caller belongs to the room's circle; else `missing()`."""
    emergency = db.emergencies.find_one({"_id": emergency_id})
    role = _user(db=db, user_id=user_id).get("role")
    if emergency is None:
        # Staff may learn an id does not exist; anyone else gets the same answer as for an SOS
        # that is not theirs, so the refusal says nothing about what exists.
        raise _not_found() if role in STAFF_ROLES else missing()
    if not in_room_circle(emergency, user_id, role):
        raise missing()
    return emergency, role


def join_room(*, db, emergency_id, user_id, sid):
    """Put a socket in `emergency:<id>` (owner, responders, staff; forbidden to anyone else, notified
    helpers included) while the SOS is open; returns (emergency, the last messages, oldest first)."""
    emergency, _ = _get_for_room(db=db, emergency_id=emergency_id, user_id=user_id,
                                 missing=lambda: Forbidden("Only the owner, responders and staff can join "
                                                           "this emergency's room"))
    if emergency["status"] not in OPEN_STATUSES:
        raise Conflict(f"Emergency is {emergency['status']}", details={"status": emergency["status"]})
    realtime.enter_room(sid, realtime.emergency_room(emergency_id))
    backlog = list(db.emergency_messages.find({"emergency_id": emergency_id})
                   .sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(JOIN_BACKLOG))
    backlog.reverse()
    return emergency, backlog


def rejoin_rooms(*, db, user_id, sid):
    """A (re)connecting socket enters the rooms of the open SOS its user owns or responds to."""
    query = {"is_open": True, "$or": [{"user_id": user_id}, {"responses.helper_id": user_id}]}
    for emergency in db.emergencies.find(query, projection={"_id": 1}):
        realtime.enter_room(sid, realtime.emergency_room(emergency["_id"]))


def list_messages(*, db, emergency_id, user_id, cursor=None, limit=DEFAULT_PAGE):
    """The room's messages, oldest first, for owner, responders and staff (else 404): (items, next_cursor)."""
    query = {"emergency_id": emergency_id}
    if cursor:  # input first: a forged cursor is 400 whoever asks
        created, last_id = decode_time_cursor(cursor)
        query["$or"] = [{"created_at": {"$gt": created}}, {"created_at": created, "_id": {"$gt": last_id}}]
    _get_for_room(db=db, emergency_id=emergency_id, user_id=user_id, missing=_not_found)
    docs = list(db.emergency_messages.find(query).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
                .limit(limit + 1))
    next_cursor = None
    if len(docs) > limit:
        docs = docs[:limit]
        next_cursor = encode_cursor([iso(docs[-1]["created_at"]), docs[-1]["_id"]])
    return docs, next_cursor


def post_message(*, db, emergency_id, user_id, text):
    """Chat between the owner and responders: stored, then sent to the room."""
    ratelimit.hit("EMERGENCY_MESSAGE_RATE_LIMIT", "emergency:message", "user", user_id)
    emergency, _ = _get_visible(db=db, emergency_id=emergency_id, user_id=user_id)
    if emergency["user_id"] != user_id and user_id not in _responder_ids(emergency):
        raise Forbidden("Only the owner and responders can message this emergency")
    # Counted after the membership check: outsiders cannot use up an SOS's budget.
    ratelimit.hit("EMERGENCY_MESSAGE_ROOM_RATE_LIMIT", "emergency:message", "emergency", emergency_id)
    if emergency["status"] not in OPEN_STATUSES:
        raise Conflict(f"Emergency is {emergency['status']}", details={"status": emergency["status"]})
    message = {"_id": ObjectId(), "emergency_id": emergency_id, "user_id": user_id, "text": text,
               "created_at": clock.now()}
    db.emergency_messages.insert_one(message)
    realtime.emit_to_room(realtime.emergency_room(emergency_id), "emergency:message", message_schema.dump(message))
    return message
