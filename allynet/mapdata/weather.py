"""Weather at a point and on the road ahead, from a provider behind a cache and a circuit breaker.

`WeatherProvider` is the interface; `OpenMeteo` its one implementation (Open-Meteo's forecast
API, no key): `requests` with a `WEATHER_TIMEOUT_SECONDS` timeout per attempt and
`WEATHER_RETRIES` retries (urllib3's Retry: connection errors and 5xx), behind a `pybreaker`
circuit breaker (`WEATHER_BREAKER_FAILURES` failed calls open it for
`WEATHER_BREAKER_RESET_SECONDS`), so an offline server answers at once instead of waiting on
every call.

Forecasts are cached per H3 cell of resolution 6 (about 36 km²), in Redis when `REDIS_URL` is
set and in the `weather_cache` collection otherwise: fresh for `WEATHER_CACHE_SECONDS`, then
served with `stale: true` for up to `WEATHER_STALE_SECONDS` while the provider fails. Nothing
at all (or `WEATHER_PROVIDER=off`) is `WeatherUnavailable` (503 `weather_unavailable`).

On the road (`check_parties`, every `WEATHER_CHECK_SECONDS` from `scheduled.py`): the active
parties' members' positions are grouped by cell, each distinct cell is looked up once (through
the same cache), and a party whose cells show a condition (`ice`, `heavy_rain`, `strong_wind`,
`low_visibility`) gets one `party:alert` `{type: "weather", source: "weather", condition,
weather, ...}` when the condition starts; the episode (`weather_episodes`, one document per
party and condition, claimed by its unique _id) ends when a check no longer shows it. A check
yields to the live path between chunks of members, cells and parties (`bench/mapdata_jobs.py`).
"""
import json
import logging
import time
from datetime import datetime, timedelta

import h3
import pybreaker
import requests
from flask import current_app
from pymongo.errors import DuplicateKeyError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from allynet import clock, redis_client
from allynet.db import is_embedded
from allynet.embedded.store import scan_since
from allynet.errors import AllyNetError
from allynet.fields import iso

log = logging.getLogger(__name__)

CACHE_RES = 6
HOURS = 6
EXTENSION_KEY = "allynet_weather"
CONDITIONS = ("ice", "heavy_rain", "strong_wind", "low_visibility")
RECENT_POSITION = timedelta(minutes=30)  # older positions are not "on the road"
CELLS_PER_YIELD = 20  # forecasts looked up between two cooperative yields
PARTIES_PER_YIELD = 20  # parties' episodes written between two
_EPOCH = datetime(1970, 1, 1)

# WMO weather interpretation codes, as Open-Meteo documents them.
WMO_LABELS = {
    0: "Clear sky", 1: "Mainly clear", 2: "Partly cloudy", 3: "Overcast", 45: "Fog",
    48: "Depositing rime fog", 51: "Light drizzle", 53: "Moderate drizzle", 55: "Dense drizzle",
    56: "Light freezing drizzle", 57: "Dense freezing drizzle", 61: "Slight rain", 63: "Moderate rain",
    65: "Heavy rain", 66: "Light freezing rain", 67: "Heavy freezing rain", 71: "Slight snow fall",
    73: "Moderate snow fall", 75: "Heavy snow fall", 77: "Snow grains", 80: "Slight rain showers",
    81: "Moderate rain showers", 82: "Violent rain showers", 85: "Slight snow showers",
    86: "Heavy snow showers", 95: "Thunderstorm", 96: "Thunderstorm with slight hail",
    99: "Thunderstorm with heavy hail",
}
_VARIABLES = ("temperature_2m", "precipitation", "wind_speed_10m", "wind_gusts_10m", "visibility", "weather_code")
_FIELDS = ("temperature_c", "precipitation_mm", "wind_kmh", "gusts_kmh", "visibility_m", "code")


class WeatherUnavailable(AllyNetError):
    """No weather to give: provider off, down or breaker open, and nothing cached."""

    status, code, message = 503, "weather_unavailable", "Weather data is unavailable"


class ProviderError(Exception):
    """The provider did not answer usable data."""


class WeatherProvider:
    """What a weather source gives: `forecast(lat, lng)` -> {"current": {...}, "hourly": [{...}]}.

    Each entry holds `time` (a naive UTC datetime) and the fields of `_FIELDS`; hourly entries
    come oldest first. Raises ProviderError (or pybreaker.CircuitBreakerError) when it cannot.
    """

    name = "none"

    def forecast(self, lat, lng):
        """Current conditions and the coming hours at (lat, lng)."""
        raise NotImplementedError


class OpenMeteo(WeatherProvider):
    """Open-Meteo's forecast endpoint (`OPEN_METEO_URL`)."""

    name = "open-meteo"

    def __init__(self, *, url, timeout, retries, breaker):
        self.url, self.timeout, self.breaker = url, timeout, breaker
        self.session = requests.Session()
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=0.1,
                      status_forcelist=(500, 502, 503, 504), allowed_methods=("GET",), raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def forecast(self, lat, lng):
        """One breaker-guarded call to the forecast API."""
        return self.breaker.call(self._fetch, lat, lng)

    def _fetch(self, lat, lng):
        params = {"latitude": round(lat, 4), "longitude": round(lng, 4), "current": ",".join(_VARIABLES),
                  "hourly": ",".join(_VARIABLES), "forecast_hours": 14, "timezone": "GMT",
                  "timeformat": "unixtime", "wind_speed_unit": "kmh", "precipitation_unit": "mm"}
        try:
            response = self.session.get(self.url, params=params, timeout=self.timeout)
            response.raise_for_status()
            return parse_open_meteo(response.json())
        except (requests.RequestException, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}") from exc


def _entry(time_value, values):
    entry = {"time": _EPOCH + timedelta(seconds=int(time_value))}
    for field, variable in zip(_FIELDS, _VARIABLES):
        value = values[variable]
        entry[field] = None if value is None else (int(value) if field == "code" else float(value))
    return entry


def parse_open_meteo(body):
    """Open-Meteo's forecast JSON (timeformat=unixtime) -> the provider shape."""
    current = _entry(body["current"]["time"], body["current"])
    hourly_block = body["hourly"]
    hourly = [_entry(t, {v: hourly_block[v][i] for v in _VARIABLES}) for i, t in enumerate(hourly_block["time"])]
    return {"current": current, "hourly": hourly}


# ---------------------------------------------------------------------------
# The provider of an app, the cache, and the answer
# ---------------------------------------------------------------------------

def provider(app=None):
    """The app's provider (one breaker per process), or None when WEATHER_PROVIDER is off."""
    app = app or current_app._get_current_object()
    config = app.config
    if config["WEATHER_PROVIDER"] != "open-meteo":
        return None
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        breaker = pybreaker.CircuitBreaker(fail_max=int(config["WEATHER_BREAKER_FAILURES"]),
                                           reset_timeout=float(config["WEATHER_BREAKER_RESET_SECONDS"]),
                                           exclude=[lambda exc: not isinstance(exc, ProviderError)],
                                           name="open-meteo")
        state = app.extensions.setdefault(EXTENSION_KEY, OpenMeteo(
            url=config["OPEN_METEO_URL"], timeout=float(config["WEATHER_TIMEOUT_SECONDS"]),
            retries=int(config["WEATHER_RETRIES"]), breaker=breaker))
    return state


def cell_of(lat, lng):
    """The H3 res-6 cell the weather of (lat, lng) is cached under."""
    return h3.latlng_to_cell(lat, lng, CACHE_RES)


def _to_cache(forecast, fetched_at):
    def dump(entry):
        return {**entry, "time": iso(entry["time"])}

    return {"current": dump(forecast["current"]), "hourly": [dump(e) for e in forecast["hourly"]],
            "fetched_at": iso(fetched_at)}


def _cache_key(cell):
    return redis_client.key("weather", cell)


def cache_get(db, cell):
    """The cached entry of `cell` (JSON-ready dict with `fetched_at`), or None."""
    if redis_client.get_redis() is not None:
        raw = redis_client.call(lambda r: r.get(_cache_key(cell)))
        return json.loads(raw) if raw else None
    doc = db.weather_cache.find_one({"_id": cell, "expires_at": {"$gt": clock.now()}})
    return doc["entry"] if doc else None


def cache_put(db, cell, entry, config):
    """Keep `entry` for `cell` for WEATHER_STALE_SECONDS (fresh for WEATHER_CACHE_SECONDS)."""
    keep = float(config["WEATHER_STALE_SECONDS"])
    if redis_client.get_redis() is not None:
        redis_client.call(lambda r: r.set(_cache_key(cell), json.dumps(entry), ex=max(1, int(keep))))
        return
    db.weather_cache.replace_one({"_id": cell}, {"_id": cell, "entry": entry,
                                                 "expires_at": clock.now() + timedelta(seconds=keep)}, upsert=True)


def _parse_iso(text):
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")


def _label(entry):
    return {**entry, "label": WMO_LABELS.get(entry.get("code"), "Unknown")}


def _answer(cell, entry, *, stale, now):
    lat, lng = h3.cell_to_latlng(cell)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    hourly = [_label(e) for e in entry["hourly"] if _parse_iso(e["time"]) >= next_hour][:HOURS]
    return {"location": {"lat": round(lat, 5), "lng": round(lng, 5)}, "current": _label(entry["current"]),
            "hourly": hourly, "source": entry.get("source", OpenMeteo.name), "fetched_at": entry["fetched_at"],
            "stale": stale}


def weather_at(*, db, lat, lng):
    """Current conditions and the next 6 hours at (lat, lng), cached per res-6 cell."""
    return weather_of_cell(db=db, cell=cell_of(lat, lng))


def weather_of_cell(*, db, cell):
    """The weather answer of one res-6 cell (fresh cache, provider, or stale cache)."""
    config = current_app.config
    source = provider()
    if source is None:
        raise WeatherUnavailable("Weather is switched off on this server", details={"reason": "off"})
    now = clock.now()
    cached = cache_get(db, cell)
    if cached and (now - _parse_iso(cached["fetched_at"])).total_seconds() < float(config["WEATHER_CACHE_SECONDS"]):
        return _answer(cell, cached, stale=False, now=now)
    lat, lng = h3.cell_to_latlng(cell)
    try:
        forecast = source.forecast(lat, lng)
    except pybreaker.CircuitBreakerError:
        reason = "breaker_open"
    except ProviderError as exc:
        log.warning("weather provider %s failed: %s", source.name, exc)
        reason = "provider_error"
    else:
        entry = {**_to_cache(forecast, now), "source": source.name}
        cache_put(db, cell, entry, config)
        return _answer(cell, entry, stale=False, now=now)
    if cached:
        return _answer(cell, cached, stale=True, now=now)
    raise WeatherUnavailable("No weather data for this place right now", details={"reason": reason})


# ---------------------------------------------------------------------------
# On the road
# ---------------------------------------------------------------------------

def conditions_of(current, config):
    """The road conditions the current weather shows, in CONDITIONS order."""
    temp, precip = current.get("temperature_c"), current.get("precipitation_mm") or 0.0
    gusts, visibility = current.get("gusts_kmh"), current.get("visibility_m")
    found = []
    if temp is not None and temp <= 0 and precip > 0:
        found.append("ice")
    if precip >= float(config["WEATHER_HEAVY_RAIN_MM"]):
        found.append("heavy_rain")
    if gusts is not None and gusts >= float(config["WEATHER_GUST_KMH"]):
        found.append("strong_wind")
    if visibility is not None and visibility < float(config["WEATHER_LOW_VISIBILITY_M"]):
        found.append("low_visibility")
    return found


_DESCRIPTIONS = {"ice": "Ice risk: freezing with precipitation", "heavy_rain": "Heavy rain",
                 "strong_wind": "Strong wind gusts", "low_visibility": "Low visibility"}


def check_parties(*, app, db):
    """Check the active parties' positions against the thresholds; returns the alerts sent."""
    from allynet.parties import service as parties_service

    if provider(app) is None:
        return 0
    parties_service.flush_positions(app)
    now = clock.now()
    cells = {}
    for member in _riding_members(db, now - RECENT_POSITION):
        coordinates = (member.get("last_location") or {}).get("coordinates")
        if coordinates:
            cells.setdefault(cell_of(coordinates[1], coordinates[0]), set()).add(member["party_id"])
    by_party = {}
    for n, (cell, party_ids) in enumerate(cells.items()):
        if n % CELLS_PER_YIELD == CELLS_PER_YIELD - 1:
            time.sleep(0)  # a cooperative yield under eventlet: the live path runs between chunks
        try:
            answer = weather_of_cell(db=db, cell=cell)
        except WeatherUnavailable:
            continue
        found = conditions_of(answer["current"], app.config)
        for party_id in party_ids:
            entry = by_party.setdefault(party_id, {})
            for condition in found:
                entry.setdefault(condition, (cell, answer))
    sent = 0
    for n, (party_id, found) in enumerate(by_party.items()):
        if n % PARTIES_PER_YIELD == PARTIES_PER_YIELD - 1:
            time.sleep(0)
        db.weather_episodes.delete_many({"party_id": party_id, "condition": {"$nin": list(found)}})
        for condition, (cell, answer) in found.items():
            if _start_episode(db, party_id, condition, now):
                lat, lng = h3.cell_to_latlng(cell)
                parties_service.broadcast_alert(
                    db=db, party_ids=[party_id], alert_type="weather", source="weather",
                    location={"type": "Point", "coordinates": [lng, lat]}, description=_DESCRIPTIONS[condition],
                    extra={"source": "weather", "condition": condition, "weather": answer["current"]})
                sent += 1
            else:
                db.weather_episodes.update_one({"_id": f"{party_id}:{condition}"}, {"$set": {"checked_at": now}})
    return sent


def _riding_members(db, since):
    """The active memberships with a position since `since` (party_id and last_location read)."""
    if is_embedded(db.client):
        # mongomock filters and copies every active membership in one go, holding the hub all
        # along: the embedded store's scan reads them in place, yielding as it goes (read-only).
        return (member for member in scan_since(db.party_members, "last_update_at", since)
                if member.get("active") is True)
    return db.party_members.find({"active": True, "last_update_at": {"$gte": since}},
                                 projection={"party_id": 1, "last_location": 1})


def _start_episode(db, party_id, condition, now):
    try:
        db.weather_episodes.insert_one({"_id": f"{party_id}:{condition}", "party_id": party_id,
                                        "condition": condition, "started_at": now, "checked_at": now})
    except DuplicateKeyError:
        return False
    return True
