"""Readiness checks of the backing services."""
import redis

from allynet.errors import MONGO_DOWN_ERRORS


def check_mongo(db):
    """None when MongoDB answers a ping, else the reason."""
    try:
        db.command("ping")
    except MONGO_DOWN_ERRORS as exc:
        return f"unreachable: {type(exc).__name__}"
    return None


def check_redis(url):
    """None when Redis answers a ping, else the reason."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"unreachable: {type(exc).__name__}"
    return None


def readiness(*, db, redis_url, indexes_ready=True):
    """({service: "ok" | reason}, all_ok); `indexes` is "pending" until the declared indexes exist."""
    checks = {"mongodb": check_mongo(db) or "ok", "indexes": "ok" if indexes_ready else "pending"}
    if redis_url:
        checks["redis"] = check_redis(redis_url) or "ok"
    return checks, all(value == "ok" for value in checks.values())
