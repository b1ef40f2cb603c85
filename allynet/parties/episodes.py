"""Left-behind and stopped episodes: the rules, once, for the live path and the sweep.

A member is left behind while farther than `LEFT_BEHIND_M` from the leader,
and stopped once their status has been `stopped` for
`PARTY_STOPPED_ALERT_SECONDS` while another member rides on. Each episode
gives the room one `party:alert` (`member_left_behind` / `member_stopped`):
the flags `left_behind_alerted` / `stopped_alerted` on the rider's
`party_members` document are compare-and-set, so several processes deciding
the same episode alert once.

Two callers decide with the same rule functions (plain values in, the
decision out): each `party:update` from what its process holds in memory
(`live._check_episodes`), and `sweep` from the positions in Mongo, for riders
whose own server saw nothing.
"""
import time
from datetime import timedelta

from bson import ObjectId

from allynet import geo
from allynet.fields import iso
from allynet.parties.history import publish_alert

RIDING_FRESH_SECONDS = 120.0
QUIET_SECONDS = 10.0  # a rider silent this long is the episode sweep's to check (see sweep)
SWEEP_YIELD_EVERY = 50  # parties the sweep decides between two yields to the live path
ALERT_TYPES = {"left_behind_alerted": "member_left_behind", "stopped_alerted": "member_stopped"}


def seconds_between(later, earlier):
    return (later - earlier).total_seconds()


# ---------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------

def left_behind_change(distance_m, alerted, config):
    """True when a rider `distance_m` from the leader starts an episode, False when theirs ends, else None."""
    far = distance_m > config["LEFT_BEHIND_M"]
    if far and not alerted:
        return True
    if not far and alerted:
        return False
    return None


def stopped_change(status, stopped_since, alerted, now, config):
    """True when a stop is long enough to alert (if another member rides: `is_riding`), False when it
    ended, else None."""
    if status == "stopped" and stopped_since is not None:
        if alerted or seconds_between(now, stopped_since) < config["PARTY_STOPPED_ALERT_SECONDS"]:
            return None
        return True
    return False if alerted else None


def is_riding(status, last_update_at, now):
    """Whether a member rides on: status `riding`, heard from within RIDING_FRESH_SECONDS."""
    return status == "riding" and last_update_at is not None and \
        seconds_between(now, last_update_at) <= RIDING_FRESH_SECONDS


# ---------------------------------------------------------------------------
# Recording a decision (one alert per episode, whichever process decides)
# ---------------------------------------------------------------------------

def _set_flag(db, party_id, user_id, flag, value):
    """Compare-and-set an episode flag; True when this call changed it (so one alert per episode)."""
    result = db.party_members.update_one(
        {"party_id": ObjectId(party_id), "user_id": ObjectId(user_id), "active": True,
         flag: {"$ne": value}},
        {"$set": {flag: value}},
    )
    return result.modified_count == 1


def record_episode(db, party_id, user_id, flag, started, location, extra):
    """Open (`started`) or close the episode of `flag` (`left_behind_alerted` / `stopped_alerted`).

    An opening alerts the room once, from whichever process sets the flag
    first. Returns True when this call alerted.
    """
    if not _set_flag(db, party_id, user_id, flag, started) or not started:
        return False
    publish_alert(db, party_id, alert_type=ALERT_TYPES[flag], user_id=user_id, location=location,
                   source="system", extra=extra)
    return True


# ---------------------------------------------------------------------------
# The sweep over stored positions
# ---------------------------------------------------------------------------

def sweep(*, db, config, now):
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
    flags give one alert per episode. Returns how many alerts it sent.
    """
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
        riding = {doc["user_id"] for doc in docs if is_riding(doc.get("status"), doc.get("last_update_at"), now)}
        for doc in docs:
            uid = str(doc["user_id"])
            if doc["user_id"] != leader_id and leader is not None and leader.get("last_location") \
                    and doc.get("last_location"):
                gap = geo.points_distance_m(doc["last_location"], leader["last_location"])
                change = left_behind_change(gap, doc.get("left_behind_alerted"), config)
                if change is not None and record_episode(db, pid, uid, "left_behind_alerted", change,
                                                         doc["last_location"], {"distance_m": round(gap, 1)}):
                    alerts += 1
            change = stopped_change(doc.get("status"), doc.get("stopped_since"), doc.get("stopped_alerted"),
                                    now, config)
            if change is not None and (not change or riding - {doc["user_id"]}) and record_episode(
                    db, pid, uid, "stopped_alerted", change, doc.get("last_location"),
                    {"stopped_since": iso(doc["stopped_since"])} if change else None):
                alerts += 1
    return alerts
