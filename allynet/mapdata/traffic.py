"""Traffic from our own riders: H3 cells aggregated from stored trail points.

`aggregate(db, config)` (run every `TRAFFIC_INTERVAL_SECONDS` by `scheduled.py`, never on the
live path) reads the last `TRAFFIC_WINDOW_MINUTES` of `trail_points` and groups them into H3
cells of resolution `TRAFFIC_H3_RES`. Privacy first: a cell is published only when at least
`TRAFFIC_MIN_RIDERS` distinct riders from at least 2 parties passed through it; a published
cell (`traffic_cells`) holds no user or party id, its rider count is a bucket, and it expires
(TTL) one window after its last update.

Each cell's level compares its median speed with its own reference speed: the 85th percentile
of its last 7 days of aggregates, kept in `traffic_history` as at most one 85th-percentile
sample per hour (168 numbers, never raw points). A cell without history uses fixed bands.

A run costs what changed since the last one, not the window: each process keeps a `Window`,
its running aggregate of the window's points (every point once, by _id, in per-minute groups
that leave the window whole; per cell the sorted speeds and a point count per rider and per
party, so distinct riders are exact however many minutes a rider spans). A run adds the points
stored since the last run (on MongoDB, a `ts` range read on its index, from the last run's time
less `SETTLE` for inserts still on their way; on the embedded store, its change log), drops the
ones older than the window, and writes only what changed (a cell whose stored figures did not
move gets its times refreshed, in one write per chunk). Two counts of the window around each read catch a
point deleted or visible too late (the window is then read again), so the result stays the full
recompute's. Each process runs its own, as before: cells are replaced whole, the hour's history
sample is pushed once. Every chunk of work ends in a cooperative yield, so a run never holds the
eventlet hub for long (`bench/mapdata_jobs.py`).
"""
import threading
import time
from bisect import bisect_left, insort
from datetime import datetime, timedelta

import h3
from pymongo.errors import DuplicateKeyError

from allynet import clock
from allynet.db import is_embedded
from allynet.embedded import store as embedded_store
from allynet.fields import iso

HISTORY_HOURS = 7 * 24
HISTORY_MIN_SAMPLES = 3  # hourly samples before a cell's own reference replaces the fixed bands
FIXED_BANDS_KMH = (40.0, 15.0)  # free at or above the first, slow at or above the second, else jammed
RELATIVE_BANDS = (0.7, 0.4)  # the same against the cell's reference speed
_EPOCH = datetime(1970, 1, 1)


def percentile(values, fraction, *, ordered=False):
    """Nearest-rank percentile of a non-empty list (fraction in 0..1; `ordered`: already sorted)."""
    ordered = values if ordered else sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


def median(values, *, ordered=False):
    """The median of a non-empty list (`ordered`: already sorted)."""
    ordered = values if ordered else sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def riders_bucket(count):
    """Distinct riders -> the published bucket ("3-5", "6-10", ">10")."""
    if count > 10:
        return ">10"
    if count > 5:
        return "6-10"
    return "3-5"


def level_of(speed_median, reference):
    """free / slow / jammed against `reference` (km/h), or the fixed bands when it is None."""
    if reference:
        ratio = speed_median / reference
        free, slow = RELATIVE_BANDS
    else:
        ratio = speed_median
        free, slow = FIXED_BANDS_KMH
    if ratio >= free:
        return "free"
    return "slow" if ratio >= slow else "jammed"


class _Cell:
    """What a cell's points in the window sum up to: their speeds (sorted) and who rode there."""

    __slots__ = ("speeds", "riders", "parties")

    def __init__(self):
        self.speeds = []
        self.riders = {}  # rider -> their points here: a rider counts once however many points
        self.parties = {}  # the same per party

    def add(self, speed, rider, party):
        if speed is not None:
            insort(self.speeds, speed)
        riders, parties = self.riders, self.parties
        riders[rider] = riders.get(rider, 0) + 1
        parties[party] = parties.get(party, 0) + 1

    def remove(self, speed, rider, party):
        if speed is not None:
            del self.speeds[bisect_left(self.speeds, speed)]
        for counts, key in ((self.riders, rider), (self.parties, party)):
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]


class Window:
    """One process's running aggregate of the trail points of the window.

    Every run adds the points stored since the last one and drops those the window has left
    (points are kept by minute of `ts`, so a run looks at the minutes it leaves only). Each
    cell holds its window's speeds and a count of points per rider and per party, so a point
    leaving takes away exactly what it brought: the result is the full recompute's, with every
    point read once.
    """

    def __init__(self, *, res, window):
        self.res, self.window = res, window
        self.points = {}  # _id -> (minute, ts, cell or None, speed, rider, party)
        self.minutes = {}  # minute of ts -> {_id}
        self.cells = {}  # cell -> _Cell
        self.following = False  # embedded store: its change log is followed
        self.read_from = None  # MongoDB: `ts` the next run reads from
        self.ran_at = None
        self.lock = threading.Lock()

    def clear(self):
        """Forget every point (the next run reads the whole window)."""
        self.points, self.minutes, self.cells = {}, {}, {}
        self.following, self.read_from = False, None

    def add(self, point, since):
        """Count a stored trail point (once, and only while it is in the window)."""
        key = point["_id"]
        ts = point.get("ts")
        # As the query `{ts: {$gte: since}}`: only dates compare with a date.
        if key in self.points or not isinstance(ts, datetime) or ts < since:
            return
        coordinates = (point.get("location") or {}).get("coordinates")
        cell = h3.latlng_to_cell(coordinates[1], coordinates[0], self.res) if coordinates else None
        speed = point.get("speed_kmh")
        speed = None if speed is None else float(speed)
        rider = point.get("user_id")
        party = point.get("party_id") or ("solo", rider)  # a rider outside any party counts as their own
        minute = _minute(ts)
        self.points[key] = (minute, ts, cell, speed, rider, party)
        self.minutes.setdefault(minute, set()).add(key)
        if cell is not None:
            entry = self.cells.get(cell)
            if entry is None:
                entry = self.cells[cell] = _Cell()
            entry.add(speed, rider, party)

    def remove(self, key):
        """Take a point out again (deleted, or left the window)."""
        record = self.points.pop(key, None)
        if record is None:
            return
        minute, _ts, cell, speed, rider, party = record
        keys = self.minutes[minute]
        keys.discard(key)
        if not keys:
            del self.minutes[minute]
        if cell is not None:
            entry = self.cells[cell]
            entry.remove(speed, rider, party)
            if not entry.riders:
                del self.cells[cell]

    def expire(self, since):
        """Drop the points older than `since`."""
        first = _minute(since)
        for minute in [m for m in self.minutes if m <= first]:
            for n, key in enumerate(list(self.minutes[minute])):
                if n % CHUNK == CHUNK - 1:
                    time.sleep(0)
                if minute < first or self.points[key][1] < since:
                    self.remove(key)

    def count_before(self, until):
        """How many points of the window have a `ts` before `until`."""
        last = _minute(until)
        return sum(len(keys) if minute < last else sum(1 for key in keys if self.points[key][1] < until)
                   for minute, keys in self.minutes.items() if minute <= last)

    def qualifying(self, *, min_riders):
        """{cell: _Cell} of the cells the privacy rules let us publish."""
        found = {}
        for n, (cell, entry) in enumerate(list(self.cells.items())):
            if n % CHUNK == CHUNK - 1:
                time.sleep(0)
            if entry.speeds and len(entry.riders) >= min_riders and len(entry.parties) >= 2:
                found[cell] = entry
        return found


PUBLISH_CHUNK = 50  # cells read, and their times refreshed, in one query
WRITES_PER_YIELD = 10  # cells written between two cooperative yields
CHUNK = 1000  # points (or cells) handled between two cooperative yields: about a millisecond
# A point's `ts` is stamped by the server just before its insert: one becoming visible later
# than this after its stamp is caught by the count check (and the window read again).
SETTLE = timedelta(seconds=15)
_WINDOWS = "_allynet_traffic_windows"  # on the Mongo client (by identity): {db name: Window}


def _minute(ts):
    return int((ts - _EPOCH).total_seconds() // 60)


def _windows(client):
    # vars(): pymongo and mongomock clients answer an unknown attribute with a database.
    return vars(client).setdefault(_WINDOWS, {})


def _window_of(db, res, window):
    windows = _windows(db.client)
    state = windows.get(db.name)
    if state is None or (state.res, state.window) != (res, window):
        state = windows[db.name] = Window(res=res, window=window)
    return state


def forget(db):
    """Drop this process's aggregate of `db`'s trail points: the next run reads the whole window."""
    _windows(db.client).pop(db.name, None)


def _add_all(state, points, since):
    for n, point in enumerate(points):
        if n % CHUNK == CHUNK - 1:
            time.sleep(0)  # a cooperative yield under eventlet: the live path runs between chunks
        state.add(point, since)


def _catch_up_embedded(db, state, since):
    # mongomock filters and copies every document of the collection (30 days of trails) at
    # about 0.2 ms each: the embedded store's change log hands over what changed instead.
    found = embedded_store.changes(db.trail_points) if state.following else None
    if found is None:
        state.clear()
        _add_all(state, embedded_store.follow(db.trail_points), since)
        state.following = True
        return
    for n, (change, item) in enumerate(found):
        if n % CHUNK == CHUNK - 1:
            time.sleep(0)
        if change == embedded_store.ADDED:
            state.add(item, since)
        elif change == embedded_store.REMOVED:
            state.remove(item)
        else:  # dropped: what follows is all there is
            state.clear()
            state.following = True


_PROJECTION = {"location": 1, "speed_kmh": 1, "user_id": 1, "party_id": 1, "ts": 1}


def _catch_up_mongo(db, state, since, now):
    # Read from the last run's time (less SETTLE, for inserts still on their way), on the `ts`
    # index; the points already counted are skipped by their _id.
    read_from = since if state.read_from is None else max(since, state.read_from)
    settled = now - SETTLE
    before = _counts(db, since, settled)
    _add_all(state, db.trail_points.find({"ts": {"$gte": read_from}}, projection=_PROJECTION), since)
    after = _counts(db, since, settled)
    state.read_from = settled
    # What is counted must lie between what the database held before and after the read, for the
    # whole window and for its settled part: a point deleted, or one that became visible too late
    # for its read, breaks that (at the latest once it is settled) and the window is read again.
    mine = (len(state.points), state.count_before(settled))
    if not all(low <= count <= high for low, count, high in zip(before, mine, after)):
        state.clear()
        _add_all(state, db.trail_points.find({"ts": {"$gte": since}}, projection=_PROJECTION), since)
        state.read_from = settled


def _counts(db, since, settled):
    return (db.trail_points.count_documents({"ts": {"$gte": since}}),
            db.trail_points.count_documents({"ts": {"$gte": since, "$lt": settled}}))


def collect(db, *, now, window, res):
    """This process's aggregate of the trail points of the `window` before `now`, brought up to date."""
    state = _window_of(db, res, window)
    since = now - window
    with state.lock:
        if state.ran_at is not None and now < state.ran_at:
            state.clear()  # the clock went back: the window is no longer a suffix of the last one
        try:
            state.expire(since)  # first: the counts of the MongoDB read compare with the window's
            if is_embedded(db.client):
                _catch_up_embedded(db, state, since)
            else:
                _catch_up_mongo(db, state, since, now)
        except BaseException:
            state.clear()  # half a catch-up is no aggregate: the next run starts over
            raise
        state.ran_at = now
    return state


def _reference(history, now_hour):
    samples = [s["p85"] for s in (history or {}).get("samples", ()) if s["h"] > now_hour - HISTORY_HOURS]
    if len(samples) < HISTORY_MIN_SAMPLES:
        return None
    return percentile(samples, 0.85)


def aggregate(*, db, config):
    """Recompute the published traffic cells from the last window of trail points; returns how many."""
    now = clock.now()
    window = timedelta(minutes=float(config["TRAFFIC_WINDOW_MINUTES"]))
    state = collect(db, now=now, window=window, res=int(config["TRAFFIC_H3_RES"]))
    qualifying = state.qualifying(min_riders=int(config["TRAFFIC_MIN_RIDERS"]))
    now_hour = int((now - _EPOCH).total_seconds() // 3600)
    cells = list(qualifying)
    for start in range(0, len(cells), PUBLISH_CHUNK):
        if start:
            time.sleep(0)  # the live path runs between chunks of writes too
        _publish(db, {cell: qualifying[cell] for cell in cells[start:start + PUBLISH_CHUNK]},
                 now=now, now_hour=now_hour, window=window)
    return len(qualifying)


def _publish(db, chunk, *, now, now_hour, window):
    """Write one chunk of qualifying cells and their hourly samples.

    Each cell ends up as the whole document a replacement writes; one whose figures did not move
    only has its times refreshed, in one write for the chunk.
    """
    ids = list(chunk)
    histories = {doc["_id"]: doc for doc in db.traffic_history.find({"_id": {"$in": ids}})}
    stored = {doc["_id"]: doc for doc in db.traffic_cells.find({"_id": {"$in": ids}},
                                                             projection={"updated_at": 0, "expires_at": 0})}
    times = {"updated_at": now, "expires_at": now + window}
    shown, refresh = {}, []
    for n, (cell, entry) in enumerate(chunk.items()):
        if n % WRITES_PER_YIELD == WRITES_PER_YIELD - 1:
            time.sleep(0)
        speed_median = round(median(entry.speeds, ordered=True), 1)
        speed_p85 = round(percentile(entry.speeds, 0.85, ordered=True), 1)
        lat, lng = h3.cell_to_latlng(cell)
        history = histories.get(cell)
        shown[cell] = {"center": {"type": "Point", "coordinates": [lng, lat]},
                       "speed_median_kmh": speed_median, "speed_p85_kmh": speed_p85,
                       "riders": riders_bucket(len(entry.riders)),
                       "level": level_of(speed_median, _reference(history, now_hour))}
        before = stored.get(cell)
        if before is None or set(before) != {"_id", *shown[cell]}:
            _replace_cell(db, cell, shown[cell], times)
        else:
            moved = {field: value for field, value in shown[cell].items() if before[field] != value}
            if not moved:
                refresh.append(cell)
            elif not db.traffic_cells.update_one({"_id": cell}, {"$set": {**moved, **times}}).matched_count:
                _replace_cell(db, cell, shown[cell], times)
        if history is None or all(sample["h"] != now_hour for sample in history.get("samples", ())):
            _add_sample(db, cell, now_hour, speed_p85, known=history is not None)
    if refresh and db.traffic_cells.update_many({"_id": {"$in": refresh}},
                                                {"$set": times}).matched_count != len(refresh):
        for cell in refresh:  # one was deleted meanwhile (its TTL): write them whole
            _replace_cell(db, cell, shown[cell], times)


def _replace_cell(db, cell, shown, times):
    db.traffic_cells.replace_one({"_id": cell}, {"_id": cell, **shown, **times}, upsert=True)


def _add_sample(db, cell, now_hour, speed_p85, *, known):
    """One sample per hour: the first aggregate of the hour; the last 168 kept."""
    try:
        # Upsert only for a new cell: past an existing document whose `samples.h` already
        # holds this hour it would insert a second document with the same _id.
        db.traffic_history.update_one(
            {"_id": cell, "samples.h": {"$ne": now_hour}},
            {"$push": {"samples": {"$each": [{"h": now_hour, "p85": speed_p85}], "$slice": -HISTORY_HOURS}}},
            upsert=not known)
    except DuplicateKeyError:  # another process created the history first: its sample stands
        pass


def cells_in(*, db, box, limit=None):
    """Published, unexpired cells whose centre lies in `box`; returns (cells, truncated)."""
    query = {"expires_at": {"$gt": clock.now()}, **box.geo_filter("center")}
    found = []
    truncated = False
    for doc in db.traffic_cells.find(query).sort("_id", 1):
        lng, lat = doc["center"]["coordinates"]
        if not box.contains(lng, lat):
            continue
        if limit is not None and len(found) >= limit:
            truncated = True
            break
        found.append(doc)
    return found, truncated


def feature(doc):
    """A published cell -> a GeoJSON Feature (the cell's hexagon)."""
    ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(doc["_id"])]
    ring.append(ring[0])
    return {"type": "Feature", "id": doc["_id"], "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": properties(doc)}


def properties(doc):
    """The published properties of a cell (no id of anyone)."""
    return {"h3": doc["_id"], "speed_median_kmh": doc["speed_median_kmh"], "speed_p85_kmh": doc["speed_p85_kmh"],
            "riders": doc["riders"], "level": doc["level"], "updated_at": iso(doc["updated_at"])}
