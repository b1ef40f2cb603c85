"""The real-time transport: everything that reaches below python-socketio's, Engine.IO's,
eventlet's and Flask's public API lives in this package, and only here.

`install(app, sio)` binds the Socket.IO server and applies every patch (PATCHES.md lists each
private name and the test that guards it), after checking that the installed libraries are
the versions the patches were written against. `ALLYNET_TRANSPORT=plain` runs Flask-SocketIO's
plain path instead: no patches, no private names, the same contract, slower. Services reach it
through allynet/realtime.py. The request and live paths: docs/architecture.md.
"""
import importlib.metadata

from allynet import jsonutil
from allynet.transport import batching, dispatch
from allynet.transport.delivery import UNSET, in_room, local_members, relay  # noqa: F401
from allynet.transport.delivery import (batching_of, before_emit, direct_send_packet, enter_room_of,  # noqa: F401
                                        leave_room_of)
from allynet.transport.queue import make_client_manager, queue_of, start_listening, write_only  # noqa: F401

MODES = ("fast", "plain")

# The versions the patches were written against: requirements.txt's pins (a test keeps them equal).
PINNED = {
    "eventlet": "0.41.3",
    "python-engineio": "4.15.1",
    "python-socketio": "5.18.1",
    "Flask": "3.1.3",
    "Flask-SocketIO": "5.7.0",
}


class TransportVersionError(RuntimeError):
    """An installed library is not the version the transport's patches were written against."""


# The lookup that last confirmed the pins: installed versions do not change under a running process,
# and reading package metadata costs milliseconds per app.
_confirmed_by = None


def check_versions():
    """Raise TransportVersionError naming the first library whose installed version is not pinned."""
    global _confirmed_by
    version = importlib.metadata.version
    if version is _confirmed_by:
        return
    for package, pinned in PINNED.items():
        try:
            installed = version(package)
        except importlib.metadata.PackageNotFoundError:
            installed = "none"
        if installed != pinned:
            raise TransportVersionError(
                f"allynet.transport patches {package} {pinned}, but {package} {installed} is installed: "
                f"pin {package}=={pinned}, update allynet/transport (see its PATCHES.md), or run with "
                f"ALLYNET_TRANSPORT=plain (no patches)")
    _confirmed_by = version


def mode_of(config):
    """`fast` (the patched transport, default) or `plain`, from ALLYNET_TRANSPORT."""
    mode = config.get("ALLYNET_TRANSPORT") or "fast"
    if mode not in MODES:
        raise ValueError(f"ALLYNET_TRANSPORT={mode!r} must be one of {MODES}")
    return mode


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


def install(app, sio, bare_events=None, bare_args=()):
    """Bind Flask-SocketIO `sio` to `app` (Redis queue, batching) and, in fast mode, apply every
    patch. `bare_events`: event name -> fn(sid, payload, *bare_args), run without a request context."""
    fast = mode_of(app.config) == "fast"
    if fast:
        check_versions()
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
        # greenlet/thread per event (a spawn per party:update was measurable).
        async_handlers=app.config.get("SOCKETIO_ASYNC_HANDLERS", True),
        # The largest Socket.IO frame read and parsed: then each event's own limits answer in its
        # ack (a 200 KB party:message is a validation_error); over it the websocket is closed.
        max_http_buffer_size=app.config["SOCKET_MAX_FRAME_BYTES"],
        logger=False,
        engineio_logger=False,
    )
    server = sio.server
    server.allynet_fast = fast
    server.allynet_queue = queue_of(sio)
    batching.install(server, app.config["PARTY_BATCH_MS"] / 1000.0, plain=not fast)
    if not app.config.get("SOCKETIO_WS_COMPRESSION", True):
        app.wsgi_app = RefuseWebSocketCompression(app.wsgi_app)
    if not fast:
        dispatch.install_plain(app, server, bare_events or {}, bare_args)
        return
    if app.config["SOCKETIO_ASYNC_MODE"] == "eventlet":
        import socketio

        from allynet.transport import eventlet_ws

        eventlet_ws.install(nodelay=app.config.get("SOCKETIO_TCP_NODELAY", True))
        if not hasattr(socketio.Server._send_packet, "allynet_original"):
            socketio.Server._send_packet = direct_send_packet(socketio.Server._send_packet)
    dispatch.install(app, server, bare_events or {}, bare_args)
