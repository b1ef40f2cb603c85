"""Pure geographic helpers shared by the API and the embedded store.

Coordinates follow GeoJSON: positions are ``[lng, lat]`` in degrees. Distances
are great-circle distances on the sphere MongoDB's 2dsphere index uses
(radius ``EARTH_RADIUS_M``), so they agree with ``$geoNear`` / ``$near``.
Functions that build or parse coordinates validate them and raise
``ValueError`` on anything MongoDB would refuse (out of range, NaN, inf).
``feature_collection`` turns an API list into the GeoJSON every geographic
list answers with ``?format=geojson``.
"""
import math
import re

from allynet.embedded.sphere import EARTH_RADIUS_M, haversine_m  # noqa: F401  (the one sphere)

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


def points_distance_m(point_a, point_b):
    """Great-circle distance in metres between two GeoJSON points ."""
    lng1, lat1 = point_a["coordinates"][:2]
    lng2, lat2 = point_b["coordinates"][:2]
    return haversine_m(lng1, lat1, lng2, lat2)


#: Points closer than this (radians, ~6 m) to each other's antipode count as antipodal: no
#: one great circle joins them, and MongoDB's 2dsphere index refuses such a LineString edge
#: (the embedded store refuses within ~0.3 m; S2 rounding may differ by far less than this).
ANTIPODAL_MARGIN_RAD = 1e-6


def _unit_vector(lng, lat):
    phi, lmb = math.radians(lat), math.radians(lng)
    return (math.cos(phi) * math.cos(lmb), math.cos(phi) * math.sin(lmb), math.sin(phi))


def nearly_antipodal(lng1, lat1, lng2, lat2):
    """True when the two points are (within ANTIPODAL_MARGIN_RAD of) antipodal."""
    a, b = _unit_vector(lng1, lat1), _unit_vector(lng2, lat2)
    # |a + b| is the chord from a to b's antipode: accurate where the angle a-b is not.
    return math.hypot(a[0] + b[0], a[1] + b[1], a[2] + b[2]) < ANTIPODAL_MARGIN_RAD


def to_point(lat, lng):
    """GeoJSON Point for lat/lng (note: GeoJSON stores [lng, lat]); ValueError if invalid."""
    if not valid_lng_lat(lng, lat):
        raise ValueError(f"invalid coordinates: lat={lat!r} lng={lng!r}")
    return {"type": "Point", "coordinates": [float(lng), float(lat)]}


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


def feature_collection(items, meta=None):
    """Dumped API items -> a GeoJSON FeatureCollection (RFC 7946).

    Each item's `location` ({"lat", "lng"}) becomes the Point geometry `[lng, lat]`
    (null when it has none); every other field of the item becomes a property, so
    the properties are exactly what the JSON list shows. `meta` (the JSON list's
    pagination) rides along as a foreign member, which map libraries ignore.
    """
    features = []
    for item in items:
        location = item.get("location")
        geometry = None
        if location is not None:
            geometry = {"type": "Point", "coordinates": [location["lng"], location["lat"]]}
        properties = {key: value for key, value in item.items() if key != "location"}
        features.append({"type": "Feature", "id": item.get("id"), "geometry": geometry,
                         "properties": properties})
    collection = {"type": "FeatureCollection", "features": features}
    if meta is not None:
        collection["meta"] = meta
    return collection
