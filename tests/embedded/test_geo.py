"""Geo queries on the embedded store behave like MongoDB 6/7 with a 2dsphere index.

Runs on mongomock + `geo_mongomock.install()` by default. With MONGO_TEST_URI
set, the very same tests run against a real server (each test gets its own
database, dropped afterwards), which is how the fake is kept honest: nothing
here asserts anything a real server would not do.
"""
import math
import os
import uuid

import mongomock
import pymongo
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import GEOSPHERE
from pymongo.errors import BulkWriteError, OperationFailure, WriteError


from allynet import geo
from allynet.embedded import geo as geo_mongomock

MONGO_TEST_URI = os.environ.get("MONGO_TEST_URI")
R = geo.EARTH_RADIUS_M


@pytest.fixture
def db():
    """A fresh database: a real one when MONGO_TEST_URI is set, else patched mongomock."""
    if MONGO_TEST_URI:
        client = pymongo.MongoClient(MONGO_TEST_URI, serverSelectionTimeoutMS=5000)
        name = f"geo_test_{uuid.uuid4().hex[:12]}"
        try:
            yield client[name]
        finally:
            client.drop_database(name)
            client.close()
    else:
        geo_mongomock.install()
        yield mongomock.MongoClient()["geo_test"]


def P(lng, lat):
    return {"type": "Point", "coordinates": [lng, lat]}


def near(lng, lat, **distances):
    spec = {"$geometry": P(lng, lat)}
    spec.update({f"${k}": v for k, v in distances.items()})
    return {"$near": spec}


CITIES = {
    "paris": (2.3522, 48.8566),
    "london": (-0.1276, 51.5072),
    "new_york": (-74.0060, 40.7128),
    "los_angeles": (-118.2437, 34.0522),
    "sydney": (151.2093, -33.8688),
    "melbourne": (144.9631, -37.8136),
}


@pytest.fixture
def cities(db):
    coll = db.cities
    coll.create_index([("location", GEOSPHERE)])
    coll.insert_many([{"_id": name, "location": P(*c)} for name, c in CITIES.items()])
    return coll


def dist(a, b):
    return geo.haversine_m(a[0], a[1], b[0], b[1])


# --------------------------------------------------------------------------- indexes

def test_2dsphere_index_is_reported_with_its_type(db):
    name = db.places.create_index([("location", GEOSPHERE)])
    info = db.places.index_information()[name]
    assert [tuple(pair) for pair in info["key"]] == [("location", "2dsphere")]
    assert info["2dsphereIndexVersion"] == 3


def test_index_options_collation_ttl_and_partial_are_accepted(db):
    coll = db.people
    coll.create_index([("name", 1)], collation={"locale": "en", "strength": 2}, name="name_ci")
    coll.create_index([("created_at", 1)], expireAfterSeconds=3600, name="created_ttl")
    coll.create_index([("email", 1)], unique=True, name="email_partial",
                      partialFilterExpression={"email": {"$exists": True}})
    coll.create_index([("location", GEOSPHERE), ("kind", 1)], name="geo_kind")
    coll.create_index([("location", GEOSPHERE), ("kind", 1)], name="geo_kind")  # idempotent
    info = coll.index_information()
    assert info["created_ttl"]["expireAfterSeconds"] == 3600
    assert info["email_partial"]["partialFilterExpression"] == {"email": {"$exists": True}}
    assert {"name_ci", "created_ttl", "email_partial", "geo_kind"} <= set(info)


def test_unknown_index_type_is_refused(db):
    with pytest.raises(OperationFailure):
        db.places.create_index([("location", "2dspher")])


# --------------------------------------------------------------------------- known distances

@pytest.mark.parametrize("origin, other, expected_km", [
    ("paris", "london", 343.5),
    ("new_york", "los_angeles", 3944.0),
    ("sydney", "melbourne", 713.0),
])
def test_geonear_reports_known_city_distances(cities, origin, other, expected_km):
    [doc] = cities.aggregate([
        {"$geoNear": {"near": P(*CITIES[origin]), "distanceField": "dist.meters",
                      "query": {"_id": other}}},
    ])
    assert doc["dist"]["meters"] / 1000 == pytest.approx(expected_km, rel=0.005)


@pytest.mark.parametrize("origin, other, expected_km", [
    ("paris", "london", 343.5),
    ("new_york", "los_angeles", 3944.0),
    ("sydney", "melbourne", 713.0),
])
def test_near_max_distance_just_below_and_above_a_known_distance(cities, origin, other, expected_km):
    exact = dist(CITIES[origin], CITIES[other])
    assert exact / 1000 == pytest.approx(expected_km, rel=0.005)
    below = [d["_id"] for d in cities.find({"location": near(*CITIES[origin], maxDistance=exact * 0.999)})]
    above = [d["_id"] for d in cities.find({"location": near(*CITIES[origin], maxDistance=exact * 1.001)})]
    assert other not in below
    assert above[0] == origin and above[-1] == other


@pytest.mark.parametrize("origin, other", [("paris", "london"), ("sydney", "melbourne")])
def test_center_sphere_radius_just_below_and_above_a_known_distance(cities, origin, other):
    radians = dist(CITIES[origin], CITIES[other]) / R
    inside = {"location": {"$geoWithin": {"$centerSphere": [list(CITIES[origin]), radians * 1.0001]}}}
    outside = {"location": {"$geoWithin": {"$centerSphere": [list(CITIES[origin]), radians * 0.9999]}}}
    assert {d["_id"] for d in cities.find(inside)} == {origin, other}
    assert {d["_id"] for d in cities.find(outside)} == {origin}
    assert cities.count_documents(inside) == 2


def test_near_returns_everything_nearest_first(cities):
    got = [d["_id"] for d in cities.find({"location": {"$nearSphere": {"$geometry": P(*CITIES["paris"])}}})]
    assert got == sorted(CITIES, key=lambda name: dist(CITIES["paris"], CITIES[name]))


# --------------------------------------------------------------------------- $near semantics

@pytest.fixture
def grid(db):
    """Points every 0.01 degree east of (0, 0), alternating categories."""
    coll = db.grid
    coll.create_index([("loc", GEOSPHERE)])
    coll.insert_many([{"_id": i, "loc": P(i * 0.01, 0.0), "cat": "ab"[i % 2], "name": f"n{9 - i}"}
                      for i in range(10)])
    coll.insert_many([{"_id": 100, "cat": "a"}, {"_id": 101, "loc": None, "cat": "a"}])
    return coll


def test_near_combines_with_other_conditions_skip_and_limit(grid):
    assert [d["_id"] for d in grid.find({"loc": near(0, 0), "cat": "a"})] == [0, 2, 4, 6, 8]
    query = {"$and": [{"loc": near(0.051, 0)}, {"cat": "a"}, {"_id": {"$gte": 2}}]}
    assert [d["_id"] for d in grid.find(query)] == [6, 4, 8, 2]
    assert [d["_id"] for d in grid.find(query).skip(1).limit(2)] == [4, 8]
    single_or = {"$or": [{"loc": near(0, 0)}], "cat": "b"}  # a one-branch $or is flattened
    assert [d["_id"] for d in grid.find(single_or, limit=2)] == [1, 3]


def test_near_distance_bounds_and_sibling_form(grid):
    step = dist((0, 0), (0.01, 0))
    got = [d["_id"] for d in grid.find({"loc": near(0, 0, minDistance=step * 2.5, maxDistance=step * 5.5)})]
    assert got == [3, 4, 5]
    sibling = {"loc": {"$near": P(0, 0), "$minDistance": step * 2.5, "$maxDistance": step * 5.5}}
    assert [d["_id"] for d in grid.find(sibling)] == [3, 4, 5]


def test_explicit_sort_wins_over_distance_order(grid):
    got = [d["name"] for d in grid.find({"loc": near(0, 0, maxDistance=5000)}).sort("name", 1)]
    assert got == sorted(got) and len(got) == 5


def test_documents_without_the_field_are_not_returned(grid):
    ids = {d["_id"] for d in grid.find({"loc": near(0, 0)})}
    assert ids == set(range(10))
    within = {"loc": {"$geoWithin": {"$centerSphere": [[0, 0], 1.0]}}}
    assert {d["_id"] for d in grid.find(within)} == set(range(10))


def test_update_and_delete_with_near_pick_the_nearest(grid):
    grid.update_one({"loc": near(0.031, 0)}, {"$set": {"hit": True}})
    assert [d["_id"] for d in grid.find({"hit": True})] == [3]
    grid.delete_one({"loc": near(0.062, 0)})
    assert grid.find_one({"_id": 6}) is None


def test_near_on_a_missing_collection_finds_nothing(db):
    assert list(db.nothing_here.find({"loc": near(0, 0)})) == []


def test_lines_and_polygons_measure_to_their_nearest_point(db):
    coll = db.shapes
    coll.create_index([("geo", GEOSPHERE)])
    coll.insert_many([
        {"_id": "line", "geo": {"type": "LineString", "coordinates": [[0, 1], [0, 3]]}},
        {"_id": "square", "geo": {"type": "Polygon",
                                  "coordinates": [[[2, -1], [4, -1], [4, 1], [2, 1], [2, -1]]]}},
        {"_id": "point", "geo": P(-5, 0)},
    ])

    def distances(lng, lat):
        out = coll.aggregate([{"$geoNear": {"near": P(lng, lat), "distanceField": "d"}}])
        return {d["_id"]: d["d"] for d in out}

    # The line runs along the meridian lng 0 between lat 1 and 3: minimise along it.
    along = min(dist((1, 2), (0, 1 + k / 20000)) for k in range(40001))
    got = distances(1, 2)
    assert got["line"] == pytest.approx(along, rel=1e-6)
    assert got["square"] == pytest.approx(dist((1, 2), (2, 1)), rel=1e-3)
    assert got["point"] == pytest.approx(dist((1, 2), (-5, 0)), rel=1e-9)
    assert distances(3, 0)["square"] == 0  # inside the polygon
    assert distances(5, 0)["square"] == pytest.approx(dist((5, 0), (4, 0)), rel=1e-6)
    assert [d["_id"] for d in coll.find({"geo": near(1, 2, maxDistance=along * 1.001)})] == ["line"]

    def within(shape):
        return {d["_id"] for d in coll.find({"geo": {"$geoWithin": shape}})}

    assert within({"$centerSphere": [[0, 2], math.radians(1.5)]}) == {"line"}
    assert within({"$centerSphere": [[3, 0], math.radians(2.0)]}) == {"square"}
    tall = [[-1, 0], [1, 0], [1, 4], [-1, 4], [-1, 0]]
    short = [[-1, 0], [1, 0], [1, 2.5], [-1, 2.5], [-1, 0]]
    assert within({"$geometry": {"type": "Polygon", "coordinates": [tall]}}) == {"line"}
    assert within({"$geometry": {"type": "Polygon", "coordinates": [short]}}) == set()
    around = [[1, -2], [5, -2], [5, 2], [1, 2], [1, -2]]
    assert within({"$geometry": {"type": "Polygon", "coordinates": [around]}}) == {"square"}


def test_lines_are_within_only_if_their_arcs_are(db):
    coll = db.lines  # no index needed
    coll.insert_many([
        {"_id": "bridge", "geo": {"type": "LineString", "coordinates": [[1, 5], [5, 5]]}},
        {"_id": "arm", "geo": {"type": "LineString", "coordinates": [[0.5, 1], [1.5, 5]]}},
        {"_id": "over_the_back", "geo": {"type": "LineString", "coordinates": [[95, 0], [-95, 0]]}},
        {"_id": "front", "geo": {"type": "LineString", "coordinates": [[95, 0], [60, 0]]}},
    ])
    u_shape = [[0, 0], [6, 0], [6, 6], [4, 6], [4, 2], [2, 2], [2, 6], [0, 6], [0, 0]]
    query = {"geo": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [u_shape]}}}}
    assert {d["_id"] for d in coll.find(query)} == {"arm"}  # the bridge crosses the notch
    # A cap wider than a hemisphere: both ends inside, but the short arc passes the far side.
    cap = {"geo": {"$geoWithin": {"$centerSphere": [[0, 0], math.radians(100)]}}}
    assert {d["_id"] for d in coll.find(cap)} == {"front", "bridge", "arm"}


# --------------------------------------------------------------------------- $geoNear stage

def test_geonear_stage_options_and_following_stages(grid):
    step = dist((0, 0), (0.01, 0))
    out = list(grid.aggregate([
        {"$geoNear": {"near": P(0, 0), "distanceField": "d.m", "key": "loc", "spherical": True,
                      "query": {"cat": "a"}, "maxDistance": step * 6.5, "minDistance": step * 1.5,
                      "includeLocs": "where", "distanceMultiplier": 0.001}},
        {"$addFields": {"km": "$d.m"}},
        {"$project": {"_id": 1, "km": 1, "where": 1}},
        {"$limit": 2},
    ]))
    assert [d["_id"] for d in out] == [2, 4]
    assert out[0]["km"] == pytest.approx(2 * step / 1000, rel=1e-9)
    assert out[1]["where"] == P(0.04, 0.0)
    resorted = list(grid.aggregate([
        {"$geoNear": {"near": P(0, 0), "distanceField": "d"}},
        {"$sort": {"d": -1}},
        {"$limit": 1},
    ]))
    assert resorted[0]["_id"] == 9


# --------------------------------------------------------------------------- properties

lngs = st.floats(-180, 180, allow_nan=False)
lats = st.floats(-90, 90, allow_nan=False)


@st.composite
def scenes(draw):
    """A centre and points scattered around it at one of several scales."""
    centre = (draw(lngs), draw(lats))
    spread = draw(st.sampled_from([0.05, 1.0, 20.0, 180.0]))
    offsets = st.tuples(st.floats(-spread, spread), st.floats(-spread, spread))
    points = []
    for dx, dy in draw(st.lists(offsets, min_size=1, max_size=20)):
        lng = (centre[0] + dx + 180.0) % 360.0 - 180.0
        lat = min(90.0, max(-90.0, centre[1] + dy))
        points.append((lng, lat))
    return centre, points


prop_settings = settings(max_examples=50, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_points(coll, points):
    coll.delete_many({})
    coll.create_index([("loc", GEOSPHERE)])
    coll.insert_many([{"_id": i, "loc": P(*pt)} for i, pt in enumerate(points)])


@prop_settings
@given(scene=scenes(), fraction=st.floats(0.0, 1.2))
def test_property_near_sphere_max_distance(db, scene, fraction):
    centre, points = scene
    _load_points(db.prop, points)
    distances = [dist(centre, pt) for pt in points]
    limit = fraction * max(distances) + 1.0
    docs = list(db.prop.find({"loc": {"$nearSphere": {"$geometry": P(*centre), "$maxDistance": limit}}}))
    got = [d["_id"] for d in docs]
    assert len(got) == len(set(got))
    band = 1e-6 * limit + 1e-6
    for i, d in enumerate(distances):
        if abs(d - limit) > band:  # closer than that to the boundary: too close to call
            assert (i in got) == (d <= limit), (i, d, limit)
    ordered = [distances[i] for i in got]
    for a, b in zip(ordered, ordered[1:]):
        assert a <= b + 1e-9 * b + 1e-6


@prop_settings
@given(scene=scenes())
def test_property_geonear_distances_match_haversine(db, scene):
    centre, points = scene
    _load_points(db.prop, points)
    docs = list(db.prop.aggregate([{"$geoNear": {"near": P(*centre), "distanceField": "d"}}]))
    assert sorted(d["_id"] for d in docs) == list(range(len(points)))
    for doc in docs:
        expected = dist(centre, points[doc["_id"]])
        assert doc["d"] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    reported = [d["d"] for d in docs]
    for a, b in zip(reported, reported[1:]):
        assert a <= b


@prop_settings
@given(scene=scenes(), radius=st.floats(1e-5, 3.2))
def test_property_geowithin_center_sphere(db, scene, radius):
    centre, points = scene
    _load_points(db.prop, points)
    limit = radius * R
    distances = [dist(centre, pt) for pt in points]
    query = {"loc": {"$geoWithin": {"$centerSphere": [list(centre), radius]}}}
    got = {d["_id"] for d in db.prop.find(query)}
    band = 1e-6 * limit + 0.05  # a real server also admits points within an S2 leaf cell (~1 cm)
    for i, d in enumerate(distances):
        if abs(d - limit) > band:
            assert (i in got) == (d <= limit), (i, d, limit)
    assert db.prop.count_documents(query) == len(got)


# --------------------------------------------------------------------------- $geoWithin polygons

def _within(coll, geometry):
    return {d["_id"] for d in coll.find({"loc": {"$geoWithin": {"$geometry": geometry}}})}


@pytest.fixture
def spots(db):
    coll = db.spots  # no index: $geoWithin does not need one
    coll.insert_many([{"_id": name, "loc": P(*c)} for name, c in {
        "inside_both": (55.0, 64.0), "spherical_only": (0.0, 76.0),
        "planar_only": (0.0, 65.0), "outside": (0.0, 82.0),
        "in_square": (2.0, 2.0), "in_hole": (5.0, 5.0), "east": (12.0, 5.0),
    }.items()])
    coll.insert_one({"_id": "no_loc"})
    return coll


def test_polygon_edges_are_great_circle_arcs(spots):
    # Edges at lat 60 and 70 bulge towards the pole (to ~73.9 and ~79.7 at lng 0).
    band = [[-60, 60], [60, 60], [60, 70], [-60, 70], [-60, 60]]
    assert _within(spots, {"type": "Polygon", "coordinates": [band]}) == {"inside_both", "spherical_only"}


def test_polygon_winding_order_does_not_matter(spots):
    square = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    ccw = _within(spots, {"type": "Polygon", "coordinates": [square]})
    cw = _within(spots, {"type": "Polygon", "coordinates": [square[::-1]]})
    assert ccw == cw == {"in_square", "in_hole"}


def test_polygon_holes_and_multipolygons(spots):
    shell = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]
    assert _within(spots, {"type": "Polygon", "coordinates": [shell, hole]}) == {"in_square"}
    multi = {"type": "MultiPolygon", "coordinates": [[hole], [[[11, 4], [13, 4], [13, 6], [11, 6], [11, 4]]]]}
    assert _within(spots, multi) == {"in_hole", "east"}


def test_geowithin_needs_no_index_and_works_in_or_not_and_count(spots):
    square = {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}}
    query = {"$or": [{"loc": {"$geoWithin": square}}, {"_id": "outside"}]}
    assert {d["_id"] for d in spots.find(query)} == {"in_square", "in_hole", "outside"}
    assert spots.count_documents(query) == 3
    negated = {"loc": {"$not": {"$geoWithin": square}}}
    assert "in_square" not in {d["_id"] for d in spots.find(negated)}
    assert "no_loc" in {d["_id"] for d in spots.find(negated)}
    matched = list(spots.aggregate([{"$match": {"loc": {"$geoWithin": square}}}, {"$count": "n"}]))
    assert matched == [{"n": 2}]


# --------------------------------------------------------------------------- restrictions

def _assert_find_fails(coll, query, **kwargs):
    with pytest.raises(OperationFailure):
        list(coll.find(query, **kwargs))


def test_near_requires_a_2dsphere_index(db):
    db.plain.insert_one({"loc": P(0, 0)})
    _assert_find_fails(db.plain, {"loc": near(0, 0)})
    _assert_find_fails(db.plain, {"loc": {"$nearSphere": {"$geometry": P(0, 0)}}})
    db.plain.create_index([("loc", 1)])
    _assert_find_fails(db.plain, {"loc": near(0, 0)})


@pytest.mark.parametrize("query", [
    {"$or": [{"loc": near(0, 0)}, {"cat": "a"}]},
    {"$nor": [{"loc": near(0, 0)}]},
    {"loc": {"$not": near(0, 0)}},
    {"items": {"$elemMatch": {"loc": near(0, 0)}}},
    {"loc": near(0, 0), "other": near(1, 1)},
    {"$and": [{"loc": near(0, 0)}, {"loc": near(1, 1)}]},
    {"loc": near(0, 0), "$text": {"$search": "n1"}},
], ids=["or", "nor", "not", "elemMatch", "two-nears", "two-nears-in-and", "with-text"])
def test_near_must_be_top_level_and_alone(grid, query):
    grid.create_index([("other", GEOSPHERE)])
    grid.create_index([("name", "text")])
    _assert_find_fails(grid, query)


def test_near_is_refused_where_results_cannot_be_sorted(grid):
    with pytest.raises(OperationFailure):
        grid.count_documents({"loc": near(0, 0)})
    with pytest.raises(OperationFailure):
        list(grid.aggregate([{"$match": {"loc": near(0, 0)}}]))
    _assert_find_fails(grid, {"loc": near(0, 0)}, sort=[("$natural", 1)])


@pytest.mark.parametrize("spec", [
    near(200, 0), near(0, 95), near(float("nan"), 0), near(0, float("inf")),
    {"$near": {"$geometry": {"type": "Point"}}},
    {"$near": {"$geometry": {"type": "Point", "coordinates": "0,0"}}},
    {"$near": {"$geometry": {"type": "Point", "coordinates": ["0", "0"]}}},
    {"$near": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}},
    {"$near": {"$maxDistance": 10}},
    near(0, 0, maxDistance=-1), near(0, 0, minDistance=-5), near(0, 0, maxDistance="far"),
    {"$near": {"$geometry": P(0, 0)}, "$maxDistance": 10},
    {"$near": P(0, 0), "$maxDistance": -1},
    {"$near": P(200, 0), "$maxDistance": 10},
    {"$near": {"$geometry": P(0, 0), "$bogus": 1}},
    {"$near": P(0, 0), "$exists": True},
    {"$near": 5},
])
def test_malformed_near_queries_are_refused(grid, spec):
    _assert_find_fails(grid, {"loc": spec})


@pytest.mark.parametrize("within", [
    {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}},
    {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}},
    {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0], [1, 1], [0, 0]]]}},
    {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
    {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [1, 1], [0, 0]]]}},
    {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]],
                                                      [[5, 5], [6, 5], [6, 6], [5, 5]]]}},
    {"$geometry": {"type": "Polygon", "coordinates": []}},
    {"$geometry": P(0, 0)},
    {"$geometry": {"type": "Blob", "coordinates": [0, 0]}},
    {"$centerSphere": [[0, 0], -1]},
    {"$centerSphere": [[0, 0], "1"]},
    {"$centerSphere": [[200, 0], 0.1]},
    {"$centerSphere": [[0, 0], 0.1, 3]},
    {"$centerSphere": [[0, 0], 0.1], "$geometry": P(0, 0)},
    {"$sphere": [[0, 0], 0.1]},
    {},
], ids=["unclosed", "two-vertices", "duplicate-vertex", "bowtie", "out-of-range", "hole-outside",
        "no-loops", "point", "unknown-type", "negative-radius", "string-radius", "bad-centre",
        "extra-field", "two-shapes", "unknown-shape", "empty"])
def test_malformed_geowithin_is_refused(spots, within):
    _assert_find_fails(spots, {"loc": {"$geoWithin": within}})
    with pytest.raises(OperationFailure):
        spots.count_documents({"loc": {"$geoWithin": within}})


def test_geonear_must_be_the_first_stage(grid):
    with pytest.raises(OperationFailure):
        list(grid.aggregate([{"$match": {"cat": "a"}}, {"$geoNear": {"near": P(0, 0), "distanceField": "d"}}]))


def test_geonear_index_resolution(db):
    coll = db.two_geo
    coll.insert_one({"a": P(0, 0), "b": P(1, 1)})
    stage = {"near": P(0, 0), "distanceField": "d"}
    with pytest.raises(OperationFailure):  # no geo index at all
        list(coll.aggregate([{"$geoNear": stage}]))
    coll.create_index([("a", GEOSPHERE)])
    coll.create_index([("b", GEOSPHERE)])
    with pytest.raises(OperationFailure):  # two candidates and no key
        list(coll.aggregate([{"$geoNear": stage}]))
    with pytest.raises(OperationFailure):  # key without an index
        list(coll.aggregate([{"$geoNear": dict(stage, key="c")}]))
    [doc] = coll.aggregate([{"$geoNear": dict(stage, key="b")}])
    assert doc["d"] == pytest.approx(dist((0, 0), (1, 1)), rel=1e-9)


@pytest.mark.parametrize("stage", [
    {"near": P(0, 0), "distanceField": 5},
    {"near": P(0, 0), "distanceField": "$d"},
    {"distanceField": "d"},
    {"near": P(200, 0), "distanceField": "d"},
    {"near": P(0, 0), "distanceField": "d", "maxDistance": -1},
    {"near": P(0, 0), "distanceField": "d", "minDistance": "1"},
    {"near": P(0, 0), "distanceField": "d", "limit": 5},
    {"near": P(0, 0), "distanceField": "d", "bogus": 1},
    {"near": P(0, 0), "distanceField": "d", "query": {"loc": near(0, 0)}},
    {"near": P(0, 0), "distanceField": "d", "query": "cat"},
    {"near": P(0, 0), "distanceField": "d", "query": {"$text": {"$search": "n1"}}},
    {"near": P(0, 0), "distanceField": "d", "key": ""},
    {"near": "0,0", "distanceField": "d"},
])
def test_malformed_geonear_stages_are_refused(grid, stage):
    with pytest.raises(OperationFailure):
        list(grid.aggregate([{"$geoNear": stage}]))


# --------------------------------------------------------------------------- writes

INVALID_LOCATIONS = [
    P(200, 10), P(10, 95), P(-180.5, 0), P(float("nan"), 10), P(10, float("inf")),
    {"type": "Point", "coordinates": ["10", "20"]},
    {"type": "Point", "coordinates": [10]},
    {"type": "Point"},
    {"type": "Pointy", "coordinates": [1, 2]},
    {"type": "LineString", "coordinates": [[0, 0]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]},
    "10,20", 42, True, [200, 10], [[1, 2], [3, 4]],
]
VALID_LOCATIONS = [
    P(180, 90), P(-180, -90), {"type": "Point", "coordinates": [10, 20, 300]},
    [10, 20], {"lng": 10, "lat": 20},
    {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
    {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]},
    None,
]


@pytest.fixture
def indexed(db):
    db.places.create_index([("location", GEOSPHERE)])
    return db.places


@pytest.mark.parametrize("value", INVALID_LOCATIONS)
def test_inserting_an_invalid_location_fails_like_mongodb(indexed, value):
    with pytest.raises(WriteError) as info:
        indexed.insert_one({"name": "x", "location": value})
    assert info.value.code == 16755
    assert indexed.count_documents({}) == 0


@pytest.mark.parametrize("value", VALID_LOCATIONS)
def test_valid_or_missing_locations_are_stored(indexed, value):
    indexed.insert_one({"location": value})
    indexed.insert_one({"name": "no location"})
    assert indexed.count_documents({}) == 2


def test_insert_many_stops_at_the_first_invalid_location(indexed):
    with pytest.raises(BulkWriteError):
        indexed.insert_many([{"_id": 1, "location": P(1, 1)}, {"_id": 2, "location": P(1, 91)},
                             {"_id": 3, "location": P(2, 2)}])
    assert [d["_id"] for d in indexed.find()] == [1]


def test_updates_cannot_store_an_invalid_location(indexed):
    indexed.insert_many([{"_id": 1, "location": P(1, 1)}, {"_id": 2, "location": P(2, 2)}])
    attempts = [
        lambda: indexed.update_one({"_id": 1}, {"$set": {"location": P(200, 0)}}),
        lambda: indexed.update_one({"_id": 1}, {"$set": {"location.coordinates": [0, 95]}}),
        lambda: indexed.update_many({}, {"$set": {"location": "here"}}),
        lambda: indexed.replace_one({"_id": 1}, {"location": P(0, float("nan"))}),
        lambda: indexed.find_one_and_update({"_id": 2}, {"$set": {"location.type": "Dot"}}),
        lambda: indexed.update_one({"_id": 9}, {"$set": {"location": P(0, -91)}}, upsert=True),
    ]
    for attempt in attempts:
        with pytest.raises(OperationFailure) as info:
            attempt()
        assert info.value.code == 16755
    assert list(indexed.find({}, sort=[("_id", 1)])) == [
        {"_id": 1, "location": P(1, 1)}, {"_id": 2, "location": P(2, 2)}]
    indexed.update_one({"_id": 1}, {"$set": {"location": P(3, 3)}})
    indexed.update_one({"_id": 2}, {"$unset": {"location": ""}})
    assert indexed.find_one({"_id": 1})["location"] == P(3, 3)


def test_creating_the_index_over_invalid_documents_fails(db):
    db.places.insert_many([{"location": P(1, 1)}, {"location": P(1, 100)}])
    with pytest.raises(OperationFailure):
        db.places.create_index([("location", GEOSPHERE)])


# --------------------------------------------------------------------------- geo.py helpers

def test_haversine_and_point_helpers():
    assert geo.EARTH_RADIUS_M == 6378100.0
    assert geo.haversine_m(1, 2, 1, 2) == 0
    assert geo.haversine_m(0, 0, 180, 0) == pytest.approx(math.pi * R)
    assert geo.haversine_m(*CITIES["paris"], *CITIES["london"]) == pytest.approx(
        geo.haversine_m(*CITIES["london"], *CITIES["paris"]))
    assert geo.to_point(48.8566, 2.3522) == {"type": "Point", "coordinates": [2.3522, 48.8566]}
    with pytest.raises(ValueError):
        geo.to_point(95, 0)
    assert geo.valid_lng_lat(180, -90) and geo.valid_lng_lat(-180.0, 90.0)
    for lng, lat in [(181, 0), (0, -90.5), (float("nan"), 0), (0, float("inf")), (True, 0), ("1", 2), (10**400, 0)]:
        assert not geo.valid_lng_lat(lng, lat)


def test_parse_near():
    assert geo.parse_near("48.8566,2.3522") == (48.8566, 2.3522)
    assert geo.parse_near(" -33.5 , 151 ") == (-33.5, 151.0)
    assert geo.parse_near("90,-180") == (90.0, -180.0)
    for garbage in ["", "48.8", "a,b", "1,2,3", "1;2", "nan,1", "1,NaN", "inf,0", "0,-inf",
                    "91,0", "0,180.5", "1e400,0", "1_0,2", "0x10,1", None, 12]:
        with pytest.raises(ValueError):
            geo.parse_near(garbage)


def test_install_is_idempotent():
    geo_mongomock.install()
    patched = (mongomock.collection.Collection._iter_documents,
               mongomock.collection.Collection.create_index)
    for _ in range(3):
        geo_mongomock.install()
    assert (mongomock.collection.Collection._iter_documents,
            mongomock.collection.Collection.create_index) == patched
    coll = mongomock.MongoClient()["idempotent"]["c"]
    coll.create_index([("loc", GEOSPHERE)])
    coll.insert_many([{"_id": 1, "loc": P(1, 0)}, {"_id": 2, "loc": P(0.5, 0)}])
    assert [d["_id"] for d in coll.find({"loc": near(0, 0)})] == [2, 1]
