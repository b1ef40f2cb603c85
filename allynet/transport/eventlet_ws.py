"""Websocket speed-ups under eventlet (applied by `transport.install` in eventlet mode only).

`apply_mask` unmasks client frames on whole integers; `BufferedReads` answers eventlet's frame
parser from one large `recv`, refilled through `PersistentReader` (a read listener that stays
registered with the hub); `fast_wait` decodes a small whole text frame in one step and
`engineio_dispatch` hands its MESSAGE straight to the server's handler; `send_direct` writes a
packet to an idle websocket instead of through Engine.IO's writer queue; TCP_NODELAY on
websockets; `limited_recv_frame` ends a session whose message is over SOCKET_MAX_FRAME_BYTES
with `session:ended frame_too_large`. Why each one, and when each falls back to eventlet's own
path: docs/architecture.md ("eventlet websockets"). Under eventlet's monkey patch
`socket.socket` is the green wrapper: checks for a plain socket use `_socket.socket`.
"""
import _socket
import socket
import ssl
import struct
from time import monotonic as _monotonic

from greenlet import getcurrent as _getcurrent

from allynet.transport.wire import session_ended_message


def apply_mask(data, mask, length=None, offset=0):
    """XOR the first `length` bytes of `data` with the 4-byte `mask` rotated by `offset`."""
    if length is None:
        length = len(data)
    if length <= 0:
        return b""
    if offset % 4 == 0 and len(mask) == 4:
        key = bytes(mask)  # the common case (a whole frame): no rotation
    else:
        key = bytes(mask[(offset + i) % 4] for i in range(4))
    key *= length // 4 + 1
    value = int.from_bytes(bytes(data[:length]), "little") ^ int.from_bytes(key[:length], "little")
    return value.to_bytes(length, "little")


def text_frame(text):
    """An unmasked, uncompressed, final websocket text frame carrying `text` (server to client)."""
    payload = text.encode("utf-8")
    length = len(payload)
    if length > 65535:
        header = struct.pack("!BBQ", 0x81, 127, length)
    elif length > 125:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BB", 0x81, length)
    return header + payload


_UNKNOWN = object()


def _direct_fd(ws):
    """The plain socket that direct writes may use for `ws`, or None (not RFC 6455, compressed,
    TLS in this process). Fixed once the handshake is done, so worked out once per websocket."""
    extensions = getattr(ws, "extensions", None)
    if extensions is None or "permessage-deflate" in extensions:
        return None  # not RFC 6455, or a compressed socket: its own frames
    fd = getattr(ws, "_allynet_fd", None) or ws.socket.fd
    if isinstance(fd, ssl.SSLSocket):
        return None  # TLS in this process (normally it ends at the proxy): records, not bytes
    return fd


def send_direct(eio_socket, text, cache, spawn=None):
    """Write Engine.IO packet `text` to `eio_socket`'s websocket now, if that cannot reorder or
    block (see the module docstring); True when sent or handed to a finishing greenlet, False
    when the caller must queue it. `cache` (a dict shared by one fan-out) holds the frame.

    Nothing here yields to the hub, so under eventlet no other greenlet runs between the checks
    and the write: a free send lock only has to be taken when a finishing greenlet needs it."""
    ws = getattr(eio_socket, "_allynet_ws", None)
    if ws is None or ws.websocket_closed or eio_socket.closed or not eio_socket.upgraded or \
            eio_socket.upgrading:
        return False
    queue = eio_socket.queue
    # qsize() and getting() of eventlet's Queue, read directly (per recipient of every fan-out).
    if queue.queue or not queue.getters:
        return False  # the writer has (or is sending) packets: queue behind them
    fd = ws.__dict__.get("_allynet_direct_fd", _UNKNOWN)
    if fd is _UNKNOWN:
        fd = ws._allynet_direct_fd = _direct_fd(ws)
    if fd is None:
        return False
    lock = ws._sendlock
    if lock.counter <= 0:  # Semaphore.locked()
        return False  # a partial write is being finished
    frame = cache.get("frame")
    if frame is None:
        frame = cache["frame"] = text_frame(text)
    try:
        sent = fd.send(frame)
    except OSError:
        return False  # would block: queue it; broken: the queued path and the reader deal with it
    if sent >= len(frame):
        return True
    if sent <= 0:
        return False
    rest = frame[sent:]
    lock.acquire()  # free (checked above, nothing ran since): the writer now waits for the rest

    def finish():
        try:
            ws.socket.sendall(rest)
        except Exception:
            pass  # the reader sees the broken connection
        finally:
            lock.release()

    if spawn is None:
        from eventlet import spawn_n as spawn
    spawn(finish)
    return True


class BufferedReads:
    """A websocket's socket whose reads come from one large `recv` at a time.

    eventlet's frame parser reads a client frame in three or four `recv` calls
    (2-byte header, extended length, mask, payload), each a syscall and a
    trip through the green socket. This takes whatever the kernel holds (up
    to `size` bytes) in one call and answers the parser's small reads from
    it; a read blocks (through the green socket, timeouts unchanged) only when
    the buffer is empty, and returns no more than asked, so the parser sees
    the same bytes in the same order. Everything else is the socket's own.

    With `persistent` (an eventlet green socket: wsgi.py under eventlet), an
    empty buffer is refilled through `PersistentReader` instead of the green
    socket's own `recv`.
    """

    def __init__(self, sock, size=65536, persistent=False):
        self._sock = sock
        self._size = size
        self._buffer = b""
        self._pos = 0
        self._reader = PersistentReader.of(sock) if persistent else None

    def receive(self, size):
        """One read of at most `size` bytes: what the kernel holds, b"" when the peer has closed."""
        reader = self._reader
        if reader is None:
            return self._sock.recv(size)
        return reader.recv(size)

    def release(self):
        """The websocket is done: stop watching its descriptor."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.release()

    def recv(self, bufsize, flags=0):
        if flags or bufsize <= 0:
            return self._sock.recv(bufsize, flags)
        pos = self._pos
        if pos >= len(self._buffer):
            data = self.receive(max(bufsize, self._size))
            if len(data) <= bufsize:
                return data
            self._buffer, pos = data, 0
        end = pos + bufsize
        self._pos = end
        return self._buffer[pos:end]

    def __getattr__(self, name):
        return getattr(self._sock, name)


class PersistentReader:
    """Reads of one eventlet green socket through a read listener that stays registered.

    A green socket's `recv` tries the read (on a 1 Hz rider that is an empty
    `recv` syscall), then registers the descriptor with the hub's epoll (an
    `epoll_ctl`), schedules a timer for the socket timeout, switches to the
    hub, and on wake-up unregisters (another `epoll_ctl`), cancels the timer
    and reads: three syscalls and a few dozen Python calls per frame besides
    the read itself. Here the listener is added once and left in place while
    frames keep coming: a wait is a switch to the hub, the wake-up a switch
    back, then one `recv` that finds the data. Same behaviour as the green
    socket's `recv`:

    - the socket timeout (engine.io sets ping interval + ping timeout) still
      raises `socket.timeout` after that long without data, from one timer
      per socket that re-arms itself rather than one per read;
    - a peer that closed or reset reads as b""; other errors raise;
    - a descriptor eventlet declares obsolete (closed and reused) raises
      EOFError in the waiting reader, as eventlet's IOClosed handling does;
    - when the descriptor turns readable while the reader is busy elsewhere
      (blocked on another socket, say), the listener is removed, so the hub
      never spins on level-triggered readiness, and added again at the next
      wait;
    - a wake-up that finds nothing to read (spurious) just waits again.

    Only the greenlet that reads the websocket may use it (eventlet allows one
    reader per descriptor anyway); `release` removes the listener.
    """

    # eventlet's own IOClosed and errno sets of a green recv, set by the first reader (eventlet
    # loads lazily here): a read fails, blocks or ends exactly as the green socket's would.
    IOClosed = None
    SOCKET_CLOSED = SOCKET_BLOCKING = frozenset()

    __slots__ = ("_green", "_raw", "_fileno", "_hub", "_listener", "_waiter", "_since", "_timer",
                 "_timeout")

    @classmethod
    def of(cls, sock):
        """A reader for eventlet green socket `sock`, or None for anything else."""
        raw = getattr(sock, "fd", None)
        if not isinstance(raw, _socket.socket) or not hasattr(sock, "_mark_as_closed") or \
                getattr(sock, "act_non_blocking", True):
            return None
        return cls(sock, raw)

    def __init__(self, green, raw):
        from eventlet import hubs
        from eventlet.greenio import base

        cls = PersistentReader
        cls.IOClosed, cls.SOCKET_CLOSED, cls.SOCKET_BLOCKING = hubs.IOClosed, base.SOCKET_CLOSED, base.SOCKET_BLOCKING
        self._green = green
        self._raw = raw
        self._fileno = raw.fileno()
        self._hub = hubs.get_hub()
        self._listener = None
        self._waiter = None
        self._since = 0.0
        self._timer = None
        self._timeout = None

    def recv(self, size):
        green = self._green
        timeout = green.gettimeout()
        if timeout is not None and timeout <= 0:
            return green.recv(size)  # a non-blocking green socket: nothing to wait for
        while True:
            if green._closed:
                raise EOFError()
            if self._wait(timeout):
                try:
                    return self._raw.recv(size)
                except OSError as exc:
                    if exc.errno in self.SOCKET_CLOSED:
                        return b""
                    if exc.errno not in self.SOCKET_BLOCKING:
                        raise
                    # readable, yet nothing there (spurious): wait again

    def _wait(self, timeout):
        """Park the calling greenlet until the descriptor is readable; True then (False: woken
        for something else). Raises socket.timeout after `timeout` seconds, EOFError when the
        descriptor became obsolete."""
        hub = self._hub
        if self._listener is None:
            self._listener = hub.add(hub.READ, self._fileno, self._ready, self._throw,
                                     self._green._mark_as_closed)
        self._timeout = timeout
        if timeout is not None:
            self._since = _monotonic()
            if self._timer is None:
                self._timer = hub.schedule_call_global(timeout, self._expire)
        self._waiter = _getcurrent()
        try:
            return hub.switch() is _READY
        except PersistentReader.IOClosed:
            self._listener = None
            self._green._mark_as_closed()
            raise EOFError()
        finally:
            self._waiter = None

    def _ready(self, fileno):
        """The hub's callback: readable."""
        waiter = self._waiter
        if waiter is None:
            # Nobody waits here now: stop polling the descriptor until the next wait.
            listener, self._listener = self._listener, None
            if listener is not None:
                self._hub.remove(listener)
            return
        self._waiter = None
        waiter.switch(_READY)

    def _throw(self, exc):
        """The hub's throwback: the descriptor was closed and reused (listener already removed)."""
        self._listener = None
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.throw(exc)

    def _expire(self):
        """The timer: raise socket.timeout in a reader that has waited `timeout` seconds."""
        self._timer = None
        waiter, timeout = self._waiter, self._timeout
        if waiter is None or timeout is None:
            return  # not waiting now: the next wait arms the timer again
        left = self._since + timeout - _monotonic()
        if left > 0:
            self._timer = self._hub.schedule_call_global(left, self._expire)
            return
        self._waiter = None
        waiter.throw(socket.timeout("timed out"))

    def release(self):
        """Remove the listener and the timer (the reader is done with the socket)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            self._hub.remove(listener)
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


_READY = object()  # what the hub's callback hands a parked reader (anything else: spurious)


def fast_wait(original):
    """RFC6455WebSocket.wait reading a whole small text frame from the BufferedReads buffer in one
    step when it is there (see the module docstring), else eventlet's own parser (`original`).

    A websocket of an Engine.IO socket (`_keep_websocket`) also hands the MESSAGE packets it reads
    straight to the Engine.IO server's message handler (`engineio_dispatch`) and reads on, instead
    of returning each to Engine.IO's read loop."""

    def one_frame(self):
        sock = self.socket
        if type(sock) is not BufferedReads or self.websocket_closed or self.iterator.gi_frame is None:
            return original(self)
        if sock._pos >= len(sock._buffer):
            try:
                data = sock.receive(sock._size)
            except Exception:
                # What eventlet's frame generator does with a failed read: close, end, raise.
                self.iterator.close()
                self.close(close_data=(1011, "Internal Server Error"))
                raise
            if not data:
                self.iterator.close()  # the peer closed: this and every later wait return None
                return None
            sock._buffer, sock._pos = data, 0
        buffer, pos = sock._buffer, sock._pos
        end = len(buffer)
        # FIN + text opcode, no RSV bits; masked (every client frame is); no 64-bit length.
        if end - pos < 6 or buffer[pos] != 0x81 or buffer[pos + 1] < 0x80 or buffer[pos + 1] == 0xFF:
            return original(self)
        length = buffer[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            length = (buffer[pos + 2] << 8) | buffer[pos + 3]
            start = pos + 4
        stop = start + 4 + length
        if stop > end or length > self.max_frame_length:
            return original(self)
        try:
            text = apply_mask(buffer[start + 4:stop], buffer[start:start + 4]).decode("utf-8")
        except UnicodeDecodeError:
            return original(self)  # eventlet closes with 1007
        sock._pos = stop
        return text

    def wait(self):
        dispatch = self.__dict__.get("_allynet_dispatch")
        while True:
            message = one_frame(self)
            if dispatch is None or type(message) is not str or not dispatch(message):
                return message

    wait.allynet_original = original
    return wait


def engineio_dispatch(eio_socket):
    """fn(text) -> bool for the websocket of Engine.IO socket `eio_socket`: a MESSAGE packet
    (``4`` + a Socket.IO packet) goes to the server's message handler the way Engine.IO's read
    loop sends it there (`Socket.receive` -> `_trigger_event`, not async: same handler, same
    argument, an exception logged and swallowed) and True comes back; anything else (the upgrade
    handshake, pongs, close, a packet Engine.IO would JSON-decode or refuse as too large, async
    handlers) is left to Engine.IO: False."""
    server = getattr(eio_socket, "server", None)
    if server is None:  # not an Engine.IO socket
        return None

    def dispatch(text):
        if len(text) < 2 or text[0] != "4" or not "0" <= text[1] <= "9" or server.async_handlers or \
                not eio_socket.upgraded or eio_socket.upgrading or len(text) > server.max_http_buffer_size:
            return False
        handler = server.handlers.get("message")
        if handler is not None:
            try:
                handler(eio_socket.sid, text[1:])
            except:  # noqa: E722 - Engine.IO's _trigger_event catches everything here too
                server.logger.exception("message handler error")
        return True

    return dispatch


# TCP_NODELAY on websocket connections (install(nodelay=...), SOCKETIO_TCP_NODELAY).
NODELAY = True


def _keep_websocket(original):
    def _websocket_handler(self, ws):
        self._allynet_ws = ws
        if not isinstance(ws.socket, BufferedReads):
            raw = getattr(ws.socket, "fd", None)
            # _socket.socket: under eventlet's monkey patch socket.socket is the green wrapper,
            # and the raw socket inside it is not one of those.
            if NODELAY and isinstance(raw, _socket.socket) and raw.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            ws._allynet_fd = raw
            ws.socket = BufferedReads(ws.socket, persistent=True)
        ws._allynet_dispatch = engineio_dispatch(self)
        ws._allynet_engineio = self  # an Engine.IO websocket: told why when its frame is too large
        try:
            return original(self, ws)
        finally:
            self._allynet_ws = None
            ws._allynet_dispatch = ws._allynet_engineio = None
            ws.socket.release()

    _websocket_handler.allynet_original = original
    return _websocket_handler


def _frame_too_large(ws):
    """Tell the client of an Engine.IO websocket why it is about to be closed (best effort)."""
    if ws.__dict__.get("_allynet_engineio") is None or ws.websocket_closed:
        return
    try:
        ws.send(session_ended_message("frame_too_large", max_bytes=ws.max_frame_length))
    except OSError:
        pass  # the client is gone already


def limited_recv_frame(original):
    """RFC6455WebSocket._recv_frame enforcing `max_frame_length` on whole messages too, and sending
    `session:ended` before a websocket is closed for a frame or message over it (see item 9)."""
    from eventlet.websocket import FailedConnectionError

    def _recv_frame(self, message=None):
        try:
            received = original(self, message=message)
        except FailedConnectionError as exc:
            if exc.status == 1009:
                _frame_too_large(self)
            raise
        # One frame is bounded by eventlet's own check; only a message of several can add up. The
        # running total is kept on the message, so a stream of tiny fragments costs O(1) each.
        chunks = received.data
        if len(chunks) > 1 and not received.opcode & 8:
            state = received.__dict__
            counted = state.get("_allynet_counted", 0)
            state["_allynet_size"] = size = state.get("_allynet_size", 0) + sum(map(len, chunks[counted:]))
            state["_allynet_counted"] = len(chunks)
            if size <= self.max_frame_length:
                return received
            _frame_too_large(self)
            raise FailedConnectionError(1009, "Incoming message is above the length limit of {} bytes.".format(
                self.max_frame_length))
        return received

    _recv_frame.allynet_original = original
    return _recv_frame


def install(nodelay=True):
    """Install the eventlet websocket patches (idempotent); `nodelay`: TCP_NODELAY on websockets."""
    global NODELAY
    NODELAY = bool(nodelay)
    from engineio import socket as eio_socket
    from eventlet import websocket

    websocket.RFC6455WebSocket._apply_mask = staticmethod(apply_mask)
    if not hasattr(websocket.RFC6455WebSocket.wait, "allynet_original"):
        websocket.RFC6455WebSocket.wait = fast_wait(websocket.RFC6455WebSocket.wait)
    if not hasattr(websocket.RFC6455WebSocket._recv_frame, "allynet_original"):
        websocket.RFC6455WebSocket._recv_frame = limited_recv_frame(websocket.RFC6455WebSocket._recv_frame)
    if not hasattr(eio_socket.Socket._websocket_handler, "allynet_original"):
        eio_socket.Socket._websocket_handler = _keep_websocket(eio_socket.Socket._websocket_handler)
