"""Emergency Socket.IO handlers: the SOS room (owner, responders, staff) and its chat.

A user's connections enter `emergency:<id>` when they raise the SOS or respond to it (on every
process) and again whenever a connection opens while it is open; staff join with `emergency:join`.
"""
from allynet import sockets
from allynet.db import get_db
from allynet.emergencies import service
from allynet.emergencies.schemas import (emergency_schema, join_event_schema, message_event_schema,
                                         message_schema, respond_event_schema)
from allynet.sockets import socket_event


@sockets.on_connect
def rejoin_emergency_rooms(user_id, sid):
    """A connection that opens while its user owns or responds to an open SOS joins that room."""
    service.rejoin_rooms(db=get_db(), user_id=user_id, sid=sid)


@socket_event("emergency:join", join_event_schema)
def join(*, user_id, sid, data):
    """Join `emergency:<id>` (owner, responders, staff); the ack carries the last 50 messages."""
    emergency, backlog = service.join_room(db=get_db(), emergency_id=data["emergency_id"], user_id=user_id,
                                           sid=sid)
    return {"emergency_id": str(emergency["_id"]), "status": emergency["status"],
            "messages": message_schema.dump(backlog, many=True)}


@socket_event("emergency:respond", respond_event_schema)
def respond(*, user_id, sid, data):
    """Like POST /emergencies/<id>/respond: every connection of the responder joins the room."""
    emergency = service.respond(db=get_db(), emergency_id=data["emergency_id"], helper_id=user_id,
                                eta_minutes=data.get("eta_minutes"))
    return {"emergency": emergency_schema.dump(emergency)}


@socket_event("emergency:message", message_event_schema)
def message(*, user_id, sid, data):
    """Owner/responder chat: stored, then sent to the room."""
    stored = service.post_message(db=get_db(), emergency_id=data["emergency_id"], user_id=user_id,
                                  text=data["text"])
    return {"message": message_schema.dump(stored)}
