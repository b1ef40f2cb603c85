"""The traffic job reads only what changed since its last run: its cells must be, run after run,
exactly what a full recompute of the window gives (points arriving late, deleted, leaving the
window, the same rider over many minutes, runs with nothing new)."""
from datetime import datetime, timedelta

import h3
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from allynet.db import is_embedded
from allynet.mapdata import traffic

CENTRE = (45.764, 4.8357)
CELLS = [CENTRE, *(h3.cell_to_latlng(c) for c in sorted(h3.grid_ring(h3.latlng_to_cell(*CENTRE, 9), 1))[:2])]
RIDERS = [ObjectId() for _ in range(6)]
PARTIES = [ObjectId(), ObjectId(), None]  # None: a rider outside any party
START = datetime(2026, 5, 4, 8, 0, 0)


@pytest.fixture(params=["store", "ts_reads"], autouse=True)
def read_path(request, monkeypatch):
    """Each test twice: as the store runs it (the embedded store: its change log), and with the
    reads MongoDB gets (`ts` ranges and counts), which the embedded store answers too."""
    if request.param == "ts_reads":
        monkeypatch.setattr(traffic, "is_embedded", lambda client: False)
    return request.param


def expected_cells(db, config, now):
    """The cells a full recompute of the window publishes: {h3: (median, p85, riders bucket, level)}."""
    since = now - timedelta(minutes=config["TRAFFIC_WINDOW_MINUTES"])
    grouped = {}
    for point in db.trail_points.find({"ts": {"$gte": since}}):
        lng, lat = point["location"]["coordinates"]
        speeds, riders, parties = grouped.setdefault(h3.latlng_to_cell(lat, lng, config["TRAFFIC_H3_RES"]),
                                                     ([], set(), set()))
        if point.get("speed_kmh") is not None:
            speeds.append(point["speed_kmh"])
        riders.add(point["user_id"])
        parties.add(point["party_id"] or ("solo", point["user_id"]))
    found = {}
    for cell, (speeds, riders, parties) in grouped.items():
        if speeds and len(riders) >= config["TRAFFIC_MIN_RIDERS"] and len(parties) >= 2:
            speeds.sort()
            middle = len(speeds) // 2
            median = speeds[middle] if len(speeds) % 2 else (speeds[middle - 1] + speeds[middle]) / 2.0
            p85 = speeds[int(round(0.85 * (len(speeds) - 1)))]
            bucket = ">10" if len(riders) > 10 else "6-10" if len(riders) > 5 else "3-5"
            found[cell] = (round(median, 1), round(p85, 1), bucket, traffic.level_of(round(median, 1), None))
    return found


def published_now(db, now):
    """The cells the last run (at `now`) wrote, as `expected_cells` shows them."""
    return {doc["_id"]: (doc["speed_median_kmh"], doc["speed_p85_kmh"], doc["riders"], doc["level"])
            for doc in db.traffic_cells.find({"updated_at": now})}


def run_and_compare(app, db, clock):
    count = traffic.aggregate(db=db, config=app.config)
    expected = expected_cells(db, app.config, clock.current)
    assert published_now(db, clock.current) == expected
    assert count == len(expected)
    for doc in db.traffic_cells.find({"updated_at": clock.current}):
        lat, lng = h3.cell_to_latlng(doc["_id"])
        assert doc["center"] == {"type": "Point", "coordinates": [lng, lat]}
        assert doc["expires_at"] == clock.current + timedelta(minutes=app.config["TRAFFIC_WINDOW_MINUTES"])
    return expected


def point(rider, party, at, speed=30.0, place=CENTRE):
    return {"_id": ObjectId(), "party_id": party, "user_id": rider, "ts": at, "speed_kmh": speed,
            "location": {"type": "Point", "coordinates": [place[1], place[0]]}}


OPERATIONS = st.lists(st.one_of(
    # insert points: (rider, party, cell, seconds before now (late ones included), speed or None)
    st.tuples(st.just("insert"), st.lists(st.tuples(
        st.integers(0, len(RIDERS) - 1), st.integers(0, len(PARTIES) - 1), st.integers(0, len(CELLS) - 1),
        st.integers(-30, 900), st.one_of(st.none(), st.sampled_from([5.0, 12.5, 20.0, 33.3, 41.0, 60.0]))),
        min_size=1, max_size=12)),
    st.tuples(st.just("delete"), st.integers(0, 5)),  # the n-th stored point, if any
    st.tuples(st.just("advance"), st.integers(1, 240)),  # seconds: 100 minutes at most, no history yet
    st.tuples(st.just("run"), st.just(0)),
), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(OPERATIONS)
def test_every_run_matches_a_full_recompute(app, db, clock, operations):
    # One store for every example: start each from nothing (the job's memory included), at the
    # start of an hour (fewer than HISTORY_MIN_SAMPLES hours: the fixed bands apply).
    for collection in (db.trail_points, db.traffic_cells, db.traffic_history):
        collection.delete_many({})
    traffic.forget(db)
    clock.current = START
    for kind, value in operations + [("run", 0)]:
        if kind == "insert":
            db.trail_points.insert_many([
                point(RIDERS[rider], PARTIES[party], clock.current - timedelta(seconds=ago), speed, CELLS[cell])
                for rider, party, cell, ago, speed in value])
        elif kind == "delete":
            stored = list(db.trail_points.find({}, projection={"_id": 1}).sort("_id", 1))
            if stored:
                db.trail_points.delete_one({"_id": stored[value % len(stored)]["_id"]})
        elif kind == "advance":
            clock.advance(seconds=value)
        else:
            clock.advance(milliseconds=1)  # what this run wrote, told from what an earlier one did
            run_and_compare(app, db, clock)


def test_a_point_stored_late_counts(app, db, clock):
    db.trail_points.insert_many([point(RIDERS[0], PARTIES[0], clock.current), point(RIDERS[1], PARTIES[1], clock.current)])
    assert run_and_compare(app, db, clock) == {}
    clock.advance(minutes=2)
    # Stamped five minutes ago, stored only now (after the last run's time): it still counts.
    db.trail_points.insert_one(point(RIDERS[2], PARTIES[1], clock.current - timedelta(minutes=5), speed=50.0))
    cell = h3.latlng_to_cell(*CENTRE, 9)
    assert run_and_compare(app, db, clock) == {cell: (30.0, 50.0, "3-5", "slow")}


def test_points_leave_the_window_minute_by_minute(app, db, clock):
    start = clock.current
    db.trail_points.insert_many([point(RIDERS[0], PARTIES[0], start, speed=10.0),
                                 point(RIDERS[1], PARTIES[1], start + timedelta(seconds=30), speed=20.0),
                                 point(RIDERS[2], PARTIES[1], start + timedelta(minutes=4), speed=50.0)])
    clock.advance(minutes=4)
    assert run_and_compare(app, db, clock)
    # The first point leaves, half a minute later the second (the same minute): no longer 3 riders.
    clock.current = start + timedelta(minutes=10, seconds=1)
    cell = h3.latlng_to_cell(*CENTRE, 9)
    assert run_and_compare(app, db, clock) == {}
    db.trail_points.insert_one(point(RIDERS[3], PARTIES[0], clock.current, speed=40.0))
    assert run_and_compare(app, db, clock) == {cell: (40.0, 50.0, "3-5", "free")}
    clock.current = start + timedelta(minutes=10, seconds=31)
    assert run_and_compare(app, db, clock) == {}
    clock.current = start + timedelta(minutes=30)
    assert run_and_compare(app, db, clock) == {}


def test_a_rider_over_many_minutes_counts_once(app, db, clock):
    start = clock.current - timedelta(minutes=9)
    # Two riders from two parties, one point a minute each for nine minutes: 18 points, 2 riders.
    db.trail_points.insert_many([point(RIDERS[i], PARTIES[i], start + timedelta(minutes=m)) for i in (0, 1)
                                 for m in range(9)])
    assert run_and_compare(app, db, clock) == {}
    db.trail_points.insert_one(point(RIDERS[2], PARTIES[0], clock.current))
    cell = h3.latlng_to_cell(*CENTRE, 9)
    assert run_and_compare(app, db, clock)[cell][2] == "3-5"
    # As the window moves on, the first two riders still count, once each, while a point is left.
    for _ in range(8):
        clock.advance(minutes=1)
        assert run_and_compare(app, db, clock)[cell][2] == "3-5"
    clock.advance(minutes=1, seconds=1)  # their last points leave: two riders are not enough
    assert run_and_compare(app, db, clock) == {}


def test_runs_with_nothing_new_count_nothing_twice(app, db, clock):
    db.trail_points.insert_many([point(rider, PARTIES[i % 2], clock.current, speed=10.0 * (i + 1))
                                 for i, rider in enumerate(RIDERS[:5])])
    cell = h3.latlng_to_cell(*CENTRE, 9)
    first = run_and_compare(app, db, clock)
    assert first == {cell: (30.0, 40.0, "3-5", "slow")}
    for _ in range(3):
        assert run_and_compare(app, db, clock) == first
        clock.advance(seconds=20)
    assert run_and_compare(app, db, clock) == first


def test_a_new_process_starts_from_the_whole_window(app, db, clock):
    db.trail_points.insert_many([point(rider, PARTIES[i % 2], clock.current) for i, rider in enumerate(RIDERS[:3])])
    expected = run_and_compare(app, db, clock)
    assert expected
    traffic.forget(db)  # what a process starting now knows
    clock.advance(seconds=1)
    assert run_and_compare(app, db, clock) == expected


def test_a_dropped_collection_starts_over(app, db, clock):
    db.trail_points.insert_many([point(rider, PARTIES[i % 2], clock.current) for i, rider in enumerate(RIDERS[:3])])
    assert run_and_compare(app, db, clock)
    db.trail_points.drop()
    clock.advance(seconds=1)
    assert run_and_compare(app, db, clock) == {}
    db.trail_points.insert_many([point(rider, PARTIES[i % 2], clock.current) for i, rider in enumerate(RIDERS[3:])])
    assert run_and_compare(app, db, clock)


def test_a_run_reads_only_what_is_new(app, db, clock, read_path, monkeypatch):
    change_log = read_path == "store" and is_embedded(db.client)  # on MongoDB both read `ts` ranges
    reads = []
    original = type(db.trail_points).find

    def spy(collection, filter=None, *args, **kwargs):
        if collection.name == "trail_points":
            reads.append(filter)
        return original(collection, filter, *args, **kwargs)

    monkeypatch.setattr(type(db.trail_points), "find", spy)
    db.trail_points.insert_many([point(rider, PARTIES[i % 2], clock.current) for i, rider in enumerate(RIDERS[:3])])
    window = timedelta(minutes=app.config["TRAFFIC_WINDOW_MINUTES"])
    assert traffic.aggregate(db=db, config=app.config) == 1
    # The embedded store hands its documents and then its changes over: no query at all.
    assert reads == ([] if change_log else [{"ts": {"$gte": clock.current - window}}])
    for _ in range(12):  # past the window: points leave it too
        reads.clear()
        clock.advance(minutes=1)
        db.trail_points.insert_many([point(rider, PARTIES[i % 2], clock.current) for i, rider in enumerate(RIDERS[:3])])
        assert traffic.aggregate(db=db, config=app.config) == 1
        # From the last run's time less the settling margin: the window is not read again.
        assert reads == ([] if change_log else
                         [{"ts": {"$gte": clock.current - timedelta(minutes=1) - traffic.SETTLE}}])
        assert published_now(db, clock.current) == expected_cells(db, app.config, clock.current)
