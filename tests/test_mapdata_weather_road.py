"""On the road: active parties' positions checked against the weather, one `party:alert` per
condition episode, one provider call per distinct cell."""
import pytest

from allynet.mapdata import scheduled
from tests.helpers import events_named
from tests.mapdata_support import BERLIN, ICE, LYON, MILD, stub  # noqa: F401  (fixture)


@pytest.fixture
def app(app_factory, stub):
    """The module's app (make_user, socket_client and client use it): weather on, against the stub."""
    # A short cache: each check below moves the clock past it, and the riders' tokens must outlive that.
    return app_factory(WEATHER_PROVIDER="open-meteo", OPEN_METEO_URL=stub.url, WEATHER_RETRIES=0,
                       WEATHER_CACHE_SECONDS=60, RATELIMIT_ENABLED=False)


def riding_party(socket_client, make_user, place, riders=2):
    """A party whose members ride at `place`; returns (party_id, sockets)."""
    sockets = [socket_client(make_user()) for _ in range(riders)]
    party = sockets[0].emit("party:create", {"name": "Ride"}, callback=True)["party"]
    for sock in sockets[1:]:
        assert sock.emit("party:join", {"invite_code": party["invite_code"]}, callback=True)["ok"]
    for sock in sockets:
        ack = sock.emit("party:update", {"party_id": party["id"], "location": place, "speed_kmh": 40.0},
                        callback=True)
        assert ack["ok"], ack
    for sock in sockets:
        sock.get_received()
    return party["id"], sockets


def check(app):
    with app.app_context():
        return scheduled.check_weather_on_the_road(app)


def weather_alerts(sock):
    return [alert for alert in events_named(sock, "party:alert") if alert.get("type") == "weather"]


def test_one_alert_per_ice_episode(app, stub, clock, socket_client, make_user):
    party_id, (leader, member) = riding_party(socket_client, make_user, LYON)
    stub.weather = dict(ICE)
    assert check(app) == 1
    alerts = weather_alerts(member)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["source"] == "weather" and alert["condition"] == "ice" and alert["party_id"] == party_id
    assert alert["weather"]["temperature_c"] == -2.0 and alert["weather"]["label"] == "Light freezing rain"
    assert alert["user_id"] is None and set(alert["location"]) == {"lat", "lng"}
    assert len(weather_alerts(leader)) == 1

    # Still icy at the next checks: the same episode, no new alert.
    for _ in range(2):
        clock.advance(seconds=app.config["WEATHER_CACHE_SECONDS"] + 1)
        for sock in (leader, member):  # still riding
            sock.emit("party:update", {"party_id": party_id, "location": LYON, "speed_kmh": 30.0}, callback=True)
        assert check(app) == 0
    assert weather_alerts(member) == []

    # It thaws: the episode ends; it freezes again: a new episode, one new alert.
    stub.weather = dict(MILD)
    clock.advance(seconds=app.config["WEATHER_CACHE_SECONDS"] + 1)
    assert check(app) == 0
    stub.weather = dict(ICE)
    clock.advance(seconds=app.config["WEATHER_CACHE_SECONDS"] + 1)
    assert check(app) == 1
    assert [a["condition"] for a in weather_alerts(member)] == ["ice"]


def test_one_provider_call_per_cell_not_per_party(app, stub, socket_client, make_user):
    _, (first, _) = riding_party(socket_client, make_user, LYON)
    _, (second, _) = riding_party(socket_client, make_user, {"lat": LYON["lat"] + 0.002, "lng": LYON["lng"]})
    _, (far, _) = riding_party(socket_client, make_user, BERLIN)
    stub.weather = dict(ICE, wind_gusts_10m=95.0)
    assert check(app) == 6  # three parties, ice and strong wind each
    assert stub.requests == 2  # Lyon's cell and Berlin's
    for sock in (first, second, far):
        assert sorted(a["condition"] for a in weather_alerts(sock)) == ["ice", "strong_wind"]


def test_parties_out_of_a_condition_hear_nothing(app, stub, socket_client, make_user):
    _, (rider, _) = riding_party(socket_client, make_user, LYON)
    stub.weather = dict(MILD)
    assert check(app) == 0
    assert weather_alerts(rider) == []


def test_no_alert_and_no_call_when_weather_is_off(app_factory, stub):
    off = app_factory(WEATHER_PROVIDER="off", OPEN_METEO_URL=stub.url)
    assert check(off) == 0
    assert stub.requests == 0


def test_a_party_that_left_is_not_alerted(app, stub, socket_client, make_user):
    party_id, (leader, member) = riding_party(socket_client, make_user, LYON)
    member.emit("party:leave", {"party_id": party_id}, callback=True)
    leader.emit("party:leave", {"party_id": party_id}, callback=True)
    stub.weather = dict(ICE)
    assert check(app) == 0
    assert weather_alerts(member) == [] and stub.requests == 0
