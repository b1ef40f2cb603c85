#!/usr/bin/env python
"""Time the map-data background jobs on the embedded store, and how long each holds the hub.

For each --riders N (default 100, 1000 and 5000) a fresh app on the embedded store is seeded
with N riders in parties of --party-size, each leaving a trail point every TRAIL_SAMPLE_SECONDS
for the --minutes before now (the traffic window and a few minutes older), then:

- ``traffic first``: the first traffic run of a process (everything in the window is read);
- ``traffic next``: one minute and N riders' minute of new points later, the next run: what a
  server pays every TRAFFIC_INTERVAL_SECONDS once it runs;
- ``weather``: one on-the-road weather check of the N riders' active memberships (forecasts
  answered from a filled cache, a third of the parties riding into ice), after a first check
  that started the episodes.

Each figure is the median of --runs runs' CPU time, and ``max hold`` the longest stretch any of
them kept the eventlet hub from running another green thread (a ticker green thread measures the
CPU time between its turns; the longest garbage-collector pass inside is printed beside it, the
server's collector settings applied). CPU time, not wall time: on a busy host a process waiting for a core
would count as holding the hub. The jobs run as the server runs them: under eventlet,
monkey-patched, one OS thread (so the thread's CPU time is the job's, the hub's and the ticker's).
Example: ``python bench/mapdata_jobs.py --riders 100 1000 5000``.
"""
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.simplefilter("ignore")

from bson import ObjectId  # noqa: E402

from allynet import clock, create_app, gc_tuning  # noqa: E402
from allynet.mapdata import traffic, weather  # noqa: E402

CITY = (45.7640, 4.8357)  # Lyon
MILD = {"temperature_c": 12.5, "precipitation_mm": 0.0, "wind_kmh": 14.0, "gusts_kmh": 25.0,
        "visibility_m": 24000.0, "code": 3}
ICE = {**MILD, "temperature_c": -2.0, "precipitation_mm": 0.6, "code": 66}


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--riders", type=int, nargs="+", default=[100, 1000, 5000],
                        help="rider counts to time (default 100 1000 5000)")
    parser.add_argument("--party-size", type=int, default=5, help="riders per party (default 5)")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="minutes of trail before now (default 15: the 10-minute window and 5 older)")
    parser.add_argument("--city-radius-km", type=float, default=8.0, help="parties start in this disc (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each job per figure (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    return parser.parse_args(argv)


class Rider:
    """A rider moving at a steady speed and heading from a start point."""

    def __init__(self, rng, party_id, start):
        self.user_id, self.party_id = ObjectId(), party_id
        self.lat, self.lng = start
        self.speed = rng.uniform(5.0, 60.0)
        self.heading = rng.uniform(0, 2 * math.pi)

    def point(self, ts, seconds):
        """The trail point at `ts` after riding `seconds` since the last one."""
        metres = self.speed / 3.6 * seconds
        self.lat += math.degrees(metres * math.cos(self.heading) / 6371000.0)
        self.lng += math.degrees(metres * math.sin(self.heading) / (6371000.0 * math.cos(math.radians(self.lat))))
        return {"party_id": self.party_id, "user_id": self.user_id, "ts": ts, "speed_kmh": round(self.speed, 1),
                "heading": 0.0, "status": "riding", "location": {"type": "Point", "coordinates": [self.lng, self.lat]}}


def make_riders(rng, args, count):
    """`count` riders in parties of --party-size, each party starting together somewhere in the city."""
    riders = []
    while len(riders) < count:
        party_id = ObjectId()
        distance, bearing = args.city_radius_km * 1000 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        start = (CITY[0] + math.degrees(distance * math.cos(bearing) / 6371000.0),
                 CITY[1] + math.degrees(distance * math.sin(bearing) / (6371000.0 * math.cos(math.radians(CITY[0])))))
        riders.extend(Rider(rng, party_id, start) for _ in range(min(args.party_size, count - len(riders))))
    return riders


def ride(db, riders, start, seconds, step):
    """Insert every rider's trail points from `start` for `seconds`, one every `step` seconds."""
    batch = []
    for tick in range(int(seconds // step)):
        ts = start + timedelta(seconds=tick * step)
        batch.extend(rider.point(ts, step) for rider in riders)
        if len(batch) >= 20000:
            db.trail_points.insert_many(batch)
            batch = []
    if batch:
        db.trail_points.insert_many(batch)


def seed_memberships(db, riders, now):
    """Active memberships at the riders' positions, and a filled weather cache (ice for a third)."""
    db.party_members.insert_many([
        {"party_id": rider.party_id, "user_id": rider.user_id, "active": True, "role": "member", "joined_at": now,
         "last_update_at": now, "status": "riding", "last_location": {"type": "Point",
                                                                       "coordinates": [rider.lng, rider.lat]}}
        for rider in riders])
    for n, cell in enumerate(sorted({weather.cell_of(rider.lat, rider.lng) for rider in riders})):
        current = {**(ICE if n % 3 == 0 else MILD), "time": now.strftime("%Y-%m-%dT%H:%M:%S")}
        weather.cache_put(db, cell, {"current": current, "hourly": [], "fetched_at": current["time"],
                                     "source": "bench"}, {"WEATHER_STALE_SECONDS": 86400})


def timed(app, fn):
    """(CPU seconds, longest hub hold in CPU seconds, result) of `fn()` in a green thread of `app`."""
    state = {"running": True, "max_gap": 0.0, "gc_started": 0.0, "max_gc": 0.0}

    def on_gc(phase, info):
        if phase == "start":
            state["gc_started"] = time.thread_time()
        else:
            state["max_gc"] = max(state["max_gc"], time.thread_time() - state["gc_started"])

    def ticker():
        last = time.thread_time()
        while state["running"]:
            eventlet.sleep(0)
            now = time.thread_time()
            state["max_gap"] = max(state["max_gap"], now - last)
            last = now

    watcher = eventlet.spawn(ticker)
    eventlet.sleep(0)
    gc.callbacks.append(on_gc)
    started = time.thread_time()
    result = eventlet.spawn(in_context, app, fn).wait()
    elapsed = time.thread_time() - started
    gc.callbacks.remove(on_gc)
    state["running"] = False
    watcher.wait()
    return elapsed, state["max_gap"], result, state["max_gc"]


def in_context(app, fn):
    """`fn()` inside an app context (a green thread starts without one)."""
    with app.app_context():
        return fn()


def figure(name, samples):
    """One printed line: median ms per run and the longest hold over the runs."""
    ms = statistics.median(s[0] for s in samples) * 1000
    hold = max(s[1] for s in samples) * 1000
    pause = max(s[3] for s in samples) * 1000
    print(f"  {name:<14} {ms:9.1f} ms CPU per run   max hold {hold:7.1f} ms   longest GC pass {pause:6.1f} ms"
          f"   ({samples[-1][2]})", flush=True)
    return ms, hold


def bench(args, count):
    """Seed `count` riders on a fresh app and time the jobs."""
    rng = random.Random(args.seed)
    # The real time, whole seconds: the store's TTL sweep reads the real clock.
    start = datetime.utcnow().replace(microsecond=0)
    now = {"t": start}
    clock.set_now(lambda: now["t"])
    app = create_app("testing", WEATHER_PROVIDER="open-meteo", REDIS_URL=None, OPEN_METEO_URL="http://127.0.0.1:9/")
    gc_tuning.tune_gc()  # the server's collector settings (wsgi.py)
    db = app.extensions["allynet_db"]
    config = app.config
    step = float(config["TRAIL_SAMPLE_SECONDS"])
    riders = make_riders(rng, args, count)
    seeded = time.perf_counter()
    ride(db, riders, start - timedelta(minutes=args.minutes), args.minutes * 60, step)
    print(f"{count} riders: {db.trail_points.estimated_document_count()} trail points seeded in "
          f"{time.perf_counter() - seeded:.0f} s", flush=True)
    with app.app_context():
        first, following = [], []
        for _ in range(args.runs):
            # What a fresh process pays: its first run reads the whole window.
            forget = getattr(traffic, "forget", None)  # the full recompute before it had none
            if forget is not None:
                forget(db)
            first.append(timed(app, lambda: traffic.aggregate(db=db, config=config)))
        for _ in range(args.runs):
            ride(db, riders, now["t"], 60, step)
            now["t"] += timedelta(seconds=60)
            following.append(timed(app, lambda: traffic.aggregate(db=db, config=config)))
        seed_memberships(db, riders, now["t"])
        weather.check_parties(app=app, db=db)
        checks = [timed(app, lambda: weather.check_parties(app=app, db=db)) for _ in range(args.runs)]
    figures = (figure("traffic first", first), figure("traffic next", following), figure("weather", checks))
    clock.set_now(None)
    return figures


def main(argv=None):
    """Run the benchmark for each rider count and print a summary table."""
    args = parse_args(argv)
    rows = [(count, bench(args, count)) for count in args.riders]
    print("\n| riders | traffic, first run | traffic, each next run | weather check |")
    print("|---:|---:|---:|---:|")
    for count, figures in rows:
        cells = " | ".join(f"{ms:.0f} ms (hold {hold:.1f} ms)" for ms, hold in figures)
        print(f"| {count} | {cells} |")


if __name__ == "__main__":
    main()
