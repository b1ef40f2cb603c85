"""Weather: GET /weather against a local Open-Meteo, the cache (store or Redis), stale answers and
the breaker (on the road: test_mapdata_weather_road.py)."""
from datetime import datetime

import pytest
import redis
import requests

from tests.helpers import error_code
from tests.mapdata_support import BERLIN, LYON, stub  # noqa: F401  (fixture)
from tests.scaleout_support import REDIS_TEST_URL, quiet_werkzeug, redis_overrides, unique_prefix  # noqa: F401


def weather_app(app_factory, stub, **overrides):
    values = {"WEATHER_PROVIDER": "open-meteo", "OPEN_METEO_URL": stub.url, "WEATHER_RETRIES": 0,
              "WEATHER_TIMEOUT_SECONDS": 2.0, "WEATHER_BREAKER_FAILURES": 2}
    values.update(overrides)
    return app_factory(**values)


@pytest.fixture
def wapp(app_factory, stub):
    return weather_app(app_factory, stub)


def get_weather(client, headers, place):
    return client.get(f"/api/v1/weather?lat={place['lat']}&lng={place['lng']}", headers=headers)


def make_headers(app):
    from allynet.auth import service as auth_service
    from allynet.users import service as users_service

    db = app.extensions["allynet_db"]
    with app.app_context():
        user = users_service.create_user(db=db, email=f"w{id(app)}@example.com", password="password123",
                                         display_name="Weather", role="user", is_helper=False, verified=False,
                                         location=None)
        return {"Authorization": f"Bearer {auth_service.issue_tokens(user)['access_token']}"}


def test_current_conditions_and_the_next_six_hours(wapp, stub, clock):
    headers = make_headers(wapp)
    response = get_weather(wapp.test_client(), headers, LYON)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["source"] == "open-meteo" and data["stale"] is False
    assert data["current"] == {"time": data["current"]["time"], "temperature_c": 12.5, "precipitation_mm": 0.0,
                               "wind_kmh": 14.0, "gusts_kmh": 25.0, "visibility_m": 24000.0, "code": 3,
                               "label": "Overcast"}
    assert len(data["hourly"]) == 6
    hours = [datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ") for entry in data["hourly"]]
    next_hour = clock.current.replace(minute=0, second=0, microsecond=0)
    assert [(h - next_hour).total_seconds() / 3600 for h in hours] == [1, 2, 3, 4, 5, 6]
    assert all(entry["label"] == "Overcast" for entry in data["hourly"])
    # The provider was asked for the cell's centre, in Open-Meteo's terms.
    query = stub.queries[0]
    assert query["timeformat"] == ["unixtime"] and "wind_gusts_10m" in query["current"][0]
    cell_lat, cell_lng = abs(float(query["latitude"][0]) - LYON["lat"]), abs(float(query["longitude"][0]) - LYON["lng"])
    assert cell_lat < 0.05 and cell_lng < 0.05
    assert data["location"] == {"lat": pytest.approx(float(query["latitude"][0]), abs=1e-4),
                                "lng": pytest.approx(float(query["longitude"][0]), abs=1e-4)}


def test_cached_per_cell_then_refreshed(wapp, stub, clock):
    client, headers = wapp.test_client(), make_headers(wapp)
    assert get_weather(client, headers, LYON).status_code == 200
    nearby = {"lat": LYON["lat"] + 0.001, "lng": LYON["lng"] + 0.001}  # same res-6 cell
    assert get_weather(client, headers, nearby).status_code == 200
    assert stub.requests == 1
    stub.weather["temperature_2m"] = 3.0
    clock.advance(seconds=wapp.config["WEATHER_CACHE_SECONDS"] + 1)
    data = get_weather(client, headers, LYON).get_json()["data"]
    assert stub.requests == 2 and data["current"]["temperature_c"] == 3.0 and data["stale"] is False


def test_stale_answer_while_the_provider_is_down(wapp, stub, clock):
    client, headers = wapp.test_client(), make_headers(wapp)
    fresh = get_weather(client, headers, LYON).get_json()["data"]
    stub.failing = True
    clock.advance(seconds=wapp.config["WEATHER_CACHE_SECONDS"] + 1)
    response = get_weather(client, headers, LYON)
    assert response.status_code == 200
    stale = response.get_json()["data"]
    assert stale["stale"] is True and stale["fetched_at"] == fresh["fetched_at"]
    assert stale["current"] == fresh["current"]
    assert stub.requests == 2  # it did try


def test_nothing_cached_and_provider_down_is_503(wapp, stub):
    stub.failing = True
    response = get_weather(wapp.test_client(), make_headers(wapp), BERLIN)
    assert response.status_code == 503
    assert error_code(response) == "weather_unavailable"
    assert response.get_json()["error"]["details"]["reason"] in ("provider_error", "breaker_open")


def test_open_breaker_answers_without_calling_the_provider(wapp, stub):
    client, headers = wapp.test_client(), make_headers(wapp)
    stub.failing = True
    for _ in range(2):  # WEATHER_BREAKER_FAILURES failed calls open it
        assert get_weather(client, headers, BERLIN).status_code == 503
    calls = stub.requests
    response = get_weather(client, headers, BERLIN)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert (error["code"], error["details"]) == ("weather_unavailable", {"reason": "breaker_open"})
    assert stub.requests == calls  # the provider was not called


def test_switched_off_is_503_and_never_calls_out(app, client, auth_headers):
    assert app.config["WEATHER_PROVIDER"] == "off"  # the test configuration's default
    response = client.get("/api/v1/weather?lat=45.7&lng=4.8", headers=auth_headers)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "weather_unavailable"
    assert response.get_json()["error"]["details"] == {"reason": "off"}


@pytest.mark.parametrize("query", ["lat=45.7", "lng=4.8", "lat=91&lng=4.8", "lat=x&lng=4", "lat=45&lng=4&x=1"])
def test_bad_queries_are_400(wapp, stub, query):
    response = wapp.test_client().get(f"/api/v1/weather?{query}", headers=make_headers(wapp))
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert stub.requests == 0


def test_logged_out_is_401(wapp, stub):
    response = wapp.test_client().get("/api/v1/weather?lat=45.7&lng=4.8")
    assert response.status_code == 401 and stub.requests == 0


def test_cache_in_redis_is_shared_by_processes(app_factory, stub):
    prefix = unique_prefix()
    first = weather_app(app_factory, stub, **redis_overrides(prefix))
    second = weather_app(app_factory, stub, **redis_overrides(prefix))
    headers = make_headers(first)
    try:
        assert get_weather(first.test_client(), headers, LYON).status_code == 200
        answer = get_weather(second.test_client(), headers, LYON).get_json()["data"]
        assert stub.requests == 1 and answer["current"]["temperature_c"] == 12.5
        keys = redis.Redis.from_url(REDIS_TEST_URL).keys(f"{prefix}:weather:*")
        assert len(keys) == 1
        assert first.extensions["allynet_db"].weather_cache.count_documents({}) == 0
    finally:
        client = redis.Redis.from_url(REDIS_TEST_URL)
        for key in client.keys(f"{prefix}:*"):
            client.delete(key)


def test_weather_through_the_served_app(app_factory, stub, quiet_werkzeug):  # noqa: F811
    from tests.scaleout_support import serve

    app = weather_app(app_factory, stub)
    headers = make_headers(app)
    server = serve(app)
    try:
        answer = requests.get(f"{server.url}/api/v1/weather", params=LYON, headers=headers, timeout=10)
        assert answer.status_code == 200
        assert len(answer.json()["data"]["hourly"]) == 6 and answer.json()["data"]["stale"] is False
        stub.failing = True
        down = requests.get(f"{server.url}/api/v1/weather", params=BERLIN, headers=headers, timeout=10)
        assert down.status_code == 503 and down.json()["error"]["code"] == "weather_unavailable"
    finally:
        server.stop()
