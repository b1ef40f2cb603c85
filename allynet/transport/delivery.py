"""Room delivery on this process: encoded packets to the sockets of a room, and the direct sends.

`relay` encodes a hot-path event once and hands every local recipient the same packet (a
batched socket gets it in its next `party:updates`), then publishes it pre-encoded on the Redis
queue. A packet to one socket goes straight to its websocket when `eventlet_ws.send_direct`
can write it there, else through Engine.IO's queue. In plain mode (`server.allynet_fast` is
False) the same calls use python-socketio's public API only. The design: docs/architecture.md.
"""
import engineio.packet
from flask import current_app, has_app_context

from allynet.transport.batching import of as batcher_of
from allynet.transport.eventlet_ws import send_direct
from allynet.transport.wire import MESSAGE, SOURCE_EVENT, engineio_message, event_packet, payload_of

UNSET = object()  # "look the current app's server up" (hot-path callers pass the one they hold)


def current_sio():
    """The current app's Flask-SocketIO object, or None outside an app."""
    if not has_app_context():
        return None
    return current_app.extensions.get("socketio")


def deliver_encoded(server, room, encoded, skip_sid=None):
    """Send an encoded Socket.IO packet (str) to the sockets of `room` on this process,
    one Engine.IO packet object shared by every recipient; returns how many got it."""
    participants = server.manager.rooms.get("/", {}).get(room)
    if not participants:
        return 0
    eio_pkt = engineio.packet.Packet(engineio.packet.MESSAGE, encoded)
    sockets = server.eio.sockets
    text = MESSAGE + encoded  # the Engine.IO MESSAGE packet, as its writer would encode it
    cache = {}
    sent = 0
    batcher = server.allynet_batcher
    batched = batcher.eio_sids
    direct = send_direct
    later = None
    for sid, eio_sid in list(participants.items()):
        if sid != skip_sid:
            sent += 1
            if batched and eio_sid in batched:
                if later is None:
                    later = []
                    item = payload_of(encoded)
                if item is not None:
                    later.append(eio_sid)  # in its next party:updates
                    continue
                batcher.flush_one(eio_sid)  # not a position: after what is pending for it
            if not direct(sockets.get(eio_sid), text, cache):
                server._send_eio_packet(eio_sid, eio_pkt)
    if later:
        batcher.add(room, item, later)
    return sent


def relay(server, room, event, data, skip_sid=None):
    """Deliver `event` to `room` here (encoded once) and publish it pre-encoded to the other
    processes; `data` must be plain JSON. Plain mode: python-socketio's emit."""
    if not server.allynet_fast:
        return _relay_plain(server, room, event, data, skip_sid)
    encoded = event_packet(event, data)
    deliver_encoded(server, room, encoded, skip_sid)
    queue = server.allynet_queue
    if queue is not None:
        queue.publish_encoded(room, encoded, skip_sid)
    return True


def _relay_plain(server, room, event, data, skip_sid):
    deliver_plain(server, room, event, data, skip_sid)
    queue = server.allynet_queue
    if queue is not None:
        queue.publish_emit(event, data, room, skip_sid)
    return True


def deliver_plain(server, room, event, data, skip_sid=None):
    """Plain mode: `event` to this process's sockets of `room` through python-socketio's emit; a
    position waits in an opted-in socket's batch, anything else goes after what is pending."""
    batcher = server.allynet_batcher
    if batcher.eio_sids or batcher.pending:
        if event == SOURCE_EVENT and isinstance(room, str):
            later = [(sid, eio_sid) for sid, eio_sid in server.manager.get_participants("/", room)
                     if sid != skip_sid and eio_sid in batcher.eio_sids]
            if later:
                batcher.add(room, data, [eio_sid for _, eio_sid in later])
                skip_sid = [sid for sid, _ in later] + ([skip_sid] if skip_sid else [])
        else:
            flush_pending(server, room)
    server.emit(event, data, to=room, skip_sid=skip_sid, namespace="/", ignore_queue=True)


def flush_pending(server, to):
    """The opted-in sockets among `to`'s recipients (a room, rooms, a sid) get what is pending."""
    batcher = batcher_of(server)
    if batcher is not None and batcher.pending:
        for _, eio_sid in list(server.manager.get_participants("/", to)):
            if eio_sid in batcher.pending:
                batcher.flush_one(eio_sid)


def before_emit(sio, to):
    """Plain mode: what is pending for the recipients of an emit goes first (fast mode does this
    in python-socketio's Manager.emit, see batching.py)."""
    server = getattr(sio, "server", None)
    if server is not None and not getattr(server, "allynet_fast", True):
        flush_pending(server, to)


def in_room(sid, room, sio=UNSET):
    """True when a socket of THIS process is in `room` (a dict lookup: cheap enough for hot paths).

    A leave or close_room sent by another process through the queue shows up here, so callers
    can re-check a cached membership when it turns False. `sio`: the current app's
    Flask-SocketIO object (or None) when the caller holds it."""
    if sio is UNSET:
        sio = current_sio()
    if sio is None:
        return False
    server = sio.server
    if server is None:
        return False
    if not server.allynet_fast:
        return room in server.rooms(sid, namespace="/")
    members = server.manager.rooms.get("/", {}).get(room)
    return members is not None and sid in members


def local_members(server, room):
    """The sids of this process's sockets in `room` (a list)."""
    if not server.allynet_fast:
        return [sid for sid, _ in server.manager.get_participants("/", room)]
    return list(server.manager.rooms.get("/", {}).get(room, {}))


def enter_room_of(server, source, room):
    """Put every socket of this process that is in room `source` into `room` too; returns how many."""
    sids = local_members(server, source)
    for sid in sids:
        server.enter_room(sid, room, namespace="/")
    return len(sids)


def leave_room_of(server, source, room):
    """Take every socket of this process that is in room `source` out of `room`; returns how many."""
    sids = local_members(server, source)
    for sid in sids:
        server.leave_room(sid, room, namespace="/")
    return len(sids)


def batching_of(server, sid):
    """(batcher, Engine.IO sid) of a local socket, or (None, None)."""
    batcher = batcher_of(server)
    eio_sid = server.manager.eio_sid_from_sid(sid, "/")
    if batcher is None or eio_sid is None:
        return None, None
    return batcher, eio_sid


def direct_send_packet(original):
    """socketio.Server._send_packet writing a text packet straight to an idle websocket
    (acks above all: one per `party:update`), through Engine.IO otherwise."""

    def _send_packet(self, eio_sid, pkt):
        batcher = batcher_of(self)
        if batcher is not None and eio_sid in batcher.pending:
            batcher.flush_one(eio_sid)  # an opted-in socket's pending positions go first
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: Engine.IO's own framing
            for part in encoded:
                self.eio.send(eio_sid, part)
        elif not send_direct(self.eio.sockets.get(eio_sid), engineio_message(encoded), {}):
            self.eio.send(eio_sid, encoded)

    _send_packet.allynet_original = original
    return _send_packet
