"""The Socket.IO message queue over Redis, hardened for outages (`QueueManager`).

With `REDIS_URL` every process publishes each emit on one pub/sub channel (`SOCKETIO_CHANNEL`)
and delivers what the others publish to its own sockets. Same messages as python-socketio's
RedisManager, with bounded waits: a publish has a short timeout and an outage drops (and logs)
events instead of blocking; the listener has its own connection, pings when idle and
reconnects within seconds. Hot path: `publish_encoded` carries a pre-encoded packet as a
``#fast1`` frame, published for a party room only while another process has a member there
(Redis set per room + announcements). Also: `enter_room_of` and `publish_end_sessions` across
processes. The whole story: docs/architecture.md ("The Redis queue").
"""
import logging
import threading
import time

import socketio

from allynet import jsonutil, redis_client
from allynet.transport.delivery import (deliver_encoded, deliver_plain, enter_room_of, flush_pending,
                                        leave_room_of)
from allynet.transport.wire import SOURCE_EVENT

log = logging.getLogger(__name__)

# Pre-encoded room frames: FAST_PREFIX host_id \n room \n skip_sid \n encoded Socket.IO packet.
FAST_PREFIX = b"#fast1\n"

# Routed rooms: a process publishes their pre-encoded traffic only when another process has a
# socket in the room, as recorded in the Redis set <channel>:room-hosts:<room> (host ids).
ROUTED_PREFIXES = ("party:",)
ROOM_HOSTS_METHOD = "allynet_room_hosts"  # "a process's set changed": the others drop their cache
ROOM_HOSTS_TTL_SECONDS = 24 * 3600  # a crashed process's entries only cost extra publishes; they age out
# "Every socket in room A, on every process, enters room B" (a user's connections joining an SOS room).
ENTER_ROOM_OF_METHOD = "allynet_enter_room_of"
LEAVE_ROOM_OF_METHOD = "allynet_leave_room_of"
END_SESSIONS_METHOD = "allynet_end_sessions"  # "end these sockets of a user" (allynet/socket_sessions.py)


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
        # Routed rooms (see publish_encoded): room -> (expires at, another process has a socket there).
        self._remote = {}
        self.remote_cache_seconds = 30.0
        self.unsure_cache_seconds = 2.0
        self._announcements = 0  # room-hosts announcements heard (an answer racing one is kept briefly)
        self.skipped = 0

    def _publish(self, data):
        """Publish to the other processes; on an outage log, drop, and never raise or block long."""
        return self._publish_raw(self.json.dumps(data))

    def enter_room_of(self, source, room):
        """Every socket in room `source`, here and on every other process, enters `room`."""
        if getattr(self, "server", None) is not None and not self.write_only:
            enter_room_of(self.server, source, room)
        self._publish({"method": ENTER_ROOM_OF_METHOD, "source": source, "room": room, "host_id": self.host_id})

    def _handle_allynet_enter_room_of(self, message):
        source, room = message.get("source"), message.get("room")
        if isinstance(source, str) and isinstance(room, str):
            enter_room_of(self.server, source, room)

    def leave_room_of(self, source, room):
        """Every socket in room `source`, here and on every other process, leaves `room`."""
        if getattr(self, "server", None) is not None and not self.write_only:
            leave_room_of(self.server, source, room)
        self._publish({"method": LEAVE_ROOM_OF_METHOD, "source": source, "room": room, "host_id": self.host_id})

    def _handle_allynet_leave_room_of(self, message):
        source, room = message.get("source"), message.get("room")
        if isinstance(source, str) and isinstance(room, str):
            leave_room_of(self.server, source, room)

    # ---- routed rooms: publish a party's traffic only when another process has a member there ----

    def _routed(self, namespace, room):
        return namespace in (None, "/") and isinstance(room, str) and room.startswith(ROUTED_PREFIXES)

    def _hosts_key(self, room):
        return f"{self.channel}:room-hosts:{room}"

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        first = self._routed(namespace, room) and room not in self.rooms.get("/", {})
        result = super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if first:
            self._announce(room, present=True)
        return result

    def basic_leave_room(self, sid, namespace, room):
        was_here = self._routed(namespace, room) and room in self.rooms.get("/", {})
        result = super().basic_leave_room(sid, namespace, room)
        if was_here and room not in self.rooms.get("/", {}):
            self._announce(room, present=False)
        return result

    def _announce(self, room, *, present):
        """Record in Redis whether this process has a socket in `room`, and tell the others."""
        if self.write_only:
            return
        try:
            with self.publisher.pipeline(transaction=False) as pipe:
                if present:
                    pipe.sadd(self._hosts_key(room), self.host_id)
                    pipe.expire(self._hosts_key(room), ROOM_HOSTS_TTL_SECONDS)
                else:
                    pipe.srem(self._hosts_key(room), self.host_id)
                pipe.execute()
        except Exception as exc:  # the others publish to a room they cannot check (fail open)
            log.debug("Socket.IO queue: room hosts of %s not recorded (%s)", room, exc)
        self._publish({"method": ROOM_HOSTS_METHOD, "room": room, "host_id": self.host_id})

    def _announce_all(self):
        """After (re)subscribing, Redis may have restarted empty: record every local routed room
        again and have every process forget what it cached."""
        rooms = [room for room in list(self.rooms.get("/", {})) if self._routed("/", room)]
        if rooms:
            try:
                with self.publisher.pipeline(transaction=False) as pipe:
                    for room in rooms:
                        pipe.sadd(self._hosts_key(room), self.host_id)
                        pipe.expire(self._hosts_key(room), ROOM_HOSTS_TTL_SECONDS)
                    pipe.execute()
            except Exception as exc:
                log.debug("Socket.IO queue: room hosts not recorded (%s)", exc)
        self._announcements += 1
        self._remote.clear()
        self._publish({"method": ROOM_HOSTS_METHOD, "room": None, "host_id": self.host_id})

    def has_remote_members(self, room):
        """Whether another process has a socket in routed `room` (cached; True when unsure)."""
        now = time.monotonic()
        entry = self._remote.get(room)
        if entry is not None and entry[0] > now:
            return entry[1]
        lifetime = self.remote_cache_seconds
        announcements = self._announcements
        try:
            hosts = self.publisher.smembers(self._hosts_key(room))
            remote = any(host != self.host_id.encode() for host in hosts)
        except Exception:
            remote = True  # Redis unsure: publish (and drop on an outage) rather than skip
            lifetime = self.unsure_cache_seconds
        if self._announcements != announcements:
            # An announcement arrived while Redis answered: the answer may predate it.
            lifetime = self.unsure_cache_seconds
        self._remote[room] = (now + lifetime, remote)
        return remote

    def _handle_room_hosts(self, message):
        self._announcements += 1
        room = message.get("room")
        if room is None:
            self._remote.clear()
        else:
            self._remote.pop(room, None)

    def publish_encoded(self, room, encoded, skip_sid=None):
        """Publish an encoded Socket.IO packet (str) for `room` to the other processes; for a
        routed room (a party) only when another process has a socket in it."""
        if self._routed("/", room) and not self.has_remote_members(room):
            self.skipped += 1
            return None
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

    # ---- ended sessions: every process ends its own sockets of a user (allynet/socket_sessions.py) ----

    on_end_sessions = None  # fn(message), set by the app that owns the server

    def publish_end_sessions(self, message):
        """Ask the other processes to end a user's sockets: `message` has user_id, reason, family, jti."""
        return self._publish({**message, "method": END_SESSIONS_METHOD, "host_id": self.host_id})

    def _handle_allynet_end_sessions(self, message):
        handler = self.on_end_sessions
        if handler is not None:
            handler(message)

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
        if not getattr(self.server, "allynet_fast", True):  # plain mode: batching without the patch
            data = message.get("data")
            if message.get("event") == SOURCE_EVENT and not message.get("binary") and \
                    isinstance(data, list) and len(data) == 1 and message.get("callback") is None:
                return deliver_plain(self.server, room, SOURCE_EVENT, data[0], message.get("skip_sid"))
            flush_pending(self.server, room)
        super()._handle_emit(message)

    def publish_emit(self, event, data, room, skip_sid=None):
        """Publish an emit already delivered here to the other processes (the stock message)."""
        self._publish({"method": "emit", "event": event, "data": [data], "binary": False, "namespace": "/",
                       "room": room, "skip_sid": skip_sid, "callback": None, "host_id": self.host_id})

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
                        self._announce_all()
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
                elif data["method"] == ROOM_HOSTS_METHOD:
                    if data.get("host_id") != self.host_id:
                        self._handle_room_hosts(data)
                elif data["method"] == END_SESSIONS_METHOD:
                    if data.get("host_id") != self.host_id:
                        self._handle_allynet_end_sessions(data)
                elif data.get("host_id") != self.host_id:
                    handler = getattr(self, f"_handle_{data['method']}", None)
                    if data["method"] in ("emit", "disconnect", "enter_room", "leave_room", "close_room",
                                          ENTER_ROOM_OF_METHOD, LEAVE_ROOM_OF_METHOD):
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
