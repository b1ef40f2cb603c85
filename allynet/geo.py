"""Pure geographic helpers shared by the API and the embedded store.

Coordinates follow GeoJSON: positions are ``[lng, lat]`` in degrees. Distances
are great-circle distances on the sphere MongoDB's 2dsphere index uses
(radius ``EARTH_RADIUS_M``), so they agree with ``$geoNear`` / ``$near``.
Functions that build or parse coordinates validate them and raise
``ValueError`` on anything MongoDB would refuse (out of range, NaN, inf).
"""
import math
import re

#: MongoDB's kRadiusOfEarthInMeters (6378.1 km), used by 2dsphere queries.
EARTH_RADIUS_M = 6378100.0

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _is_number(value):
    """True for int/float values that are not bools."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def valid_lng_lat(lng, lat):
    """True when lng/lat are finite numbers with lng in [-180, 180] and lat in [-90, 90]."""
    if not (_is_number(lng) and _is_number(lat)):
        return False
    try:
        lng, lat = float(lng), float(lat)
    except OverflowError:
        return False
    if not (math.isfinite(lng) and math.isfinite(lat)):
        return False
    return -180.0 <= lng <= 180.0 and -90.0 <= lat <= 90.0


def haversine_m(lng1, lat1, lng2, lat2):
    """Great-circle distance in metres between two lng/lat points on MongoDB's sphere."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lng2 - lng1)
    h = math.sin(dphi / 2.0) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2.0) ** 2
    h = min(1.0, max(0.0, h))
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def to_point(lat, lng):
    """GeoJSON Point for lat/lng (note: GeoJSON stores [lng, lat]); ValueError if invalid."""
    if not valid_lng_lat(lng, lat):
        raise ValueError(f"invalid coordinates: lat={lat!r} lng={lng!r}")
    return {"type": "Point", "coordinates": [float(lng), float(lat)]}


def from_point(geojson):
    """{"lat", "lng"} of a GeoJSON Point, or None for None / anything that is not a valid Point."""
    if not isinstance(geojson, dict) or geojson.get("type") != "Point":
        return None
    coords = geojson.get("coordinates")
    if not isinstance(coords, (list, tuple)) or len(coords) < 2:
        return None
    lng, lat = coords[0], coords[1]
    if not valid_lng_lat(lng, lat):
        return None
    return {"lat": lat, "lng": lng}


# OpenAPI pattern of what parse_near accepts (plain decimals; the parser also takes exponents,
# a leading '+' and spaces around each part): "lat,lng" within range.
_LAT_PATTERN = r"-?(?:90(?:\.0*)?|[1-8]?\d(?:\.\d*)?|\.\d+)"
_LNG_PATTERN = r"-?(?:180(?:\.0*)?|(?:1[0-7]\d|[1-9]?\d)(?:\.\d*)?|\.\d+)"
NEAR_PATTERN = f"^{_LAT_PATTERN},{_LNG_PATTERN}$"


def parse_near(text):
    """(lat, lng) parsed from a "lat,lng" string; ValueError on garbage, out of range, NaN or inf."""
    if not isinstance(text, str):
        raise ValueError("near must be a 'lat,lng' string")
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError("near must be 'lat,lng'")
    values = []
    for part in parts:
        part = part.strip()
        if not _NUMBER.fullmatch(part):
            raise ValueError("near must be 'lat,lng' with decimal numbers")
        values.append(float(part))
    lat, lng = values
    if not valid_lng_lat(lng, lat):
        raise ValueError("near is out of range: lat must be in [-90, 90] and lng in [-180, 180]")
    return lat, lng
