"""What members send to their party: chat messages and alerts, stored for history and sent to the room."""
from allynet import clock, ratelimit, realtime
from allynet.fields import iso
from allynet.parties.history import publish_alert
from allynet.parties.live import access_error, attach_sid, live_state


def _require_member(db, live, user_id, sid, party_id):
    pid = str(party_id)
    if sid is None or live.sid_party.get(sid) != pid:
        membership = db.party_members.find_one({"party_id": party_id, "user_id": user_id, "active": True},
                                               projection={"_id": 1})
        if membership is None:
            raise access_error(db, party_id, action="send to it")
        if sid is not None:
            attach_sid(live, pid, str(user_id), sid)
    return pid


def post_message(*, db, user_id, sid, party_id, text):
    """Store a chat message and send it to the whole room."""
    ratelimit.hit("PARTY_MESSAGE_RATE_LIMIT", "party:message", "user", user_id)
    pid = _require_member(db, live_state(), user_id, sid, party_id)
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
    pid = _require_member(db, live_state(), user_id, sid, party_id)
    ratelimit.hit("PARTY_ALERT_ROOM_RATE_LIMIT", "party:alert", "party", pid)
    return publish_alert(db, pid, alert_type=alert_type, user_id=str(user_id), location=location,
                          description=description, source="member")
