"""Batched party positions: one `party:updates` frame per tick for sockets that opt in.

After `party:batch {enabled: true}` a socket gets, at most once per `PARTY_BATCH_MS`, one
`party:updates {"party_id", "updates": [<party:update payload>, ...]}` with every position
relayed to it since the last, oldest first, instead of one `party:update` each. Any other
event for it (and under eventlet the acks of its other events) first sends what is pending.
State is per Socket.IO server (`install` sets `server.allynet_batcher`); the tick is a
background task started with the first opt-in, `flush()` one tick (tests call it). In plain
mode batches go out through python-socketio's `emit` and only this process's positions are
batched. Why and what it saves: docs/architecture.md ("Batching").
"""
import logging
import threading

import engineio.packet

from allynet.transport.eventlet_ws import send_direct
from allynet.transport.wire import BATCH_EVENT, ROOM_PREFIX, batch_message

log = logging.getLogger(__name__)


class Batcher:
    """The opted-in sockets of one Socket.IO server and what is pending for each."""

    def __init__(self, server, interval, plain=False):
        self.server = server
        self.interval = interval
        self.plain = plain  # items are payload objects, sent through python-socketio's emit
        self.eio_sids = set()  # Engine.IO sids that opted in (read without the lock on the hot path)
        self.pending = {}  # eio_sid -> (room, [payload JSON, ...])
        self.lock = threading.Lock()
        self._task = None

    # -- opting in and out ------------------------------------------------------------------------

    def enable(self, eio_sid, start=True):
        """Batch this socket's positions from now on; starts the tick if it is not running."""
        with self.lock:
            self.eio_sids.add(eio_sid)
            need_task = start and self._task is None
            if need_task:
                self._task = True  # claimed; replaced by the task object below
        if need_task:
            try:
                self._task = self.server.start_background_task(self._run)
            except Exception:
                with self.lock:
                    self._task = None
                raise

    def disable(self, eio_sid):
        """Back to one `party:update` per position; what was pending is sent first."""
        self.flush_one(eio_sid)
        with self.lock:
            self.eio_sids.discard(eio_sid)

    def forget(self, eio_sid):
        """The socket is gone: drop its flag and whatever was pending for it."""
        with self.lock:
            self.eio_sids.discard(eio_sid)
            self.pending.pop(eio_sid, None)

    # -- the delivery side ------------------------------------------------------------------------

    def add(self, room, item, eio_sids):
        """Queue position `item` (payload JSON) relayed to `room` for each of `eio_sids`."""
        moved = []
        with self.lock:
            pending = self.pending
            for eio_sid in eio_sids:
                entry = pending.get(eio_sid)
                if entry is None:
                    pending[eio_sid] = (room, [item])
                elif entry[0] == room:
                    entry[1].append(item)
                else:  # the socket changed party within a tick: the old party's batch goes first
                    moved.append((eio_sid, entry))
                    pending[eio_sid] = (room, [item])
        for eio_sid, (old_room, items) in moved:
            self._send(eio_sid, old_room, items, {})

    def flush_one(self, eio_sid):
        """Send what is pending for one socket now (before any other packet to it)."""
        if eio_sid not in self.pending:
            return
        with self.lock:
            entry = self.pending.pop(eio_sid, None)
        if entry is not None:
            self._send(eio_sid, entry[0], entry[1], {})

    def flush(self):
        """One tick: every pending batch goes out; returns how many packets were sent."""
        if not self.pending:
            return 0
        with self.lock:
            pending, self.pending = self.pending, {}
        frames = {}  # the members who sent nothing in the tick share one frame
        sent = 0
        for eio_sid, (room, items) in pending.items():
            key = (room, tuple(items)) if not self.plain else eio_sid  # plain items: payload dicts
            cache = frames.get(key)
            if cache is None:
                cache = frames[key] = {}
            try:
                sent += bool(self._send(eio_sid, room, items, cache))
            except Exception:  # one broken socket must not hold back the others
                log.exception("party:updates to %s failed", eio_sid)
        return sent

    def _send(self, eio_sid, room, items, cache):
        if self.plain:
            return self._send_plain(eio_sid, room, items)
        members = self.server.manager.rooms.get("/", {}).get(room)
        if members is None or eio_sid not in members.inverse:
            return False  # left the party since: leaving stops all location sharing at once
        text = cache.get("text")
        if text is None:
            text = cache["text"] = batch_message(room, items)
        if not send_direct(self.server.eio.sockets.get(eio_sid), text, cache):
            self.server._send_eio_packet(eio_sid, engineio.packet.Packet(engineio.packet.MESSAGE, text[1:]))
        return True

    def _send_plain(self, eio_sid, room, items):
        server = self.server
        sid = server.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or room not in server.rooms(sid, namespace="/"):
            return False
        server.emit(BATCH_EVENT, {"party_id": room[len(ROOM_PREFIX):], "updates": list(items)}, to=sid,
                    namespace="/", ignore_queue=True)
        return True

    def _run(self):
        while True:
            self.server.sleep(self.interval)
            try:
                self.flush()
            except Exception:
                log.exception("party:updates tick failed; continuing")


def _flush_before_emit(original):
    """socketio.Manager.emit (every event python-socketio delivers to this process's sockets, the
    Redis queue's included) sending an opted-in recipient's pending positions first."""

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        batcher = of(self.server)
        if batcher is not None and batcher.pending and not batcher.plain:
            for _, eio_sid in list(self.get_participants(namespace, to or room)):
                if eio_sid in batcher.pending:
                    batcher.flush_one(eio_sid)
        return original(self, event, data, namespace, room=room, skip_sid=skip_sid, callback=callback,
                        to=to, **kwargs)

    emit.allynet_original = original
    return emit


def install(server, interval, plain=False):
    """Give `server` (python-socketio) a batcher ticking every `interval` seconds; unless `plain`,
    events emitted to an opted-in socket wait for its pending batch (Manager.emit, patched once)."""
    import socketio

    if not plain and not hasattr(socketio.Manager.emit, "allynet_original"):
        socketio.Manager.emit = _flush_before_emit(socketio.Manager.emit)
    batcher = Batcher(server, interval, plain=plain)
    server.allynet_batcher = batcher
    return batcher


def of(server):
    """The batcher of a python-socketio server, or None."""
    return getattr(server, "allynet_batcher", None)
