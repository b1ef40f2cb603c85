"""The one clock the services read, so tests can move time instead of sleeping.

Times are naive UTC datetimes, as pymongo returns them.
"""
from datetime import datetime, timezone

_override = None


def now():
    """Current UTC time (naive, millisecond precision as MongoDB stores it)."""
    if _override is not None:
        return _override()
    current = datetime.now(timezone.utc).replace(tzinfo=None)
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def set_now(fn):
    """Replace the clock with `fn` (a callable returning a naive UTC datetime); None restores it."""
    global _override
    _override = fn
