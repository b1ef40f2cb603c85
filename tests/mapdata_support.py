"""A local Open-Meteo: an HTTP server in a thread answering the forecast API's documented shape.

`OpenMeteoStub.weather` sets what it reports (the same at every coordinate); `failing = True`
makes it answer 500; `requests` counts the calls it received. Only the variables asked for
(`current=`, `hourly=`) are answered, with `timeformat=unixtime` times, as Open-Meteo does.
"""
import json

from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pytest

from allynet import clock
from tests.helpers import LocalHTTPServer, QuietHandler

LYON = {"lat": 45.764, "lng": 4.8357}
BERLIN = {"lat": 52.52, "lng": 13.405}
UNITS = {"temperature_2m": "°C", "precipitation": "mm", "wind_speed_10m": "km/h", "wind_gusts_10m": "km/h",
         "visibility": "m", "weather_code": "wmo code"}
MILD = {"temperature_2m": 12.5, "precipitation": 0.0, "wind_speed_10m": 14.0, "wind_gusts_10m": 25.0,
        "visibility": 24000.0, "weather_code": 3}
ICE = {"temperature_2m": -2.0, "precipitation": 0.6, "wind_speed_10m": 10.0, "wind_gusts_10m": 20.0,
       "visibility": 5000.0, "weather_code": 66}


class OpenMeteoStub:
    """The stub server; `url` is its forecast endpoint."""

    def __init__(self):
        self.weather = dict(MILD)
        self.failing = False
        self.requests = 0
        self.queries = []
        self.now = clock.timestamp  # the app's clock, so tests that move it move the forecast too
        stub = self

        class Handler(QuietHandler, BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                stub.requests += 1
                query = parse_qs(urlparse(self.path).query)
                stub.queries.append(query)
                if stub.failing:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b'{"error": true, "reason": "stub failing"}')
                    return
                body = json.dumps(stub.answer(query)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = LocalHTTPServer(Handler)
        self.url = f"{self.http.base_url}/v1/forecast"

    def answer(self, query):
        """Open-Meteo's forecast JSON for `query` (timeformat=unixtime, GMT)."""
        now = int(self.now())
        current_vars = query["current"][0].split(",")
        hourly_vars = query["hourly"][0].split(",")
        hours = int(query.get("forecast_hours", ["24"])[0])
        first_hour = now - now % 3600
        times = [first_hour + 3600 * i for i in range(hours)]
        return {
            "latitude": float(query["latitude"][0]), "longitude": float(query["longitude"][0]),
            "generationtime_ms": 0.1, "utc_offset_seconds": 0, "timezone": "GMT", "timezone_abbreviation": "GMT",
            "elevation": 170.0,
            "current_units": {"time": "unixtime", "interval": "seconds", **{v: UNITS[v] for v in current_vars}},
            "current": {"time": now - now % 900, "interval": 900, **{v: self.weather[v] for v in current_vars}},
            "hourly_units": {"time": "unixtime", **{v: UNITS[v] for v in hourly_vars}},
            "hourly": {"time": times, **{v: [self.weather[v]] * len(times) for v in hourly_vars}},
        }

    def stop(self):
        self.http.stop()


@pytest.fixture
def stub():
    """A running OpenMeteoStub, stopped after the test."""
    server = OpenMeteoStub()
    yield server
    server.stop()
