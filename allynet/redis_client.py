"""The one Redis client of an app: short timeouts, key prefix, fail-fast when Redis is down.

State that more than one server process needs (presence, party online sets,
per-member update throttles) lives in Redis with an expiry, never in process
memory. Everything reaches Redis through `get_redis()`: None when `REDIS_URL`
is unset (single process: callers keep the state locally), else a client whose
every command gives up after `REDIS_SOCKET_TIMEOUT` seconds, so a Redis outage
costs a request milliseconds, never a hang.

`call(fn, default)` runs `fn(client)` and turns an outage into `default` (with
one warning per outage, and no new attempt for `REDIS_RETRY_SECONDS` after a
failure), for callers whose Redis state is an optimisation that may degrade.
Keys are namespaced with `key(...)` (`REDIS_KEY_PREFIX`, so test runs and
deployments sharing one Redis do not collide).
"""
import logging
import threading
import time

import redis
from flask import current_app, has_app_context
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

EXTENSION_KEY = "allynet_redis"

# What an unreachable or misbehaving Redis raises (OSError: socket-level failures).
REDIS_ERRORS = (redis.RedisError, OSError)


def make_client(url, *, timeout=0.5, decode_responses=True, **options):
    """A client for `url` that fails within `timeout` seconds instead of blocking."""
    options.setdefault("socket_timeout", timeout)
    options.setdefault("socket_connect_timeout", timeout)
    # One immediate retry re-opens a pooled connection that a Redis restart
    # broke. Timeouts are not retried: a hung Redis costs one timeout, not several.
    options.setdefault("retry", Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, decode_responses=decode_responses, **options)


class _Breaker:
    """Remembers a recent failure so callers skip Redis for a moment instead of each paying a timeout."""

    def __init__(self):
        self.down_until = 0.0
        self.down = False
        self.lock = threading.Lock()

    def open(self, seconds, exc):
        with self.lock:
            if not self.down:
                log.warning("Redis unreachable (%s: %s); degrading to process-local behaviour",
                            type(exc).__name__, exc)
            self.down = True
            self.down_until = time.monotonic() + seconds

    def close(self):
        if self.down:
            with self.lock:
                if self.down:
                    log.info("Redis reachable again")
                self.down = False

    def skipping(self):
        return self.down and time.monotonic() < self.down_until


def _state(app):
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        url = app.config.get("REDIS_URL")
        client = make_client(url, timeout=app.config["REDIS_SOCKET_TIMEOUT"]) if url else None
        state = app.extensions.setdefault(EXTENSION_KEY, {"client": client, "breaker": _Breaker()})
    return state


def get_redis(app=None):
    """The app's Redis client (decoded strings), or None when REDIS_URL is unset."""
    app = app or (current_app._get_current_object() if has_app_context() else None)
    if app is None:
        return None
    return _state(app)["client"]


def key(*parts, app=None):
    """A namespaced key: REDIS_KEY_PREFIX + parts joined by ':'."""
    app = app or current_app
    return app.config["REDIS_KEY_PREFIX"] + ":".join(str(part) for part in parts)


def call(fn, default=None, app=None):
    """`fn(client)`, or `default` when Redis is unset, down, or recently failed."""
    app = app or current_app._get_current_object()
    state = _state(app)
    client = state["client"]
    if client is None:
        return default
    breaker = state["breaker"]
    if breaker.skipping():
        return default
    try:
        result = fn(client)
    except REDIS_ERRORS as exc:
        breaker.open(app.config["REDIS_RETRY_SECONDS"], exc)
        return default
    breaker.close()
    return result


def close(app):
    """Release the app's Redis connections (tests, shutdown)."""
    state = app.extensions.pop(EXTENSION_KEY, None)
    if state and state["client"] is not None:
        state["client"].close()
