"""Rate limits that flask-limiter's route decorators cannot express: socket events, and
actions that REST and Socket.IO share (party creation counts both together).

A service calls `hit(config_key, action, *identifiers)` before it stores or sends
anything; a refused hit raises `RateLimited` with `details.retry_after` (seconds), which
REST renders as 429 with a `Retry-After` header and a socket ack as
``{"ok": false, "error": {"code": "rate_limited", ...}}``.

The counters are flask-limiter's own: the app's `limiter` strategy over its storage
(`RATELIMIT_STORAGE_URI`: Redis when `REDIS_URL` is set, so every process counts
together; memory otherwise), keyed under `RATELIMIT_KEY_PREFIX`. When that storage
fails, counting goes on in process memory for `REDIS_RETRY_SECONDS` before it is tried
again, as flask-limiter's own fallback does for routes. `RATELIMIT_ENABLED=0` turns these
limits off with the others.
"""
import functools
import logging
import math
import threading
import time

from flask import current_app
from limits import parse_many
from limits.storage import MemoryStorage

from allynet.errors import RateLimited
from allynet.extensions import limiter

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=64)
def _items(limit_string):
    return tuple(parse_many(limit_string))


class _Fallback:
    """Process-memory counting while the shared storage is failing."""

    def __init__(self):
        self.lock = threading.Lock()
        self.strategy = None
        self.until = 0.0

    def active(self):
        return self.strategy is not None and time.monotonic() < self.until

    def engage(self, like, seconds, exc):
        with self.lock:
            if not self.active():
                log.warning("Rate limit storage unreachable (%s: %s); counting socket limits in memory",
                            type(exc).__name__, exc)
            if self.strategy is None:
                self.strategy = type(like)(MemoryStorage())
            self.until = time.monotonic() + seconds
            return self.strategy


FALLBACK_KEY = "allynet_ratelimit_fallback"


def _count(strategy, items, keys):
    """The first item over its limit after this hit, or None."""
    for item in items:
        if not strategy.hit(item, *keys):
            return item
    return None


def hit(config_key, action, *identifiers):
    """Count one `action` by `identifiers` against the limit in config[config_key]; RateLimited when over."""
    config = current_app.config
    limit_string = config.get(config_key)
    if not limit_string or not config.get("RATELIMIT_ENABLED", True):
        return
    items = _items(limit_string)
    keys = (config.get("RATELIMIT_KEY_PREFIX") or "allynet", action, *(str(part) for part in identifiers))
    fallback = current_app.extensions.get(FALLBACK_KEY) or current_app.extensions.setdefault(
        FALLBACK_KEY, _Fallback())
    strategy = fallback.strategy if fallback.active() else limiter.limiter
    try:
        exceeded = _count(strategy, items, keys)
    except Exception as exc:  # the storage (Redis) failed: this process counts alone for a while
        strategy = fallback.engage(strategy, config.get("REDIS_RETRY_SECONDS", 1.0), exc)
        exceeded = _count(strategy, items, keys)
    if exceeded is None:
        return
    try:
        reset_at = strategy.get_window_stats(exceeded, *keys).reset_time
    except Exception:  # the storage failed between the two calls: the window's length is a safe answer
        reset_at = time.time() + exceeded.get_expiry()
    retry_after = max(1, math.ceil(reset_at - time.time()))
    raise RateLimited(f"Too many {action} ({exceeded}); retry in {retry_after} s",
                      details={"retry_after": retry_after})
