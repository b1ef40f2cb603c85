"""Live Socket.IO sessions follow access: a socket lives only as long as the token behind it.

Each socket remembers, at connect (and at `auth:renew`), its access token's id, login
family (`fam`, see allynet/auth/service.py) and expiry. A socket's session ends when:

- its token expires: the next event it sends is refused with `token_expired`, and the
  `session_expiry` loop finds the ones that send nothing;
- its user logs out (the sockets of that login only), a rotated refresh token of its login
  is reused (`token_revoked`), an admin changes the user's role (`role_changed`: every
  socket of the user, so rooms joined under the old role are left), or another feature calls
  `realtime.end_user_sessions(user_id, reason)` (e.g. `suspended`).

Ending a socket: it gets `session:ended {reason}`, then the server disconnects it. Events
it sends in between are refused. `realtime.end_user_sessions` ends the local sockets and
publishes the request on the Redis queue (`transport.queue.END_SESSIONS_METHOD`), so every
process ends its own. The event path pays one dict lookup and one float compare.
"""
import logging

from allynet import clock, transport
from allynet.background import periodic

log = logging.getLogger(__name__)

# Per app (app.extensions[SESSIONS_KEY]): sid -> SocketSession of the sockets of that app's server.
SESSIONS_KEY = "allynet_socket_sessions"

REASONS = ("logout", "token_revoked", "role_changed", "token_expired", "suspended")

_ENDED = float("-inf")  # an ended session's `exp`: the event path's one compare refuses it too


class SocketSession:
    """What a socket was authenticated with."""

    __slots__ = ("user_id", "jti", "family", "exp", "ended")

    def __init__(self, user_id, claims):
        self.user_id = user_id
        self.ended = None
        self.renew(claims)

    def renew(self, claims):
        """Follow a (new) access token's claims."""
        self.jti = claims.get("jti")
        self.family = claims.get("fam")
        self.exp = float(claims["exp"])

    def matches(self, family, jti):
        """Opened with login `family` or token `jti`; with neither given, any session matches."""
        if family is None and jti is None:
            return True
        return (family is not None and self.family == family) or (jti is not None and self.jti == jti)


def sessions_of(app):
    """sid -> SocketSession of an app's sockets."""
    return app.extensions.setdefault(SESSIONS_KEY, {})


def remember(app, sid, user_id, claims):
    """A socket was authenticated with an access token's `claims`."""
    sessions_of(app)[sid] = SocketSession(user_id, claims)


def forget(app, sid):
    """A socket went away."""
    sessions_of(app).pop(sid, None)


def refused(app, sid, session):
    """The ack for an event of a session past its expiry or ended; an expired one is ended too.

    Called by the event path once `session.exp` has passed. The end runs after the ack
    (a background task), so the client gets the ack before the disconnect.
    """
    if session.ended is not None:
        return {"ok": False, "error": {"code": "unauthorized", "message": f"Session ended ({session.ended})"}}
    session.ended = "token_expired"
    session.exp = _ENDED
    sio = app.extensions.get("socketio")
    if sio is not None and sio.server is not None:
        sio.server.start_background_task(_end_in_app, app, sio, [sid], "token_expired")
    return {"ok": False, "error": {"code": "token_expired", "message": "Token has expired"}}


def _end_in_app(app, sio, sids, reason):
    with app.app_context():
        _end_sockets(sio, sids, reason)


def _end_sockets(sio, sids, reason):
    """`session:ended {reason}` to each local socket, then disconnect it."""
    server = sio.server
    for sid in sids:
        try:
            server.emit("session:ended", {"reason": reason}, to=sid, namespace="/", ignore_queue=True)
            server.disconnect(sid, namespace="/")
        except Exception:  # one broken socket must not keep the others alive
            log.exception("ending socket %s (%s) failed", sid, reason)


def end_local(app, sio, *, user_id, reason, family=None, jti=None):
    """End this process's sockets of `user_id` (those opened with login `family` or token `jti`
    when given); returns how many."""
    from allynet.realtime import user_room

    if sio is None or sio.server is None:
        return 0
    members = transport.local_members(sio.server, user_room(user_id))
    if not members:
        return 0
    sessions = sessions_of(app)
    ending = []
    for sid in members:
        session = sessions.get(sid)
        if session is None or session.ended is not None or not session.matches(family, jti):
            continue
        # Marked before anything is sent: from here its events are refused.
        session.ended = reason
        session.exp = _ENDED
        ending.append(sid)
    if ending:
        log.info("ending %d socket(s) of user %s: %s", len(ending), user_id, reason)
        _end_sockets(sio, ending, reason)
    return len(ending)


def end_from_queue(app, sio, message):
    """Another process asked every process to end a user's sockets (the Redis queue)."""
    user_id, reason = message.get("user_id"), message.get("reason")
    if not isinstance(user_id, str) or reason not in REASONS:
        return 0
    with app.app_context():
        return end_local(app, sio, user_id=user_id, reason=reason,
                         family=message.get("family"), jti=message.get("jti"))


def renew(app, sid, claims):
    """Move a live socket onto a newer access token's claims; returns the new expiry (POSIX seconds)."""
    session = sessions_of(app).get(sid)
    if session is not None and session.ended is None:
        session.renew(claims)
    return float(claims["exp"])


@periodic("session_expiry", interval=lambda cfg: cfg.get("SOCKET_SESSION_SWEEP_SECONDS", 15.0))
def end_expired_sessions(app):
    """End this process's sockets whose token has expired, including those that send nothing."""
    sio = app.extensions.get("socketio")
    if sio is None or sio.server is None:
        return 0
    now = clock.timestamp()
    expired = []
    for sid, session in list(sessions_of(app).items()):
        if session.ended is None and session.exp <= now:
            session.ended = "token_expired"
            session.exp = _ENDED
            expired.append(sid)
    if expired:
        _end_sockets(sio, expired, "token_expired")
    return len(expired)
