"""Organization Socket.IO handlers: the dispatch room `org:<id>`.

Owners, admins and dispatchers of a verified pro organization have their connections in
`org:<id>` from connect (and at once when granted the role); `org:join` puts one connection in.
"""
from allynet import sockets
from allynet.db import get_db
from allynet.organizations import service
from allynet.organizations.schemas import org_join_event_schema
from allynet.sockets import socket_event


@sockets.on_connect
def rejoin_dispatch_rooms(user_id, sid):
    """A connecting socket enters the dispatch rooms of its user's organizations."""
    service.rejoin_rooms(db=get_db(), user_id=user_id, sid=sid)


@socket_event("org:join", org_join_event_schema)
def join(*, user_id, sid, data):
    """Join `org:<id>` (owner, admins, dispatchers of a verified pro organization)."""
    service.join_room(db=get_db(), organization_id=data["organization_id"], user_id=user_id, sid=sid)
    return {"organization_id": str(data["organization_id"])}
