"""Party rules: membership (create, join, leave, end, hand over) and reading a party.

Data model:
- `parties` {name, invite_code, leader_id, is_active, created_at, ended_at,
  members: [{user_id, joined_at}]} — `members` holds the CURRENT members only
  (an ended party keeps the roster it ended with).
- `party_members` one doc per (party, user): `active` (true while a current
  member of an active party; a unique partial index makes it one active party
  per user), `joined_at`, `left_at`, `left_reason` ("left" | "ended"),
  `last_location` (GeoJSON, 2dsphere), `last_speed_kmh`, `heading`, `status`,
  `stopped_since`, `last_update_at`, and the left-behind episode flags.
- `trail_points` sampled positions (TTL on `ts`), `party_messages`,
  `party_events` (alerts) for history.

Who may see what (documented in the OpenAPI spec too):
- Reads (`GET /parties/<id>`, history): anyone who is not a current member
  gets 404 `not_found` — a party is invisible to outsiders. A former member
  still reads the history up to the moment they left; a member who was in the
  party when it ended still reads the ended party.
- The caller's own list (`GET /parties`, `list_mine`) names every party they
  were in, with only what they may still know of each (see `_summary`).
- Actions on a party (leave, end, socket update/message/alert): 404 when the
  party does not exist or has ended, 403 `forbidden` when it exists but the
  caller is not a current member (or, for end, not the leader).

The rest of the feature: `live.py` (sockets, presence, live positions,
`party:update`), `episodes.py` (left behind / stopped), `messages.py` (chat
and alerts), `history.py`, `scheduled.py` (background loops); saved routes
are their own feature (`allynet/routes/`).
"""
import secrets

from flask import current_app, has_app_context
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from allynet import clock, ratelimit, realtime
from allynet.errors import Conflict, Forbidden, NotFound
from allynet.fields import iso
from allynet.pagination import newest_first_page
from allynet.parties import presence
from allynet.parties.history import publish_alert
from allynet.parties.live import (LIVE_KEY, access_error, after_end, attach_sid, attach_user, detach_user,
                                  emit_presence, flush_member, live_state, Member, party_live, position_fields,
                                  flush_positions)
from allynet.parties.schemas import INVITE_ALPHABET, INVITE_CODE_LENGTH


# ---------------------------------------------------------------------------
# Functions other features call
# ---------------------------------------------------------------------------

def active_party_member_ids(*, db, user_id):
    """The other current members of the user's active party (empty when the user has none)."""
    mine = db.party_members.find_one({"user_id": user_id, "active": True}, projection={"party_id": 1})
    if mine is None:
        return []
    party = db.parties.find_one({"_id": mine["party_id"], "is_active": True},
                                projection={"members.user_id": 1})
    if party is None:
        return []
    return [member["user_id"] for member in party.get("members", []) if member["user_id"] != user_id]


def active_parties_near(*, db, location, radius_m):
    """Ids of active parties with a current member last seen within `radius_m` of a GeoJSON point.

    Positions this process holds unsaved are written first, so its own riders count
    with their latest position; other processes' are at most one flush interval old.
    """
    if has_app_context():
        flush_positions(current_app)
    cursor = db.party_members.find(
        {"last_location": {"$nearSphere": {"$geometry": location, "$maxDistance": float(radius_m)}},
         "active": True},
        projection={"party_id": 1},
    )
    seen = []
    for doc in cursor:
        if doc["party_id"] not in seen:
            seen.append(doc["party_id"])
    return seen



# ---------------------------------------------------------------------------
# Membership: create, join, leave, end
# ---------------------------------------------------------------------------

def new_invite_code():
    """8 characters from an alphabet without look-alikes."""
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_CODE_LENGTH))


def create_party(*, db, user_id, name):
    """Create a party led by the user and make them its first member; (party, id of the party they left or None).

    A user rides in one party at a time: their current party, if any, is left
    exactly as by `leave_party` (events, leader hand-over, the last one out ends it).
    """
    now = clock.now()
    # REST and party:create count together: PARTY_CREATE_RATE_LIMIT per user.
    ratelimit.hit("PARTY_CREATE_RATE_LIMIT", "party:create", "user", user_id)
    for _ in range(5):
        party = {"name": name, "invite_code": new_invite_code(), "leader_id": user_id, "is_active": True,
                 "created_at": now, "ended_at": None, "members": []}
        try:
            db.parties.insert_one(party)
            break
        except DuplicateKeyError:  # an active party already uses this code: draw again
            party.pop("_id", None)
    else:
        raise Conflict("Could not allocate an invite code; retry")
    try:
        return _join_party(db, user_id, party["_id"])
    except Exception:
        db.parties.update_one({"_id": party["_id"], "members": {"$size": 0}},
                              {"$set": {"is_active": False, "ended_at": now}})
        raise


def join_by_code(*, db, user_id, invite_code, party_id=None):
    """Join the active party with this invite code (and id, when given); (party, id of the party left or None).

    404 for an inactive party or a wrong code. The current party, if another, is left as by `leave_party`.
    """
    query = {"invite_code": invite_code, "is_active": True}
    if party_id is not None:
        query["_id"] = party_id
    party = db.parties.find_one(query, projection={"_id": 1})
    if party is None:
        raise NotFound("No active party with this invite code")
    return _join_party(db, user_id, party["_id"])


def _join_party(db, user_id, party_id):
    """Make the user a member of `party_id`, leaving their current party first: (party, left party id or None)."""
    live = live_state()
    uid, pid = str(user_id), str(party_id)
    left_party_id = None
    for _ in range(4):
        current = db.party_members.find_one({"user_id": user_id, "active": True}, projection={"party_id": 1})
        if current is not None and current["party_id"] == party_id:
            party = db.parties.find_one({"_id": party_id, "is_active": True})
            if party is not None:
                attach_user(live, pid, uid)
                return party, left_party_id
        if current is not None:
            try:
                leave_party(db=db, user_id=user_id, party_id=current["party_id"])
            except (NotFound, Forbidden):
                continue  # it changed under us; the loop looks again
            # The party the user was in when they asked (a racing join may add a second one to leave).
            left_party_id = left_party_id or current["party_id"]
            continue
        now = clock.now()
        try:
            db.party_members.update_one(
                {"party_id": party_id, "user_id": user_id},
                {"$set": {"active": True, "joined_at": now, "left_at": None, "left_reason": None,
                          "status": None, "last_speed_kmh": None, "heading": None, "stopped_since": None,
                          "last_update_at": None, "left_behind_alerted": False, "stopped_alerted": False},
                 # A position from an earlier ride must not place the rider now.
                 "$unset": {"last_location": ""}},
                upsert=True,
            )
        except DuplicateKeyError:
            continue  # joined another party concurrently: leave it on the next turn
        party = db.parties.find_one_and_update(
            {"_id": party_id, "is_active": True, "members.user_id": {"$ne": user_id}},
            {"$push": {"members": {"user_id": user_id, "joined_at": now}}},
            return_document=ReturnDocument.AFTER,
        )
        if party is None:
            party = db.parties.find_one({"_id": party_id, "is_active": True, "members.user_id": user_id})
            if party is None:  # it ended between our two writes
                db.party_members.update_one({"party_id": party_id, "user_id": user_id, "active": True},
                                            {"$set": {"active": False, "left_at": now, "left_reason": "ended"}})
                raise NotFound("No active party with this invite code")
        with live.lock:
            party_live(live, pid).members[uid] = Member()
        attach_user(live, pid, uid)
        emit_presence(pid)
        return party, left_party_id
    raise Conflict("Joining raced with another change of party; retry")


def leave_party(*, db, user_id, party_id):
    """Leave the party: sharing stops at once; a leaving leader hands over; the last one out ends it."""
    live = live_state()
    uid, pid = str(user_id), str(party_id)
    party = db.parties.find_one_and_update(
        {"_id": party_id, "is_active": True, "members.user_id": user_id},
        {"$pull": {"members": {"user_id": user_id}}},
        return_document=ReturnDocument.AFTER,
    )
    if party is None:
        raise access_error(db, party_id, action="leave it")
    now = clock.now()
    party_state = live.parties.get(pid)
    member = party_state.members.pop(uid, None) if party_state else None
    changes = {"active": False, "left_at": now, "left_reason": "left"}
    if member is not None and member.dirty:
        changes.update(position_fields(member))
    # Inactive in Mongo first: a process that sees the socket leave re-checks there.
    db.party_members.update_one({"party_id": party_id, "user_id": user_id}, {"$set": changes})
    # Out of the room before anything else is said to it.
    detach_user(live, pid, uid)
    if not party["members"]:
        ended = db.parties.find_one_and_update(
            {"_id": party_id, "is_active": True, "members": {"$size": 0}},
            {"$set": {"is_active": False, "ended_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if ended is not None:
            # The last rider was there at the end: they keep read access to the ended party.
            db.party_members.update_one({"party_id": party_id, "user_id": user_id},
                                        {"$set": {"left_reason": "ended"}})
            after_end(live, pid)
            return ended
    elif party["leader_id"] == user_id:
        party = _hand_over(db, party, user_id)
    emit_presence(pid)
    return party


def _hand_over(db, party, old_leader_id):
    """Pass leadership to the longest-standing current member (one compare-and-set per try)."""
    live = live_state()
    for _ in range(5):
        candidates = sorted(party.get("members", []), key=lambda m: (m["joined_at"], str(m["user_id"])))
        if not candidates or party.get("leader_id") != old_leader_id or not party.get("is_active"):
            return party
        heir = candidates[0]["user_id"]
        updated = db.parties.find_one_and_update(
            {"_id": party["_id"], "is_active": True, "leader_id": old_leader_id, "members.user_id": heir},
            {"$set": {"leader_id": heir}},
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            state = live.parties.get(str(party["_id"]))
            if state is not None:
                state.leader_id, state.leader_checked_at = str(heir), clock.now()
            realtime.emit_to_room(realtime.party_room(party["_id"]), "party:leader",
                                  {"party_id": str(party["_id"]), "leader_id": str(heir)})
            return updated
        party = db.parties.find_one({"_id": party["_id"]})
        if party is None:
            return None
    return party


def end_party(*, db, user_id, party_id):
    """End the ride (leader only): everyone leaves, the room closes."""
    now = clock.now()
    party = db.parties.find_one_and_update(
        {"_id": party_id, "is_active": True, "leader_id": user_id},
        {"$set": {"is_active": False, "ended_at": now}},
        return_document=ReturnDocument.AFTER,
    )
    if party is None:
        current = db.parties.find_one({"_id": party_id, "is_active": True, "members.user_id": user_id},
                                      projection={"_id": 1})
        if current is not None:
            raise Forbidden("Only the leader can end the party")
        raise access_error(db, party_id, action="end it")
    _close_ended(db, party_id, now)
    return party


def end_as_system(*, db, party_id, reason, now=None):
    """End an active party for the system (`ended_reason`), as the leader's end does; None if already ended.

    Scripts call it without an app: then there is no live state of this process to drop.
    """
    now = now or clock.now()
    # Compare-and-set on is_active: a leader ending it meanwhile wins, and a rerun finds nothing.
    party = db.parties.find_one_and_update({"_id": party_id, "is_active": True},
                                           {"$set": {"is_active": False, "ended_at": now, "ended_reason": reason}},
                                           return_document=ReturnDocument.AFTER)
    if party is not None:
        _close_ended(db, party_id, now)
    return party


def _close_ended(db, party_id, now):
    """After the compare-and-set that ended a party: memberships closed, `party:ended`, the room closed."""
    live = live_state() if has_app_context() else None
    pid = str(party_id)
    state = live.parties.get(pid) if live is not None else None
    if state is not None:
        for uid, member in list(state.members.items()):
            if member.dirty:
                flush_member(db, pid, uid, member)
    db.party_members.update_many({"party_id": party_id, "active": True},
                                 {"$set": {"active": False, "left_at": now, "left_reason": "ended"}})
    realtime.emit_to_room(realtime.party_room(pid), "party:ended", {"party_id": pid, "ended_at": iso(now)})
    after_end(live, pid)


# ---------------------------------------------------------------------------
# Reading a party
# ---------------------------------------------------------------------------

def _viewable_party(db, user_id, party_id):
    """The party if the caller may read it (current member, or member when it ended), else 404."""
    membership = db.party_members.find_one({"party_id": party_id, "user_id": user_id},
                                           projection={"active": 1, "left_reason": 1, "left_at": 1})
    if membership is None or not (membership.get("active") or membership.get("left_reason") == "ended"):
        raise NotFound("Party not found")
    party = db.parties.find_one({"_id": party_id})
    if party is None:
        raise NotFound("Party not found")
    return party, membership


def party_state(*, db, party):
    """The party with its members' last positions, status and online flags (what members see)."""
    pid = str(party["_id"])
    online = presence.get_store().online(pid) if party.get("is_active") else []
    online_set = set(online)
    member_ids = [m["user_id"] for m in party.get("members", [])]
    docs = {doc["user_id"]: doc for doc in db.party_members.find(
        {"party_id": party["_id"], "user_id": {"$in": member_ids}})}
    names = {doc["_id"]: doc.get("display_name") for doc in db.users.find(
        {"_id": {"$in": member_ids}}, projection={"display_name": 1})}
    state = current_app.extensions.get(LIVE_KEY)
    local = state.parties.get(pid) if state is not None else None
    members = []
    for entry in party.get("members", []):
        uid = entry["user_id"]
        doc = docs.get(uid, {})
        item = {
            "user_id": uid,
            "display_name": names.get(uid),
            "joined_at": entry["joined_at"],
            "is_leader": uid == party.get("leader_id"),
            "online": str(uid) in online_set,
            "last_location": doc.get("last_location"),
            "last_speed_kmh": doc.get("last_speed_kmh"),
            "heading": doc.get("heading"),
            "status": doc.get("status"),
            "last_update_at": doc.get("last_update_at"),
        }
        live_member = local.members.get(str(uid)) if local is not None else None
        # Newer than Mongo when this process holds an unflushed position.
        if live_member is not None and live_member.ts is not None and (
                item["last_update_at"] is None or live_member.ts > item["last_update_at"]):
            item.update(last_location=live_member.location, last_speed_kmh=live_member.speed_kmh,
                        heading=live_member.heading, status=live_member.status, last_update_at=live_member.ts)
        members.append(item)
    return {**party, "members": members, "online": online}


def get_party(*, db, user_id, party_id):
    """The party state for a member (404 for everyone else)."""
    party, _ = _viewable_party(db, user_id, party_id)
    return party_state(db=db, party=party)


def list_mine(*, db, user_id, active=None, cursor=None, limit=20):
    """The parties the user is or was a member of, the latest joined first: (summaries, next_cursor).

    `active=True` gives the party they ride in now (at most one), `False` those
    they left or that ended. Each summary says only what the caller may still
    know: `leader_id` and `member_count` where GET /parties/<id> would answer
    them, `invite_code` only to current members (an ended party's code may
    already belong to another party).
    """
    query = {"user_id": user_id}
    if active is not None:
        query["active"] = active
    memberships, next_cursor = newest_first_page(
        db.party_members, query=query, limit=limit, cursor=cursor, time_field="joined_at",
        projection={"party_id": 1, "active": 1, "joined_at": 1, "left_at": 1, "left_reason": 1})
    parties = {party["_id"]: party for party in db.parties.find(
        {"_id": {"$in": [m["party_id"] for m in memberships]}},
        projection={"name": 1, "invite_code": 1, "leader_id": 1, "is_active": 1, "created_at": 1,
                    "ended_at": 1, "members.user_id": 1})}
    return [_summary(parties[m["party_id"]], m) for m in memberships if m["party_id"] in parties], next_cursor


def _summary(party, membership):
    current = bool(membership.get("active"))
    summary = {"_id": party["_id"], "name": party.get("name"), "is_active": bool(party.get("is_active")),
               "created_at": party.get("created_at"), "ended_at": party.get("ended_at"),
               "membership": {"active": current, "joined_at": membership.get("joined_at"),
                              "left_at": membership.get("left_at"), "left_reason": membership.get("left_reason")}}
    if current or membership.get("left_reason") == "ended":  # the rule of _viewable_party
        summary.update(leader_id=party.get("leader_id"), member_count=len(party.get("members", [])))
    if current:
        summary["invite_code"] = party.get("invite_code")
    return summary


def join_room(*, db, user_id, sid, party_id):
    """A member's socket (re)joins the party room; returns the current state."""
    membership = db.party_members.find_one({"party_id": party_id, "user_id": user_id, "active": True},
                                           projection={"_id": 1})
    if membership is None:
        raise access_error(db, party_id, action="join its room (use the invite code)")
    pid = str(party_id)
    attach_sid(live_state(), pid, str(user_id), sid)
    emit_presence(pid)
    return get_party(db=db, user_id=user_id, party_id=party_id)
