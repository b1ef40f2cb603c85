"""Party rules: group rides, membership, live positions, presence, chat, alerts, history, routes.

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
  `party_events` (alerts) for history. `routes` saved routes (LineString).

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

The live path (`party:update`, 1 Hz per rider) stays in process memory: the
membership of each socket is cached (invalidated on leave/end), the last
position is written to Mongo by a background loop every `PARTY_POSITION_FLUSH_SECONDS`,
all pending positions of the process in one bulk write (and at once on
leave/disconnect/end), the trail is sampled every `TRAIL_SAMPLE_SECONDS`.
A leave or end on ANOTHER server process reaches this one through the
Socket.IO queue (leave_room / close_room of the user's sockets, whose sids the
shared presence store lists); a cached membership is trusted only while the
socket is still in the room here, and the flush re-checks Mongo as well.
"""
import logging
import math
import secrets
import threading
import time
from datetime import datetime, timedelta

from bson import ObjectId
from flask import current_app, has_app_context
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from allynet import clock, geo, ratelimit, realtime
from allynet.db import update_batch
from allynet.background import periodic
from allynet.errors import Conflict, Forbidden, NotFound, RateLimited, ValidationFailed
from allynet.fields import iso, point_to_latlng
from allynet.pagination import decode_cursor, encode_cursor, newest_first_page
from allynet.parties import presence
from allynet.parties.schemas import INVITE_ALPHABET, INVITE_CODE_LENGTH

log = logging.getLogger(__name__)

LIVE_KEY = "allynet_party_live"
LEADER_CACHE_SECONDS = 5.0
REMOTE_POSITION_RELOAD_SECONDS = 2.0
LOCAL_LEADER_FRESH_SECONDS = 10.0
RIDING_FRESH_SECONDS = 120.0
STOPPED_SWEEP_SECONDS = 1.0
QUIET_SECONDS = 10.0  # a rider silent this long is the episode sweep's to check (see sweep_episodes)
SWEEP_YIELD_EVERY = 50  # parties the sweep decides between two yields to the live path
FLUSH_BATCH = 200  # riders per bulk write of the position flush


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
# In-process live state (per app)
# ---------------------------------------------------------------------------

class _Member:
    """What this process knows of one rider of one party, between Mongo writes."""

    __slots__ = ("location", "speed_kmh", "heading", "status", "stopped_since", "ts", "dirty",
                 "trail_at", "tokens", "bucket_at", "left_behind", "stopped_alerted")

    def __init__(self):
        self.location = self.speed_kmh = self.heading = self.status = None
        self.stopped_since = self.ts = self.trail_at = self.bucket_at = None
        self.dirty = self.left_behind = self.stopped_alerted = False
        self.tokens = 0.0


class _PartyLive:
    __slots__ = ("members", "leader_id", "leader_checked_at", "leader_loaded_at", "swept_at")

    def __init__(self):
        self.members = {}  # user id str -> _Member
        self.leader_id = None
        self.leader_checked_at = self.leader_loaded_at = self.swept_at = None


class _Live:
    def __init__(self):
        self.lock = threading.RLock()
        self.sid_party = {}  # sid -> party id str (the membership cache of each connection)
        self.user_sids = {}  # user id str -> {sid} (this process's sockets)
        self.parties = {}  # party id str -> _PartyLive


def _live(app=None):
    """This process's live party state of `app` (default: the current app)."""
    extensions = (current_app if app is None else app).extensions
    state = extensions.get(LIVE_KEY)
    if state is None:
        state = extensions.setdefault(LIVE_KEY, _Live())
    return state


def _party_live(live, party_id):
    entry = live.parties.get(party_id)
    if entry is None:
        entry = live.parties.setdefault(party_id, _PartyLive())
    return entry


def _member_live(live, party_id, user_id):
    party = _party_live(live, party_id)
    member = party.members.get(user_id)
    if member is None:
        member = party.members.setdefault(user_id, _Member())
    return member


def _seconds(later, earlier):
    return (later - earlier).total_seconds()


# ---------------------------------------------------------------------------
# Sockets and rooms of this process
# ---------------------------------------------------------------------------

def _attach_sid(live, party_id, user_id, sid):
    """Put one local socket in the party room, cache its membership, mark it online."""
    with live.lock:
        live.sid_party[sid] = party_id
    realtime.enter_room(sid, realtime.party_room(party_id))
    presence.get_store().add(party_id, user_id, sid)


def _attach_user(live, party_id, user_id):
    for sid in list(live.user_sids.get(user_id, ())):
        _attach_sid(live, party_id, user_id, sid)


def _detach_user(live, party_id, user_id):
    """Take every socket of a user out of the party, on this process at once and elsewhere via the queue."""
    room = realtime.party_room(party_id)
    with live.lock:
        local = [sid for sid in live.user_sids.get(user_id, ()) if live.sid_party.get(sid) == party_id]
        for sid in local:
            live.sid_party.pop(sid, None)
    for sid in local:
        realtime.leave_room(sid, room)
    remote = [sid for sid in presence.get_store().remove_user(party_id, user_id) if sid not in local]
    for sid in remote:
        # Another process's socket: the Redis manager forwards the leave to its host.
        try:
            realtime.leave_room(sid, room)
        except Exception:  # an unknown sid on a single-process server
            log.debug("leave_room for remote sid %s failed", sid)


def _emit_presence(party_id):
    online = presence.get_store().online(party_id)
    realtime.emit_to_room(realtime.party_room(party_id), "party:presence",
                          {"party_id": party_id, "online": online})
    return online


def socket_connected(*, db, user_id, sid):
    """A socket came up: remember it and put it back in its user's active party room."""
    live = _live()
    uid = str(user_id)
    with live.lock:
        live.user_sids.setdefault(uid, set()).add(sid)
    mine = db.party_members.find_one({"user_id": user_id, "active": True}, projection={"party_id": 1})
    if mine is None:
        return None
    party_id = str(mine["party_id"])
    _attach_sid(live, party_id, uid, sid)
    _emit_presence(party_id)
    return party_id


def socket_disconnected(*, db, user_id, sid):
    """A socket went away: drop it from presence; write the rider's last position when it was their last."""
    live = _live()
    uid = str(user_id)
    with live.lock:
        sids = live.user_sids.get(uid)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del live.user_sids[uid]
        party_id = live.sid_party.pop(sid, None)
        still_here = any(live.sid_party.get(other) == party_id for other in live.user_sids.get(uid, ()))
    if party_id is None:
        return
    presence.get_store().remove(party_id, sid)
    if not still_here:
        member = live.parties.get(party_id, _PartyLive()).members.get(uid)
        if member is not None and member.dirty:
            _flush(db, party_id, uid, member)
    _emit_presence(party_id)


@periodic("party_presence_refresh", interval=lambda cfg: max(1.0, cfg["PARTY_PRESENCE_TTL_SECONDS"] / 3))
def refresh_presence(app):
    """Push back the expiry of this process's sockets in the shared presence store."""
    live = app.extensions.get(LIVE_KEY)
    if live is None:
        return 0
    with live.lock:
        entries = []
        for uid, sids in live.user_sids.items():
            for sid in sids:
                party_id = live.sid_party.get(sid)
                if party_id is not None:
                    entries.append((party_id, uid, sid))
    presence.get_store(app).refresh(entries)
    return len(entries)


# ---------------------------------------------------------------------------
# Membership: create, join, leave, end
# ---------------------------------------------------------------------------

def new_invite_code():
    """8 characters from an alphabet without look-alikes."""
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_CODE_LENGTH))


def _access_error(db, party_id, *, action):
    """404 for a party that does not exist (or ended); 403 for one the caller is not a member of."""
    party = db.parties.find_one({"_id": party_id}, projection={"is_active": 1})
    if party is None or not party.get("is_active"):
        return NotFound("Party not found")
    return Forbidden(f"Only members of this party can {action}")


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
    live = _live()
    uid, pid = str(user_id), str(party_id)
    left_party_id = None
    for _ in range(4):
        current = db.party_members.find_one({"user_id": user_id, "active": True}, projection={"party_id": 1})
        if current is not None and current["party_id"] == party_id:
            party = db.parties.find_one({"_id": party_id, "is_active": True})
            if party is not None:
                _attach_user(live, pid, uid)
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
            _party_live(live, pid).members[uid] = _Member()
        _attach_user(live, pid, uid)
        _emit_presence(pid)
        return party, left_party_id
    raise Conflict("Joining raced with another change of party; retry")


def leave_party(*, db, user_id, party_id):
    """Leave the party: sharing stops at once; a leaving leader hands over; the last one out ends it."""
    live = _live()
    uid, pid = str(user_id), str(party_id)
    party = db.parties.find_one_and_update(
        {"_id": party_id, "is_active": True, "members.user_id": user_id},
        {"$pull": {"members": {"user_id": user_id}}},
        return_document=ReturnDocument.AFTER,
    )
    if party is None:
        raise _access_error(db, party_id, action="leave it")
    now = clock.now()
    party_state = live.parties.get(pid)
    member = party_state.members.pop(uid, None) if party_state else None
    changes = {"active": False, "left_at": now, "left_reason": "left"}
    if member is not None and member.dirty:
        changes.update(_position_fields(member))
    # Inactive in Mongo first: a process that sees the socket leave re-checks there.
    db.party_members.update_one({"party_id": party_id, "user_id": user_id}, {"$set": changes})
    # Out of the room before anything else is said to it.
    _detach_user(live, pid, uid)
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
            _after_end(live, pid)
            return ended
    elif party["leader_id"] == user_id:
        party = _hand_over(db, party, user_id)
    _emit_presence(pid)
    return party


def _hand_over(db, party, old_leader_id):
    """Pass leadership to the longest-standing current member (one compare-and-set per try)."""
    live = _live()
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
        raise _access_error(db, party_id, action="end it")
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
    live = _live() if has_app_context() else None
    pid = str(party_id)
    state = live.parties.get(pid) if live is not None else None
    if state is not None:
        for uid, member in list(state.members.items()):
            if member.dirty:
                _flush(db, pid, uid, member)
    db.party_members.update_many({"party_id": party_id, "active": True},
                                 {"$set": {"active": False, "left_at": now, "left_reason": "ended"}})
    realtime.emit_to_room(realtime.party_room(pid), "party:ended", {"party_id": pid, "ended_at": iso(now)})
    _after_end(live, pid)


def _after_end(live, party_id):
    if live is not None:
        with live.lock:
            for sid in [sid for sid, pid in live.sid_party.items() if pid == party_id]:
                del live.sid_party[sid]
            live.parties.pop(party_id, None)
    realtime.close_room(realtime.party_room(party_id))
    if live is not None:
        presence.get_store().clear(party_id)


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
        raise _access_error(db, party_id, action="join its room (use the invite code)")
    pid = str(party_id)
    _attach_sid(_live(), pid, str(user_id), sid)
    _emit_presence(pid)
    return get_party(db=db, user_id=user_id, party_id=party_id)


# ---------------------------------------------------------------------------
# The live path
# ---------------------------------------------------------------------------

def _position_fields(member):
    return {"last_location": member.location, "last_speed_kmh": member.speed_kmh, "heading": member.heading,
            "status": member.status, "stopped_since": member.stopped_since, "last_update_at": member.ts}


def _flush(db, party_id, user_id, member):
    """Write the rider's last position; False when they are no longer an active member.

    The same round trip brings back the episode flags, so this process follows
    alerts (and resets) decided elsewhere (another process, the sweep) within a flush.
    """
    doc = db.party_members.find_one_and_update(
        {"party_id": ObjectId(party_id), "user_id": ObjectId(user_id), "active": True},
        {"$set": _position_fields(member)},
        projection={"left_behind_alerted": 1, "stopped_alerted": 1},
    )
    member.dirty = False
    if doc is None:
        return False
    member.left_behind = bool(doc.get("left_behind_alerted"))
    member.stopped_alerted = bool(doc.get("stopped_alerted"))
    return True


@periodic("party_position_flush", interval=lambda cfg: cfg["PARTY_POSITION_FLUSH_SECONDS"])
def flush_positions(app):
    """Write every position this process holds unsaved, `FLUSH_BATCH` riders per bulk write.

    Each batch is one bulk write and one read; the read brings back the
    episode flags (so this process follows alerts and resets decided
    elsewhere) and who is still an active member: a rider who left on another
    process a moment ago (the room leave still in the queue) is dropped here,
    so their later updates are refused before being relayed. Between batches
    the live path gets the process back (the embedded store writes on the
    CPU). Returns how many positions were written.
    """
    live = app.extensions.get(LIVE_KEY)
    if live is None:
        return 0
    db = app.extensions["allynet_db"]
    with live.lock:
        dirty = [(pid, uid, member) for pid, state in list(live.parties.items())
                 for uid, member in list(state.members.items()) if member.dirty]
    written = 0
    for start in range(0, len(dirty), FLUSH_BATCH):
        if start:
            time.sleep(0)  # a cooperative yield under eventlet/gevent; a GIL hand-over with threads
        with live.lock:
            batch = [(pid, uid, member, _position_fields(member))
                     for pid, uid, member in dirty[start:start + FLUSH_BATCH] if member.dirty]
            for _, _, member, _ in batch:
                member.dirty = False
        if batch:
            _flush_batch(db, live, batch)
            written += len(batch)
    return written


def _flush_batch(db, live, batch):
    keys = [(ObjectId(pid), ObjectId(uid)) for pid, uid, _, _ in batch]
    try:
        update_batch(db.party_members, [
            ({"party_id": party_oid, "user_id": user_oid, "active": True}, {"$set": fields})
            for (party_oid, user_oid), (_, _, _, fields) in zip(keys, batch)])
        current = {(doc["party_id"], doc["user_id"]): doc for doc in db.party_members.find(
            {"user_id": {"$in": [user_oid for _, user_oid in keys]}, "active": True},
            projection={"party_id": 1, "user_id": 1, "left_behind_alerted": 1, "stopped_alerted": 1})}
    except Exception:
        with live.lock:  # the next round writes them again (a newer position wins either way)
            for _, _, member, _ in batch:
                member.dirty = True
        raise
    for key, (pid, uid, member, _) in zip(keys, batch):
        doc = current.get(key)
        if doc is None:
            _drop_stale_membership(live, pid, uid)
            continue
        member.left_behind = bool(doc.get("left_behind_alerted"))
        member.stopped_alerted = bool(doc.get("stopped_alerted"))


def _ensure_member_socket(db, live, user_id, sid, party_id):
    """Cache miss: check membership in Mongo, then put this socket in the room."""
    oid = ObjectId(party_id)
    membership = db.party_members.find_one({"party_id": oid, "user_id": user_id, "active": True},
                                           projection={"_id": 1})
    if membership is None:
        raise _access_error(db, oid, action="send to it")
    _attach_sid(live, party_id, str(user_id), sid)


def _drop_stale_membership(live, party_id, user_id):
    with live.lock:
        for sid in list(live.user_sids.get(user_id, ())):
            if live.sid_party.get(sid) == party_id:
                del live.sid_party[sid]
                realtime.leave_room(sid, realtime.party_room(party_id))
        state = live.parties.get(party_id)
        if state is not None:
            state.members.pop(user_id, None)


def record_update(*, db, user_id, sid, data):
    """A rider's position: relayed to the rest of the room at once; Mongo sees it at most every second."""
    # One context lookup for the whole update (hot path): the app's config, live state and server.
    app = current_app._get_current_object()
    config = app.config
    live = _live(app)
    sio = app.extensions.get("socketio")
    party_id = data["party_id"]
    uid = str(user_id)
    room = realtime.party_room(party_id)
    # The membership cache holds while the socket is still in the room here; a leave
    # or end on another process takes it out (through the queue), forcing a re-check.
    if live.sid_party.get(sid) != party_id or not realtime.in_room(sid, room, sio=sio):
        _ensure_member_socket(db, live, user_id, sid, party_id)
    now = clock.now()
    member = _member_live(live, party_id, uid)
    rate = config["MAX_UPDATE_HZ"]
    if rate > 0:
        # Token bucket: one second of burst, MAX_UPDATE_HZ sustained.
        tokens = rate if member.bucket_at is None else min(
            rate, member.tokens + max(0.0, _seconds(now, member.bucket_at)) * rate)
        member.bucket_at = now
        if tokens < 1:
            member.tokens = tokens
            raise RateLimited(f"Updates faster than {rate:g} per second are dropped",
                              details={"max_hz": rate})
        member.tokens = tokens - 1
    status = data.get("status") or member.status or "riding"
    if status == "stopped":
        if member.status != "stopped" or member.stopped_since is None:
            member.stopped_since = now
    else:
        member.stopped_since = None
    member.location = data["location"]
    member.speed_kmh = data.get("speed_kmh")
    member.heading = data.get("heading")
    member.status = status
    member.ts = now
    member.dirty = True
    ts = iso(now)
    lng, lat = member.location["coordinates"][:2]
    relayed = {"party_id": party_id, "user_id": uid, "location": {"lat": lat, "lng": lng},
               "speed_kmh": member.speed_kmh, "heading": member.heading, "status": status, "ts": ts}
    ack = {"ts": ts}
    if "client_ts" in data:
        relayed["client_ts"] = ack["client_ts"] = data["client_ts"]
    # Relay first: the riders' latency must not wait for Mongo. The position itself is
    # written by flush_positions, with every other pending one, in one bulk write.
    realtime.relay_to_room(room, "party:update", relayed, skip_sid=sid, sio=sio)
    if member.trail_at is None or _seconds(now, member.trail_at) >= config["TRAIL_SAMPLE_SECONDS"]:
        member.trail_at = now
        db.trail_points.insert_one({"party_id": ObjectId(party_id), "user_id": user_id, "ts": now,
                                    "location": member.location, "speed_kmh": member.speed_kmh,
                                    "heading": member.heading, "status": status})
    _check_episodes(db, live, party_id, uid, member, now, config)
    return ack


# ---------------------------------------------------------------------------
# Left behind / stopped episodes
# ---------------------------------------------------------------------------

def _leader_id(db, state, party_id, now):
    if state.leader_id is None or state.leader_checked_at is None or \
            _seconds(now, state.leader_checked_at) >= LEADER_CACHE_SECONDS:
        party = db.parties.find_one({"_id": ObjectId(party_id)}, projection={"leader_id": 1})
        state.leader_id = str(party["leader_id"]) if party else None
        state.leader_checked_at = now
    return state.leader_id


def _leader_location(db, state, party_id, leader_id, now):
    leader = state.members.get(leader_id)
    if leader is not None and leader.bucket_at is not None and leader.ts is not None and \
            _seconds(now, leader.ts) < LOCAL_LEADER_FRESH_SECONDS:
        return leader.location  # the leader sends through this process
    # The leader rides on another process (or has gone quiet here): read Mongo, at most every 2 s.
    if state.leader_loaded_at is None or _seconds(now, state.leader_loaded_at) >= REMOTE_POSITION_RELOAD_SECONDS:
        state.leader_loaded_at = now
        doc = db.party_members.find_one({"party_id": ObjectId(party_id), "user_id": ObjectId(leader_id),
                                         "active": True}, projection={"last_location": 1, "last_update_at": 1})
        if doc is not None and doc.get("last_location") and doc.get("last_update_at") is not None:
            entry = state.members.setdefault(leader_id, _Member())
            if entry.ts is None or doc["last_update_at"] > entry.ts:
                entry.location, entry.ts = doc["last_location"], doc["last_update_at"]
    leader = state.members.get(leader_id)
    return leader.location if leader is not None else None


def _set_flag(db, party_id, user_id, flag, value):
    """Compare-and-set an episode flag; True when this call changed it (so one alert per episode)."""
    result = db.party_members.update_one(
        {"party_id": ObjectId(party_id), "user_id": ObjectId(user_id), "active": True,
         flag: {"$ne": value}},
        {"$set": {flag: value}},
    )
    return result.modified_count == 1


def _distance_episode(db, party_id, user_id, member, leader_location, config):
    if member.location is None or leader_location is None:
        return
    gap = geo.points_distance_m(member.location, leader_location)
    far = gap > config["LEFT_BEHIND_M"]
    if far and not member.left_behind:
        member.left_behind = True
        if _set_flag(db, party_id, user_id, "left_behind_alerted", True):
            _publish_alert(db, party_id, alert_type="member_left_behind", user_id=user_id,
                           location=member.location, source="system", extra={"distance_m": round(gap, 1)})
    elif not far and member.left_behind:
        member.left_behind = False
        _set_flag(db, party_id, user_id, "left_behind_alerted", False)


def _stopped_episode(db, party_id, user_id, member, state, now, config):
    limit = config["PARTY_STOPPED_ALERT_SECONDS"]
    if member.status == "stopped" and member.stopped_since is not None:
        if member.stopped_alerted or _seconds(now, member.stopped_since) < limit:
            return
        others_riding = any(
            other.status == "riding" and other.ts is not None and _seconds(now, other.ts) <= RIDING_FRESH_SECONDS
            for uid, other in state.members.items() if uid != user_id)
        if others_riding:
            member.stopped_alerted = True
            if _set_flag(db, party_id, user_id, "stopped_alerted", True):
                _publish_alert(db, party_id, alert_type="member_stopped", user_id=user_id,
                               location=member.location, source="system",
                               extra={"stopped_since": iso(member.stopped_since)})
    elif member.stopped_alerted:
        member.stopped_alerted = False
        _set_flag(db, party_id, user_id, "stopped_alerted", False)


def _check_episodes(db, live, party_id, user_id, member, now, config):
    state = _party_live(live, party_id)
    leader_id = _leader_id(db, state, party_id, now)
    if leader_id is None:
        return
    if user_id == leader_id:
        # The leader moved: everyone's gap changed.
        for uid, other in list(state.members.items()):
            if uid != leader_id:
                _distance_episode(db, party_id, uid, other, member.location, config)
    else:
        _distance_episode(db, party_id, user_id, member, _leader_location(db, state, party_id, leader_id, now),
                          config)
    _stopped_episode(db, party_id, user_id, member, state, now, config)
    # A stopped rider may have gone quiet: look at everyone now and then.
    if state.swept_at is None or _seconds(now, state.swept_at) >= STOPPED_SWEEP_SECONDS:
        state.swept_at = now
        for uid, other in list(state.members.items()):
            if uid != user_id:
                _stopped_episode(db, party_id, uid, other, state, now, config)


@periodic("party_episode_sweep", interval=lambda cfg: cfg["PARTY_EPISODE_SWEEP_SECONDS"])
def sweep_episodes(app):
    """Left-behind / stopped episodes from the positions in Mongo, for riders whose server saw nothing.

    The live path decides from what one process sees: each update checks its
    rider against the leader's position (local, or read from Mongo when the
    leader rides on another process), and a leader's update checks the riders
    of its own process. What no update sees is a rider who went quiet (the
    leader may have ridden away from them, or they stopped and went silent) and
    a stopped rider whose riding party-mates are all on other processes. So
    the sweep reads only the parties with a rider quiet for `QUIET_SECONDS` or
    stopped (two indexed queries), not every active member, and decides each
    such party whole from Mongo as before, yielding to the live path every
    `SWEEP_YIELD_EVERY` parties. Every process may run it: the compare-and-set
    flags give one alert per episode.
    """
    db = app.extensions["allynet_db"]
    config = app.config
    flush_positions(app)  # decide from this process's latest positions too
    now = clock.now()
    party_ids = set(db.party_members.distinct("party_id", {"active": True, "status": "stopped"}))
    party_ids.update(db.party_members.distinct(
        "party_id", {"active": True, "last_update_at": {"$lt": now - timedelta(seconds=QUIET_SECONDS)}}))
    if not party_ids:
        return 0
    by_party = {}
    for doc in db.party_members.find({"party_id": {"$in": list(party_ids)}, "active": True}, projection={
            "party_id": 1, "user_id": 1, "last_location": 1, "status": 1, "stopped_since": 1,
            "last_update_at": 1, "left_behind_alerted": 1, "stopped_alerted": 1}):
        by_party.setdefault(doc["party_id"], []).append(doc)
    if not by_party:
        return 0
    leaders = {party["_id"]: party["leader_id"] for party in db.parties.find(
        {"_id": {"$in": list(by_party)}, "is_active": True}, projection={"leader_id": 1})}
    alerts = 0
    for done, (party_id, docs) in enumerate(by_party.items()):
        if done and done % SWEEP_YIELD_EVERY == 0:
            time.sleep(0)  # a cooperative yield under eventlet/gevent; a GIL hand-over with threads
        leader_id = leaders.get(party_id)
        if leader_id is None:
            continue
        pid = str(party_id)
        leader = next((doc for doc in docs if doc["user_id"] == leader_id), None)
        riding = {doc["user_id"] for doc in docs if doc.get("status") == "riding"
                  and doc.get("last_update_at") is not None
                  and _seconds(now, doc["last_update_at"]) <= RIDING_FRESH_SECONDS}
        for doc in docs:
            uid = str(doc["user_id"])
            if doc["user_id"] != leader_id and leader is not None and leader.get("last_location") \
                    and doc.get("last_location"):
                gap = geo.points_distance_m(doc["last_location"], leader["last_location"])
                if gap > config["LEFT_BEHIND_M"]:
                    if not doc.get("left_behind_alerted") and _set_flag(db, pid, uid, "left_behind_alerted", True):
                        alerts += 1
                        _publish_alert(db, pid, alert_type="member_left_behind", user_id=uid,
                                       location=doc["last_location"], source="system",
                                       extra={"distance_m": round(gap, 1)})
                elif doc.get("left_behind_alerted"):
                    _set_flag(db, pid, uid, "left_behind_alerted", False)
            stopped_since = doc.get("stopped_since")
            if doc.get("status") == "stopped" and stopped_since is not None:
                if not doc.get("stopped_alerted") and riding - {doc["user_id"]} and \
                        _seconds(now, stopped_since) >= config["PARTY_STOPPED_ALERT_SECONDS"] and \
                        _set_flag(db, pid, uid, "stopped_alerted", True):
                    alerts += 1
                    _publish_alert(db, pid, alert_type="member_stopped", user_id=uid,
                                   location=doc.get("last_location"), source="system",
                                   extra={"stopped_since": iso(stopped_since)})
            elif doc.get("stopped_alerted"):
                _set_flag(db, pid, uid, "stopped_alerted", False)
    return alerts


# ---------------------------------------------------------------------------
# Messages and alerts
# ---------------------------------------------------------------------------

def _require_member(db, live, user_id, sid, party_id):
    pid = str(party_id)
    if sid is None or live.sid_party.get(sid) != pid:
        membership = db.party_members.find_one({"party_id": party_id, "user_id": user_id, "active": True},
                                               projection={"_id": 1})
        if membership is None:
            raise _access_error(db, party_id, action="send to it")
        if sid is not None:
            _attach_sid(live, pid, str(user_id), sid)
    return pid


def post_message(*, db, user_id, sid, party_id, text):
    """Store a chat message and send it to the whole room."""
    ratelimit.hit("PARTY_MESSAGE_RATE_LIMIT", "party:message", "user", user_id)
    pid = _require_member(db, _live(), user_id, sid, party_id)
    # Counted after the membership check: outsiders cannot use up a party's budget.
    ratelimit.hit("PARTY_MESSAGE_ROOM_RATE_LIMIT", "party:message", "party", pid)
    now = clock.now()
    doc = {"party_id": party_id, "user_id": user_id, "text": text, "ts": now}
    db.party_messages.insert_one(doc)
    message = {"id": str(doc["_id"]), "party_id": pid, "user_id": str(user_id), "text": text, "ts": iso(now)}
    realtime.emit_to_room(realtime.party_room(pid), "party:message", message)
    return message


def post_alert(*, db, user_id, sid, party_id, alert_type, location, description=None):
    """A rider flags something to the party: stored and sent to the whole room."""
    ratelimit.hit("PARTY_ALERT_RATE_LIMIT", "party:alert", "user", user_id)
    pid = _require_member(db, _live(), user_id, sid, party_id)
    ratelimit.hit("PARTY_ALERT_ROOM_RATE_LIMIT", "party:alert", "party", pid)
    return _publish_alert(db, pid, alert_type=alert_type, user_id=str(user_id), location=location,
                          description=description, source="member")


def _publish_alert(db, party_id, *, alert_type, user_id, location=None, description=None, source, extra=None):
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


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Saved routes
# ---------------------------------------------------------------------------

def _route_geometry(waypoints):
    """The stored LineString and length of a list of {lat, lng} waypoints."""
    coordinates = [[point["lng"], point["lat"]] for point in waypoints]
    length = sum(geo.points_distance_m({"coordinates": a}, {"coordinates": b}) for a, b in zip(coordinates, coordinates[1:]))
    return {"waypoints": {"type": "LineString", "coordinates": coordinates}, "distance_m": round(length, 1)}


def create_route(*, db, user_id, name, waypoints):
    """Save a route as a GeoJSON LineString."""
    route = {"user_id": user_id, "name": name, **_route_geometry(waypoints), "created_at": clock.now()}
    db.routes.insert_one(route)
    return route


def list_routes(*, db, user_id, cursor=None, limit=50):
    """The caller's routes, newest first; returns (routes, next_cursor)."""
    return newest_first_page(db.routes, query={"user_id": user_id}, limit=limit, cursor=cursor)


def get_route(*, db, user_id, route_id):
    """One of the caller's routes (someone else's is 404: routes are private)."""
    route = db.routes.find_one({"_id": route_id, "user_id": user_id})
    if route is None:
        raise NotFound("Route not found")
    return route


def update_route(*, db, user_id, route_id, data):
    """Rename a route or replace its waypoints (owner only; someone else's is 404)."""
    changes = {"updated_at": clock.now()}
    if "name" in data:
        changes["name"] = data["name"]
    if "waypoints" in data:
        changes.update(_route_geometry(data["waypoints"]))
    route = db.routes.find_one_and_update({"_id": route_id, "user_id": user_id}, {"$set": changes},
                                          return_document=ReturnDocument.AFTER)
    if route is None:
        raise NotFound("Route not found")
    return route


def delete_route(*, db, user_id, route_id):
    """Delete one of the caller's routes (someone else's is 404: routes are private)."""
    route = db.routes.find_one_and_delete({"_id": route_id, "user_id": user_id})
    if route is None:
        raise NotFound("Route not found")
    return route
