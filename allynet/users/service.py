"""User rules: accounts, profiles, locations, admin changes, staff search and suspension.

Suspension: `suspended_until` holds when it ends (`INDEFINITE` for "until lifted"), so
"not suspended" is one filter (`not_suspended`) that combines with geo queries; `suspension`
keeps the reason, the end (null: until lifted), who and when, for staff. A suspension whose end
has passed is over without any write.
"""
import logging
import re
from datetime import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from allynet import audit, clock, realtime
from allynet.auth.passwords import hash_password
from allynet.errors import Conflict, NotFound, ValidationFailed
from allynet.pagination import newest_first_page
from allynet.trust import BASE_SCORE

log = logging.getLogger(__name__)

DEFAULT_EMERGENCY_RADIUS_M = 5000
INDEFINITE = datetime(9999, 12, 31)  # `suspended_until` of a suspension without an end


def normalise_email(email):
    """Emails are unique case-insensitively: stored trimmed and lower-cased."""
    return email.strip().lower()


def new_user_document(*, email, password=None, password_hash=None, display_name, vehicle_type=None,
                      role="user", is_helper=False, verified=False, trust_score=BASE_SCORE,
                      location=None, created_at=None):
    """A user document with every contract field set (used by register, seeds and bootstrap)."""
    now = created_at or clock.now()
    return {
        "email": normalise_email(email),
        "password_hash": password_hash or hash_password(password),
        "display_name": display_name,
        "vehicle_type": vehicle_type,
        "preferences": {},
        "role": role,
        "is_helper": is_helper,
        "verified": verified,
        "trust_score": trust_score,
        "emergency_radius_m": DEFAULT_EMERGENCY_RADIUS_M,
        "location": location,
        "location_updated_at": now if location else None,
        "active_emergency_id": None,
        "created_at": now,
    }


def create_user(*, db, **fields):
    """Insert a new user; 409 conflict when the email is taken."""
    user = new_user_document(**fields)
    try:
        db.users.insert_one(user)
    except DuplicateKeyError as exc:
        raise Conflict("An account with this email already exists",
                       details={"email": ["Already registered."]}) from exc
    return user


def find_by_email(*, db, email):
    """The user with this email (case-insensitive), or None."""
    return db.users.find_one({"email": normalise_email(email)})


def get_or_raise(*, db, user_id):
    """The user document, or 404."""
    user = db.users.find_one({"_id": user_id}) if user_id is not None else None
    if user is None:
        raise NotFound("User not found")
    return user


def update_profile(*, db, user_id, data):
    """Apply whitelisted profile changes."""
    changes = {key: value for key, value in data.items() if key != "preferences"}
    for key, value in data.get("preferences", {}).items():
        changes[f"preferences.{key}"] = value
    user = db.users.find_one_and_update({"_id": user_id}, {"$set": changes},
                                        return_document=ReturnDocument.AFTER)
    if user is None:
        raise NotFound("User not found")
    return user


def set_location(*, db, user_id, lat, lng, accuracy_m=None):
    """Record where the user is now (used for helper discovery)."""
    changes = {
        "location": {"type": "Point", "coordinates": [lng, lat]},
        "location_accuracy_m": accuracy_m,
        "location_updated_at": clock.now(),
    }
    user = db.users.find_one_and_update({"_id": user_id}, {"$set": changes},
                                        return_document=ReturnDocument.AFTER)
    if user is None:
        raise NotFound("User not found")
    return user


# Who counts as an admin for the last-admin rule. A rule that takes admin rights away without
# touching `role` (a suspension) adds its condition here and in `is_active_admin`.
ADMIN_FILTER = {"role": "admin"}


def is_active_admin(user):
    """True when `user` (a document) counts as an admin for the last-admin rule."""
    return user.get("role") == "admin" and not is_suspended(user)


def _an_admin_remains(db):
    query = {**ADMIN_FILTER, **not_suspended(clock.now())}
    return db.users.find_one(query, projection={"_id": 1}) is not None


def not_suspended(now):
    """Filter for users not suspended at `now` (unset, null or past `suspended_until`)."""
    return {"suspended_until": {"$not": {"$gt": now}}}


def is_suspended(user, now=None):
    """True when the user document is suspended at `now`."""
    until = user.get("suspended_until") if user else None
    return until is not None and until > (now or clock.now())


def for_staff(user):
    """The user document with `suspended` set and `suspension` only while it holds (AdminUserSchema)."""
    suspended = is_suspended(user)
    return {**user, "suspended": suspended, "suspension": user.get("suspension") if suspended else None}


def ensure_not_last_admin(*, db, user_id, changes):
    """Apply `changes` to the user unless they take admin rights from the last admin: 409 last_admin.

    Returns the document as it was before. Race-free without transactions: write, then count,
    then undo. The change is written first (one atomic update), then the remaining admins are
    counted; if none remain, this call puts the user's changed fields back and answers 409.
    Two admins demoting each other at once cannot both succeed: the later of the two counts
    comes after both writes and, no undo having happened, finds no admin, so that call undoes its
    own write (both may get 409 when both count after both writes; they retry). An admin always
    remains once the calls have returned. Checking first and writing after would let both pass
    on a count of two. The undo is unconditional: when it runs no other admin is left to have
    changed the user meanwhile, and it must not miss.
    """
    before = db.users.find_one_and_update({"_id": user_id}, {"$set": changes},
                                          return_document=ReturnDocument.BEFORE)
    if before is None:
        raise NotFound("User not found")
    if is_active_admin(before) and not _an_admin_remains(db):
        restore = {key: before[key] for key in changes if key in before}
        unset = {key: "" for key in changes if key not in before}
        undo = {"$set": restore} if restore else {}
        if unset:
            undo["$unset"] = unset
        db.users.update_one({"_id": user_id}, undo)
        raise Conflict("The last admin cannot lose admin rights; make another admin first",
                       code="last_admin")
    return before


def admin_update(*, db, actor_id, user_id, data):
    """Change a user's role or verification (never the last admin's role); written to the audit log."""
    if data.get("role", "admin") != "admin":
        before = ensure_not_last_admin(db=db, user_id=user_id, changes=data)
    else:
        before = db.users.find_one_and_update({"_id": user_id}, {"$set": data},
                                              return_document=ReturnDocument.BEFORE)
    if before is None:
        raise NotFound("User not found")
    after = {**before, **data}
    if "role" in data and data["role"] != before.get("role"):
        # Rooms joined under the old role (staff in emergency rooms) must not outlive it: the
        # user's sockets end and reconnect under the new one.
        realtime.end_user_sessions(user_id, "role_changed")
    audit.record(db=db, actor_id=actor_id, action="user.update", target_type="user", target_id=user_id,
                 before={key: before.get(key) for key in data}, after=data)
    return after


def list_users(*, db, query):
    """Users for staff, newest first: `q` matches an email prefix or part of the display name."""
    conditions = []
    if query.get("q"):
        text = re.escape(query["q"])
        conditions.append({"$or": [{"email": {"$regex": "^" + re.escape(normalise_email(query["q"]))}},
                                   {"display_name": {"$regex": text, "$options": "i"}}]})
    for key in ("role", "verified", "is_helper"):
        if query.get(key) is not None:
            conditions.append({key: query[key]})
    now = clock.now()
    if query.get("status") == "suspended":
        conditions.append({"suspended_until": {"$gt": now}})
    elif query.get("status") == "active":
        conditions.append(not_suspended(now))
    items, next_cursor = newest_first_page(db.users, query={"$and": conditions} if conditions else {},
                                           limit=query["limit"], cursor=query.get("cursor"),
                                           projection={"password_hash": 0})
    return [for_staff(user) for user in items], next_cursor


def suspend(*, db, actor_id, user_id, reason, until=None):
    """Suspend a user (never the last admin: 409 last_admin); audited with the reason.

    Their tokens stop at once (the per-request user lookup refuses them), their sockets end on
    every process, they leave their active party and drop out of helper searches; an open SOS
    of theirs is left alone (it is an emergency).
    """
    now = clock.now()
    if until is not None and until <= now:
        raise ValidationFailed(details={"until": ["Must be in the future."]})
    suspension = {"reason": reason, "until": until, "by": actor_id, "at": now}
    before = ensure_not_last_admin(db=db, user_id=user_id,
                                   changes={"suspension": suspension, "suspended_until": until or INDEFINITE})
    realtime.end_user_sessions(user_id, "suspended")
    _leave_active_party(db=db, user_id=user_id)
    audit.record(db=db, actor_id=actor_id, action="user.suspend", target_type="user", target_id=user_id,
                 before={"suspended": is_suspended(before, now)}, after={"suspended": True, "until": until},
                 reason=reason)
    return for_staff({**before, "suspension": suspension, "suspended_until": until or INDEFINITE})


def _leave_active_party(*, db, user_id):
    from allynet.parties import service as parties_service  # lazily: parties views import auth, which imports this

    membership = db.party_members.find_one({"user_id": user_id, "active": True}, projection={"party_id": 1})
    if membership is None:
        return
    try:
        parties_service.leave_party(db=db, user_id=user_id, party_id=membership["party_id"])
    except Exception:  # the suspension stands; a party that changed meanwhile is not a failure
        log.exception("suspended user %s could not leave party %s", user_id, membership["party_id"])


def unsuspend(*, db, actor_id, user_id):
    """Lift a suspension (409 conflict when the user is not suspended); audited."""
    now = clock.now()
    before = db.users.find_one_and_update(
        {"_id": user_id, "suspended_until": {"$gt": now}},
        {"$set": {"suspension": None, "suspended_until": None}}, return_document=ReturnDocument.BEFORE)
    if before is None:
        get_or_raise(db=db, user_id=user_id)
        raise Conflict("The user is not suspended")
    audit.record(db=db, actor_id=actor_id, action="user.unsuspend", target_type="user", target_id=user_id,
                 before={"suspended": True, "reason": before["suspension"]["reason"]},
                 after={"suspended": False})
    return for_staff({**before, "suspension": None, "suspended_until": None})


def bootstrap_admin(*, db, email, password):
    """Create the admin account, or promote and re-password it if it exists."""
    password_hash = hash_password(password)
    existing = find_by_email(db=db, email=email)
    if existing is None:
        try:
            return create_user(db=db, email=email, password_hash=password_hash,
                               display_name=email.split("@")[0] or "admin", role="admin", verified=True)
        except Conflict:
            existing = find_by_email(db=db, email=email)
    return db.users.find_one_and_update(
        {"_id": existing["_id"]},
        {"$set": {"role": "admin", "verified": True, "password_hash": password_hash}},
        return_document=ReturnDocument.AFTER,
    )


def is_verified_helper(user):
    """On duty as a helper and verified: by staff, or vouched for by a verified organization."""
    return bool(user.get("is_helper")) and bool(user.get("verified") or user.get("vouched_by"))
