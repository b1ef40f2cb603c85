"""The one place that knows rooms: services publish through these helpers.

Services never import Flask-SocketIO. They call `emit_to_user`,
`emit_to_room`, `close_room` and friends; the Socket.IO server bound to the
current app (and, when `REDIS_URL` is set, its Redis message queue) carries
the event to every process.

Outside any app (maintenance scripts, workers without a server) install a
write-only emitter with `external_emitter(redis_url)`: the same helpers then
publish on the Redis queue and the server processes deliver to their sockets.
An emit never raises into its caller: a queue outage is logged and the event
still reaches this process's own sockets.
"""
import logging

from flask import current_app, has_app_context

from allynet import transport
from allynet.transport import UNSET as _UNSET

log = logging.getLogger(__name__)

# Write-only emitter used when no app is current (see external_emitter).
_external = None


class ExternalEmitter:
    """Publishes emits on the Redis queue from a process that serves no sockets."""

    server = None  # no local sockets: room membership is the servers' business

    def __init__(self, redis_url, *, channel="allynet-socketio", timeout=0.5):
        self.queue = transport.write_only(redis_url, channel=channel, timeout=timeout)

    def emit(self, event, data, to=None, skip_sid=None):
        """Publish one emit to `to` (a room, or a list of rooms) on every server."""
        self.queue.emit(event, data, namespace="/", room=to, skip_sid=skip_sid)

    def enter_room_of(self, source, room):
        """Every socket in `source`, on every server, enters `room`."""
        self.queue.enter_room_of(source, room)

    def close_room(self, room):
        """Empty a room on every server."""
        self.queue.close_room(room, namespace="/")

    def close(self):
        """Release the Redis connection."""
        self.queue.close()


def external_emitter(redis_url, *, channel="allynet-socketio", timeout=0.5, install=True):
    """A write-only emitter on the queue at `redis_url` (channel = the servers' SOCKETIO_CHANNEL);
    with `install`, the helpers here use it whenever no app is current."""
    global _external
    emitter = ExternalEmitter(redis_url, channel=channel, timeout=timeout)
    if install:
        _external = emitter
    return emitter


def uninstall_external_emitter():
    """Forget the installed external emitter (and close it)."""
    global _external
    emitter, _external = _external, None
    if emitter is not None:
        emitter.close()


def user_room(user_id):
    """Room that every socket of a user joins on connect."""
    return f"user:{user_id}"


def emergency_room(emergency_id):
    """Room of one SOS: owner and those allowed to follow it."""
    return f"emergency:{emergency_id}"


def party_room(party_id):
    """Room of one party's members."""
    return f"party:{party_id}"


def organization_room(organization_id):
    """Room of one organization's dispatch: owner, admins and dispatchers of a dispatching org."""
    return f"org:{organization_id}"


CONSOLE_ROOM = "console"


def console_organization_room(organization_id):
    """Room of the console pages of one organization's dispatchers (their service area only)."""
    return f"console:org:{organization_id}"


def console_rooms(organization_ids=()):
    """The console's rooms for something on the map: staff (`console`) and the dispatchers of
    `organization_ids` (the dispatching organizations whose service area covers it)."""
    return [CONSOLE_ROOM] + [console_organization_room(org_id) for org_id in organization_ids]


def _server():
    if not has_app_context():
        return None
    return current_app.extensions.get("socketio")


def _emitter():
    """What emits: the current app's Socket.IO server, else the installed external emitter."""
    sio = _server()
    if sio is not None and sio.server is not None:
        return sio
    return _external


def emit_to_room(room, event, data, skip_sid=None):
    """Send `event` to every socket in `room`, on every process."""
    sio = _emitter()
    if sio is None:
        log.debug("no Socket.IO server bound; %s to %s dropped", event, room)
        return False
    try:
        transport.before_emit(sio, room)
        sio.emit(event, data, to=room, skip_sid=skip_sid)
    except Exception:  # a broken queue must not fail the request that emits
        log.exception("emit %s to %s failed", event, room)
        return False
    return True


def relay_to_room(room, event, data, skip_sid=None, sio=_UNSET):
    """Hot-path `emit_to_room` (party positions): the event is encoded once, delivered to this
    process's sockets as one shared packet, and published pre-encoded to the other processes.

    Clients receive exactly what `emit_to_room` sends. `data` must be plain JSON (no bytes,
    no acks). Without a bound server (scripts) it is `emit_to_room`. `sio`: the current app's
    Flask-SocketIO object (or None), when the caller has it at hand.
    """
    if sio is _UNSET:
        sio = _server()
    if sio is None or sio.server is None:
        return emit_to_room(room, event, data, skip_sid=skip_sid)
    try:
        return transport.relay(sio.server, room, event, data, skip_sid)
    except Exception:  # like emit_to_room: never fail the caller
        log.exception("relay %s to %s failed", event, room)
        return False


def emit_to_user(user_id, event, data):
    """Send `event` to every socket of a user."""
    return emit_to_room(user_room(user_id), event, data)


def emit_to_rooms(rooms, event, data):
    """Send one event to several rooms (each socket gets it once)."""
    sio = _emitter()
    if sio is None or not rooms:
        return False
    try:
        transport.before_emit(sio, list(rooms))
        sio.emit(event, data, to=list(rooms))
    except Exception:
        log.exception("emit %s to %d rooms failed", event, len(rooms))
        return False
    return True


def enter_room(sid, room):
    """Put one (local) socket into a room."""
    sio = _server()
    if sio is not None and sio.server is not None:
        sio.server.enter_room(sid, room, namespace="/")


def enter_user_sockets(user_id, room):
    """Put every connection of a user, on every process, into `room` (through the queue)."""
    return _move_user_sockets(user_id, room, enter=True)


def leave_user_sockets(user_id, room):
    """Take every connection of a user, on every process, out of `room` (through the queue)."""
    return _move_user_sockets(user_id, room, enter=False)


def _move_user_sockets(user_id, room, *, enter):
    sio = _emitter()
    if sio is None:
        return False
    method = "enter_room_of" if enter else "leave_room_of"
    try:
        if sio is _external:
            getattr(sio.queue, method)(user_room(user_id), room)
            return True
        queue = transport.queue_of(sio)
        if queue is not None:
            getattr(queue, method)(user_room(user_id), room)
        else:
            getattr(transport, method)(sio.server, user_room(user_id), room)
    except Exception:  # like the emits: a queue outage must not fail the request
        log.exception("%s %s's sockets %s %s failed", "entering" if enter else "taking", user_id,
                      "into" if enter else "out of", room)
        return False
    return True


def leave_room(sid, room):
    """Take one (local) socket out of a room."""
    sio = _server()
    if sio is not None and sio.server is not None:
        sio.server.leave_room(sid, room, namespace="/")


# in_room(sid, room, sio=...): is a socket of THIS process in `room`; the hot path calls the
# transport's own function, not a wrapper around it.
in_room = transport.in_room


def _batching_of(sid):
    """(batcher, Engine.IO sid) of a local socket, or (None, None) without a bound server."""
    sio = _server()
    if sio is None or sio.server is None:
        return None, None
    return transport.batching_of(sio.server, sid)


def set_batched(sid, enabled):
    """Opt one local socket in or out of batched party positions (allynet/transport/batching.py); returns
    the tick in milliseconds, or None without a bound server."""
    batcher, eio_sid = _batching_of(sid)
    if batcher is None:
        return None
    if enabled:
        batcher.enable(eio_sid, start=current_app.config.get("BACKGROUND_TASKS", True))
    else:
        batcher.disable(eio_sid)
    return round(batcher.interval * 1000)


def forget_batched(sid):
    """A local socket is going away: drop its batching state."""
    batcher, eio_sid = _batching_of(sid)
    if batcher is not None:
        batcher.forget(eio_sid)


def end_user_sessions(user_id, reason, *, family=None, jti=None):
    """End a user's live sockets on every process: each gets `session:ended {reason}`, then is
    disconnected. All of them, or only those opened with login `family` / access token `jti`.

    `reason` is one of allynet.socket_sessions.REASONS (logout, token_revoked, role_changed,
    token_expired, suspended). Returns how many sockets ended on this process.
    """
    from allynet import socket_sessions

    if reason not in socket_sessions.REASONS:
        raise ValueError(f"unknown session end reason {reason!r}")
    message = {"user_id": str(user_id), "reason": reason, "family": family, "jti": jti}
    ended = 0
    sio = _server()
    try:
        if sio is not None and sio.server is not None:
            ended = socket_sessions.end_local(current_app._get_current_object(), sio, **message)
            queue = transport.queue_of(sio)
            if queue is not None:
                queue.publish_end_sessions(message)
        elif _external is not None:
            _external.queue.publish_end_sessions(message)
    except Exception:  # like every emit: never fail the caller (the tokens are revoked already)
        log.exception("ending sessions of %s (%s) failed", user_id, reason)
    return ended


def close_room(room):
    """Empty a room on every process."""
    sio = _emitter()
    if sio is not None:
        try:
            sio.close_room(room)
        except Exception:
            log.exception("close_room %s failed", room)
