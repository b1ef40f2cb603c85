"""Weekly opening hours in a business's own IANA time zone, and "open now".

`opening_hours` is `{"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "08:00",
"close": "18:00"}, ...]}`. Times are local wall-clock times of that zone. A `close` at or before
`open` closes the next day (`22:00`-`02:00`); `00:00`-`00:00` (any `close == open`) lasts 24 h.

"Open now" turns each interval into a stretch of real (UTC) time, so a DST change between opening
and closing is taken into account: a night shift `22:00`-`04:00` across the spring change lasts 5 h,
not 6. Stretches that touch or overlap are merged, so `closes_at` is when the place really closes.
"""
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
import zoneinfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVALS = 50
# A stretch still open this long after `now` counts as "always open" (closes_at null).
ALWAYS_OPEN = timedelta(days=7)


@lru_cache(maxsize=1)
def timezones():
    """The IANA zone names this system knows (tzdata)."""
    return frozenset(zoneinfo.available_timezones())


def parse_hhmm(text):
    """'08:30' -> time(8, 30); ValueError unless HH:MM with 00..23 and 00..59."""
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" \
            or not (text[:2].isdigit() and text[3:].isdigit() and text.isascii()):
        raise ValueError("Must be a time HH:MM (00:00..23:59).")
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        raise ValueError("Must be a time HH:MM (00:00..23:59).")
    return time(hours, minutes)


def _stretches(hours, start_date, days):
    """(open, close) UTC naive datetimes of every interval starting on the `days` local dates from `start_date`."""
    zone = zoneinfo.ZoneInfo(hours["timezone"])
    result = []
    for offset in range(days):
        day = start_date + timedelta(days=offset)
        name = DAYS[day.weekday()]
        for interval in hours["intervals"]:
            if interval["day"] != name:
                continue
            opens, closes = parse_hhmm(interval["open"]), parse_hhmm(interval["close"])
            close_day = day if closes > opens else day + timedelta(days=1)
            start = datetime.combine(day, opens, tzinfo=zone)
            end = datetime.combine(close_day, closes, tzinfo=zone)
            result.append((_utc(start), _utc(end)))
    return result


def _utc(local):
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def open_status(hours, now):
    """(is_open, closes_at) at `now` (naive UTC): closes_at is a naive UTC datetime, None when closed
    or open for more than a week on end (or when there are no hours)."""
    if not hours or not hours.get("intervals"):
        return False, None
    zone = zoneinfo.ZoneInfo(hours["timezone"])
    today = now.replace(tzinfo=timezone.utc).astimezone(zone).date()
    # Yesterday's intervals may still run; up to eight days ahead to merge a stretch for ALWAYS_OPEN.
    stretches = sorted(_stretches(hours, today - timedelta(days=1), 10))
    current = None
    for start, end in stretches:
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
        elif start <= now < end:
            current = (start, end)
        elif current is not None:
            break
    if current is None or not current[0] <= now < current[1]:
        return False, None
    closes_at = current[1]
    return True, (None if closes_at - now >= ALWAYS_OPEN else closes_at)


def is_open(hours, now):
    """True when the place is open at `now` (naive UTC)."""
    return open_status(hours, now)[0]
