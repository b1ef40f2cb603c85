"""Party Socket.IO handlers: thin, every one answered through its ack.

Rooms and presence: a member's sockets are in `party:<id>`; reconnecting
sockets rejoin it on connect. Who is online is kept per socket in the
presence store (Redis when configured), so a second device keeps its user
online until the last socket goes.

Acks: `{"ok": true, ...}` or `{"ok": false, "error": {code, message}}` with
`validation_error` (bad payload), `not_found` (no such party, or it ended),
`forbidden` (the party exists but the sender is not a member),
`rate_limited` (`party:update` faster than MAX_UPDATE_HZ per member; `party:create`,
`party:message` and `party:alert` over their limits, allynet/ratelimit.py, with
`details.retry_after` in seconds).

Server events to `party:<id>` besides those of the contract (additive):
`party:leader` `{party_id, leader_id}` when leadership passes on, and
`party:ended` `{party_id, ended_at}` just before the room closes.
`party:create` and `party:join` acks carry `left_party_id`: the party the user was moved out of
(one active party per user), null when none.
`party:update` may carry `client_ts` (optional finite number, echoed, never stored).
`party:batch` `{enabled}` (client event, additive) switches the connection to `party:updates`
`{party_id, updates: [party:update payload, ...]}` at most once per `PARTY_BATCH_MS`
(allynet/transport/batching.py); the ack is `{ok, enabled, interval_ms}`.

Scale-out: a leave or end on one process takes the user's sockets out of the
room on every process (leave_room for the sids in the shared presence store,
close_room), and a socket's cached membership is trusted only while the
socket is still in the room on its own process.
"""
from allynet import realtime, sockets
from allynet.db import get_db
from allynet.errors import ServiceUnavailable
from allynet.parties import live, messages, service
from allynet.parties.schemas import (party_schema, socket_alert_schema, socket_batch_schema,
                                     socket_create_schema, socket_join_schema, socket_message_schema,
                                     socket_party_schema, validate_update)
from allynet.sockets import socket_event


@sockets.on_connect
def rejoin_party_room(user_id, sid):
    """A member's (re)connecting socket goes straight back into its party room."""
    live.socket_connected(db=get_db(), user_id=user_id, sid=sid)


@sockets.on_disconnect
def drop_presence(user_id, sid):
    """The socket is gone: presence and the rider's last position are updated."""
    realtime.forget_batched(sid)
    live.socket_disconnected(db=get_db(), user_id=user_id, sid=sid)


@socket_event("party:batch", socket_batch_schema)
def batch(*, user_id, sid, data):
    """Opt this connection in (or out) of `party:updates`: its parties' positions at most once a
    tick in one event instead of one `party:update` each (allynet/transport/batching.py)."""
    interval_ms = realtime.set_batched(sid, data["enabled"])
    if interval_ms is None:
        raise ServiceUnavailable("Batching needs a running Socket.IO server")
    return {"enabled": data["enabled"], "interval_ms": interval_ms}


@socket_event("party:create", socket_create_schema)
def create(*, user_id, sid, data):
    db = get_db()
    party, left_party_id = service.create_party(db=db, user_id=user_id, name=data["name"],
                                                organization_id=data.get("organization_id"))
    return {"party": party_schema.dump(service.get_party(db=db, user_id=user_id, party_id=party["_id"])),
            "left_party_id": None if left_party_id is None else str(left_party_id)}


@socket_event("party:join", socket_join_schema)
def join(*, user_id, sid, data):
    db = get_db()
    left_party_id = None
    if "invite_code" in data:
        party, left_party_id = service.join_by_code(db=db, user_id=user_id, invite_code=data["invite_code"],
                                                    party_id=data.get("party_id"))
        state = service.join_room(db=db, user_id=user_id, sid=sid, party_id=party["_id"])
    else:  # only (re)joins the room of a party the user is already in: nothing is left
        state = service.join_room(db=db, user_id=user_id, sid=sid, party_id=data["party_id"])
    return {"party": party_schema.dump(state), "left_party_id": None if left_party_id is None else str(left_party_id)}


@socket_event("party:leave", socket_party_schema)
def leave(*, user_id, sid, data):
    party = service.leave_party(db=get_db(), user_id=user_id, party_id=data["party_id"])
    return {"party_id": str(data["party_id"]), "is_active": bool(party and party.get("is_active"))}


# No schema: validate_update is the cheap hand-written loader of the hot path.
@socket_event("party:update", request_context=False)
def update(*, user_id, sid, data):
    return live.record_update(db=get_db(), user_id=user_id, sid=sid, data=validate_update(data))


@socket_event("party:message", socket_message_schema)
def message(*, user_id, sid, data):
    return {"message": messages.post_message(db=get_db(), user_id=user_id, sid=sid,
                                             party_id=data["party_id"], text=data["text"])}


@socket_event("party:alert", socket_alert_schema)
def alert(*, user_id, sid, data):
    return {"alert": messages.post_alert(db=get_db(), user_id=user_id, sid=sid, party_id=data["party_id"],
                                         alert_type=data["type"], location=data["location"],
                                         description=data.get("description"))}
