#!/usr/bin/env python
"""Benchmark the SOS critical path: create-to-last-helper-notified latency.

Seeds N users (default 10,000; 10% verified on-duty helpers with fresh
locations spread around a city centre) into the embedded store, or into
MongoDB when MONGO_URI (or --mongo-uri) is set, then raises --sos
emergencies (default 200), one per distinct requester at random points of
the city, and prints p50/p90/p99/max.

What is measured (no real network, no Socket.IO transport):

- ``request``: POST /api/v1/emergencies through the Flask test client, i.e.
  JWT check, validation, the one-open-SOS compare-and-set, the helper search
  ($geoNear + ranking), the insert and every ``emergency.created`` emit,
  until the 201 response is built.
- ``last_notified``: from the start of that request to the moment the emit
  to the LAST alerted helper's ``user:<id>`` room returned. Measured by an
  instrumented ``allynet.realtime.emit_to_room`` (a timing wrapper around the
  real one). The Socket.IO server is the app's own (threading mode, no
  message queue); --listeners of the helpers are connected as Socket.IO test
  clients, so part of the emits really are delivered, and the script checks
  that each listener received exactly the alerts it was due.
- ``request_cpu``: CPU time of the requesting thread for the same span
  (``time.thread_time``): the cost of the path itself, unaffected by other
  processes competing for the CPU (wall-clock figures are, on a busy host).

``--mode service`` calls ``emergencies.service.create_emergency`` directly
(no HTTP/JWT layer) instead of the test client.

Bcrypt cost 4 is used for the seeded accounts (one hash shared by all).
Example: ``python bench/sos.py --users 10000 --sos 200``.
"""
import argparse
import math
import os
import random
import statistics
import sys
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bson import ObjectId  # noqa: E402

from allynet import clock, create_app, embedded, gc_tuning, realtime  # noqa: E402
from allynet.auth import service as auth_service  # noqa: E402
from allynet.auth.passwords import hash_password  # noqa: E402
from allynet.emergencies import service as emergencies_service  # noqa: E402
from allynet.emergencies.schemas import create_schema  # noqa: E402
from allynet.geo import EARTH_RADIUS_M  # noqa: E402
from allynet.users.service import new_user_document  # noqa: E402

CITY = (45.7640, 4.8357)  # Lyon
BENCH_PASSWORD = "bench-password"


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10000, help="users to seed (default 10000)")
    parser.add_argument("--helper-share", type=float, default=0.10,
                        help="share of users who are verified, on-duty helpers (default 0.10)")
    parser.add_argument("--sos", type=int, default=200, help="emergencies to raise (default 200, one per requester)")
    parser.add_argument("--city-radius-km", type=float, default=10.0,
                        help="users are spread over a disc of this radius (default 10)")
    parser.add_argument("--listeners", type=int, default=100,
                        help="helpers connected as Socket.IO test clients (default 100)")
    parser.add_argument("--mode", choices=("http", "service"), default="http",
                        help="through the Flask test client (default) or the service function")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--mongo-uri", default=os.environ.get("MONGO_URI"),
                        help="MongoDB to use (default $MONGO_URI; unset: the embedded store)")
    parser.add_argument("--mongo-db", default=os.environ.get("MONGO_DB", "allynet_bench"),
                        help="database name on MongoDB; it is emptied first (default allynet_bench)")
    args = parser.parse_args(argv)
    if args.sos > args.users * (1 - args.helper_share):
        parser.error("--sos needs that many non-helper users")
    return args


def random_point(rng, radius_km):
    """A point uniformly spread over the city disc, as a GeoJSON Point."""
    distance = radius_km * 1000 * math.sqrt(rng.random())
    bearing = rng.uniform(0, 2 * math.pi)
    lat = CITY[0] + math.degrees(distance * math.cos(bearing) / EARTH_RADIUS_M)
    lng = CITY[1] + math.degrees(distance * math.sin(bearing) / (EARTH_RADIUS_M * math.cos(math.radians(CITY[0]))))
    return {"type": "Point", "coordinates": [lng, lat]}


def seed(db, args, rng):
    """Insert the users; returns (requesters, helpers) as lists of documents."""
    password_hash = hash_password(BENCH_PASSWORD, rounds=4)
    now = clock.now()
    helpers_wanted = int(args.users * args.helper_share)
    docs = []
    for index in range(args.users):
        helper = index < helpers_wanted
        doc = new_user_document(email=f"bench{index}@bench.example", password_hash=password_hash,
                                display_name=f"Bench {index}", is_helper=helper, verified=helper,
                                trust_score=round(rng.uniform(20, 95), 1) if helper else 50.0,
                                location=random_point(rng, args.city_radius_km), created_at=now)
        doc["_id"] = ObjectId()
        # helpers reported their position within the last 12 hours
        doc["location_updated_at"] = now - timedelta(minutes=rng.uniform(0, 720))
        docs.append(doc)
    for start in range(0, len(docs), 1000):
        db.users.insert_many(docs[start:start + 1000])
    return docs[helpers_wanted:], docs[:helpers_wanted]


def percentile(values, share):
    """Nearest-rank percentile of a list of numbers."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def describe(name, seconds):
    """One line of latency figures in milliseconds."""
    ms = [value * 1000 for value in seconds]
    return (f"{name:<14} n={len(ms):<4} p50={percentile(ms, 0.50):8.2f}  p90={percentile(ms, 0.90):8.2f}  "
            f"p99={percentile(ms, 0.99):8.2f}  max={max(ms):8.2f}  mean={statistics.mean(ms):8.2f} ms")


def main(argv=None):
    """Seed, raise the emergencies, print the figures."""
    args = parse_args(argv)
    rng = random.Random(args.seed)
    if args.mongo_uri:
        import pymongo

        client = pymongo.MongoClient(args.mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=False)
        store = f"MongoDB database {args.mongo_db}"
    else:
        client = embedded.make_client()
        store = "embedded store"
    db = client[args.mongo_db]
    for name in ("users", "emergencies", "idempotency_keys", "emergency_messages"):
        db[name].delete_many({})

    started = time.perf_counter()
    # Seeded before the app creates its indexes: mongomock checks a unique index by scanning the
    # collection on every insert, so 10,000 inserts under the email index would be quadratic.
    requesters, helpers = seed(db, args, rng)
    app = create_app("testing", MONGO_CLIENT=client, MONGO_DB=args.mongo_db, RATELIMIT_ENABLED=False,
                     BCRYPT_ROUNDS=4, BACKGROUND_TASKS=False, LOG_LEVEL="WARNING")
    with app.app_context():
        tokens = {doc["_id"]: auth_service.issue_tokens(doc)["access_token"] for doc in requesters[:args.sos]}
    # The server's collector settings (wsgi.py), over a settled heap: without them the young
    # collector re-walks the just-seeded store and full collections of it (up to ~250 ms at 100,000
    # users) land inside the measured requests, which a server that grew its store over time does
    # not see. With MongoDB the store is not in this process at all.
    gc_tuning.tune_gc()
    print(f"seeded {args.users} users ({len(helpers)} helpers) into the {store} "
          f"in {time.perf_counter() - started:.1f} s")

    sio = app.extensions["socketio"]
    listeners = {}
    with app.app_context():
        for doc in rng.sample(helpers, min(args.listeners, len(helpers))):
            token = auth_service.issue_tokens(doc)["access_token"]
            listeners[doc["_id"]] = sio.test_client(app, auth={"token": token})

    marks = {"last": None, "alerts": 0}
    real_emit = realtime.emit_to_room

    def timed_emit(room, event, data, skip_sid=None):
        result = real_emit(room, event, data, skip_sid=skip_sid)
        if event == "emergency.created":
            marks["last"] = time.perf_counter()
            marks["alerts"] += 1
        return result

    realtime.emit_to_room = timed_emit
    client = app.test_client()
    request_s, notified_s, cpu_s, counts, expected = [], [], [], [], {}
    try:
        for doc in requesters[:args.sos]:
            lng, lat = random_point(rng, args.city_radius_km)["coordinates"]
            body = {"type": rng.choice(["medical", "fire", "crime", "accident", "breakdown", "other"]),
                    "location": {"lat": lat, "lng": lng}}
            marks["last"], marks["alerts"] = None, 0
            c0 = time.thread_time()
            t0 = time.perf_counter()
            if args.mode == "http":
                response = client.post("/api/v1/emergencies", json=body,
                                       headers={"Authorization": f"Bearer {tokens[doc['_id']]}"})
                if response.status_code != 201:
                    raise SystemExit(f"create failed: {response.status_code} {response.get_data(as_text=True)}")
            else:
                with app.app_context():
                    emergencies_service.create_emergency(db=db, user_id=doc["_id"], data=create_schema.load(body))
            t1 = time.perf_counter()
            cpu_s.append(time.thread_time() - c0)
            request_s.append(t1 - t0)
            counts.append(marks["alerts"])
            if marks["last"] is not None:
                notified_s.append(marks["last"] - t0)
        for emergency in db.emergencies.find({}, projection={"notified_helper_ids": 1}):
            for helper_id in emergency["notified_helper_ids"]:
                expected[helper_id] = expected.get(helper_id, 0) + 1
    finally:
        realtime.emit_to_room = real_emit

    delivered_ok = 0
    for helper_id, sio_client in listeners.items():
        got = sum(1 for event in sio_client.get_received() if event["name"] == "emergency.created")
        delivered_ok += got == expected.get(helper_id, 0)
        sio_client.disconnect()

    print(f"mode={args.mode}  emergencies={len(request_s)}  helpers alerted per SOS: "
          f"mean {statistics.mean(counts):.1f}, min {min(counts)}, max {max(counts)}")
    print(describe("request", request_s))
    if notified_s:
        print(describe("last_notified", notified_s))
    print(describe("request_cpu", cpu_s))
    print(f"listeners: {delivered_ok}/{len(listeners)} received exactly the alerts they were due")
    return 0 if delivered_ok == len(listeners) else 1


if __name__ == "__main__":
    sys.exit(main())
