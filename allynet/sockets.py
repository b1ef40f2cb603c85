"""Socket.IO plumbing: authenticated connections and acknowledged events.

Feature `events.py` modules register handlers with `socket_event`; each
handler gets the connected user's id and the payload loaded by its schema
and returns a dict for the ack. Every failure becomes
``{"ok": false, "error": {code, message}}`` and never breaks the connection.

A console page's socket (connected with the socket token the console mints, see
allynet/console/service.py) is listen-only: it is in its user's room (so its session ends with
the user's, like any socket) and in the rooms the `on_console_connect` hooks put it in, but not
among the connections the handlers know, so every event it sends is refused `unauthorized`.
"""
import functools
import logging

from flask import current_app, request
from marshmallow import ValidationError

from allynet import inputgate, request_log, socket_sessions
from allynet.clock import timestamp
from allynet.errors import MONGO_DOWN_ERRORS, AllyNetError, client_error

log = logging.getLogger(__name__)

# (event name, handler) pairs applied to every Socket.IO server an app binds.
HANDLERS = []
CONNECT_HOOKS = []
DISCONNECT_HOOKS = []
CONSOLE_CONNECT_HOOKS = []

# Events whose handlers run without a Flask request context (see socket_event's request_context).
BARE_EVENTS = set()

# Per app (app.extensions[CONNECTIONS_KEY]): sid -> user id (ObjectId) of the sockets
# connected to that app's Socket.IO server. Per app, not per module, so that two
# servers in one process (the scale-out tests) know only their own sockets.
CONNECTIONS_KEY = "allynet_socket_connections"


def _local_connections():
    return current_app.extensions.setdefault(CONNECTIONS_KEY, {})


def on_connect(fn):
    """Register `fn(user_id, sid)` to run after a socket is authenticated."""
    CONNECT_HOOKS.append(fn)
    return fn


def on_console_connect(fn):
    """Register `fn(user_id, sid)` to run when a console page's socket connects; a falsy answer
    refuses the connection (the user may no longer use the console)."""
    CONSOLE_CONNECT_HOOKS.append(fn)
    return fn


def on_disconnect(fn):
    """Register `fn(user_id, sid)` to run when a socket goes away."""
    DISCONNECT_HOOKS.append(fn)
    return fn


def _ack_error(code, message, details=None):
    error = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"ok": False, "error": error}


def socket_event(name, schema=None, request_context=True):
    """Register a handler `fn(user_id=..., sid=..., data=...)` for a client event with an ack.

    With `request_context=False` (hot paths: party:update) the handler runs in an app
    context only: Flask-SocketIO builds a request context per event (a Request, URL
    matching, session), which costs more than a small handler; such a handler must not
    touch `flask.request`.
    """

    def decorator(fn):
        def run(sid, payload, connections=None, sessions=None):
            user_id = (_local_connections() if connections is None else connections).get(sid)
            if user_id is None:
                return _ack_error("unauthorized", "Not authenticated")
            # The session follows its token: past its expiry (or once ended) every event is refused.
            session = (socket_sessions.sessions_of(current_app) if sessions is None else sessions).get(sid)
            if session is not None and session.exp <= timestamp():
                return socket_sessions.refused(current_app._get_current_object(), sid, session)
            try:
                if type(payload) is inputgate.Refused:  # refused while decoding (jsonutil.loads)
                    raise payload.error
                if schema is not None:
                    if not isinstance(payload, dict):
                        return _ack_error("bad_request", "Payload must be an object")
                    inputgate.check(payload)  # schema-less (hot path) handlers load their own
                    data = schema.load(payload)
                else:
                    data = payload
                result = fn(user_id=user_id, sid=sid, data=data)
            except ValidationError as exc:
                details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
                return _ack_error("validation_error", "Validation failed", details)
            except AllyNetError as exc:
                return {"ok": False, "error": exc.to_dict()}
            except MONGO_DOWN_ERRORS:
                log.warning("MongoDB unreachable during %s", name)
                return _ack_error("service_unavailable", "Database unavailable, retry shortly")
            except Exception as exc:
                known = client_error(exc)
                if known is not None:
                    return {"ok": False, "error": known.to_dict()}
                log.exception("socket event %s failed", name)
                return _ack_error("internal_error", "Internal error")
            ack = {"ok": True}
            if result:
                ack.update(result)
            return ack

        def logged_run(sid, payload, connections=None, sessions=None):
            ack = run(sid, payload, connections, sessions)
            if request_context or not ack["ok"]:  # bare events (hot path) log refusals only
                user_id = (_local_connections() if connections is None else connections).get(sid)
                request_log.socket_ack(name, sid=sid, user_id=user_id, ack=ack)
            return ack

        @functools.wraps(fn)
        def handler(payload=None, *extra):
            return logged_run(request.sid, payload)

        handler.run = logged_run
        handler.schema = schema  # for tests and the AsyncAPI document (allynet/ops/asyncapi.py)
        handler.summary = (fn.__doc__ or "").strip().split("\n")[0]
        HANDLERS.append((name, handler))
        if not request_context:
            BARE_EVENTS.add(name)
        return fn

    return decorator


def _connect(auth=None):
    from allynet.auth import service as auth_service
    from allynet.db import get_db

    token = auth.get("token") if isinstance(auth, dict) else None
    token = token or request.args.get("token")
    try:
        user_id, claims = auth_service.access_token_owner(db=get_db(), token=token, console_socket=True)
        if claims.get(auth_service.CONSOLE_CLAIM) == auth_service.CONSOLE_SOCKET:
            return _connect_console(user_id, claims)
    except AllyNetError as exc:
        request_log.socket_line("connect", sid=request.sid, user_id=None, outcome=exc.code)
        return False
    except MONGO_DOWN_ERRORS:
        log.warning("socket refused: MongoDB unreachable")
        request_log.socket_line("connect", sid=request.sid, user_id=None, outcome="service_unavailable")
        return False
    sid = request.sid
    request_log.socket_line("connect", sid=sid, user_id=user_id, outcome="ok")
    _local_connections()[sid] = user_id
    socket_sessions.remember(current_app, sid, user_id, claims)
    from allynet import realtime

    realtime.enter_room(sid, realtime.user_room(user_id))
    for hook in CONNECT_HOOKS:
        try:
            hook(user_id, sid)
        except Exception:
            log.exception("connect hook %s failed", getattr(hook, "__name__", hook))
    return True


def _connect_console(user_id, claims):
    """A console page's listen-only socket: its user's room and the console's rooms, no handlers."""
    from allynet import realtime

    sid = request.sid
    if not all(hook(user_id, sid) for hook in CONSOLE_CONNECT_HOOKS):
        request_log.socket_line("connect", sid=sid, user_id=user_id, outcome="forbidden")
        return False
    request_log.socket_line("connect", sid=sid, user_id=user_id, outcome="ok")
    socket_sessions.remember(current_app, sid, user_id, claims)
    realtime.enter_room(sid, realtime.user_room(user_id))
    return True


def _unknown_event(event, *args):
    """Any client event without a handler: an `unknown_event` ack (sent only when one was asked for)."""
    name = event if isinstance(event, str) else repr(event)
    if len(name) > 100:
        name = name[:100] + "..."
    return _ack_error("unknown_event", f"No such event: {name}")


def _disconnect(*args):
    sid = request.sid
    user_id = _local_connections().pop(sid, None)
    request_log.socket_line("disconnect", sid=sid, user_id=user_id, outcome="ok")
    socket_sessions.forget(current_app, sid)
    if user_id is None:
        return
    for hook in DISCONNECT_HOOKS:
        try:
            hook(user_id, sid)
        except Exception:
            log.exception("disconnect hook %s failed", getattr(hook, "__name__", hook))


def init_socketio(app, sio):
    """Bind `sio` to the app through the transport and register every handler."""
    from allynet import transport

    bare = {name: handler.run for name, handler in HANDLERS if name in BARE_EVENTS}
    # Bare handlers get the app's connection and session dicts with every event (no lookups).
    context = (app.extensions.setdefault(CONNECTIONS_KEY, {}), socket_sessions.sessions_of(app))
    transport.install(app, sio, bare_events=bare, bare_args=context)
    queue = transport.queue_of(sio)
    if queue is not None:  # another process asks to end sessions: this app ends its own sockets
        queue.on_end_sessions = functools.partial(socket_sessions.end_from_queue, app, sio)
    sio.on_event("connect", _connect)
    sio.on_event("disconnect", _disconnect)
    # Catch-all: python-socketio gives it every event without its own handler (never connect or
    # disconnect); without it an unknown event with an ack id would wait for an answer forever.
    sio.on_event("*", _unknown_event)
    for name, handler in HANDLERS:
        if name not in BARE_EVENTS:
            sio.on_event(name, handler)
