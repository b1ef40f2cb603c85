"""scripts/seed.py and the ALLYNET_DEMO start-up loader: what a seeded city looks like to clients."""
import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allynet import create_app, geo, seeding
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--users", "120", "--fast-hashes", "--no-progress", "--seed", "7"]


@pytest.fixture(scope="module")
def seed_script():
    return load_script("seed")


@pytest.fixture
def seed(seed_script, app, db):
    """Run the seed script in-process against the test's store; returns its exit code."""
    def run(*argv):
        return seed_script.main(list(argv), db=db, config=app.config)

    return run


def login(client, email, password=seeding.DEMO_PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def test_seed_creates_users_helpers_and_working_logins(seed, db, client, capsys):
    assert seed(*SMALL) == 0
    out = capsys.readouterr().out
    assert "admin@allynet.example" in out and "users" in out
    assert db.users.count_documents({}) == 120 + len(seeding.DEMO_ACCOUNTS)
    helpers = db.users.count_documents({"is_helper": True})
    verified = db.users.count_documents({"is_helper": True, "verified": True})
    assert 0 < verified < helpers < 120
    # Every demo account logs in with the demo password, with its role.
    for local, role, _ in seeding.DEMO_ACCOUNTS:
        response = login(client, f"{local}@{seeding.DEMO_DOMAIN}")
        assert response.status_code == 200, local
        assert response.get_json()["data"]["user"]["role"] == role
    # Population members share the one demo hash, and log in too.
    member = db.users.find_one({"role": "user", "email": {"$regex": r"\.\d+@"}})
    assert login(client, member["email"]).status_code == 200
    assert len(set(db.users.distinct("password_hash"))) == 1


def test_seeded_users_are_valid_and_clustered(seed, db, client):
    assert seed(*SMALL, "--city", "berlin", "--radius-km", "10") == 0
    centre_lat, centre_lng = seeding.CITIES["berlin"]
    distances = []
    for user in db.users.find({"location": {"$ne": None}}):
        lng, lat = user["location"]["coordinates"]
        assert user["location"]["type"] == "Point" and geo.valid_lng_lat(lng, lat)
        distances.append(geo.haversine_m(centre_lng, centre_lat, lng, lat))
    assert max(distances) <= 10_000
    # Dense centre, sparse edge: the inner half of the radius (a quarter of the area) holds most people.
    inner = sum(1 for d in distances if d <= 5_000)
    assert inner / len(distances) > 0.6
    # Helpers have fresh locations (SOS looks at the last 24 h) and the API serves their profiles.
    helper = login(client, f"helper@{seeding.DEMO_DOMAIN}").get_json()["data"]
    profile = client.get("/api/v1/profile", headers={"Authorization": f"Bearer {helper['access_token']}"})
    body = profile.get_json()["data"]
    assert body["is_helper"] and body["verified"] and body["location"]["lat"] == pytest.approx(centre_lat, abs=0.01)
    for user in db.users.find({"is_helper": True}):
        assert (seeding.clock.now() - user["location_updated_at"]).total_seconds() < 24 * 3600


def test_same_seed_same_city(seed_script):
    cities = []
    for _ in range(2):
        app = create_app("testing")  # a fresh store each time
        store = app.extensions["allynet_db"]
        assert seed_script.main(SMALL, db=store, config=app.config) == 0
        cities.append(sorted((u["email"], tuple(u["location"]["coordinates"]) if u["location"] else None,
                              u["is_helper"], u["verified"]) for u in store.users.find()))
    assert cities[0] == cities[1]


def test_city_centre_flags_and_validation(seed, db, capsys):
    assert seed(*SMALL, "--city-lat", "-33.8688", "--city-lng", "151.2093", "--radius-km", "3") == 0
    for user in db.users.find({"location": {"$ne": None}}):
        lng, lat = user["location"]["coordinates"]
        assert geo.haversine_m(151.2093, -33.8688, lng, lat) <= 3_000
    before = db.users.count_documents({})
    with pytest.raises(SystemExit) as exc:
        seed("--city-lat", "95", "--users", "5")
    assert exc.value.code == 2
    assert "--city-lat" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        seed("--password", "short", "--users", "5")
    with pytest.raises(SystemExit):
        seed("--currency", "xau", "--users", "5")  # a metal: budgets the API would refuse
    assert "--currency" in capsys.readouterr().err
    assert db.users.count_documents({}) == before


def test_seeding_twice_is_refused_and_drop_needs_confirmation(seed, db, capsys):
    assert seed(*SMALL) == 0
    count = db.users.count_documents({})
    assert seed(*SMALL) == 1
    assert "--drop" in capsys.readouterr().err
    # --drop without --yes and without a terminal to ask on: refused, nothing changes.
    sys_stdin = sys.stdin
    sys.stdin = io.StringIO("yes\n")
    try:
        assert seed(*SMALL, "--drop") == 1
    finally:
        sys.stdin = sys_stdin
    assert "not confirmed" in capsys.readouterr().err
    assert db.users.count_documents({}) == count
    # --drop --yes starts over: same size, indexes back.
    assert seed(*SMALL, "--drop", "--yes") == 0
    assert db.users.count_documents({}) == count
    assert "email_unique" in db.users.index_information()


def test_confirmation_accepts_yes_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert seeding.confirm("Drop?", Terminal("yes\n")) is True
    assert seeding.confirm("Drop?", Terminal("\n")) is False


def test_unique_emails_enforced_after_seeding(seed, db):
    assert seed(*SMALL) == 0
    info = db.users.index_information()
    assert info["email_unique"]["unique"] is True
    from pymongo.errors import DuplicateKeyError

    with pytest.raises(DuplicateKeyError):
        db.users.insert_one({"email": f"admin@{seeding.DEMO_DOMAIN}"})


def test_demo_loads_at_start_up_and_logs_logins(caplog):
    with caplog.at_level("INFO", logger="allynet.demo"):
        app = create_app("testing", ALLYNET_DEMO=True)
    store = app.extensions["allynet_db"]
    assert store.users.count_documents({}) >= 250
    assert f"admin@{seeding.DEMO_DOMAIN}" in caplog.text and seeding.DEMO_PASSWORD in caplog.text
    client = app.test_client()
    assert login(client, f"moderator@{seeding.DEMO_DOMAIN}").status_code == 200
    # A second app on the same store does not seed it twice.
    again = create_app("testing", ALLYNET_DEMO=True, MONGO_CLIENT=store.client)
    assert again.extensions["allynet_db"].users.count_documents({}) == store.users.count_documents({})


def test_destination_stays_valid_near_the_antimeridian_and_poles():
    for lat, lng in ((0.0, 179.999), (89.99, 10.0), (-89.99, -179.9)):
        for bearing in (0, math.pi / 2, math.pi, 3 * math.pi / 2):
            new_lat, new_lng = seeding.destination(lat, lng, 5000, bearing)
            assert geo.valid_lng_lat(*seeding.point(new_lat, new_lng)["coordinates"])


@settings(max_examples=300, deadline=None)
@given(lat=st.floats(-90, 90), lng=st.floats(-180, 180), distance=st.floats(0, 200_000),
       bearing=st.floats(0, 2 * math.pi))
def test_seeded_points_always_satisfy_2dsphere(lat, lng, distance, bearing):
    new_lat, new_lng = seeding.destination(lat, lng, distance, bearing)
    location = seeding.point(new_lat, new_lng)
    assert location["type"] == "Point" and geo.valid_lng_lat(*location["coordinates"])


def test_help_runs_as_a_script():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "seed.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--fast-hashes" in result.stdout and "ALLYNET_DEMO" in result.stdout and "MONGO_URI" in result.stdout
