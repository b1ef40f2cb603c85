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
"""
import time
from datetime import datetime, timedelta

import h3
from pymongo.errors import DuplicateKeyError

from allynet import clock
from allynet.db import is_embedded
from allynet.embedded.store import scan_since
from allynet.fields import iso

HISTORY_HOURS = 7 * 24
HISTORY_MIN_SAMPLES = 3  # hourly samples before a cell's own reference replaces the fixed bands
FIXED_BANDS_KMH = (40.0, 15.0)  # free at or above the first, slow at or above the second, else jammed
RELATIVE_BANDS = (0.7, 0.4)  # the same against the cell's reference speed
_EPOCH = datetime(1970, 1, 1)


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list (fraction in 0..1)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


def median(values):
    """The median of a non-empty list."""
    ordered = sorted(values)
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


def collect(db, *, since, res):
    """Trail points since `since` grouped by H3 cell: {cell: (speeds, riders, parties)}."""
    cells = {}
    for n, point in enumerate(_recent_points(db, since)):
        if n % 2000 == 1999:
            time.sleep(0)  # a cooperative yield under eventlet: the live path runs between chunks
        coordinates = (point.get("location") or {}).get("coordinates")
        if not coordinates:
            continue
        cell = h3.latlng_to_cell(coordinates[1], coordinates[0], res)
        entry = cells.get(cell)
        if entry is None:
            entry = cells[cell] = ([], set(), set())
        speed = point.get("speed_kmh")
        if speed is not None:
            entry[0].append(float(speed))
        rider = point.get("user_id")
        entry[1].add(rider)
        # A rider outside any party counts as their own.
        entry[2].add(point.get("party_id") or ("solo", rider))
    return cells


def _recent_points(db, since):
    if is_embedded(db.client):
        # mongomock filters and copies every document of the collection (30 days of trails) at
        # about 0.2 ms each: the embedded store's scan reads them in place instead (read-only here).
        return scan_since(db.trail_points, "ts", since)
    return db.trail_points.find({"ts": {"$gte": since}},
                                projection={"_id": 0, "location": 1, "speed_kmh": 1, "user_id": 1, "party_id": 1})


def _reference(history, now_hour):
    samples = [s["p85"] for s in (history or {}).get("samples", ()) if s["h"] > now_hour - HISTORY_HOURS]
    if len(samples) < HISTORY_MIN_SAMPLES:
        return None
    return percentile(samples, 0.85)


def aggregate(*, db, config):
    """Recompute the published traffic cells from the last window of trail points; returns how many."""
    now = clock.now()
    window = timedelta(minutes=float(config["TRAFFIC_WINDOW_MINUTES"]))
    cells = collect(db, since=now - window, res=int(config["TRAFFIC_H3_RES"]))
    min_riders = int(config["TRAFFIC_MIN_RIDERS"])
    qualifying = {cell: entry for cell, entry in cells.items()
                  if entry[0] and len(entry[1]) >= min_riders and len(entry[2]) >= 2}
    if not qualifying:
        return 0
    now_hour = int((now - _EPOCH).total_seconds() // 3600)
    histories = {doc["_id"]: doc for doc in db.traffic_history.find({"_id": {"$in": list(qualifying)}})}
    for n, (cell, (speeds, riders, _parties)) in enumerate(qualifying.items()):
        if n % 50 == 49:
            time.sleep(0)  # the live path runs between chunks of writes too
        speed_median, speed_p85 = round(median(speeds), 1), round(percentile(speeds, 0.85), 1)
        lat, lng = h3.cell_to_latlng(cell)
        db.traffic_cells.replace_one({"_id": cell}, {
            "_id": cell, "center": {"type": "Point", "coordinates": [lng, lat]},
            "speed_median_kmh": speed_median, "speed_p85_kmh": speed_p85,
            "riders": riders_bucket(len(riders)),
            "level": level_of(speed_median, _reference(histories.get(cell), now_hour)),
            "updated_at": now, "expires_at": now + window,
        }, upsert=True)
        # One sample per hour: the first aggregate of the hour; the last 168 kept.
        try:
            # Upsert only for a new cell: past an existing document whose `samples.h` already
            # holds this hour it would insert a second document with the same _id.
            db.traffic_history.update_one(
                {"_id": cell, "samples.h": {"$ne": now_hour}},
                {"$push": {"samples": {"$each": [{"h": now_hour, "p85": speed_p85}], "$slice": -HISTORY_HOURS}}},
                upsert=cell not in histories)
        except DuplicateKeyError:  # another process created the history first: its sample stands
            pass
    return len(qualifying)


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
