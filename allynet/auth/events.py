"""Auth Socket.IO handlers: `auth:renew` keeps a live session on a newer access token."""
from datetime import datetime, timezone

from flask import current_app

from allynet import socket_sessions
from allynet.auth import service
from allynet.auth.schemas import renew_schema
from allynet.db import get_db
from allynet.fields import iso
from allynet.sockets import socket_event


@socket_event("auth:renew", renew_schema)
def renew(*, user_id, sid, data):
    """Move this socket onto a new access token of the same user, before the old one expires."""
    claims = service.renewal_claims(db=get_db(), token=data["token"], user_id=user_id)
    expires = socket_sessions.renew(current_app._get_current_object(), sid, claims)
    return {"expires_at": iso(datetime.fromtimestamp(expires, tz=timezone.utc))}
