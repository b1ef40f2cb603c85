"""Socket.IO plumbing: authenticated connections and acknowledged events.

Feature `events.py` modules register handlers with `socket_event`; each
handler gets the connected user's id and the payload loaded by its schema
and returns a dict for the ack. Every failure becomes
``{"ok": false, "error": {code, message}}`` and never breaks the connection.
"""
import functools
import logging

from flask import current_app, request
from flask import globals as flask_globals
from marshmallow import ValidationError

from allynet import inputgate, jsonutil, request_log, socket_sessions
from allynet.clock import timestamp
from allynet.errors import MONGO_DOWN_ERRORS, AllyNetError, client_error

log = logging.getLogger(__name__)

# (event name, handler) pairs applied to every Socket.IO server an app binds.
HANDLERS = []
CONNECT_HOOKS = []
DISCONNECT_HOOKS = []

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
        user_id, claims = auth_service.access_token_owner(db=get_db(), token=token)
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


class RefuseWebSocketCompression:
    """WSGI middleware: Socket.IO websocket upgrades are answered without permessage-deflate.

    socket.io-client offers it and eventlet's websocket and simple-websocket accept it,
    neither with an option to refuse; each ~200-byte party frame would then be
    zlib-compressed once per recipient for next to no gain (the Node reference server
    does not compress either). Without the offer header the handshake negotiates none.
    """

    def __init__(self, wsgi_app, path="/socket.io"):
        self.wsgi_app = wsgi_app
        self.path = path

    def __call__(self, environ, start_response):
        if "HTTP_SEC_WEBSOCKET_EXTENSIONS" in environ and environ.get("PATH_INFO", "").startswith(self.path):
            del environ["HTTP_SEC_WEBSOCKET_EXTENSIONS"]
        return self.wsgi_app(environ, start_response)


def init_socketio(app, sio):
    """Bind `sio` to the app with the configured queue and register every handler."""
    from allynet.message_queue import make_client_manager

    origins = app.config["CORS_ORIGINS"]
    sio.init_app(
        app,
        # Redis pub/sub shared by every process, or None (in-memory rooms). Always
        # passed: Flask-SocketIO keeps options across init_app calls on one instance.
        client_manager=make_client_manager(app.config),
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        cors_allowed_origins="*" if origins == "*" else [o.strip() for o in origins.split(",")],
        json=jsonutil,
        # False: a client's events run in order in its own reader instead of one new
        # greenlet/thread per event (a spawn per party:update was measurable under load).
        async_handlers=app.config.get("SOCKETIO_ASYNC_HANDLERS", True),
        # The largest Socket.IO frame read and parsed: then each event's own limits answer in its
        # ack (a 200 KB party:message is a validation_error); over it the websocket is closed.
        max_http_buffer_size=app.config["SOCKET_MAX_FRAME_BYTES"],
        logger=False,
        engineio_logger=False,
    )
    from allynet import batching

    batching.install(sio.server, app.config["PARTY_BATCH_MS"] / 1000.0)
    if not app.config.get("SOCKETIO_WS_COMPRESSION", True):
        app.wsgi_app = RefuseWebSocketCompression(app.wsgi_app)
    from allynet.message_queue import queue_of

    queue = queue_of(sio)
    if queue is not None:  # another process asks to end sessions: this app ends its own sockets
        queue.on_end_sessions = functools.partial(socket_sessions.end_from_queue, app, sio)
    sio.on_event("connect", _connect)
    sio.on_event("disconnect", _disconnect)
    # Catch-all: python-socketio gives it every event without its own handler (never connect or
    # disconnect); without it an unknown event with an ack id would wait for an answer forever.
    sio.on_event("*", _unknown_event)
    bare = {}
    for name, handler in HANDLERS:
        if name in BARE_EVENTS:
            # Straight on the python-socketio server: same ack, no Flask-SocketIO request context.
            bare[name] = _bare_handler(app, handler.run)
            sio.server.on(name, bare[name], namespace="/")
        else:
            sio.on_event(name, handler)
    if bare and not sio.server.async_handlers:
        # Engine.IO calls it for every message; Flask-SocketIO's test client calls the attribute.
        sio.server._handle_eio_message = _bare_event_dispatch(sio.server, bare)
    else:
        sio.server._handle_eio_message = drop_malformed_packets(sio.server._handle_eio_message)
    sio.server.eio.on("message", sio.server._handle_eio_message)
    drop_malformed_polling_payloads()


# What python-socketio raises while decoding and dispatching a packet a client got wrong (bad JSON,
# an unknown packet type, an EVENT without a name...). Handlers registered here never raise (they
# ack every failure), so at this level these errors come from the client's bytes.
MALFORMED_PACKET_ERRORS = (ValueError, TypeError, IndexError, KeyError)


def drop_malformed_packets(handle):
    """Wrap python-socketio's Engine.IO message handler: a malformed packet is dropped with one
    log line instead of Engine.IO's "message handler error" traceback; the connection stays."""

    def guarded(eio_sid, data):
        try:
            return handle(eio_sid, data)
        except MALFORMED_PACKET_ERRORS as exc:
            log.warning("malformed Socket.IO packet dropped (%s: %s): %.80r", type(exc).__name__, exc, data)
            return None

    guarded.allynet_original = handle
    return guarded


def drop_malformed_polling_payloads():
    """Engine.IO's long-polling POST, with a body that does not decode as Engine.IO packets dropped
    with one log line (Engine.IO answers it "OK" and keeps the session, as before) instead of its
    "post request handler error" traceback. Idempotent; applies to every Engine.IO server."""
    from engineio import socket as eio_socket

    original = eio_socket.Socket.handle_post_request
    if hasattr(original, "allynet_original"):
        return

    def handle_post_request(self, environ):
        try:
            return original(self, environ)
        except ValueError as exc:  # the payload's decoding; its Socket.IO packets are guarded above
            log.warning("malformed Engine.IO payload dropped (%s: %s)", type(exc).__name__, exc)
            return None

    handle_post_request.allynet_original = original
    eio_socket.Socket.handle_post_request = handle_post_request


def _bare_handler(app, run):
    """`run` in an app context of `app`: one shared AppContext object set straight into Flask's
    context variable (bare handlers keep nothing in `g`; the app has no teardown_appcontext
    functions or context signals to honour), or Flask's own push where that variable is gone."""
    context_var = getattr(flask_globals, "_cv_app", None)
    shared = app.app_context()
    connections = app.extensions.setdefault(CONNECTIONS_KEY, {})  # the dict _connect fills
    sessions = socket_sessions.sessions_of(app)

    def bare(sid, payload=None, *extra):
        if context_var is None:
            with app.app_context():
                return run(sid, payload, connections, sessions)
        current = context_var.get(None)
        if current is not None and current.app is app:
            return run(sid, payload, connections, sessions)
        token = context_var.set(shared)
        try:
            return run(sid, payload, connections, sessions)
        finally:
            context_var.reset(token)

    return bare


def _bare_event_dispatch(server, bare):
    """Engine.IO `message` handler: a plain Socket.IO EVENT for a bare event on "/"
    (`2<id>["name",...]`) is decoded once and answered with its ACK (`3<id>[ack]`) here;
    every other packet goes to python-socketio's own dispatch, which would do the same
    with packet objects in between (a malformed one is logged in one line and dropped)."""
    import engineio.packet

    from allynet import message_queue

    original = drop_malformed_packets(server._handle_eio_message)
    prefixes = tuple((jsonutil.dumps([name])[:-1] + ",", handler) for name, handler in bare.items())
    manager = server.manager

    def handle(eio_sid, data):
        if type(data) is not str or not data.startswith("2") or eio_sid in server._binary_packet:
            return original(eio_sid, data)
        end, size = 1, len(data)
        while end < size and "0" <= data[end] <= "9":
            end += 1
        if end > 19:  # an id of 19 digits or more: python-socketio's own limits decide
            return original(eio_sid, data)
        for prefix, handler in prefixes:
            if data.startswith(prefix, end):
                break
        else:
            return original(eio_sid, data)
        try:
            args = jsonutil.loads(data[end:])
        except Exception:  # not JSON after all: python-socketio's decoder has the last word
            return original(eio_sid, data)
        sid = manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or not manager.is_connected(sid, "/"):
            return original(eio_sid, data)
        result = handler(sid, *args[1:])
        if end > 1:  # the client asked for an acknowledgement
            ack = "3" + str(int(data[1:end])) + jsonutil.dumps([] if result is None else [result])
            direct = message_queue.direct_send
            if direct is None or not direct(server.eio.sockets.get(eio_sid), "4" + ack, {}):
                server._send_eio_packet(eio_sid, engineio.packet.Packet(engineio.packet.MESSAGE, ack))
        return None

    handle.allynet_original = original
    return handle
