"""Emergency Socket.IO handlers: following an SOS room and its owner-responder chat."""
from allynet.db import get_db
from allynet.emergencies import service
from allynet.emergencies.schemas import join_event_schema, message_event_schema, message_schema
from allynet.sockets import socket_event


@socket_event("emergency:join", join_event_schema)
def join(*, user_id, sid, data):
    """Join `emergency:<id>` when the caller may view the SOS (else not_found)."""
    service.join_room(db=get_db(), emergency_id=data["emergency_id"], user_id=user_id, sid=sid)
    return {"emergency_id": str(data["emergency_id"])}


@socket_event("emergency:message", message_event_schema)
def message(*, user_id, sid, data):
    """Owner/responder chat: stored, then sent to the room."""
    stored = service.post_message(db=get_db(), emergency_id=data["emergency_id"], user_id=user_id,
                                  text=data["text"])
    return {"message": message_schema.dump(stored)}
