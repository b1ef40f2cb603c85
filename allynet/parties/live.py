"""The live side of a party, in process memory: sockets, presence, positions and the per-update episode check.

The live path (`party:update`, 1 Hz per rider) stays in process memory: the
membership of each socket is cached (invalidated on leave/end), the last
position is written to Mongo by a background loop every `PARTY_POSITION_FLUSH_SECONDS`,
all pending positions of the process in one bulk write (and at once on
leave/disconnect/end), the trail is sampled every `TRAIL_SAMPLE_SECONDS`.
A leave or end on ANOTHER server process reaches this one through the
Socket.IO queue (leave_room / close_room of the user's sockets, whose sids the
shared presence store lists); a cached membership is trusted only while the
socket is still in the room here, and the flush re-checks Mongo as well.

Each update also checks the left-behind / stopped episodes it can see, with
the rules of `episodes.py`. Names with an underscore are this package's own
(service.py and messages.py use them); other features go through `parties.service`.
"""
import logging
import threading
import time

from bson import ObjectId
from flask import current_app

from allynet import clock, geo, realtime
from allynet.db import update_batch
from allynet.errors import Forbidden, NotFound, RateLimited
from allynet.fields import iso
from allynet.parties import presence
from allynet.parties.episodes import seconds_between, is_riding, left_behind_change, record_episode, stopped_change

log = logging.getLogger(__name__)

LIVE_KEY = "allynet_party_live"
LEADER_CACHE_SECONDS = 5.0
REMOTE_POSITION_RELOAD_SECONDS = 2.0
LOCAL_LEADER_FRESH_SECONDS = 10.0
STOPPED_SWEEP_SECONDS = 1.0
FLUSH_BATCH = 200  # riders per bulk write of the position flush


# ---------------------------------------------------------------------------
# In-process live state (per app)
# ---------------------------------------------------------------------------

class Member:
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
        self.members = {}  # user id str -> Member
        self.leader_id = None
        self.leader_checked_at = self.leader_loaded_at = self.swept_at = None


class _Live:
    def __init__(self):
        self.lock = threading.RLock()
        self.sid_party = {}  # sid -> party id str (the membership cache of each connection)
        self.user_sids = {}  # user id str -> {sid} (this process's sockets)
        self.parties = {}  # party id str -> _PartyLive


def live_state(app=None):
    """This process's live party state of `app` (default: the current app)."""
    extensions = (current_app if app is None else app).extensions
    state = extensions.get(LIVE_KEY)
    if state is None:
        state = extensions.setdefault(LIVE_KEY, _Live())
    return state


def party_live(live, party_id):
    entry = live.parties.get(party_id)
    if entry is None:
        entry = live.parties.setdefault(party_id, _PartyLive())
    return entry


def _member_live(live, party_id, user_id):
    party = party_live(live, party_id)
    member = party.members.get(user_id)
    if member is None:
        member = party.members.setdefault(user_id, Member())
    return member


# ---------------------------------------------------------------------------
# Sockets and rooms of this process
# ---------------------------------------------------------------------------

def access_error(db, party_id, *, action):
    """404 for a party that does not exist (or ended); 403 for one the caller is not a member of."""
    party = db.parties.find_one({"_id": party_id}, projection={"is_active": 1})
    if party is None or not party.get("is_active"):
        return NotFound("Party not found")
    return Forbidden(f"Only members of this party can {action}")


def attach_sid(live, party_id, user_id, sid):
    """Put one local socket in the party room, cache its membership, mark it online."""
    with live.lock:
        live.sid_party[sid] = party_id
    realtime.enter_room(sid, realtime.party_room(party_id))
    presence.get_store().add(party_id, user_id, sid)


def attach_user(live, party_id, user_id):
    for sid in list(live.user_sids.get(user_id, ())):
        attach_sid(live, party_id, user_id, sid)


def detach_user(live, party_id, user_id):
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


def emit_presence(party_id):
    online = presence.get_store().online(party_id)
    realtime.emit_to_room(realtime.party_room(party_id), "party:presence",
                          {"party_id": party_id, "online": online})
    return online


def after_end(live, party_id):
    """The party ended: forget its live state (None outside an app), close its room everywhere."""
    if live is not None:
        with live.lock:
            for sid in [sid for sid, pid in live.sid_party.items() if pid == party_id]:
                del live.sid_party[sid]
            live.parties.pop(party_id, None)
    realtime.close_room(realtime.party_room(party_id))
    if live is not None:
        presence.get_store().clear(party_id)


def socket_connected(*, db, user_id, sid):
    """A socket came up: remember it and put it back in its user's active party room."""
    live = live_state()
    uid = str(user_id)
    with live.lock:
        live.user_sids.setdefault(uid, set()).add(sid)
    mine = db.party_members.find_one({"user_id": user_id, "active": True}, projection={"party_id": 1})
    if mine is None:
        return None
    party_id = str(mine["party_id"])
    attach_sid(live, party_id, uid, sid)
    emit_presence(party_id)
    return party_id


def socket_disconnected(*, db, user_id, sid):
    """A socket went away: drop it from presence; write the rider's last position when it was their last."""
    live = live_state()
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
            flush_member(db, party_id, uid, member)
    emit_presence(party_id)


def party_sockets(app):
    """(party id, user id, sid) of every socket of this process that is in a party room."""
    live = app.extensions.get(LIVE_KEY)
    if live is None:
        return []
    with live.lock:
        entries = []
        for uid, sids in live.user_sids.items():
            for sid in sids:
                party_id = live.sid_party.get(sid)
                if party_id is not None:
                    entries.append((party_id, uid, sid))
    return entries


# ---------------------------------------------------------------------------
# Positions: held here, written to Mongo by the flush
# ---------------------------------------------------------------------------

def position_fields(member):
    return {"last_location": member.location, "last_speed_kmh": member.speed_kmh, "heading": member.heading,
            "status": member.status, "stopped_since": member.stopped_since, "last_update_at": member.ts}


def flush_member(db, party_id, user_id, member):
    """Write the rider's last position; False when they are no longer an active member.

    The same round trip brings back the episode flags, so this process follows
    alerts (and resets) decided elsewhere (another process, the sweep) within a flush.
    """
    doc = db.party_members.find_one_and_update(
        {"party_id": ObjectId(party_id), "user_id": ObjectId(user_id), "active": True},
        {"$set": position_fields(member)},
        projection={"left_behind_alerted": 1, "stopped_alerted": 1},
    )
    member.dirty = False
    if doc is None:
        return False
    member.left_behind = bool(doc.get("left_behind_alerted"))
    member.stopped_alerted = bool(doc.get("stopped_alerted"))
    return True


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
            batch = [(pid, uid, member, position_fields(member))
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
        raise access_error(db, oid, action="send to it")
    attach_sid(live, party_id, str(user_id), sid)


def _drop_stale_membership(live, party_id, user_id):
    with live.lock:
        for sid in list(live.user_sids.get(user_id, ())):
            if live.sid_party.get(sid) == party_id:
                del live.sid_party[sid]
                realtime.leave_room(sid, realtime.party_room(party_id))
        state = live.parties.get(party_id)
        if state is not None:
            state.members.pop(user_id, None)


# ---------------------------------------------------------------------------
# The live path
# ---------------------------------------------------------------------------

def record_update(*, db, user_id, sid, data):
    """A rider's position: relayed to the rest of the room at once; Mongo sees it at most every second."""
    # One context lookup for the whole update (hot path): the app's config, live state and server.
    app = current_app._get_current_object()
    config = app.config
    live = live_state(app)
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
            rate, member.tokens + max(0.0, seconds_between(now, member.bucket_at)) * rate)
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
    if member.trail_at is None or seconds_between(now, member.trail_at) >= config["TRAIL_SAMPLE_SECONDS"]:
        member.trail_at = now
        db.trail_points.insert_one({"party_id": ObjectId(party_id), "user_id": user_id, "ts": now,
                                    "location": member.location, "speed_kmh": member.speed_kmh,
                                    "heading": member.heading, "status": status})
    _check_episodes(db, live, party_id, uid, member, now, config)
    return ack


# ---------------------------------------------------------------------------
# Left behind / stopped: what this process sees (the rules: episodes.py)
# ---------------------------------------------------------------------------

def _leader_id(db, state, party_id, now):
    if state.leader_id is None or state.leader_checked_at is None or \
            seconds_between(now, state.leader_checked_at) >= LEADER_CACHE_SECONDS:
        party = db.parties.find_one({"_id": ObjectId(party_id)}, projection={"leader_id": 1})
        state.leader_id = str(party["leader_id"]) if party else None
        state.leader_checked_at = now
    return state.leader_id


def _leader_location(db, state, party_id, leader_id, now):
    leader = state.members.get(leader_id)
    if leader is not None and leader.bucket_at is not None and leader.ts is not None and \
            seconds_between(now, leader.ts) < LOCAL_LEADER_FRESH_SECONDS:
        return leader.location  # the leader sends through this process
    # The leader rides on another process (or has gone quiet here): read Mongo, at most every 2 s.
    if state.leader_loaded_at is None or seconds_between(now, state.leader_loaded_at) >= REMOTE_POSITION_RELOAD_SECONDS:
        state.leader_loaded_at = now
        doc = db.party_members.find_one({"party_id": ObjectId(party_id), "user_id": ObjectId(leader_id),
                                         "active": True}, projection={"last_location": 1, "last_update_at": 1})
        if doc is not None and doc.get("last_location") and doc.get("last_update_at") is not None:
            entry = state.members.setdefault(leader_id, Member())
            if entry.ts is None or doc["last_update_at"] > entry.ts:
                entry.location, entry.ts = doc["last_location"], doc["last_update_at"]
    leader = state.members.get(leader_id)
    return leader.location if leader is not None else None


def _distance_episode(db, party_id, user_id, member, leader_location, config):
    if member.location is None or leader_location is None:
        return
    gap = geo.points_distance_m(member.location, leader_location)
    change = left_behind_change(gap, member.left_behind, config)
    if change is not None:
        member.left_behind = change
        record_episode(db, party_id, user_id, "left_behind_alerted", change, member.location,
                       {"distance_m": round(gap, 1)})


def _stopped_episode(db, party_id, user_id, member, state, now, config):
    change = stopped_change(member.status, member.stopped_since, member.stopped_alerted, now, config)
    if change is None:
        return
    if change and not any(is_riding(other.status, other.ts, now)
                          for uid, other in state.members.items() if uid != user_id):
        return
    member.stopped_alerted = change
    record_episode(db, party_id, user_id, "stopped_alerted", change, member.location,
                   {"stopped_since": iso(member.stopped_since)} if change else None)


def _check_episodes(db, live, party_id, user_id, member, now, config):
    state = party_live(live, party_id)
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
    if state.swept_at is None or seconds_between(now, state.swept_at) >= STOPPED_SWEEP_SECONDS:
        state.swept_at = now
        for uid, other in list(state.members.items()):
            if uid != user_id:
                _stopped_episode(db, party_id, uid, other, state, now, config)
