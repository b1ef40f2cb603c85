"""The one clock the services read, so tests can move time instead of sleeping.

Times are naive UTC datetimes, as pymongo returns them.
"""
import time
from datetime import datetime, timedelta

_override = None
_EPOCH = datetime(1970, 1, 1)


def now():
    """Current UTC time (naive, millisecond precision as MongoDB stores it)."""
    if _override is not None:
        return _override()
    # The epoch plus whole milliseconds: one datetime built, not three (the live path reads the
    # clock on every rider update).
    return _EPOCH + timedelta(milliseconds=time.time_ns() // 1_000_000)


def set_now(fn):
    """Replace the clock with `fn` (a callable returning a naive UTC datetime); None restores it."""
    global _override
    _override = fn


def timestamp():
    """Current time as POSIX seconds (a float) from the same clock as `now()`: cheap enough for
    a per-event compare."""
    if _override is not None:
        return (_override() - _EPOCH).total_seconds()
    return time.time()
