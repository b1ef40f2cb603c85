"""The Socket.IO 5 / Engine.IO 4 text encodings the transport writes by hand (every one is here).

A Socket.IO EVENT on "/" is "2" [+ ack id] + the JSON array ``[name, *args]``, its ACK "3" + id +
the JSON array of the answer; Engine.IO carries either as a MESSAGE, "4" + the packet. The
batched `party:updates` text is built from the JSON of each relayed `party:update` payload,
never decoding it. Socket.IO's own encoder (`socketio.Packet.encode`) gives the same bytes.
"""
from allynet import jsonutil

EVENT = "2"  # Socket.IO packet types (the first character of a packet)
ACK = "3"
MESSAGE = "4"  # Engine.IO packet type carrying a Socket.IO packet
# An ACK's Engine.IO text: this + the acknowledged EVENT's id + the JSON array of the answer.
ACK_MESSAGE = MESSAGE + ACK

SOURCE_EVENT = "party:update"  # what batching collects
BATCH_EVENT = "party:updates"  # what it sends
ROOM_PREFIX = "party:"


def event_prefix(name):
    """The text after an EVENT's type and ack id up to its first argument: ``["name",``."""
    return jsonutil.dumps([name])[:-1] + ","


def event_packet(event, data):
    """The Socket.IO EVENT packet on "/" without ack id: ``2["event",data]``."""
    return "2" + jsonutil.dumps([event, data])


def engineio_message(packet):
    """The Engine.IO MESSAGE text carrying Socket.IO `packet` (what its writer would send)."""
    return "4" + packet


def session_ended_message(reason, **details):
    """The Engine.IO text of a `session:ended` event on "/" (``42["session:ended",{...}]``)."""
    return "42" + jsonutil.dumps(["session:ended", {"reason": reason, **details}])


# A relayed position's packet (event_packet(SOURCE_EVENT, payload)) up to its payload's JSON.
SOURCE_PREFIX = EVENT + event_prefix(SOURCE_EVENT)
# MESSAGE + EVENT + ["party:updates",{"party_id":
_BATCH_HEAD = MESSAGE + EVENT + event_prefix(BATCH_EVENT) + '{"party_id":'


def payload_of(encoded):
    """The JSON text of a relayed `party:update` payload inside its encoded packet, else None."""
    if encoded.startswith(SOURCE_PREFIX) and encoded.endswith("]"):
        return encoded[len(SOURCE_PREFIX):-1]
    return None


def batch_message(room, items):
    """The Engine.IO text of one `party:updates` packet for `room` carrying the JSON `items`."""
    return "".join((_BATCH_HEAD, jsonutil.dumps(room[len(ROOM_PREFIX):]), ',"updates":[', ",".join(items), "]}]"))
