"""Escalation waves: driven by data on the SOS, swept by any process with the frozen clock."""
import threading

import pytest

from allynet import background
from allynet.emergencies import service
from tests.emergencies_helpers import CENTER, act, place_helper, sos
from tests.helpers import events_named

STEP = 30.0  # ESCALATION_SECONDS in these tests


@pytest.fixture
def app(app_factory):
    return app_factory(ESCALATION_SECONDS=STEP, EMERGENCY_CREATE_RATE_LIMIT="1000/minute")


@pytest.fixture
def ring(make_user, socket_client):
    """Helpers at 3, 7, 14 and 30 km north of the centre, each with a socket."""
    helpers = {km: place_helper(make_user, km * 1000) for km in (3, 7, 14, 30)}
    return {km: (user, socket_client(user)) for km, user in helpers.items()}


def _sweep(app, db):
    with app.app_context():
        return service.escalate_due(db=db)


def test_waves_double_the_radius_and_alert_only_new_helpers(app, client, db, make_user, ring, clock):
    owner = make_user(location=CENTER)
    created = sos(client, owner, radius_m=4000).get_json()["data"]
    sid = created["emergency"]["id"]
    assert created["notified_helpers"] == 1
    first_alert = events_named(ring[3][1], "emergency.created")
    assert [a["wave"] for a in first_alert] == [1]

    clock.advance(seconds=STEP - 1)
    assert _sweep(app, db) == []  # not due yet

    clock.advance(seconds=1)
    assert [(str(e), w, n) for e, w, n in _sweep(app, db)] == [(sid, 2, 1)]  # 8 km
    wave_two = events_named(ring[7][1], "emergency.created")
    assert len(wave_two) == 1 and wave_two[0]["wave"] == 2 and wave_two[0]["id"] == sid
    assert wave_two[0]["distance_m"] == pytest.approx(7000, abs=2)
    assert events_named(ring[3][1], "emergency.created") == []  # never twice
    assert _sweep(app, db) == []  # the next wave is STEP later

    clock.advance(seconds=STEP)
    assert [w for _, w, _ in _sweep(app, db)] == [3]  # 16 km
    assert [a["wave"] for a in events_named(ring[14][1], "emergency.created")] == [3]
    clock.advance(seconds=STEP)
    assert [(w, n) for _, w, n in _sweep(app, db)] == [(4, 0)]  # 20 km cap: nobody new
    clock.advance(seconds=STEP * 10)
    assert _sweep(app, db) == []  # three more waves at most
    assert events_named(ring[30][1], "emergency.created") == []
    stored = db.emergencies.find_one({})
    assert stored["wave"] == 4 and stored["search_radius_m"] == 20000 and stored["next_wave_at"] is None
    assert stored["status"] == "active"
    view = client.get(f"/api/v1/emergencies/{sid}", headers=ring[14][0].headers)
    assert view.status_code == 200 and view.get_json()["data"]["wave"] == 4


def test_a_helper_reached_only_in_wave_two_can_respond(app, client, db, make_user, ring, clock):
    owner = make_user(location=CENTER)
    sid = sos(client, owner, radius_m=4000).get_json()["data"]["emergency"]["id"]
    seven_km = ring[7][0]
    assert client.get(f"/api/v1/emergencies/{sid}", headers=seven_km.headers).status_code == 404
    clock.advance(seconds=STEP)
    _sweep(app, db)
    assert events_named(ring[7][1], "emergency.created")[0]["wave"] == 2
    assert client.get(f"/api/v1/emergencies/{sid}", headers=seven_km.headers).status_code == 200
    assert act(client, seven_km, sid, "respond").get_json()["data"]["status"] == "responding"


@pytest.mark.parametrize("action,actor", [("respond", 3), ("resolve", "owner"), ("cancel", "owner")])
def test_escalation_stops_at_once(app, client, db, make_user, ring, clock, action, actor):
    owner = make_user(location=CENTER)
    sid = sos(client, owner, radius_m=4000).get_json()["data"]["emergency"]["id"]
    user = owner if actor == "owner" else ring[actor][0]
    assert act(client, user, sid, action).status_code == 200
    clock.advance(seconds=STEP * 5)
    assert _sweep(app, db) == []
    assert events_named(ring[7][1], "emergency.created") == []
    assert db.emergencies.find_one({})["next_wave_at"] is None


def test_declined_helpers_are_never_alerted_again(app, client, db, make_user, socket_client, clock,
                                                  monkeypatch):
    owner = make_user(location=CENTER)
    near = place_helper(make_user, 1000)
    near_socket = socket_client(near)
    sid = sos(client, owner, radius_m=2000).get_json()["data"]["emergency"]["id"]
    assert len(events_named(near_socket, "emergency.created")) == 1
    assert act(client, near, sid, "decline").status_code == 200
    # Even a seam that names them again (say they join the owner's party) does not re-alert them.
    monkeypatch.setattr(service, "party_member_ids", lambda *, db, user_id: [near["_id"]])
    for _ in range(3):
        clock.advance(seconds=STEP)
        _sweep(app, db)
    assert events_named(near_socket, "emergency.created") == []


def test_escalation_survives_the_creating_process(app_factory, app, client, db, make_user, ring, clock):
    owner = make_user(location=CENTER)
    sid = sos(client, owner, radius_m=4000).get_json()["data"]["emergency"]["id"]
    other_process = app_factory(ESCALATION_SECONDS=STEP)  # same database, nothing in memory shared
    clock.advance(seconds=STEP)
    with other_process.app_context():
        done = service.escalate_due(db=other_process.extensions["allynet_db"])
    assert [(str(e), w) for e, w, _ in done] == [(sid, 2)]
    assert db.emergencies.find_one({})["wave"] == 2


def test_concurrent_sweepers_run_each_wave_once(app, client, db, make_user, ring, clock):
    owner = make_user(location=CENTER)
    sos(client, owner, radius_m=4000)
    clock.advance(seconds=STEP)
    barrier = threading.Barrier(4)
    results = []

    def sweep():
        barrier.wait()
        results.extend(_sweep(app, db))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [w for _, w, _ in results] == [2]
    assert len(events_named(ring[7][1], "emergency.created")) == 1


def test_the_interval_is_configurable_and_the_loop_is_registered(app_factory, make_user, db, clock):
    fast = app_factory(ESCALATION_SECONDS=0.25, EMERGENCY_CREATE_RATE_LIMIT="1000/minute")
    owner = make_user(location=CENTER)
    response = sos(fast.test_client(), owner, radius_m=1000)
    stored = db.emergencies.find_one({})
    assert response.status_code == 201
    assert (stored["next_wave_at"] - stored["created_at"]).total_seconds() == pytest.approx(0.25)
    loops = {name: fn for name, fn, _ in background.LOOPS}
    assert "emergency_escalation" in loops
    clock.advance(seconds=0.25)
    with fast.app_context():
        loops["emergency_escalation"](fast)
    assert db.emergencies.find_one({})["wave"] == 2


def test_a_20km_sos_has_no_waves(client, db, make_user, clock):
    sos(client, make_user(location=CENTER), radius_m=20000)
    assert db.emergencies.find_one({})["next_wave_at"] is None


def test_one_failing_wave_does_not_hold_up_the_others(app, client, db, make_user, ring, clock, monkeypatch):
    first, second = make_user(location=CENTER), make_user(location=CENTER)
    sos(client, first, radius_m=4000)
    clock.advance(seconds=1)
    sos(client, second, radius_m=4000)
    clock.advance(seconds=STEP)
    original = service._wave_targets

    def flaky(*, db, emergency, radius_m, now):
        if emergency["user_id"] == first["_id"]:
            raise RuntimeError("boom")
        return original(db=db, emergency=emergency, radius_m=radius_m, now=now)

    monkeypatch.setattr(service, "_wave_targets", flaky)
    done = _sweep(app, db)
    assert [(w, n) for _, w, n in done] == [(2, 1)]
    assert len(events_named(ring[7][1], "emergency.created")) == 1
