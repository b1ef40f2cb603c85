"""MongoDB's sphere: the radius its 2dsphere queries use and the great-circle distance on it.

The one Earth radius of the code base: `allynet.geo` re-exports both names for the app, so a
distance computed anywhere agrees with what `$geoNear` / `$near` return.
"""
import math

#: MongoDB's kRadiusOfEarthInMeters (6378.1 km), used by 2dsphere queries.
EARTH_RADIUS_M = 6378100.0


def haversine_m(lng1, lat1, lng2, lat2):
    """Great-circle distance in metres between two lng/lat points on MongoDB's sphere."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lng2 - lng1)
    h = math.sin(dphi / 2.0) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2.0) ** 2
    h = min(1.0, max(0.0, h))
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(h))
