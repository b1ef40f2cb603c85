"""Bounding boxes of map requests: parsing, area bound, and the geo filter each layer runs.

A bbox is `minLng,minLat,maxLng,maxLat` (west, south, east, north) and must not cross the
antimeridian. The database filter is a `$geoWithin` circle around the box (one distance per
candidate, where a polygon costs one per edge, and MongoDB draws polygon edges as great circles,
not parallels); the exact box is then applied to each point, so a feature is in a box exactly
when its point is.
"""
import math

from allynet.geo import EARTH_RADIUS_M, haversine_m


class BBox:
    """A west/south/east/north box in degrees."""

    __slots__ = ("west", "south", "east", "north")

    def __init__(self, west, south, east, north):
        self.west, self.south, self.east, self.north = west, south, east, north

    def area_km2(self):
        """The box's area on the sphere, in km²."""
        r_km = EARTH_RADIUS_M / 1000.0
        return (r_km ** 2 * math.radians(self.east - self.west)
                * abs(math.sin(math.radians(self.north)) - math.sin(math.radians(self.south))))

    def contains(self, lng, lat):
        """True when (lng, lat) lies in the box (edges included)."""
        return self.west <= lng <= self.east and self.south <= lat <= self.north

    def geo_filter(self, field):
        """A `$geoWithin` filter on `field` covering the box: the circle around its centre through
        its farthest corner (the caller keeps the points in the box)."""
        lng, lat = (self.west + self.east) / 2, (self.south + self.north) / 2
        radius_m = max(haversine_m(lng, lat, corner_lng, corner_lat)
                       for corner_lng in (self.west, self.east) for corner_lat in (self.south, self.north))
        # A little more than the corner: edges along parallels bow away from the centre.
        radians = radius_m * 1.01 / EARTH_RADIUS_M + 1e-7
        return {field: {"$geoWithin": {"$centerSphere": [[lng, lat], radians]}}}

    def as_list(self):
        """[west, south, east, north]."""
        return [self.west, self.south, self.east, self.north]


def parse(text):
    """'minLng,minLat,maxLng,maxLat' -> BBox; ValueError with a client-facing message."""
    parts = str(text).split(",")
    if len(parts) != 4:
        raise ValueError("bbox must be minLng,minLat,maxLng,maxLat")
    try:
        west, south, east, north = (float(part) for part in parts)
    except ValueError:
        raise ValueError("bbox must be four numbers: minLng,minLat,maxLng,maxLat") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise ValueError("bbox must be finite numbers")
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise ValueError("bbox is out of range: lng in [-180, 180], lat in [-90, 90]")
    if west >= east or south >= north:
        raise ValueError("bbox must have minLng < maxLng and minLat < maxLat (no antimeridian crossing)")
    return BBox(west, south, east, north)


def tile_bbox(z, x, y):
    """The lng/lat box of web-mercator tile z/x/y."""
    n = 2 ** z

    def lat(row):
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return BBox(x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y))


def mercator(lng, lat):
    """(lng, lat) -> web-mercator metres (EPSG:3857)."""
    r = 6378137.0
    lat = max(-85.05112878, min(85.05112878, lat))
    return math.radians(lng) * r, math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * r
