"""Traffic from our riders, through the real server: riders' updates over websockets, the
aggregation loop's body, then GET /traffic over HTTP. Privacy first: 3 riders from 2 parties."""
from datetime import datetime, timedelta

import h3
import pytest
import requests
from bson import ObjectId

from allynet import clock as clock_module
from allynet.mapdata import scheduled, traffic
from tests.scaleout_support import SioClient, quiet_werkzeug, served  # noqa: F401  (fixtures)

CELL = h3.latlng_to_cell(45.764, 4.8357, 9)
CELL_LAT, CELL_LNG = h3.cell_to_latlng(CELL)
SPOT = {"lat": CELL_LAT, "lng": CELL_LNG}
BBOX = f"{CELL_LNG - 0.02},{CELL_LAT - 0.02},{CELL_LNG + 0.02},{CELL_LAT + 0.02}"
PROPERTIES = {"h3", "speed_median_kmh", "speed_p85_kmh", "riders", "level", "updated_at"}


@pytest.fixture
def riders(served, make_user):
    """Start parties of riders on the served app: `riders([2, 1])` -> two parties of 2 and 1."""
    sockets = []

    def start(party_sizes, place=SPOT, speeds=None):
        speeds = list(speeds or [])
        users = []
        for size in party_sizes:
            members = [make_user() for _ in range(size)]
            clients = [SioClient(served.url, member["access_token"]) for member in members]
            sockets.extend(clients)
            party = clients[0].call("party:create", {"name": "Ride"})["party"]
            for sio_client in clients[1:]:
                assert sio_client.call("party:join", {"invite_code": party["invite_code"]})["ok"]
            for sio_client in clients:
                speed = speeds.pop(0) if speeds else 35.0
                ack = sio_client.call("party:update", {"party_id": party["id"], "location": place,
                                                       "speed_kmh": speed})
                assert ack["ok"], ack
            users.extend(members)
        return users

    yield start
    for sio_client in sockets:
        sio_client.close()


def aggregate(app):
    with app.app_context():
        return scheduled.aggregate_traffic(app)


def get_traffic(served, user, bbox=BBOX):
    return requests.get(f"{served.url}/api/v1/traffic", params={"bbox": bbox}, headers=user.headers, timeout=10)


def test_three_riders_from_two_parties_make_a_cell_appear(app, served, riders, make_user, db):
    users = riders([2, 1], speeds=[30.0, 40.0, 50.0])
    assert aggregate(app) == 1
    viewer = make_user()
    response = get_traffic(served, viewer)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/geo+json")
    body = response.json()
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 1
    cell = body["features"][0]
    assert cell["geometry"]["type"] == "Polygon" and len(cell["geometry"]["coordinates"][0]) == 7
    assert set(cell["properties"]) == PROPERTIES
    assert cell["properties"]["h3"] == CELL
    assert cell["properties"]["speed_median_kmh"] == 40.0 and cell["properties"]["speed_p85_kmh"] == 50.0
    assert cell["properties"]["riders"] == "3-5" and cell["properties"]["level"] == "free"
    # No aggregate holds an id of anyone.
    ids = {str(user["_id"]) for user in users} | {str(m["party_id"]) for m in db.party_members.find()}
    stored = list(db.traffic_cells.find()) + list(db.traffic_history.find())
    assert stored
    text = repr(stored) + response.text
    assert not [i for i in ids if i in text]
    assert not [v for doc in stored for v in doc.values() if isinstance(v, ObjectId)]


def test_two_riders_are_not_enough(app, served, riders, make_user):
    riders([1, 1])
    assert aggregate(app) == 0
    assert get_traffic(served, make_user()).json()["features"] == []


def test_one_party_is_not_enough(app, served, riders, make_user):
    riders([4])
    assert aggregate(app) == 0
    assert get_traffic(served, make_user()).json()["features"] == []


def test_cells_expire_after_the_window(app, served, riders, make_user, clock):
    riders([2, 1])
    assert aggregate(app) == 1
    viewer = make_user()
    assert len(get_traffic(served, viewer).json()["features"]) == 1
    clock.advance(minutes=app.config["TRAFFIC_WINDOW_MINUTES"], seconds=1)
    assert get_traffic(served, viewer).json()["features"] == []
    # And the old points no longer count.
    assert aggregate(app) == 0


def test_bbox_limits_and_login(served, make_user):
    viewer = make_user()
    too_big = get_traffic(served, viewer, "0,40,10,50")
    assert too_big.status_code == 400
    assert too_big.json()["error"]["code"] == "validation_error" and "bbox" in too_big.json()["error"]["details"]
    for bad in ("1,2,3", "a,b,c,d", "5,45,4,46", "4,46,5,45", "4,45,5,91", "nan,45,5,46"):
        response = get_traffic(served, viewer, bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "validation_error"
    missing = requests.get(f"{served.url}/api/v1/traffic", headers=viewer.headers, timeout=10)
    assert missing.status_code == 400
    anonymous = requests.get(f"{served.url}/api/v1/traffic", params={"bbox": BBOX}, timeout=10)
    assert anonymous.status_code == 401


# ---- the rules, on points stored directly -------------------------------------------------------

def store_points(db, riders_per_party, speed=35.0, at=None, place=(CELL_LAT, CELL_LNG)):
    at = at or clock_module.now()
    for size in riders_per_party:
        party_id = ObjectId()
        for _ in range(size):
            db.trail_points.insert_one({"party_id": party_id, "user_id": ObjectId(), "ts": at, "speed_kmh": speed,
                                        "location": {"type": "Point", "coordinates": [place[1], place[0]]}})


@pytest.mark.parametrize("sizes, bucket", [([3, 3], "6-10"), ([5, 5], "6-10"), ([6, 5], ">10"), ([2, 3], "3-5")])
def test_rider_counts_are_bucketed(app, db, sizes, bucket):
    store_points(db, sizes)
    with app.app_context():
        traffic.aggregate(db=db, config=app.config)
    assert db.traffic_cells.find_one()["riders"] == bucket


def test_a_rider_without_a_party_counts_as_their_own(app, db):
    store_points(db, [2])
    now = clock_module.now()
    db.trail_points.insert_one({"party_id": None, "user_id": ObjectId(), "ts": now, "speed_kmh": 20.0,
                                "location": {"type": "Point", "coordinates": [CELL_LNG, CELL_LAT]}})
    assert traffic.aggregate(db=db, config=app.config) == 1


@pytest.mark.parametrize("speed, level", [(45.0, "free"), (20.0, "slow"), (8.0, "jammed")])
def test_fixed_bands_without_history(app, db, speed, level):
    store_points(db, [2, 1], speed=speed)
    traffic.aggregate(db=db, config=app.config)
    assert db.traffic_cells.find_one()["level"] == level


def test_level_against_the_cells_own_reference(app, db, clock):
    # A 20 km/h street: its usual 85th percentile is 20, so 18 km/h is free there, not slow.
    hour = int((clock.current - datetime(1970, 1, 1)).total_seconds() // 3600)
    db.traffic_history.insert_one({"_id": CELL, "samples": [{"h": hour - i, "p85": 20.0} for i in range(1, 10)]})
    store_points(db, [2, 1], speed=18.0)
    traffic.aggregate(db=db, config=app.config)
    assert db.traffic_cells.find_one()["level"] == "free"
    db.traffic_cells.delete_many({})
    db.trail_points.delete_many({})
    store_points(db, [2, 1], speed=5.0)
    traffic.aggregate(db=db, config=app.config)
    assert db.traffic_cells.find_one()["level"] == "jammed"


def test_history_keeps_one_sample_per_hour_and_a_week_at_most(app, db, clock):
    for _ in range(3):
        store_points(db, [2, 1])
        traffic.aggregate(db=db, config=app.config)
        clock.advance(minutes=20)
    assert len(db.traffic_history.find_one({"_id": CELL})["samples"]) in (1, 2)  # 40 minutes: one or two hours
    db.traffic_history.replace_one({"_id": CELL}, {"_id": CELL, "samples": [{"h": i, "p85": 30.0} for i in range(168)]})
    clock.advance(hours=1)
    store_points(db, [2, 1])
    traffic.aggregate(db=db, config=app.config)
    samples = db.traffic_history.find_one({"_id": CELL})["samples"]
    assert len(samples) == traffic.HISTORY_HOURS and samples[-1]["p85"] == 35.0


def test_points_outside_the_window_do_not_count(app, db, clock):
    store_points(db, [2, 1], at=clock.current - timedelta(minutes=app.config["TRAFFIC_WINDOW_MINUTES"] + 1))
    assert traffic.aggregate(db=db, config=app.config) == 0


def test_the_demo_city_shows_traffic(app_factory):
    from allynet.mapdata import bbox as bbox_module
    from allynet.seeding import CITIES, DEFAULT_CITY

    demo_app = app_factory(ALLYNET_DEMO=True)
    db = demo_app.extensions["allynet_db"]
    with demo_app.app_context():
        assert scheduled.aggregate_traffic(demo_app) > 0
    lat, lng = CITIES[DEFAULT_CITY]
    box = bbox_module.parse(f"{lng - 0.2},{lat - 0.15},{lng + 0.2},{lat + 0.15}")
    cells, _ = traffic.cells_in(db=db, box=box)
    assert cells and all(cell["riders"] in ("3-5", "6-10", ">10") for cell in cells)
