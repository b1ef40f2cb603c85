"""The Socket.IO message queue over Redis, hardened for outages.

With `REDIS_URL` set, every server process publishes each emit on one Redis
pub/sub channel (`SOCKETIO_CHANNEL`) and delivers what the others publish to
its own sockets, so rooms span processes. python-socketio's `RedisManager`
does this, but with a Redis outage (see its `_publish` and
`_redis_listen_with_retries`) it connects without timeouts (an emit may block
as long as the OS lets a connect hang), shares one connection object between
publisher and listener threads, and backs off up to 60 s before the listener
tries again. `QueueManager` keeps its protocol (same channel messages, so it
interoperates with plain RedisManager emitters) and changes only that:

- an emit is delivered to this process's sockets first, then published with
  a short timeout; a failed publish is logged and dropped (other processes
  miss that one event), never raised into the request, and for
  `REDIS_RETRY_SECONDS` afterwards publishing is skipped instead of waiting
  on a dead server each time;
- the listener has its own connection and retries every 0.1 s doubling to
  `SOCKETIO_QUEUE_RETRY_MAX` (2 s), so when Redis is back the queue is back
  within seconds, without a restart; `subscribed` tells whether it listens.
  It has no read timeout (an idle channel is normal: a read timeout there
  makes the stock manager reconnect in a loop) but pings an idle connection
  every 5 s and abandons one silent for 15 s, since a connection that died
  without a reset otherwise blocks forever (python-socketio issue #281,
  Flask-SocketIO issue #1675).

The hot path (issue 9) adds two things on the same channel:

- `publish_encoded` carries an already-encoded Socket.IO packet for one room
  as a plain frame (``#fast1`` header, see `FAST_PREFIX`), not as a JSON
  envelope: the sender encodes the event once for every process, and a
  receiver checks the room against its own rooms before touching the body,
  so another process's party traffic costs a split and a dict lookup, never
  a JSON decode or re-encode. Frames that are not JSON are skipped by stock
  python-socketio listeners.
- a JSON emit from another process to a room with no local socket is dropped
  before python-socketio builds and encodes its packet.
"""
import logging
import threading
import time

import socketio

import engineio.packet

from allynet import jsonutil
from allynet import redis_client

log = logging.getLogger(__name__)

# Pre-encoded room frames: FAST_PREFIX host_id \n room \n skip_sid \n encoded Socket.IO packet.
FAST_PREFIX = b"#fast1\n"


# Set by allynet.eventlet_ws.install() (wsgi.py under eventlet): fn(eio_socket, text, cache) -> bool
# writing a fan-out packet straight to an idle websocket; None: every packet goes through Engine.IO.
direct_send = None


def deliver_encoded(server, room, encoded, skip_sid=None):
    """Send an encoded Socket.IO packet (str) to the sockets of `room` on this process,
    one Engine.IO packet object shared by every recipient; returns how many got it."""
    participants = server.manager.rooms.get("/", {}).get(room)
    if not participants:
        return 0
    eio_pkt = engineio.packet.Packet(engineio.packet.MESSAGE, encoded)
    direct = direct_send
    sockets = server.eio.sockets
    text = "4" + encoded  # the Engine.IO MESSAGE packet, as its writer would encode it
    cache = {}
    sent = 0
    for sid, eio_sid in list(participants.items()):
        if sid != skip_sid:
            if direct is None or not direct(sockets.get(eio_sid), text, cache):
                server._send_eio_packet(eio_sid, eio_pkt)
            sent += 1
    return sent


class QueueManager(socketio.RedisManager):
    """RedisManager with bounded waits, fast reconnects and a separate listener connection."""

    name = "allynet-redis"

    def __init__(self, url, *, channel, write_only=False, timeout=0.5, retry_seconds=1.0,
                 retry_max=2.0, json=None):
        super().__init__(url, channel=channel, write_only=write_only, logger=log, json=json)
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.retry_max = retry_max
        self.publisher = redis_client.make_client(url, timeout=timeout, decode_responses=False)
        self.subscribed = threading.Event()
        self.closed = threading.Event()
        self.published = 0
        self.dropped = 0
        self._down_until = 0.0
        self._publish_down = False
        self._pubsub = None
        # Listener liveness: ping an idle connection this often; reconnect after this much silence.
        self.ping_every = 5.0
        self.stale_after = 15.0

    def _publish(self, data):
        """Publish to the other processes; on an outage log, drop, and never raise or block long."""
        return self._publish_raw(self.json.dumps(data))

    def publish_encoded(self, room, encoded, skip_sid=None):
        """Publish an encoded Socket.IO packet (str) for `room` to the other processes."""
        frame = b"".join((FAST_PREFIX, self.host_id.encode(), b"\n", room.encode(), b"\n",
                          (skip_sid or "").encode(), b"\n", encoded.encode()))
        return self._publish_raw(frame)

    def _publish_raw(self, frame):
        # An outage is logged once, drops the frame and pauses publishing for retry_seconds.
        if self._publish_down and time.monotonic() < self._down_until:
            self.dropped += 1
            return None
        try:
            result = self.publisher.publish(self.channel, frame)
        except Exception as exc:
            self.dropped += 1
            if not self._publish_down:
                log.warning("Socket.IO queue: publish failed (%s: %s); other processes miss events "
                            "until Redis answers", type(exc).__name__, exc)
            self._publish_down = True
            self._down_until = time.monotonic() + self.retry_seconds
            return None
        if self._publish_down:
            log.info("Socket.IO queue: publishing again")
            self._publish_down = False
        self.published += 1
        return result

    def _handle_fast(self, frame):
        try:
            host_id, room, skip_sid, encoded = frame[len(FAST_PREFIX):].split(b"\n", 3)
        except ValueError:
            return
        if host_id.decode() == self.host_id:
            return  # delivered locally before publishing
        room = room.decode()
        if room not in self.rooms.get("/", {}):
            return  # no socket of that room here: the body is never decoded
        deliver_encoded(self.server, room, encoded.decode(), skip_sid.decode() or None)

    def _handle_emit(self, message):
        """Deliver an emit; one from another process to a room with no local socket stops here."""
        room = message.get("room")
        if isinstance(room, str) and message.get("host_id") != self.host_id and \
                room not in self.rooms.get(message.get("namespace") or "/", {}):
            return
        super()._handle_emit(message)

    def _listen(self):
        """Yield payloads from the channel forever, reconnecting quickly after an outage."""
        channel = self.channel.encode("utf-8")
        delay = 0.1
        failed = False
        while not self.closed.is_set():
            pubsub = None
            try:
                client = redis_client.make_client(
                    self.redis_url, timeout=self.timeout, decode_responses=False,
                    socket_timeout=None, socket_keepalive=True, health_check_interval=0)
                pubsub = client.pubsub()
                self._pubsub = pubsub
                pubsub.subscribe(self.channel)
                last_seen = last_ping = time.monotonic()
                while not self.closed.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    now = time.monotonic()
                    if message is None:
                        # A silent Redis (partition, hung server) never closes the socket:
                        # ping when idle, and give up on a connection that stopped answering.
                        if now - last_seen > self.stale_after:
                            raise ConnectionError("no answer from Redis on the queue connection")
                        if now - last_ping > self.ping_every:
                            pubsub.ping()
                            last_ping = now
                        continue
                    last_seen = now
                    if message["type"] == "subscribe":
                        delay = 0.1
                        if failed:
                            log.info("Socket.IO queue: listening again on %s", self.channel)
                            failed = False
                        self.subscribed.set()
                    elif message["type"] == "message" and message["channel"] == channel:
                        yield message["data"]
            except Exception as exc:
                self.subscribed.clear()
                if self.closed.is_set():
                    break
                if not failed:
                    log.warning("Socket.IO queue: listener lost Redis (%s: %s); retrying",
                                type(exc).__name__, exc)
                failed = True
                self.closed.wait(delay)
                delay = min(delay * 2, self.retry_max)
            finally:
                self.subscribed.clear()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    def _thread(self):
        """Deliver what other processes publish (the base loop, minus its error log on close)."""
        for message in self._listen():
            if isinstance(message, bytes) and message.startswith(FAST_PREFIX):
                try:
                    self._handle_fast(message)
                except Exception:
                    log.exception("Socket.IO queue: handling a pre-encoded frame failed")
                continue
            try:
                data = message if isinstance(message, dict) else self.json.loads(message)
            except Exception:
                continue
            if not isinstance(data, dict) or "method" not in data:
                continue
            try:
                if data["method"] == "callback":
                    self._handle_callback(data)
                elif data.get("host_id") != self.host_id:
                    handler = getattr(self, f"_handle_{data['method']}", None)
                    if data["method"] in ("emit", "disconnect", "enter_room", "leave_room", "close_room"):
                        handler(data)
            except Exception:
                log.exception("Socket.IO queue: handling a %s message failed", data.get("method"))

    def close(self):
        """Stop listening and release connections (tests, shutdown)."""
        self.closed.set()
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                pass
        self.publisher.close()


def make_client_manager(config):
    """The queue for a server from config, or None without `REDIS_URL`."""
    url = config.get("REDIS_URL")
    if not url:
        return None
    return QueueManager(url, channel=config["SOCKETIO_CHANNEL"], timeout=config["REDIS_SOCKET_TIMEOUT"],
                        retry_seconds=config["REDIS_RETRY_SECONDS"],
                        retry_max=config["SOCKETIO_QUEUE_RETRY_MAX"])


def start_listening(sio, timeout=None):
    """Start the queue listener of a bound SocketIO now (it otherwise starts on the first
    connection); with `timeout`, wait that long for the subscription. True when subscribed."""
    server = sio.server
    manager = getattr(server, "manager", None)
    if not isinstance(manager, QueueManager):
        return False
    if not server.manager_initialized:
        server.manager_initialized = True
        manager.initialize()
    if timeout is None:
        return manager.subscribed.is_set()
    return manager.subscribed.wait(timeout)


def queue_of(sio):
    """The QueueManager of a bound SocketIO, or None."""
    manager = getattr(getattr(sio, "server", None), "manager", None)
    return manager if isinstance(manager, QueueManager) else None


def write_only(url, *, channel, timeout=0.5, retry_seconds=1.0):
    """A publish-only queue for code outside any server (scripts, workers)."""
    return QueueManager(url, channel=channel, write_only=True, timeout=timeout,
                        retry_seconds=retry_seconds, json=jsonutil)
