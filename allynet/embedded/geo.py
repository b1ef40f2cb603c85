"""Geospatial queries for mongomock, with MongoDB 6/7 semantics *and* restrictions.

mongomock (4.3) raises NotImplementedError for every geo operator. `install()`
patches it, in pure Python (safe under eventlet/gevent), so the embedded store
answers geo queries the way a 2dsphere-indexed MongoDB does - and refuses what
a server refuses, with a pymongo `OperationFailure` whose code and message are
close to the server's. The intent: whatever passes on the fake also works on a
real server.

What is supported
-----------------
* `find()` (and everything built on it: find_one, delete_*, update_*,
  find_one_and_*, distinct) with `$near` / `$nearSphere` (and the `$geoNear`
  query alias) on GeoJSON points, in both server forms:
  `{f: {$near: {$geometry: <Point>, $maxDistance: m, $minDistance: m}}}` and
  `{f: {$near: <Point>, $maxDistance: m, $minDistance: m}}`. Distances are in
  metres on MongoDB's sphere (radius 6378.1 km). Matches come nearest first
  unless the cursor has an explicit sort, which then wins; the rest of the
  filter, skip and limit apply as usual.
  Enforced like the server: a 2dsphere index on the field is required
  (code 291 "unable to find index for $geoNear query", except on a collection
  that does not exist, which yields nothing); at most one near per query
  ("Too many geoNear expressions"); near must be top level (allowed inside
  `$and` and single-branch `$or`, which the server flattens; refused inside a
  multi-branch `$or`, `$nor`, `$not`, `$elemMatch`: "geoNear must be top-level
  expr"); not allowed with `count_documents` or an aggregation `$match`
  (code 5626500); not with a `$natural` sort; malformed points, out-of-range
  coordinates, NaN/inf, negative or non-numeric distances are refused.
* `$geoWithin` with `$centerSphere` (radius in radians) and `$geometry`
  Polygon / MultiPolygon, with exact spherical semantics: edges are great-circle
  arcs, a loop's interior is the smaller of the two regions it bounds (the
  server normalises loops, so winding order does not matter), holes are
  supported, boundary points count as inside. Needs no index, works inside
  `$or` / `$not` and with `count_documents`. Rings must be closed, have at least
  3 distinct vertices, no duplicate vertices and no crossing edges; holes must
  lie inside the shell.
* The aggregation stage `$geoNear` (first stage only, code 40602 otherwise)
  with near, distanceField (dotted paths allowed), maxDistance, minDistance,
  query (no near inside), key (else exactly one geo index must exist),
  spherical, includeLocs, distanceMultiplier; the rest of the pipeline runs
  through mongomock.
* Writes: with a 2dsphere index on a field, insert / update / replace /
  upsert / find_one_and_* storing an invalid geometry there fail with
  `WriteError` code 16755 "Can't extract geo keys" (insert_many: BulkWriteError),
  and the document is left unchanged. Missing, null, [] and {} values are fine
  (2dsphere indexes are sparse). Creating a 2dsphere index over existing
  invalid documents fails (code 16755). Values checked as the server does:
  every GeoJSON type (Point, LineString, Polygon, Multi*, GeometryCollection)
  and legacy [lng, lat] pairs / {x, y} documents.
* index_information() / list_indexes() report 2dsphere indexes with
  "2dsphereIndexVersion": 3; unknown index plugins are refused (code 67).
  create_index options such as collation, expireAfterSeconds and
  partialFilterExpression keep working as in mongomock.

Stored values may be any GeoJSON geometry or legacy pair: `$near`/`$geoNear`
measure the distance to the nearest point of the geometry, `$geoWithin`
requires the whole geometry inside the region.

Known deviations (NotImplementedError, never a silent wrong answer): legacy
coordinate-pair *query* points (`$near: [x, y]`, flat 2d semantics),
`$geoWithin` with `$box` / `$center` / `$polygon` / GeometryCollection / big
polygons (strict-winding crs), `$geoIntersects`, 2d indexes. Points closer
than ~6 mm to a polygon edge are treated as on the boundary (the server's
tolerance is similar: an S2 leaf cell). A partial 2dsphere index only serves
`$near` when the query repeats its partialFilterExpression conditions
verbatim (the server proves implication more generally). Error messages
format documents the way the server does, approximately.
"""
import copy
import functools
import math
import threading
import uuid
from collections.abc import Mapping

from mongomock import aggregate as mm_aggregate
from mongomock import filtering as mm_filtering
from mongomock import helpers as mm_helpers
from mongomock.collection import Collection
from pymongo.errors import OperationFailure, WriteError

from allynet.embedded.copies import copy_document
from allynet.embedded.sphere import EARTH_RADIUS_M, haversine_m

try:
    from bson.decimal128 import Decimal128
except ImportError:  # pragma: no cover - pymongo always ships bson
    Decimal128 = None

__all__ = ["install", "index_problem"]

# Server error codes.
BAD_VALUE = 2
TYPE_MISMATCH = 14
NAMESPACE_NOT_FOUND = 26
INDEX_NOT_FOUND = 27
CANNOT_CREATE_INDEX = 67
NO_QUERY_EXECUTION_PLANS = 291
GEO_KEYS = 16755
NEAR_NOT_ALLOWED = 5626500
GEONEAR_NOT_FIRST = 40602

_NEAR_NOT_ALLOWED_MSG = (
    "$geoNear, $near, and $nearSphere are not allowed in this context, as these operators "
    "require sorting geospatial data. If you do not need sort, consider using $geoWithin "
    "instead. Check out https://dochub.mongodb.org/core/near-sort-operation and "
    "https://dochub.mongodb.org/core/nearSphere-sort-operationfor more details.")

_NEAR_OPS = ("$near", "$nearSphere", "$geoNear")
_INDEX_PLUGINS = {"2d", "2dsphere", "text", "hashed"}
_BOUNDARY_TOL = 1e-9  # radians (~6 mm): closer than this to an edge counts as on it
_MARK = "__allynet_geo_patch__"
_MISSING = object()
_NOTHING = mm_filtering.NOTHING
_install_lock = threading.Lock()


# ---------------------------------------------------------------------------
# Errors and formatting
# ---------------------------------------------------------------------------

class _GeoError(Exception):
    """A geometry could not be parsed (the server's BadValue status, not raised to users)."""


def _fail(message, code=BAD_VALUE):
    """An OperationFailure shaped like a server reply."""
    return OperationFailure(message, code, {"ok": 0.0, "errmsg": message, "code": code})


def write_error(message):
    """The WriteError MongoDB raises when a document cannot be indexed by a 2dsphere index."""
    return WriteError(message, GEO_KEYS, {"errmsg": message, "code": GEO_KEYS})


def _fmt(value):
    """Render a value roughly the way the server prints BSON in error messages."""
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[ " + ", ".join(_fmt(v) for v in value) + " ]"
    if isinstance(value, str):
        return '"' + value + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _num_str(value)
    if isinstance(value, int):
        return str(value)
    return repr(value)


def _num_str(x):
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def _is_num(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return Decimal128 is not None and isinstance(value, Decimal128)


def _num(value):
    if Decimal128 is not None and isinstance(value, Decimal128):
        return float(value.to_decimal())
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _first_value(obj):
    return next(iter(obj.values()), _MISSING)


# ---------------------------------------------------------------------------
# Spherical geometry on unit vectors
# ---------------------------------------------------------------------------

def _xyz(lng, lat):
    lam, phi = math.radians(lng), math.radians(lat)
    c = math.cos(phi)
    return (c * math.cos(lam), c * math.sin(lam), math.sin(phi))


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a):
    return math.sqrt(_dot(a, a))


def _unit(a):
    n = _norm(a)
    return (a[0] / n, a[1] / n, a[2] / n)


def _neg(a):
    return (-a[0], -a[1], -a[2])


def _angle(a, b):
    return math.atan2(_norm(_cross(a, b)), _dot(a, b))


def _edge_distance(p, a, b):
    """Angular distance (radians) from p to the minor great-circle arc a-b."""
    n = _cross(a, b)
    nn = _norm(n)
    if nn > 1e-15:
        n = (n[0] / nn, n[1] / nn, n[2] / nn)
        pn = _dot(p, n)
        q = (p[0] - pn * n[0], p[1] - pn * n[1], p[2] - pn * n[2])
        qn = _norm(q)
        if qn > 1e-15 and _dot(_cross(a, q), n) >= 0 and _dot(_cross(q, b), n) >= 0:
            return math.atan2(abs(pn), qn)
    return min(_angle(p, a), _angle(p, b))


def _crosses(a, b, c, d):
    """True when arcs a-b and c-d cross at a point interior to both (S2 SimpleCrossing)."""
    ab = _cross(a, b)
    acb = -_dot(ab, c)
    bda = _dot(ab, d)
    if acb * bda <= 0:
        return False
    cd = _cross(c, d)
    cbd = -_dot(cd, b)
    dac = _dot(cd, a)
    return acb * cbd > 0 and acb * dac > 0


def _turn(a, b, c):
    """Signed turning angle at b of the path a-b-c (left turns positive)."""
    n1, n2 = _cross(a, b), _cross(b, c)
    angle = math.atan2(_norm(_cross(n1, n2)), _dot(n1, n2))
    return angle if _dot(n1, c) >= 0 else -angle


class _Pt:
    """A valid lng/lat position and its unit vector."""

    __slots__ = ("lng", "lat", "v")

    def __init__(self, lng, lat):
        self.lng, self.lat = lng, lat
        self.v = _xyz(lng, lat)


def _point_distance_rad(p, q):
    return haversine_m(p.lng, p.lat, q.lng, q.lat) / EARTH_RADIUS_M


class _Loop:
    """A closed ring of >= 3 distinct vertices, normalised like S2Loop: its interior is
    the region on its left if that region is at most a hemisphere, else the other one."""

    def __init__(self, points):
        self.points = points
        self.v = [p.v for p in points]
        n = len(self.v)
        self.edges = [(self.v[i], self.v[(i + 1) % n]) for i in range(n)]
        turning = sum(_turn(self.v[i - 1], self.v[i], self.v[(i + 1) % n]) for i in range(n))
        self.left_is_inside = turning >= -1e-12
        self._refs = None

    def validity_error(self):
        seen = {}
        for i, v in enumerate(self.v):
            if v in seen:
                return f"Duplicate vertices: {seen[v]} and {i}"
            seen[v] = i
        n = len(self.v)
        for i, (a, b) in enumerate(self.edges):
            if _dot(a, b) < -1 + 1e-15:
                return f"Edge {i} has antipodal vertices"
            for j in range(i + 2, n):
                if i == 0 and j == n - 1:
                    continue
                if _crosses(a, b, *self.edges[j]):
                    return f"Edges {i} and {j} cross"
        return None

    def on_boundary(self, p):
        return any(_edge_distance(p, a, b) <= _BOUNDARY_TOL for a, b in self.edges)

    def _reference_points(self):
        """Points just left of a few edges (so inside the left region), spread around."""
        if self._refs is None:
            n = len(self.edges)
            order = sorted(set([0, n // 3, (2 * n) // 3])) + list(range(n))
            refs, used = [], set()
            for i in order:
                if i in used or len(refs) == 3:
                    continue
                used.add(i)
                a, b = self.edges[i]
                mid = (a[0] + b[0], a[1] + b[1], a[2] + b[2])
                if _norm(mid) < 1e-12:
                    continue
                left = _unit(_cross(a, b))
                delta = min(1e-7, _angle(a, b) * 1e-3)
                m = _unit(mid)
                refs.append(_unit((m[0] + delta * left[0], m[1] + delta * left[1],
                                   m[2] + delta * left[2])))
            self._refs = refs
        return self._refs

    def _in_left(self, p):
        votes = []
        for r in self._reference_points():
            if _dot(r, p) < -1 + 1e-9:  # p (nearly) antipodal to r: the arc is undefined
                continue
            crossings = sum(1 for a, b in self.edges if _crosses(r, p, a, b))
            votes.append(crossings % 2 == 0)
        if not votes:
            return False
        return sum(votes) * 2 > len(votes)

    def contains(self, p):
        """p in the (normalised) interior; decide the boundary with on_boundary first."""
        left = self._in_left(p)
        return left if self.left_is_inside else not left

    def interior_point(self):
        """A point strictly inside the normalised interior."""
        a, b = self.edges[0]
        mid = _unit((a[0] + b[0], a[1] + b[1], a[2] + b[2]))
        side = _unit(_cross(a, b))
        delta = min(1e-7, _angle(a, b) * 1e-3) * (1 if self.left_is_inside else -1)
        return _unit((mid[0] + delta * side[0], mid[1] + delta * side[1], mid[2] + delta * side[2]))

    def crosses_edges(self, edges):
        return any(_crosses(a, b, c, d) for a, b in self.edges for c, d in edges)

    def contains_loop(self, other):
        if self.crosses_edges(other.edges):
            return False
        for v in other.v:
            if not (self.on_boundary(v) or self.contains(v)):
                return False
        v0 = self.v[0]
        return other.on_boundary(v0) or not other.contains(v0)


class _Polygon:
    """A shell and its holes (GeoJSON polygon); the boundary belongs to the polygon."""

    def __init__(self, loops):
        self.loops = loops
        self.shell, self.holes = loops[0], loops[1:]

    def edges(self):
        return [edge for loop in self.loops for edge in loop.edges]

    def contains(self, p):
        if any(loop.on_boundary(p) for loop in self.loops):
            return True
        return self.shell.contains(p) and not any(h.contains(p) for h in self.holes)

    def distance(self, p):
        if self.contains(p):
            return 0.0
        return min(_edge_distance(p, a, b) for a, b in self.edges())

    def contains_line(self, vectors):
        if not all(self.contains(v) for v in vectors):
            return False
        line = list(zip(vectors, vectors[1:]))
        return not any(_crosses(a, b, c, d) for a, b in self.edges() for c, d in line)

    def contains_polygon(self, other):
        if not all(self.contains(v) for loop in other.loops for v in loop.v):
            return False
        theirs = other.edges()
        if any(_crosses(a, b, c, d) for a, b in self.edges() for c, d in theirs):
            return False
        # A hole of ours must not sit inside the other polygon.
        return not any(other.contains(h.interior_point()) for h in self.holes)


# --- Stored geometries ------------------------------------------------------

class _Points:
    def __init__(self, points):
        self.points = points

    def distance(self, p):
        return min(_point_distance_rad(p, q) for q in self.points)

    def within(self, region):
        return all(region.contains_point(q) for q in self.points)


class _Lines:
    def __init__(self, lines):
        self.lines = lines  # lists of _Pt

    def distance(self, p):
        return min(_edge_distance(p.v, a.v, b.v) for line in self.lines for a, b in zip(line, line[1:]))

    def within(self, region):
        return all(region.contains_line([q.v for q in line]) for line in self.lines)


class _Polygons:
    def __init__(self, polygons):
        self.polygons = polygons

    def distance(self, p):
        return min(poly.distance(p.v) for poly in self.polygons)

    def within(self, region):
        return all(region.contains_polygon(poly) for poly in self.polygons)


class _GeometryCollection:
    def __init__(self, members):
        self.members = members

    def distance(self, p):
        return min(m.distance(p) for m in self.members)

    def within(self, region):
        return all(m.within(region) for m in self.members)


# --- Query regions ------------------------------------------------------------

class _Cap:
    """$centerSphere: points within `radius` radians of `center`."""

    def __init__(self, center, radius):
        self.center, self.radius = center, radius
        self.antipode = _neg(center.v)

    def contains_point(self, q):
        return _point_distance_rad(self.center, q) <= self.radius

    def contains_vector(self, v):
        return _angle(self.center.v, v) <= self.radius + 1e-12

    def contains_line(self, vectors):
        if len(vectors) == 1:
            return self.contains_vector(vectors[0])
        # The farthest point of an arc from the centre is the one nearest the antipode.
        return all(math.pi - _edge_distance(self.antipode, a, b) <= self.radius + 1e-12
                   for a, b in zip(vectors, vectors[1:]))

    def contains_polygon(self, poly):
        if self.radius >= math.pi:
            return True
        for loop in poly.loops:
            if not self.contains_line(loop.v + loop.v[:1]):
                return False
        return not poly.contains(self.antipode)


class _PolygonRegion:
    """$geometry Polygon / MultiPolygon."""

    def __init__(self, polygons):
        self.polygons = polygons

    def contains_point(self, q):
        return any(poly.contains(q.v) for poly in self.polygons)

    def contains_line(self, vectors):
        return any(poly.contains_line(vectors) for poly in self.polygons)

    def contains_polygon(self, other):
        return any(poly.contains_polygon(other) for poly in self.polygons)


# ---------------------------------------------------------------------------
# Parsing (mirrors the server's GeoParser; errors are _GeoError with its wording)
# ---------------------------------------------------------------------------

def _flat_point(elem, allow_extra):
    """(x, y) of a legacy point [x, y] / {a: x, b: y} (or GeoJSON coordinates)."""
    if isinstance(elem, Mapping):
        values = list(elem.values())
    elif isinstance(elem, (list, tuple)):
        values = list(elem)
    else:
        raise _GeoError("Point must be an array or object")
    if len(values) < 1 or not _is_num(values[0]) or len(values) < 2 or not _is_num(values[1]):
        raise _GeoError("Point must only contain numeric elements")
    if not allow_extra and len(values) > 2:
        raise _GeoError("Point must only contain two numeric elements")
    x, y = _num(values[0]), _num(values[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise _GeoError("Point coordinates must be finite numbers")
    return x, y


def _lng_lat_ok(x, y):
    return -180.0 <= x <= 180.0 and -90.0 <= y <= 90.0


def _sphere_point(x, y):
    if not _lng_lat_ok(x, y):
        raise _GeoError(f"longitude/latitude is out of bounds, lng: {_num_str(x)} lat: {_num_str(y)}")
    return _Pt(x, y)


def _position(elem):
    """A GeoJSON position: an array of >= 2 numbers (extra ones, e.g. altitude, ignored)."""
    if not isinstance(elem, (list, tuple)):
        raise _GeoError("GeoJSON coordinates must be an array")
    return _sphere_point(*_flat_point(elem, True))


def _positions(elem):
    if not isinstance(elem, (list, tuple)):
        raise _GeoError("GeoJSON coordinates must be an array of coordinates")
    return [_position(item) for item in elem]


def _dedupe(points):
    out = []
    for p in points:
        if not out or out[-1].v != p.v:
            out.append(p)
    return out


def _crs(obj, allow_strict=False):
    """'sphere' or 'strict' (big polygon) from an optional GeoJSON crs member."""
    if "crs" not in obj:
        return "sphere"
    crs = obj["crs"]
    if not isinstance(crs, Mapping):
        raise _GeoError("GeoJSON CRS must be an object")
    if crs.get("type") != "name":
        raise _GeoError('GeoJSON CRS must have field "type": "name"')
    props = crs.get("properties")
    if not isinstance(props, Mapping):
        raise _GeoError('CRS must have field "properties" which is an object')
    name = props.get("name")
    if not isinstance(name, str):
        raise _GeoError('In CRS, "properties.name" must be a string')
    if name in ("urn:ogc:def:crs:OGC:1.3:CRS84", "EPSG:4326"):
        return "sphere"
    if name == "urn:x-mongodb:crs:strictwinding:EPSG:4326":
        if not allow_strict:
            raise _GeoError("Strict winding order is only supported by polygon")
        return "strict"
    raise _GeoError(f"Unknown CRS name: {name}")


def _line(coords):
    points = _dedupe(_positions(coords))
    if len(points) < 2:
        raise _GeoError(f"GeoJSON LineString must have at least 2 vertices: {_fmt(coords)}")
    for i in range(len(points) - 1):
        if _dot(points[i].v, points[i + 1].v) < -1 + 1e-15:
            raise _GeoError(f"GeoJSON LineString is not valid: Vertices {i} and {i + 1} are "
                            f"antipodal {_fmt(coords)}")
    return points


def _ring(ring):
    points = _positions(ring)
    if not points:
        raise _GeoError(f"Loop has no vertices: {_fmt(ring)}")
    if points[0].v != points[-1].v:
        raise _GeoError("Loop is not closed, first vertex does not equal last vertex: " + _fmt(ring))
    points = _dedupe(points)[:-1]
    if len(points) < 3:
        raise _GeoError(f"Loop must have at least 3 different vertices: {_fmt(ring)}")
    loop = _Loop(points)
    error = loop.validity_error()
    if error:
        raise _GeoError(f"Loop is not valid: {_fmt(ring)} {error}")
    return loop


def _polygon(coords):
    if not isinstance(coords, (list, tuple)):
        raise _GeoError("Polygon coordinates must be an array")
    loops = []
    for ring in coords:
        loop = _ring(ring)
        if loops and not loops[0].contains_loop(loop):
            raise _GeoError("Secondary loops not contained by first exterior loop - secondary "
                            f"loops must be holes: {_fmt(ring)} first loop: {_fmt(coords[0])}")
        loops.append(loop)
    if not loops:
        raise _GeoError("Polygon has no loops.")
    holes = loops[1:]
    for i, hole in enumerate(holes):
        for j in range(i + 1, len(holes)):
            other = holes[j]
            if hole.crosses_edges(other.edges):
                raise _GeoError(f"Polygon isn't valid: Loop {i + 1} crosses loop {j + 1} {_fmt(coords)}")
            if _strictly_inside_any_vertex(hole, other) or _strictly_inside_any_vertex(other, hole):
                raise _GeoError(f"Polygon interior loops cannot be nested: {_fmt(coords)}")
    return _Polygon(loops)


def _strictly_inside_any_vertex(loop, other):
    return any(not loop.on_boundary(v) and loop.contains(v) for v in other.v)


_GEOJSON_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString",
                  "MultiPolygon", "GeometryCollection")


class _StrictPolygon:
    """A big polygon (strict-winding crs): valid GeoJSON that can be neither indexed nor matched."""


def _geojson(obj):
    """Parse a GeoJSON geometry object."""
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _GEOJSON_TYPES:
        raise _GeoError(f"unknown GeoJSON type: {_fmt(obj)}")
    if kind == "Point":
        _crs(obj)
        return _Points([_sphere_point(*_flat_point(obj.get("coordinates", _MISSING), True))])
    if kind == "LineString":
        _crs(obj)
        return _Lines([_line(obj.get("coordinates"))])
    if kind == "Polygon":
        if _crs(obj, allow_strict=True) == "strict":
            coords = obj.get("coordinates")
            if not isinstance(coords, (list, tuple)) or len(coords) != 1:
                raise _GeoError(f"Only one simple loop is allowed in a big polygon: {_fmt(coords)}")
            _ring(coords[0])
            return _StrictPolygon()
        return _Polygons([_polygon(obj.get("coordinates"))])
    if kind == "MultiPoint":
        _crs(obj)
        points = _positions(obj.get("coordinates"))
        if not points:
            raise _GeoError("MultiPoint coordinates must have at least 1 element")
        return _Points(points)
    if kind == "MultiLineString":
        _crs(obj)
        coords = obj.get("coordinates")
        if not isinstance(coords, (list, tuple)):
            raise _GeoError("MultiLineString coordinates must be an array")
        if not coords:
            raise _GeoError("MultiLineString coordinates must have at least 1 element")
        return _Lines([_line(c) for c in coords])
    if kind == "MultiPolygon":
        _crs(obj)
        coords = obj.get("coordinates")
        if not isinstance(coords, (list, tuple)):
            raise _GeoError("MultiPolygon coordinates must be an array")
        if not coords:
            raise _GeoError("MultiPolygon coordinates must have at least 1 element")
        return _Polygons([_polygon(c) for c in coords])
    # GeometryCollection
    geometries = obj.get("geometries")
    if not isinstance(geometries, (list, tuple)):
        raise _GeoError("GeometryCollection geometries must be an array")
    if not geometries:
        raise _GeoError("GeometryCollection geometries must have at least 1 element")
    members = []
    for i, member in enumerate(geometries):
        if not isinstance(member, Mapping):
            raise _GeoError(f'Element {i} of "geometries" is not an object')
        if member.get("type") == "GeometryCollection":
            raise _GeoError(f"GeometryCollections cannot be nested: {_fmt(member)}")
        if member.get("type") not in _GEOJSON_TYPES:
            raise _GeoError(f"Unknown GeoJSON type: {_fmt(member)}")
        members.append(_geojson(member))
    return _GeometryCollection(members)


def _stored(value):
    """The geometry a 2dsphere index would extract from a stored value (raises _GeoError)."""
    if isinstance(value, Mapping):
        try:
            geometry = _geojson(value)
        except _GeoError as geojson_error:
            try:  # maybe a legacy point document {x: .., y: ..}
                x, y = _flat_point(value, True)
            except _GeoError:
                raise geojson_error from None
            return _legacy_sphere_point(x, y, value)
        if isinstance(geometry, _StrictPolygon):
            raise _GeoError("can't index geometry with strict winding order")
        return geometry
    if isinstance(value, (list, tuple)):
        return _legacy_sphere_point(*_flat_point(value, True), value)
    raise _GeoError(f"geo element must be an array or object: {_fmt(value)}")


def index_problem(value):
    """Why a 2dsphere index would refuse to store `value` (the server's message), or None."""
    try:
        _stored(value)
    except _GeoError as exc:
        return str(exc)
    return None


def _legacy_sphere_point(x, y, value):
    if not _lng_lat_ok(x, y):
        raise _GeoError(f"can't project geometry into spherical CRS: {_fmt(value)}")
    return _Points([_Pt(x, y)])


def _try_stored(value):
    try:
        return _stored(value)
    except _GeoError:
        return None


def _query_point(elem):
    """('flat', (x, y)) for a legacy point, ('sphere', _Pt) for a GeoJSON Point."""
    if not isinstance(elem, (Mapping, list, tuple)):
        raise _GeoError("Point must be an array or object")
    if isinstance(elem, (list, tuple)) or _is_num(_first_value(elem)):
        return "flat", _flat_point(elem, False)
    _crs(elem)
    if elem.get("type") != "Point":
        raise _GeoError(f"expected a GeoJSON Point, got {_fmt(elem)}")
    return "sphere", _sphere_point(*_flat_point(elem.get("coordinates", _MISSING), True))


# ---------------------------------------------------------------------------
# Query analysis: $near extraction and restrictions, $geoWithin regions
# ---------------------------------------------------------------------------

class _Near:
    """A parsed near predicate: field, centre, distance bounds in metres."""

    def __init__(self, field, point, min_m, max_m):
        self.field, self.point, self.min_m, self.max_m = field, point, min_m, max_m

    def locate(self, doc):
        """(distance in metres, location value) of the nearest geometry of doc, or None."""
        best = None
        for value in _extract_path(doc, self.field):
            geometry = _try_stored(value)
            if geometry is None:
                continue
            distance = geometry.distance(self.point) * EARTH_RADIUS_M
            if best is None or distance < best[0]:
                best = (distance, value)
        return best

    def rank(self, docs):
        """Docs within [min, max] metres as (distance, doc, location), nearest first."""
        ranked = []
        for doc in docs:
            found = self.locate(doc)
            if found is not None and self.min_m <= found[0] <= self.max_m:
                ranked.append((found[0], doc, found[1]))
        ranked.sort(key=lambda item: item[0])
        return ranked


def _distance_arg(name, value, legacy_codes=None):
    """A non-negative distance; legacy_codes are the server's uassert codes for sibling form."""
    if not _is_num(value):
        raise _fail(f"{name} must be a number", legacy_codes[0] if legacy_codes else BAD_VALUE)
    number = _num(value)
    if legacy_codes:
        ok = number >= 0.0
    else:
        ok = number >= 0.0 and math.isfinite(number)
    if not ok:
        raise _fail(f"{name} must be non-negative", legacy_codes[1] if legacy_codes else BAD_VALUE)
    return number


def _legacy_centroid_unsupported():
    return NotImplementedError(
        "the embedded store supports $near/$nearSphere/$geoNear only around a GeoJSON Point "
        "({'type': 'Point', 'coordinates': [lng, lat]}); legacy coordinate pairs are not "
        "implemented")


def _parse_near(field, spec):
    """Parse {$near|$nearSphere|$geoNear: ..., [$minDistance], [$maxDistance]} like the server."""
    # The server first tries the "legacy" shape: point and distances as siblings.
    centroid, has_geometry, legacy_shape = None, False, True
    min_m, max_m = 0.0, math.inf
    for key, value in spec.items():
        if key in _NEAR_OPS:
            if not isinstance(value, (Mapping, list, tuple)):
                legacy_shape = False
                break
            try:
                centroid = _query_point(value)
            except _GeoError:
                centroid = None
                if (isinstance(value, (list, tuple)) and len(value) == 3
                        and all(_is_num(v) for v in value)):
                    centroid = ("flat", tuple(value[:2]))
                elif not (isinstance(value, Mapping) and "$geometry" in value):
                    raise _fail(f"invalid point provided to geo near query: {_fmt(value)}") from None
            has_geometry = has_geometry or centroid is not None
        elif key == "$minDistance":
            min_m = _distance_arg("$minDistance", value, (16893, 16894))
        elif key == "$maxDistance":
            max_m = _distance_arg("$maxDistance", value, (16895, 16896))
        elif key == "$uniqueDocs":
            pass
        else:
            raise _fail(f"invalid argument in geo near query: {key}", 34413)
    if legacy_shape and has_geometry:
        kind, point = centroid
        if kind != "sphere":
            raise _legacy_centroid_unsupported()
        return _Near(field, point, min_m, max_m)

    # Then the "new" shape: {$near: {$geometry: <Point>, $minDistance, $maxDistance}}.
    items = list(spec.items())
    if len(items) > 1:
        key, value = items[1]
        raise _fail("geo near accepts just one argument when querying for a GeoJSON point. "
                    f"Extra field found: {key}: {_fmt(value)}")
    _, arg = items[0]
    if not isinstance(arg, (Mapping, list, tuple)):
        raise _fail("geo near query argument is not an object")
    if isinstance(arg, (list, tuple)):
        arg = {str(i): v for i, v in enumerate(arg)}
    point, min_m, max_m = None, 0.0, math.inf
    for key, value in arg.items():
        if key == "$geometry":
            if isinstance(value, (Mapping, list, tuple)):
                try:
                    kind, parsed = _query_point(value)
                except _GeoError as exc:
                    raise _fail("invalid point in geo near query $geometry argument: "
                                f"{_fmt(value)}  {exc}") from None
                if kind != "sphere":
                    raise _fail(f"$near requires geojson point, given {_fmt(value)}")
                point = parsed
        elif key == "$minDistance":
            min_m = _distance_arg("$minDistance", value)
        elif key == "$maxDistance":
            max_m = _distance_arg("$maxDistance", value)
        else:
            raise _fail(f"invalid argument in geo near query: {key}")
    if point is None:
        raise _fail("$geometry is required for geo near query")
    return _Near(field, point, min_m, max_m)


def _parse_within(spec):
    if not isinstance(spec, Mapping):
        raise _fail("geometry must be an object")
    region = None
    for key, value in spec.items():
        if region is not None:
            raise _fail(f"$geoWithin doesn't accept multiple shapes {_fmt(spec)}")
        if key == "$uniqueDocs":
            continue
        region = _within_shape(key, value, spec)
    if region is None:
        raise _fail("geo query doesn't have any geometry")
    return region


def _within_shape(key, value, spec):
    if not isinstance(value, (Mapping, list, tuple)) or key not in (
            "$centerSphere", "$geometry", "$box", "$center", "$polygon"):
        raise _fail(f"unknown geo specifier: {key}: {_fmt(value)}")
    if key in ("$box", "$center", "$polygon"):
        raise NotImplementedError(
            f"$geoWithin {key} (flat, legacy 2d geometry) is not implemented by the embedded store; "
            "use $centerSphere or a GeoJSON $geometry")
    try:
        if key == "$centerSphere":
            values = list(value.values()) if isinstance(value, Mapping) else list(value)
            if not values:
                raise _GeoError("Point must be an array or object")
            center = _sphere_point(*_flat_point(values[0], False))
            if len(values) < 2 or not _is_num(values[1]) or not _num(values[1]) >= 0:
                raise _GeoError("radius must be a non-negative number")
            if len(values) > 2:
                raise _GeoError("Only 2 fields allowed for circular region")
            return _Cap(center, _num(values[1]))
        # $geometry
        if isinstance(value, (list, tuple)) or _is_num(_first_value(value)):
            _query_point(value)
            geometry = _Points([])
        else:
            if _crs(value, allow_strict=True) == "strict":
                raise NotImplementedError(
                    "$geoWithin a big polygon (strict-winding crs) is not implemented by the embedded store")
            geometry = _geojson(value)
    except _GeoError as exc:
        raise _fail(str(exc)) from None
    if isinstance(geometry, _Polygons):
        return _PolygonRegion(geometry.polygons)
    if isinstance(geometry, _GeometryCollection):
        raise NotImplementedError("$geoWithin a GeometryCollection is not implemented by the embedded store")
    raise _fail(f"$within not supported with provided geometry: {_fmt({'$geoWithin': spec})}")


_region_cache = {}


def _within_region(spec):
    """Parsed $geoWithin region, cached per spec object (re-checked by value)."""
    key = id(spec)
    hit = _region_cache.get(key)
    if hit is not None and hit[0] is spec and hit[1] == spec:
        return hit[2]
    region = _parse_within(spec)
    if len(_region_cache) > 256:
        _region_cache.clear()
    _region_cache[key] = (spec, copy.deepcopy(spec), region)
    return region


_DROP = object()


def _plan(flt, allow_near, allow_text=True):
    """(filter without its near predicate, _Near or None); enforces the near restrictions."""
    if not isinstance(flt, Mapping):
        return flt, None
    found = []
    rest = _walk(flt, "top", found, allow_near)
    has_text = _mentions_text(flt)
    if has_text and not allow_text:
        raise _fail("$text is not allowed in this context")
    if not found:
        return flt, None
    if len(found) > 1:
        raise _fail("Too many geoNear expressions")
    if has_text:
        raise _fail("text and geoNear not allowed in same query")
    context, near = found[0]
    if context != "top":
        raise _fail("geoNear must be top-level expr")
    return rest, near


def _mentions_text(flt):
    """True when a filter uses $text (at the top level or inside $and/$or/$nor)."""
    for key, value in flt.items():
        if key == "$text":
            return True
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            if any(isinstance(sub, Mapping) and _mentions_text(sub) for sub in value):
                return True
    return False


def _walk(flt, context, found, allow_near):
    if not isinstance(flt, Mapping):
        return flt
    out = {}
    for key, value in flt.items():
        if not isinstance(key, str):
            out[key] = value
        elif key == "$and" or (key == "$or" and isinstance(value, list) and len(value) == 1):
            # The server flattens $and and single-branch $or into their parent.
            out[key] = ([_walk(sub, context, found, allow_near) for sub in value]
                        if isinstance(value, list) else value)
        elif key in ("$or", "$nor"):
            out[key] = ([_walk(sub, "nested", found, allow_near) for sub in value]
                        if isinstance(value, list) else value)
        elif key.startswith("$"):
            out[key] = value
        else:
            value = _walk_field(key, value, context, found, allow_near)
            if value is not _DROP:
                out[key] = value
    return out


def _walk_field(field, value, context, found, allow_near):
    if not isinstance(value, Mapping) or not value:
        return value
    if any(key in _NEAR_OPS for key in value):
        if not allow_near:
            raise _fail(_NEAR_NOT_ALLOWED_MSG, NEAR_NOT_ALLOWED)
        found.append((context, _parse_near(field, value)))
        return _DROP
    if all(isinstance(key, str) and key.startswith("$") for key in value):
        for op, arg in value.items():
            if op == "$geoWithin":
                _within_region(arg)
            elif op == "$not" and isinstance(arg, Mapping):
                _walk_field(field, arg, "nested", found, allow_near)
            elif op == "$elemMatch" and isinstance(arg, Mapping):
                if arg and all(isinstance(k, str) and k.startswith("$") for k in arg):
                    _walk_field(field, arg, "nested", found, allow_near)
                else:
                    _walk(arg, "nested", found, allow_near)
    return value


def _conjuncts(flt):
    """Top-level (field, condition) pairs of a filter, through $and."""
    pairs = []
    for key, value in flt.items():
        if key == "$and" and isinstance(value, list):
            for sub in value:
                if isinstance(sub, Mapping):
                    pairs.extend(_conjuncts(sub))
        elif not (isinstance(key, str) and key.startswith("$")):
            pairs.append((key, value))
    return pairs


# ---------------------------------------------------------------------------
# Documents and indexes
# ---------------------------------------------------------------------------

def _extract_path(value, path):
    """Values at a dotted path, expanding arrays on the way but not a trailing array."""
    return list(_extract(value, path.split(".")))


def _extract(value, parts):
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        if head in value:
            yield from _extract(value[head], rest)
    elif isinstance(value, (list, tuple)):
        if head.isdigit():
            index = int(head)
            if index < len(value):
                yield from _extract(value[index], rest)
        else:
            for item in value:
                if isinstance(item, Mapping) and head in item:
                    yield from _extract(item[head], rest)


def _set_path(doc, path, value):
    parts = path.split(".")
    target = doc
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[parts[-1]] = value


def key_pairs(key):
    """An index key spec (a mapping or [(field, kind)] pairs) as [(field, kind)]."""
    return list(key.items()) if isinstance(key, Mapping) else [tuple(pair) for pair in key]


def _indexes_of_kind(collection, kind):
    """[(field, index)] for every `kind` ('2d', '2dsphere') component of the collection's indexes."""
    return [(field, index)
            for index in collection._store.indexes.values()
            for field, index_kind in key_pairs(index.get("key", []))
            if index_kind == kind]


def _usable_2dsphere(collection, field, rest_filter):
    conjuncts = _conjuncts(rest_filter) if isinstance(rest_filter, Mapping) else []
    for indexed, index in _indexes_of_kind(collection, "2dsphere"):
        if indexed != field:
            continue
        partial = index.get("partialFilterExpression")
        if partial is None or all(pair in conjuncts for pair in _conjuncts(partial)):
            return True
    return False


def _no_index(collection):
    return _fail(f"error processing query: ns={collection.full_name} planner returned error "
                 ":: caused by :: unable to find index for $geoNear query", NO_QUERY_EXECUTION_PLANS)


def _geo_key_problem(doc, fields):
    """The server's "Can't extract geo keys" message for doc, or None when it indexes fine."""
    for field in fields:
        values = _extract_path(doc, field)
        if len(values) == 1 and (values[0] is None or values[0] == [] or values[0] == {}):
            continue  # 2dsphere indexes (v2+) skip null / [] / {} like a missing field
        for value in values:
            try:
                _stored(value)
            except _GeoError as exc:
                return f"Can't extract geo keys: {_fmt(doc)}  {exc}"
    return None


def write_problem(collection, doc):
    """Why `doc` cannot be written to `collection` under its 2dsphere indexes, or None."""
    fields = []
    for field, index in _indexes_of_kind(collection, "2dsphere"):
        partial = index.get("partialFilterExpression")
        if partial is not None and not mm_filtering.filter_applies(partial, doc):
            continue
        fields.append(field)
    return _geo_key_problem(doc, fields) if fields else None


# ---------------------------------------------------------------------------
# $geoNear aggregation stage
# ---------------------------------------------------------------------------

def _check_field_path(path):
    if path == "":
        raise _fail("FieldPath cannot be constructed with empty string", 40352)
    if path.endswith("."):
        raise _fail("FieldPath must not end with a '.'.", 40353)
    for part in path.split("."):
        if part == "":
            raise _fail("FieldPath field names may not be empty strings.", 15998)
        if part.startswith("$"):
            raise _fail(f"FieldPath field names may not start with '$'. Consider using $getField "
                        f"or $setField.", 16410)


def _geo_near_key(collection):
    """The field $geoNear uses when no 'key' is given (2d indexes take precedence)."""
    ns = collection.full_name
    for kind in ("2d", "2dsphere"):
        fields = _indexes_of_kind(collection, kind)
        if len(fields) > 1:
            raise _fail(f"There is more than one {kind} index on {ns}; unsure which to use for "
                        "$geoNear", INDEX_NOT_FOUND)
        if fields:
            return fields[0][0]
    raise _fail("$geoNear requires a 2d or 2dsphere index, but none were found", INDEX_NOT_FOUND)


def _run_geo_near(collection, options):
    """Documents produced by a leading {$geoNear: options} stage."""
    if not isinstance(options, Mapping):
        raise _fail("invalid parameter: expected an object ($geoNear)", 10065)
    for name, code, message in (
            ("collation", 40227, "$geoNear does not accept the 'collation' parameter. Instead, "
                                 "specify a collation for the entire aggregation command."),
            ("limit", 50858, "$geoNear no longer supports the 'limit' parameter. Use a $limit "
                             "stage instead."),
            ("num", 50857, "$geoNear no longer supports the 'num' parameter. Use a $limit stage "
                           "instead."),
            ("start", 50856, "$geoNear no longer supports the 'start' argument.")):
        if name in options:
            raise _fail(message, code)
    if "near" not in options:
        raise _fail("$geoNear requires a 'near' argument", 5860400)
    opts = {"query": {}, "spherical": False, "multiplier": 1.0}
    for name, value in options.items():
        if name in ("near", "maxDistance", "minDistance"):
            opts[name] = value
        elif name == "distanceField":
            if not isinstance(value, str):
                raise _fail("$geoNear requires a 'distanceField' option as a String", 16606)
            _check_field_path(value)
            opts[name] = value
        elif name == "distanceMultiplier":
            if not _is_num(value):
                raise _fail("distanceMultiplier must be a number", TYPE_MISMATCH)
            if not _num(value) >= 0:
                raise _fail("distanceMultiplier must be nonnegative")
            opts["multiplier"] = _num(value)
        elif name == "query":
            if not isinstance(value, Mapping):
                raise _fail("query must be an object", TYPE_MISMATCH)
            opts["query"] = value
        elif name == "spherical":
            opts["spherical"] = bool(value)
        elif name == "includeLocs":
            if not isinstance(value, str):
                raise _fail("$geoNear requires that 'includeLocs' option is a String", 16607)
            _check_field_path(value)
            opts[name] = value
        elif name == "uniqueDocs":
            pass
        elif name == "key":
            if not isinstance(value, str):
                raise _fail("$geoNear parameter 'key' must be of type string but found type: "
                            f"{type(value).__name__}", TYPE_MISMATCH)
            if not value:
                raise _fail("$geoNear parameter 'key' cannot be the empty string")
            _check_field_path(value)
            opts[name] = value
        else:
            raise _fail(f"Unknown argument to $geoNear: {name}")
    if "distanceField" not in opts:
        raise _fail("$geoNear requires a 'distanceField' option as a String", 16606)
    query = mm_helpers.patch_datetime_awareness_in_document(opts["query"])
    _plan(query, allow_near=False, allow_text=False)

    if not collection._store.is_created:
        raise _fail(f"$geoNear requires a geo index to run, but {collection.full_name} does not "
                    "exist", NAMESPACE_NOT_FOUND)
    field = opts.get("key") or _geo_near_key(collection)

    near = opts["near"]
    if not isinstance(near, (Mapping, list, tuple)):
        raise _fail("$geoNear requires near argument to be a GeoJSON object or a legacy "
                    "point(array)", 5860401)
    spec = {"$nearSphere" if opts["spherical"] else "$near": near}
    for name in ("minDistance", "maxDistance"):
        if name in opts:
            if not _is_num(opts[name]):
                raise _fail(f"$geoNear requires ${name} to evaluate to a number", TYPE_MISMATCH)
            if not _num(opts[name]) >= 0:
                raise _fail(f"{name} must be nonnegative")
            spec["$" + name] = _num(opts[name])
    near_expr = _parse_near(field, spec)

    if not _usable_2dsphere(collection, field, query):
        raise _no_index(collection)
    out = []
    for distance, doc, location in near_expr.rank(collection._iter_documents(query)):
        doc = copy_document(doc)
        _set_path(doc, opts["distanceField"], distance * opts["multiplier"])
        if "includeLocs" in opts:
            _set_path(doc, opts["includeLocs"], copy_document(location))
        out.append(doc)
    return out


# ---------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------

def _patch_iter_documents(original):
    @functools.wraps(original)
    def _iter_documents(self, filter):  # noqa: A002 - mongomock's name
        rest, near = _plan(filter, allow_near=True)
        if near is None:
            return original(self, filter)
        if self._store.is_created and not _usable_2dsphere(self, near.field, rest):
            raise _no_index(self)
        return iter([doc for _, doc, _ in near.rank(original(self, rest))])

    return _iter_documents


def _patch_get_dataset(original):
    @functools.wraps(original)
    def _get_dataset(self, spec, sort, fields, as_class):
        if sort:
            keys = sort.keys() if isinstance(sort, Mapping) else [pair[0] for pair in sort]
            if "$natural" in keys and _plan(spec, allow_near=True)[1] is not None:
                raise _fail("geoNear expression not allowed with $natural sort order")
        return original(self, spec, sort, fields, as_class)

    return _get_dataset


def _patch_count_documents(original):
    @functools.wraps(original)
    def count_documents(self, filter, **kwargs):  # noqa: A002
        _plan(filter, allow_near=False)
        return original(self, filter, **kwargs)

    return count_documents


def _patch_aggregate(original):
    @functools.wraps(original)
    def aggregate(self, pipeline, session=None, **kwargs):
        stages = list(pipeline) if isinstance(pipeline, (list, tuple)) else pipeline
        if (isinstance(stages, list) and stages and isinstance(stages[0], Mapping)
                and "$geoNear" in stages[0]):
            if len(stages[0]) != 1:
                raise _fail("A pipeline stage specification object must contain exactly one field.",
                            40323)
            docs = _run_geo_near(self, stages[0]["$geoNear"])
            return mm_aggregate.process_pipeline(docs, self.database, stages[1:], session)
        return original(self, pipeline, session=session, **kwargs)

    return aggregate


def _patch_insert(original):
    @functools.wraps(original)
    def _insert(self, data, session=None, ordered=True):
        if isinstance(data, Mapping):
            problem = write_problem(self, data)
            if problem:
                raise write_error(problem)
        return original(self, data, session, ordered)

    return _insert


def _patch_apply_update(original):
    @functools.wraps(original)
    def apply_update(self, existing_document, *args, **kwargs):
        if not _indexes_of_kind(self, "2dsphere"):
            return original(self, existing_document, *args, **kwargs)
        snapshot = copy_document(existing_document)
        result = original(self, existing_document, *args, **kwargs)
        problem = write_problem(self, existing_document)
        if problem:
            existing_document.clear()
            existing_document.update(snapshot)
            raise write_error(problem)
        return result

    return apply_update


def _patch_create_index(original):
    @functools.wraps(original)
    def create_index(self, key_or_list, cache_for=300, session=None, **kwargs):
        keys = mm_helpers.create_index_list(key_or_list)
        keys = key_pairs(keys) if isinstance(keys, (Mapping, list, tuple)) else key_pairs(list(keys))
        for _, kind in keys:
            if isinstance(kind, str) and kind not in _INDEX_PLUGINS:
                raise _fail(f"Unknown index plugin '{kind}'", CANNOT_CREATE_INDEX)
        geo_fields = [field for field, kind in keys if kind == "2dsphere"]
        if geo_fields:
            partial = kwargs.get("partialFilterExpression")
            for doc in list(self._store.documents):
                if partial is not None and not mm_filtering.filter_applies(partial, doc):
                    continue
                problem = _geo_key_problem(doc, geo_fields)
                if problem:
                    raise _fail(f"Index build failed: {uuid.uuid4()}: Collection {self.full_name} "
                                f":: caused by :: {problem}", GEO_KEYS)
        return original(self, keys, cache_for, session=session, **kwargs)

    return create_index


def _patch_list_all_indexes(original):
    @functools.wraps(original)
    def _list_all_indexes(self):
        for name, info in original(self):
            if "2dsphereIndexVersion" not in info and any(
                    kind == "2dsphere" for _, kind in key_pairs(info.get("key", []))):
                info = dict(info, **{"2dsphereIndexVersion": 3})
            yield name, info

    return _list_all_indexes


def _patch_match_stage(original):
    @functools.wraps(original)
    def match_stage(in_collection, database, options):
        _plan(options, allow_near=False)
        return original(in_collection, database, options)

    return match_stage


def _geo_near_not_first(in_collection, database, options):
    raise _fail("$geoNear is only valid as the first stage in a pipeline.", GEONEAR_NOT_FIRST)


def _geo_within_operator(doc_value, spec):
    region = _within_region(spec)
    return _value_within(doc_value, region)


def _value_within(value, region):
    if value is _NOTHING or not isinstance(value, (Mapping, list, tuple)):
        return False
    geometry = _try_stored(value)
    if geometry is not None:
        return geometry.within(region)
    if isinstance(value, (list, tuple)):  # an array of geometries: any element
        for item in value:
            if isinstance(item, (Mapping, list, tuple)):
                item_geometry = _try_stored(item)
                if item_geometry is not None and item_geometry.within(region):
                    return True
    return False


def _near_operator(doc_value, spec):
    raise _fail(_NEAR_NOT_ALLOWED_MSG, NEAR_NOT_ALLOWED)


_COLLECTION_PATCHES = (
    ("_iter_documents", _patch_iter_documents),
    ("_get_dataset", _patch_get_dataset),
    ("count_documents", _patch_count_documents),
    ("aggregate", _patch_aggregate),
    ("_insert", _patch_insert),
    ("_apply_update_document", _patch_apply_update),
    ("_apply_update_pipeline", _patch_apply_update),
    ("create_index", _patch_create_index),
    ("_list_all_indexes", _patch_list_all_indexes),
)


def _marked(function):
    setattr(function, _MARK, True)
    return function


def install():
    """Patch mongomock with geospatial queries and 2dsphere checks (idempotent)."""
    with _install_lock:
        for name, factory in _COLLECTION_PATCHES:
            current = getattr(Collection, name)
            if not getattr(current, _MARK, False):
                setattr(Collection, name, _marked(factory(current)))

        handlers = mm_aggregate._PIPELINE_HANDLERS
        if not getattr(handlers["$match"], _MARK, False):
            handlers["$match"] = _marked(_patch_match_stage(handlers["$match"]))
        handlers["$geoNear"] = _geo_near_not_first

        operators = mm_filtering._filterer_inst._operator_map
        operators["$geoWithin"] = _geo_within_operator
        for op in _NEAR_OPS:
            operators[op] = _near_operator
        mm_filtering._NOT_IMPLEMENTED_OPERATORS.difference_update(
            {"$geoWithin", "$near", "$nearSphere", "$maxDistance", "$minDistance"})
