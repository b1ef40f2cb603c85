"""Organization rules: profiles and service areas, members and invitations, vouching, dispatch, plans.

Members live in the organization document (``members: [{user_id, role, joined_at, vouched}]``,
``member_count``). Every membership change is one compare-and-set on the document's ``version``
(``_change_members``): the new member list is computed from the version read and written only if
nobody changed it meanwhile, so the rules that span members (the last owner, the free plan's
member and dispatcher limits) hold under concurrent requests.

Vouching: a member an organization vouches for counts as a verified helper while the
organization is verified by staff and on the ``pro`` plan and they stay a member. What the SOS
helper query reads is the user's ``vouched_by`` (the ids of the organizations vouching for them
now), kept in step on every change that starts or ends a vouch: vouch, unvouch, leave, remove,
and a change of ``verified`` or ``plan``. Ranking does not weigh it: a vouched helper ranks by
trust score and distance like any verified helper.

Dispatch (verified ``pro`` organizations): owners, admins and dispatchers see the open SOS inside
the service area, are in ``org:<id>`` (from connect, and at once when granted the role), receive
``emergency.created`` / ``emergency.status_changed`` there, and may assign a member who is a
verified (or vouched) helper to an SOS.

Plans follow the organization's subscription only (allynet/payments/subscriptions.py feeds the
provider's events to the ``plans`` section below): paid -> ``pro``; a failed payment -> ``past_due``,
still ``pro`` until ``plan_grace_until``; deleted at the provider, or the grace over -> ``free``
(nothing is deleted: the free plan's limits bind again). A grace that ran out is applied when the
organization is next read (``get_or_raise``) and by a rare sweep (``expire_graces``); the queries
that select dispatching organizations leave such an organization out meanwhile.
"""
import secrets
from datetime import timedelta

from flask import current_app, has_app_context
from pymongo import DESCENDING, ReturnDocument

from allynet import audit, clock, geo, realtime
from allynet.emergencies.schemas import alert_schema
from allynet.errors import AllyNetError, Conflict, Forbidden, InvalidTransition, NotFound
from allynet.pagination import decode_time_cursor, newest_first_page
from allynet.users import service as users_service

OWNER, ADMIN, DISPATCHER, MEMBER = "owner", "admin", "dispatcher", "member"
MANAGER_ROLES = (OWNER, ADMIN)
DISPATCH_ROLES = (OWNER, ADMIN, DISPATCHER)
STAFF_ROLES = ("moderator", "admin")
PROFILE_FIELDS = ("name", "kind", "description", "contact", "service_area")
MEMBERS_ONLY = ("members", "subscription_status", "plan_grace_until")
# subscription_status: incomplete (started, first payment pending), active, past_due, canceled.
SUBSCRIPTION_OPEN = ("incomplete", "active", "past_due")
FREE_DISPATCHERS = 1
DEFAULT_FREE_MEMBERS = 25
DEFAULT_INVITATION_TTL_HOURS = 72.0
MAX_DISPATCH_LIST = 100
CAS_ATTEMPTS = 8


def _setting(name, default):
    return current_app.config.get(name, default) if has_app_context() else default


def free_member_limit():
    """Members a free-plan organization may have (ORG_FREE_MEMBERS)."""
    return int(_setting("ORG_FREE_MEMBERS", DEFAULT_FREE_MEMBERS))


# ---- errors and lookups ------------------------------------------------------------------------

def plan_limit(message, **details):
    """403 plan_limit with the limit that binds in `details`."""
    return AllyNetError(message, status=403, code="plan_limit", details=details)


def last_owner():
    """409 last_owner: the change would leave the organization without an owner."""
    return AllyNetError("The last owner must hand over ownership first", status=409, code="last_owner")


def _not_found():
    return NotFound("Organization not found")


def get_or_raise(*, db, organization_id):
    """The organization (its plan as of now: a grace that ran out is applied), or 404."""
    org = db.organizations.find_one({"_id": organization_id})
    if org is None:
        raise _not_found()
    return current(db=db, org=org)


def member_of(org, user_id):
    """The member entry of `user_id` in `org`, or None."""
    return next((m for m in org.get("members") or () if m["user_id"] == user_id), None)


def _role_of(org, user_id):
    member = member_of(org, user_id)
    return member["role"] if member else None


def _platform_role(db, user_id):
    return (db.users.find_one({"_id": user_id}, projection={"role": 1}) or {}).get("role")


def dispatching(org):
    """True when the organization may dispatch and vouch: verified by staff and on the pro plan."""
    return bool(org.get("verified")) and org.get("plan") == "pro"


def _require_role(org, user_id, roles, action):
    role = _role_of(org, user_id)
    if role not in roles:
        raise Forbidden(f"Only the organization's {' or '.join(roles)} can {action}")
    return role


def _require_pro(org, feature):
    if org.get("plan") != "pro":
        raise plan_limit(f"{feature.capitalize()} needs the pro plan", plan=org.get("plan"), feature=feature)


# ---- profile ------------------------------------------------------------------------------------

def create(*, db, user_id, data):
    """Create an organization owned by the caller (free plan, not verified)."""
    now = clock.now()
    org = {
        "name": data["name"], "kind": data["kind"], "description": data.get("description"),
        "contact": data.get("contact") or {}, "service_area": data["service_area"],
        "verified": False, "plan": "free",
        "members": [{"user_id": user_id, "role": OWNER, "joined_at": now, "vouched": False}],
        "member_count": 1, "version": 0, "created_by": user_id, "created_at": now, "updated_at": now,
    }
    db.organizations.insert_one(org)
    audit.record(db=db, actor_id=user_id, action="organization.create", target_type="organization",
                 target_id=org["_id"], after={"name": org["name"], "kind": org["kind"]})
    return org


def _public(org):
    return {key: value for key, value in org.items() if key not in MEMBERS_ONLY}


def view(*, db, org, user_id):
    """The organization as `user_id` sees it: public fields; members, `my_role` and the subscription's
    state for its members."""
    role = _role_of(org, user_id)
    if role is None:
        return _public(org)
    public = {key: value for key, value in org.items() if key != "members"}
    members = org.get("members") or []
    names = {u["_id"]: u.get("display_name") for u in
             db.users.find({"_id": {"$in": [m["user_id"] for m in members]}}, projection={"display_name": 1})}
    public["my_role"] = role
    public["members"] = [dict(m, display_name=names.get(m["user_id"])) for m in members]
    return public


def get_for_viewer(*, db, organization_id, user_id):
    """The organization's view for the caller (any signed-in user), or 404."""
    return view(db=db, org=get_or_raise(db=db, organization_id=organization_id), user_id=user_id)


def list_organizations(*, db, near=None, kind=None, cursor=None, limit=20):
    """Organizations newest first, those whose service area covers `near` when given: (items, cursor)."""
    query = {}
    if near is not None:
        query["service_area"] = {"$geoIntersects": {"$geometry": geo.to_point(near["lat"], near["lng"])}}
    if kind is not None:
        query["kind"] = kind
    items, next_cursor = newest_first_page(db.organizations, query=query, limit=limit, cursor=cursor,
                                           projection={"members": 0})
    return [_public(current(db=db, org=org)) for org in items], next_cursor


def update(*, db, organization_id, actor_id, data):
    """Profile fields by the owner and org admins; `verified` by staff (the plan follows the subscription)."""
    org = get_or_raise(db=db, organization_id=organization_id)
    platform_role = _platform_role(db, actor_id)
    if any(field in data for field in PROFILE_FIELDS):
        _require_role(org, actor_id, MANAGER_ROLES, "edit its profile")
    if "verified" in data and platform_role not in STAFF_ROLES:
        raise Forbidden("Only platform staff can verify an organization")
    changes = dict(data)
    if "contact" in changes:
        changes["contact"] = {k: v for k, v in changes["contact"].items() if v is not None}
    updated = db.organizations.find_one_and_update(
        {"_id": organization_id}, {"$set": dict(changes, updated_at=clock.now()), "$inc": {"version": 1}},
        return_document=ReturnDocument.AFTER)
    if updated is None:
        raise _not_found()
    if dispatching(org) != dispatching(updated):
        _sync_vouches(db, updated)
        _sync_dispatch_room(updated)
    audit.record(db=db, actor_id=actor_id, action="organization.update", target_type="organization",
                 target_id=organization_id, before={k: org.get(k) for k in changes},
                 after={k: updated.get(k) for k in changes})
    return updated


# ---- membership ---------------------------------------------------------------------------------

def _change_members(db, organization_id, change):
    """Apply `change(org) -> (members, extra $set)` to the current member list with a compare-and-set
    on `version`, retrying on a concurrent change; returns (before, after) documents."""
    for _ in range(CAS_ATTEMPTS):
        org = get_or_raise(db=db, organization_id=organization_id)
        members, extra = change(org)
        updated = db.organizations.find_one_and_update(
            {"_id": organization_id, "version": org.get("version", 0)},
            {"$set": dict(extra, members=members, member_count=len(members), updated_at=clock.now()),
             "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        if updated is not None:
            return org, updated
    raise Conflict("The organization changed meanwhile; retry")


def _owners_left(members):
    if not any(m["role"] == OWNER for m in members):
        raise last_owner()


def _check_dispatchers(org, members):
    """Refuse a dispatcher more than the free plan has (an organization back on free keeps its
    dispatchers and may still take roles away)."""
    count = sum(m["role"] == DISPATCHER for m in members)
    before = sum(m["role"] == DISPATCHER for m in org.get("members") or ())
    if org.get("plan") != "pro" and count > FREE_DISPATCHERS and count > before:
        raise plan_limit("The free plan has one dispatcher", plan="free", dispatchers=FREE_DISPATCHERS)


def invite(*, db, organization_id, actor_id):
    """A single-use invitation code (owner or org admin): {code, expires_at}."""
    org = get_or_raise(db=db, organization_id=organization_id)
    _require_role(org, actor_id, MANAGER_ROLES, "invite")
    _check_room_for_one_more(org)
    now = clock.now()
    hours = float(_setting("ORG_INVITATION_TTL_HOURS", DEFAULT_INVITATION_TTL_HOURS))
    invitation = {"code": secrets.token_urlsafe(12), "organization_id": organization_id, "created_by": actor_id,
                  "created_at": now, "expires_at": now + timedelta(hours=hours), "used_at": None, "used_by": None}
    db.organization_invitations.insert_one(invitation)
    audit.record(db=db, actor_id=actor_id, action="organization.invite", target_type="organization",
                 target_id=organization_id, after={"expires_at": invitation["expires_at"]})
    return invitation


def _check_room_for_one_more(org):
    limit = free_member_limit()
    if org.get("plan") != "pro" and len(org.get("members") or ()) >= limit:
        raise plan_limit(f"The free plan has at most {limit} members", plan="free", members=limit)


def join(*, db, user_id, code):
    """Join by invitation code (single use, until it expires): the organization as its new member sees it."""
    now = clock.now()
    invitation = db.organization_invitations.find_one_and_update(
        {"code": code, "used_at": None, "expires_at": {"$gt": now}},
        {"$set": {"used_at": now, "used_by": user_id}}, return_document=ReturnDocument.AFTER)
    if invitation is None:
        raise NotFound("No valid invitation with this code")
    organization_id = invitation["organization_id"]

    def add(org):
        if member_of(org, user_id) is not None:
            raise Conflict("You are already a member of this organization")
        _check_room_for_one_more(org)
        return org["members"] + [{"user_id": user_id, "role": MEMBER, "joined_at": now, "vouched": False}], {}

    try:
        _, updated = _change_members(db, organization_id, add)
    except Exception:
        # Nothing changed: the code stays usable.
        db.organization_invitations.update_one({"_id": invitation["_id"], "used_by": user_id},
                                               {"$set": {"used_at": None, "used_by": None}})
        raise
    audit.record(db=db, actor_id=user_id, action="organization.join", target_type="organization",
                 target_id=organization_id, after={"user_id": user_id, "role": MEMBER})
    return view(db=db, org=updated, user_id=user_id)


def change_role(*, db, organization_id, actor_id, user_id, role):
    """Set a member's role (owner or org admin; owners are made and unmade by owners only)."""

    def set_role(org):
        actor_role = _require_role(org, actor_id, MANAGER_ROLES, "change roles")
        target = member_of(org, user_id)
        if target is None:
            raise NotFound("No such member")
        if OWNER in (role, target["role"]) and actor_role != OWNER:
            raise Forbidden("Only an owner can make or unmake owners")
        members = [dict(m, role=role) if m["user_id"] == user_id else m for m in org["members"]]
        _owners_left(members)
        _check_dispatchers(org, members)
        return members, {}

    before, after = _change_members(db, organization_id, set_role)
    old = _role_of(before, user_id)
    if dispatching(after):
        if role in DISPATCH_ROLES and old not in DISPATCH_ROLES:
            realtime.enter_user_sockets(user_id, realtime.organization_room(organization_id))
        elif role not in DISPATCH_ROLES and old in DISPATCH_ROLES:
            realtime.leave_user_sockets(user_id, realtime.organization_room(organization_id))
    audit.record(db=db, actor_id=actor_id, action="organization.role", target_type="organization",
                 target_id=organization_id, before={"user_id": user_id, "role": old},
                 after={"user_id": user_id, "role": role})
    return _member_view(db, after, user_id)


def _drop_member(db, organization_id, user_id, check):
    """Remove `user_id` after `check(org, member)`; their vouch and dispatch room end at once."""

    def drop(org):
        target = member_of(org, user_id)
        check(org, target)
        members = [m for m in org["members"] if m["user_id"] != user_id]
        _owners_left(members)
        return members, {}

    before, after = _change_members(db, organization_id, drop)
    db.users.update_one({"_id": user_id}, {"$pull": {"vouched_by": organization_id}})
    realtime.leave_user_sockets(user_id, realtime.organization_room(organization_id))
    return before, after


def leave(*, db, organization_id, user_id):
    """The caller leaves (the last owner must hand over first)."""

    def check(org, member):
        if member is None:
            raise Forbidden("You are not a member of this organization")

    before, _ = _drop_member(db, organization_id, user_id, check)
    audit.record(db=db, actor_id=user_id, action="organization.leave", target_type="organization",
                 target_id=organization_id, before={"user_id": user_id, "role": _role_of(before, user_id)})


def remove(*, db, organization_id, actor_id, user_id):
    """An owner or org admin removes a member (only owners remove owners)."""

    def check(org, member):
        actor_role = _require_role(org, actor_id, MANAGER_ROLES, "remove members")
        if member is None:
            raise NotFound("No such member")
        if member["role"] == OWNER and actor_role != OWNER:
            raise Forbidden("Only an owner can remove an owner")

    before, _ = _drop_member(db, organization_id, user_id, check)
    audit.record(db=db, actor_id=actor_id, action="organization.remove", target_type="organization",
                 target_id=organization_id, before={"user_id": user_id, "role": _role_of(before, user_id)})


def _member_view(db, org, user_id):
    member = member_of(org, user_id)
    user = db.users.find_one({"_id": user_id}, projection={"display_name": 1}) or {}
    return dict(member, display_name=user.get("display_name"))


def require_member(*, db, organization_id, user_id, action="do this"):
    """The organization when `user_id` is a member; 404 when it does not exist, else 403."""
    org = get_or_raise(db=db, organization_id=organization_id)
    if member_of(org, user_id) is None:
        raise Forbidden(f"Only members of this organization can {action}")
    return org


# ---- vouching -----------------------------------------------------------------------------------

def _sync_vouches(db, org):
    """Users' `vouched_by` after the organization started or stopped being able to vouch."""
    if dispatching(org):
        vouched = [m["user_id"] for m in org.get("members") or () if m.get("vouched")]
        if vouched:
            db.users.update_many({"_id": {"$in": vouched}}, {"$addToSet": {"vouched_by": org["_id"]}})
    else:
        db.users.update_many({"vouched_by": org["_id"]}, {"$pull": {"vouched_by": org["_id"]}})


def set_vouch(*, db, organization_id, actor_id, user_id, vouched):
    """Vouch for a member as a helper (or withdraw it): owner or org admin of a verified pro organization."""

    def mark(org):
        _require_role(org, actor_id, MANAGER_ROLES, "vouch for members")
        if vouched and not org.get("verified"):
            raise Forbidden("Only an organization verified by staff can vouch for its members")
        if vouched:
            _require_pro(org, "vouching")
        if member_of(org, user_id) is None:
            raise NotFound("No such member")
        return [dict(m, vouched=vouched) if m["user_id"] == user_id else m for m in org["members"]], {}

    _, after = _change_members(db, organization_id, mark)
    if vouched:
        db.users.update_one({"_id": user_id}, {"$addToSet": {"vouched_by": organization_id}})
        # A concurrent unverify, downgrade or leave may have run its clean-up before our add.
        current = db.organizations.find_one({"_id": organization_id})
        still = current is not None and dispatching(current) and (member_of(current, user_id) or {}).get("vouched")
        if not still:
            db.users.update_one({"_id": user_id}, {"$pull": {"vouched_by": organization_id}})
    else:
        db.users.update_one({"_id": user_id}, {"$pull": {"vouched_by": organization_id}})
    audit.record(db=db, actor_id=actor_id, action="organization.vouch" if vouched else "organization.unvouch",
                 target_type="organization", target_id=organization_id,
                 after={"user_id": user_id, "vouched": vouched})
    return _member_view(db, after, user_id)


# ---- dispatch -----------------------------------------------------------------------------------

def _dispatch_org(db, organization_id, user_id):
    """The organization when the caller may dispatch for it (owner, admin, dispatcher; verified; pro)."""
    org = get_or_raise(db=db, organization_id=organization_id)
    _require_role(org, user_id, DISPATCH_ROLES, "dispatch")
    if not org.get("verified"):
        raise Forbidden("Dispatch is for organizations verified by staff")
    _require_pro(org, "dispatch")
    return org


def _in_area(org):
    return {"$geoWithin": {"$geometry": org["service_area"]}}


def list_emergencies(*, db, organization_id, user_id):
    """The open SOS inside the service area, newest first (dispatch roles only)."""
    org = _dispatch_org(db, organization_id, user_id)
    return list(db.emergencies.find({"is_open": True, "location": _in_area(org)})
                .sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(MAX_DISPATCH_LIST))


def assign(*, db, organization_id, actor_id, emergency_id, user_id):
    """Alert one member who is a verified (or vouched) helper to an open SOS inside the area."""
    org = _dispatch_org(db, organization_id, actor_id)
    emergency = db.emergencies.find_one({"_id": emergency_id, "is_open": True, "location": _in_area(org)})
    if emergency is None:
        raise NotFound("No open emergency with this id in the service area")
    user = db.users.find_one({"_id": user_id}, projection={"is_helper": 1, "verified": 1, "vouched_by": 1,
                                                           "location": 1})
    if member_of(org, user_id) is None or user is None or not users_service.is_verified_helper(user):
        raise Forbidden("Only a member who is a verified helper can be assigned")
    if emergency["user_id"] == user_id:
        raise Forbidden("The requester cannot be assigned to their own emergency")
    updated = db.emergencies.find_one_and_update(
        {"_id": emergency_id, "is_open": True},
        {"$addToSet": {"notified_helper_ids": user_id}, "$pull": {"declined_helper_ids": user_id},
         "$set": {"updated_at": clock.now()}}, return_document=ReturnDocument.AFTER)
    if updated is None:
        raise InvalidTransition("The emergency is closed")
    distance = geo.points_distance_m(updated["location"], user["location"]) if user.get("location") else None
    realtime.emit_to_user(user_id, "emergency.created", dict(
        alert_schema.dump(updated), assigned_by=str(actor_id), organization_id=str(organization_id),
        distance_m=None if distance is None else round(distance, 1)))
    audit.record(db=db, actor_id=actor_id, action="organization.assign", target_type="emergency",
                 target_id=emergency_id, after={"user_id": user_id, "organization_id": organization_id})
    return updated


def dispatching_organization_ids(*, db, location):
    """Ids of the dispatching organizations whose service area covers `location` (one query)."""
    query = {"service_area": {"$geoIntersects": {"$geometry": location}}, **_dispatching_query()}
    return [org["_id"] for org in db.organizations.find(query, projection={"_id": 1})]


def _dispatching_query():
    """Verified, pro, and not past a grace that ran out (the sweep has not applied it yet)."""
    return {"verified": True, "plan": "pro", "plan_grace_until": {"$not": {"$lte": clock.now()}}}


def join_room(*, db, organization_id, user_id, sid):
    """Put one connection in `org:<id>` (dispatch roles of a dispatching organization)."""
    _dispatch_org(db, organization_id, user_id)
    realtime.enter_room(sid, realtime.organization_room(organization_id))


def rejoin_rooms(*, db, user_id, sid):
    """A connecting socket enters the dispatch rooms of its user's organizations."""
    query = {"members": {"$elemMatch": {"user_id": user_id, "role": {"$in": list(DISPATCH_ROLES)}}},
             **_dispatching_query()}
    for org in db.organizations.find(query, projection={"_id": 1}):
        realtime.enter_room(sid, realtime.organization_room(org["_id"]))


def _sync_dispatch_room(org):
    room = realtime.organization_room(org["_id"])
    for member in org.get("members") or ():
        if member["role"] in DISPATCH_ROLES:
            if dispatching(org):
                realtime.enter_user_sockets(member["user_id"], room)
            else:
                realtime.leave_user_sockets(member["user_id"], room)


# ---- plans --------------------------------------------------------------------------------------
# Out of order and twice: `subscription_paid_through` is the end of the latest period paid and
# `subscription_failed_through` that of the latest failed period still unpaid. A payment of an older
# period than a failure does not end it; a failure of a period already paid changes nothing; a
# subscription that is not the organization's current one, or is canceled, moves nothing.

def require_manager(*, db, organization_id, user_id, action):
    """The organization when `user_id` is its owner or an org admin; 404 when it does not exist, else 403."""
    org = get_or_raise(db=db, organization_id=organization_id)
    _require_role(org, user_id, MANAGER_ROLES, action)
    return org


def find_by_subscription(*, db, subscription_id):
    """The organization whose current subscription this is, or None."""
    org = db.organizations.find_one({"subscription_id": subscription_id})
    return None if org is None else current(db=db, org=org)


def _grace_over(org, now):
    grace_until = org.get("plan_grace_until")
    return org.get("subscription_status") == "past_due" and grace_until is not None and grace_until <= now


def current(*, db, org):
    """`org` with its plan as of now: a grace that ran out is applied first (once, atomically)."""
    if not _grace_over(org, clock.now()):
        return org
    return expire_grace(db=db, organization_id=org["_id"]) or db.organizations.find_one({"_id": org["_id"]})


def _change_plan(db, organization_id, change, cause):
    """Apply `change(org) -> fields to set, or None (nothing to do)` with a compare-and-set on `version`.
    Vouches and the dispatch room follow a change of who may dispatch; a change of plan is audited.
    Returns the organization after, or None when nothing changed."""
    for _ in range(CAS_ATTEMPTS):
        org = db.organizations.find_one({"_id": organization_id})
        fields = None if org is None else change(org)
        if fields is None:
            return None
        updated = db.organizations.find_one_and_update(
            {"_id": organization_id, "version": org.get("version", 0)},
            {"$set": dict(fields, updated_at=clock.now()), "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            continue
        if dispatching(org) != dispatching(updated):
            _sync_vouches(db, updated)
            _sync_dispatch_room(updated)
        keys = ("plan", "subscription_status", "plan_grace_until")
        if any(org.get(key) != updated.get(key) for key in keys):
            audit.record(db=db, actor_id=None, action="organization.plan", target_type="organization",
                         target_id=organization_id, before={k: org.get(k) for k in keys},
                         after={k: updated.get(k) for k in keys}, reason=cause)
        return updated
    raise Conflict("The organization changed meanwhile; retry")


def subscription_started(*, db, organization_id, actor_id, subscription_id, customer_id, seq):
    """Make `subscription_id` (incomplete) the organization's subscription, unless another request
    started the `seq`-th one meanwhile (then None)."""

    def change(org):
        if org.get("subscription_seq", 0) != seq:
            return None
        return {"subscription_id": subscription_id, "billing_customer_id": customer_id,
                "subscription_status": "incomplete", "subscription_seq": seq + 1,
                "subscription_started_by": actor_id, "subscription_paid_through": None,
                "subscription_failed_through": None, "plan_grace_until": None}

    return _change_plan(db, organization_id, change, "subscription started")


def _current_subscription(org, subscription_id, statuses=SUBSCRIPTION_OPEN):
    return org.get("subscription_id") == subscription_id and org.get("subscription_status") in statuses


def subscription_paid(*, db, organization_id, subscription_id, period_end):
    """An invoice of the period ending `period_end` was paid: pro; active unless a newer period failed."""

    def change(org):
        paid = org.get("subscription_paid_through")
        if not _current_subscription(org, subscription_id) or (paid is not None and paid >= period_end):
            return None
        fields = {"plan": "pro", "subscription_paid_through": period_end}
        failed = org.get("subscription_failed_through")
        if failed is None or failed <= period_end:
            fields.update(subscription_status="active", plan_grace_until=None, subscription_failed_through=None)
        return fields

    return _change_plan(db, organization_id, change, "invoice.paid")


def subscription_payment_failed(*, db, organization_id, subscription_id, period_end, grace_until):
    """An invoice of the period ending `period_end` failed: past_due, still pro until `grace_until`
    (the grace runs from the first failure). A first payment failing never made the plan pro."""

    def change(org):
        paid, failed = org.get("subscription_paid_through"), org.get("subscription_failed_through")
        if not _current_subscription(org, subscription_id, ("active", "past_due")) \
                or (paid is not None and paid >= period_end) or (failed is not None and failed >= period_end):
            return None
        if org["subscription_status"] == "past_due":
            return {"subscription_failed_through": period_end}
        return {"subscription_status": "past_due", "plan_grace_until": grace_until,
                "subscription_failed_through": period_end}

    return _change_plan(db, organization_id, change, "invoice.payment_failed")


def _canceled_fields(reason):
    return {"plan": "free", "subscription_status": "canceled", "plan_grace_until": None,
            "subscription_canceled_at": clock.now(), "subscription_cancel_reason": reason}


def subscription_canceled(*, db, organization_id, subscription_id):
    """The provider deleted the subscription: free (final for this subscription)."""

    def change(org):
        return _canceled_fields("deleted") if _current_subscription(org, subscription_id) else None

    return _change_plan(db, organization_id, change, "customer.subscription.deleted")


def expire_grace(*, db, organization_id, now=None):
    """The grace ran out: free and canceled; the provider's subscription is canceled by the sweep
    (`subscription_cancel_pending` holds its id: a subscription started meanwhile is not the one
    canceled). None when the grace is not over (or was already applied)."""

    def change(org):
        if not _grace_over(org, now or clock.now()):
            return None
        return dict(_canceled_fields("grace_over"), subscription_cancel_pending=org["subscription_id"])

    return _change_plan(db, organization_id, change, "grace over")


def expire_graces(*, db, now=None):
    """The sweep: apply every grace that ran out (one indexed query); the ids of those changed."""
    now = now or clock.now()
    due = db.organizations.find({"plan_grace_until": {"$lte": now}}, projection={"_id": 1})
    return [org["_id"] for org in due if expire_grace(db=db, organization_id=org["_id"], now=now)]


def subscriptions_to_cancel(*, db):
    """(organization id, subscription id) of the subscriptions still to cancel at the provider."""
    return [(org["_id"], org["subscription_cancel_pending"]) for org in
            db.organizations.find({"subscription_cancel_pending": {"$exists": True}},
                                  projection={"subscription_cancel_pending": 1})]


def subscription_cancel_sent(*, db, organization_id, subscription_id):
    """The provider canceled it: nothing left to do for this subscription."""
    db.organizations.update_one({"_id": organization_id, "subscription_cancel_pending": subscription_id},
                                {"$unset": {"subscription_cancel_pending": ""}})


# ---- club rides ---------------------------------------------------------------------------------

def list_parties(*, db, organization_id, user_id, cursor=None, limit=20):
    """The organization's rides, active and past, newest first (members only): (items, next_cursor)."""
    if cursor:
        decode_time_cursor(cursor)  # input first: a forged cursor is 400 whoever asks
    require_member(db=db, organization_id=organization_id, user_id=user_id, action="see its rides")
    return newest_first_page(db.parties, query={"organization_id": organization_id}, limit=limit, cursor=cursor)
