"""Client events in: the bare-event fast path and the malformed-packet guards.

A bare event (a `socket_event` with `request_context=False`: `party:update`) is decoded once from
its Engine.IO message and answered with its ACK here, in an app context set straight into
Flask's context variable, instead of through python-socketio's packet objects and
Flask-SocketIO's request context. Every other packet goes to python-socketio's own dispatch; one
it cannot decode is dropped with one log line and the connection stays.
"""
import logging

import engineio.packet
from flask import globals as flask_globals

from allynet import jsonutil
from allynet.transport.eventlet_ws import send_direct
from allynet.transport.wire import ACK_MESSAGE, event_prefix

log = logging.getLogger(__name__)

# What python-socketio raises while decoding and dispatching a packet a client got wrong (bad JSON,
# an unknown packet type, an EVENT without a name...). Handlers registered here never raise (they
# ack every failure), so at this level these errors come from the client's bytes.
MALFORMED_PACKET_ERRORS = (ValueError, TypeError, IndexError, KeyError)


def install(app, server, bare, args=()):
    """Route `server`'s Engine.IO messages: `bare` (event name -> fn(sid, payload, *args)) through
    the fast path when handlers run in the reader, the rest guarded against malformed packets."""
    handlers = {name: in_app_context(app, run, *args) for name, run in bare.items()}
    for name, handler in handlers.items():  # python-socketio's own dispatch (binary, async) finds them
        server.on(name, handler, namespace="/")
    if handlers and not server.async_handlers:
        # Engine.IO calls it for every message; Flask-SocketIO's test client calls the attribute.
        server._handle_eio_message = bare_event_dispatch(server, handlers)
    else:
        server._handle_eio_message = drop_malformed_packets(server._handle_eio_message)
    server.eio.on("message", server._handle_eio_message)
    drop_malformed_polling_payloads()


def install_plain(app, server, bare, args=()):
    """Plain mode: each bare event is an ordinary python-socketio handler in an app context."""
    for name, run in bare.items():
        server.on(name, plain_app_context(app, run, *args), namespace="/")


def plain_app_context(app, run, connections=None, sessions=None):
    """`run(sid, payload, connections, sessions)` in an app context pushed the public way."""

    def bare(sid, payload=None, *extra):
        with app.app_context():
            return run(sid, payload, connections, sessions)

    return bare


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


def in_app_context(app, run, connections=None, sessions=None):
    """`run(sid, payload, connections, sessions)` in an app context of `app`: one shared AppContext
    object set straight into Flask's context variable (bare handlers keep nothing in `g`; the app
    has no teardown_appcontext functions or context signals to honour), or Flask's own push where
    that variable is gone."""
    context_var = getattr(flask_globals, "_cv_app", None)
    shared = app.app_context()

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


def bare_event_dispatch(server, bare):
    """Engine.IO `message` handler: a plain Socket.IO EVENT for a bare event on "/"
    (`2<id>["name",...]`) is decoded once and answered with its ACK (`3<id>[ack]`) here;
    every other packet goes to python-socketio's own dispatch, which would do the same
    with packet objects in between (a malformed one is logged in one line and dropped)."""
    original = drop_malformed_packets(server._handle_eio_message)
    prefixes = tuple((event_prefix(name), handler) for name, handler in bare.items())
    manager = server.manager

    def handle(eio_sid, data):
        if type(data) is not str or not data.startswith("2") or eio_sid in server._binary_packet:  # wire.EVENT
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
            text = ACK_MESSAGE + str(int(data[1:end])) + jsonutil.dumps([] if result is None else [result])
            if not send_direct(server.eio.sockets.get(eio_sid), text, {}):
                server._send_eio_packet(eio_sid, engineio.packet.Packet(engineio.packet.MESSAGE, text[1:]))
        return None

    handle.allynet_original = original
    return handle
