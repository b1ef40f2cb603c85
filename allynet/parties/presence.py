"""Who is online in each party, visible to every server process.

Presence is kept per socket, not per user, so a member with two devices stays
online until the last socket goes. Two stores behind one small interface:

- `RedisPresence` (when `REDIS_URL` is set): one sorted set per party,
  members ``"<user_id>|<sid>"`` scored by their expiry time. Every process
  refreshes its own sockets' entries (`refresh`, from a background loop and
  on traffic), so the entries of a crashed process expire after
  `PARTY_PRESENCE_TTL_SECONDS` instead of haunting the party forever.
- `LocalPresence` (no Redis: one process): plain dicts.

Expiry is measured with `allynet.clock`, so tests can move time.
"""
import threading
from datetime import datetime

from flask import current_app

from allynet import clock

EXTENSION_KEY = "allynet_party_presence"
_EPOCH = datetime(1970, 1, 1)


def _now_ts():
    return (clock.now() - _EPOCH).total_seconds()


class LocalPresence:
    """In-process presence: correct for a single server process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._parties = {}  # party_id str -> {sid: user_id str}

    def add(self, party_id, user_id, sid):
        """Mark one socket of `user_id` online in the party."""
        with self._lock:
            self._parties.setdefault(str(party_id), {})[sid] = str(user_id)

    def remove(self, party_id, sid):
        """Forget one socket."""
        with self._lock:
            sockets = self._parties.get(str(party_id))
            if sockets is not None:
                sockets.pop(sid, None)
                if not sockets:
                    del self._parties[str(party_id)]

    def remove_user(self, party_id, user_id):
        """Forget every socket of a user in the party; returns their sids."""
        user_id = str(user_id)
        with self._lock:
            sockets = self._parties.get(str(party_id), {})
            gone = [sid for sid, uid in sockets.items() if uid == user_id]
            for sid in gone:
                del sockets[sid]
            return gone

    def online(self, party_id):
        """User ids (strings, sorted) with at least one live socket in the party."""
        with self._lock:
            return sorted(set(self._parties.get(str(party_id), {}).values()))

    def refresh(self, entries):
        """Nothing expires in process."""

    def clear(self, party_id):
        """Forget the whole party (it ended)."""
        with self._lock:
            self._parties.pop(str(party_id), None)


class RedisPresence:
    """Presence shared by every process through Redis, with per-socket expiry.

    Goes through `allynet.redis_client.call`, so a Redis outage degrades to
    this process's own sockets (a local mirror) instead of failing events.
    """

    def __init__(self, app, ttl_seconds):
        self.app = app
        self.ttl = float(ttl_seconds)
        self.local = LocalPresence()

    def _key(self, party_id):
        from allynet import redis_client

        return redis_client.key("party-presence", party_id, app=self.app)

    def _call(self, fn, default=None):
        from allynet import redis_client

        return redis_client.call(fn, default, app=self.app)

    def add(self, party_id, user_id, sid):
        """Mark one socket of `user_id` online in the party (until it expires unrefreshed)."""
        self.local.add(party_id, user_id, sid)
        key = self._key(party_id)

        def write(client):
            pipe = client.pipeline()
            pipe.zadd(key, {f"{user_id}|{sid}": _now_ts() + self.ttl})
            # The key itself goes when nobody refreshes it any more (whole party idle or gone).
            pipe.expire(key, int(self.ttl * 2) + 1)
            pipe.execute()

        self._call(write)

    def remove(self, party_id, sid):
        """Forget one socket."""
        self.local.remove(party_id, sid)
        key = self._key(party_id)

        def write(client):
            doomed = [member for member in client.zrange(key, 0, -1) if member.endswith(f"|{sid}")]
            if doomed:
                client.zrem(key, *doomed)

        self._call(write)

    def remove_user(self, party_id, user_id):
        """Forget every socket of a user in the party; returns their sids (on every process)."""
        local = self.local.remove_user(party_id, user_id)
        key = self._key(party_id)
        prefix = f"{user_id}|"

        def write(client):
            doomed = [member for member in client.zrange(key, 0, -1) if member.startswith(prefix)]
            if doomed:
                client.zrem(key, *doomed)
            return [member.split("|", 1)[1] for member in doomed]

        return sorted(set(local) | set(self._call(write, default=[])))

    def online(self, party_id):
        """User ids (strings, sorted) with at least one unexpired socket in the party."""
        key = self._key(party_id)

        def read(client):
            now = _now_ts()
            pipe = client.pipeline()
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zrangebyscore(key, now, "+inf")
            _, members = pipe.execute()
            return sorted({member.split("|", 1)[0] for member in members})

        result = self._call(read)
        return self.local.online(party_id) if result is None else result

    def refresh(self, entries):
        """Push back the expiry of (party_id, user_id, sid) entries this process still serves."""
        if not entries:
            return

        def write(client):
            expiry = _now_ts() + self.ttl
            pipe = client.pipeline()
            for party_id, user_id, sid in entries:
                key = self._key(party_id)
                pipe.zadd(key, {f"{user_id}|{sid}": expiry})
                pipe.expire(key, int(self.ttl * 2) + 1)
            pipe.execute()

        self._call(write)

    def clear(self, party_id):
        """Forget the whole party (it ended)."""
        self.local.clear(party_id)
        key = self._key(party_id)
        self._call(lambda client: client.delete(key))


def make_store(app):
    """The presence store this app's configuration calls for."""
    if app.config.get("REDIS_URL"):
        return RedisPresence(app, app.config["PARTY_PRESENCE_TTL_SECONDS"])
    return LocalPresence()


def get_store(app=None):
    """The current app's presence store (built on first use)."""
    app = app or current_app._get_current_object()
    store = app.extensions.get(EXTENSION_KEY)
    if store is None:
        store = app.extensions.setdefault(EXTENSION_KEY, make_store(app))
    return store
