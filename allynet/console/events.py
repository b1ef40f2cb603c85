"""The console pages' sockets: listen-only, in the console's rooms (see allynet/sockets.py)."""
from allynet import sockets
from allynet.console import service
from allynet.db import get_db


@sockets.on_console_connect
def join_console_rooms(user_id, sid):
    """A console page's socket enters `console` (staff) or its organizations' `console:org:<id>`."""
    return service.join_rooms(db=get_db(), user_id=user_id, sid=sid)
