"""The embedded store's `$text` (allynet/embedded/text.py): MongoDB's matching rules and restrictions."""
import pytest
from pymongo import GEOSPHERE, TEXT
from pymongo.errors import OperationFailure

from allynet import embedded

DOCS = [
    {"_id": 1, "name": "Bike repair", "description": "Punctures and brakes, pre-market tuning"},
    {"_id": 2, "name": "Café barista", "description": "Coffee and tea for parties"},
    {"_id": 3, "name": "C++ tutoring", "description": "Lessons (C++ / Python) for beginners"},
    {"_id": 4, "name": "Gardening", "description": None, "tags": ["bike"]},
    {"_id": 5, "name": 42, "description": ["Naïve art", "painting"]},
]


@pytest.fixture
def collection():
    client = embedded.make_client()
    col = client.db.things
    col.create_index([("name", TEXT), ("description", TEXT)], name="text", default_language="none")
    col.insert_many([dict(doc) for doc in DOCS])
    return col


def ids(collection, search, **options):
    return sorted(doc["_id"] for doc in collection.find({"$text": {"$search": search, **options}}))


@pytest.mark.parametrize("search, expected", [
    ("bike", [1]),  # tags are not indexed
    ("BIKE coffee", [1, 2]),  # any term, case-insensitive
    ("cafe", [2]), ("CAFÉ", [2]), ("naive", [5]),  # diacritic-insensitive, arrays of strings indexed
    ("coffee -tea", []), ("-bike coffee", [2]), ("coffee -bike", [2]),
    ("-bike", []), ("", []), ("   ", []), ("-", []),
    ('"coffee and"', [2]), ('"and coffee"', []), ('"coffee and" python', [2]), ('"coffee and" -tea', []),
    ('"Lessons (C++"', [3]), ('python -"c++"', []), ('python -"c#"', [3]),
    ('lessons "c++', [3]),  # an unclosed quote is no phrase; its words stay terms
    ("pre-market", [1]), ("repair -pre-market", []),  # a hyphen inside a word delimits; leading one negates
    ("repair - bike", [1]),  # a lone dash negates nothing
    (".*", []), ("(", []), ("c++", [3]), ("bike.*|tea", [1, 2]), ("[bB]ike", []), ("42", []),
    ("repairs", []), ("brake", []),  # language none: no stemming
])
def test_matching(collection, search, expected):
    assert ids(collection, search) == expected


def test_case_and_diacritic_sensitivity_options(collection):
    assert ids(collection, "Bike", **{"$caseSensitive": True}) == [1]
    assert ids(collection, "bike", **{"$caseSensitive": True}) == []
    assert ids(collection, "cafe", **{"$diacriticSensitive": True}) == []
    assert ids(collection, "café", **{"$diacriticSensitive": True}) == [2]
    assert ids(collection, "coffee", **{"$language": "none"}) == [2]


def test_wildcard_text_index_covers_every_string_field():
    col = embedded.make_client().db.things
    col.create_index([("$**", TEXT)], name="all_text")
    col.insert_many([{"_id": 1, "a": {"b": ["x", "needle"]}}, {"_id": 2, "c": "hay"}])
    assert [doc["_id"] for doc in col.find({"$text": {"$search": "needle"}})] == [1]


def test_dotted_fields_are_followed_through_arrays():
    col = embedded.make_client().db.things
    col.create_index([("items.label", TEXT)], name="labels")
    col.insert_many([{"_id": 1, "items": [{"label": "red"}, {"label": "blue"}]}, {"_id": 2, "label": "blue"}])
    assert [doc["_id"] for doc in col.find({"$text": {"$search": "blue"}})] == [1]


def test_text_combines_with_other_conditions_and_every_read_and_write(collection):
    assert collection.count_documents({"$text": {"$search": "bike coffee"}, "_id": {"$gt": 1}}) == 1
    assert collection.count_documents({"$and": [{"_id": {"$lt": 3}}, {"$and": [{"$text": {"$search": "tea"}}]}]}) == 1
    assert collection.find_one({"$text": {"$search": "python"}})["_id"] == 3
    assert collection.update_many({"$text": {"$search": "bike tea"}}, {"$set": {"hit": True}}).modified_count == 2
    assert sorted(doc["_id"] for doc in collection.find({"hit": True})) == [1, 2]
    assert collection.delete_many({"$text": {"$search": "gardening"}}).deleted_count == 1
    assert collection.count_documents({}) == len(DOCS) - 1
    pipeline = [{"$match": {"$text": {"$search": "coffee python"}}}, {"$sort": {"_id": -1}}, {"$project": {"_id": 1}}]
    assert list(collection.aggregate(pipeline)) == [{"_id": 3}, {"_id": 2}]


def test_text_index_is_required():
    col = embedded.make_client().db.things
    with pytest.raises(OperationFailure, match="text index required for \\$text query .no such collection") as info:
        list(col.find({"$text": {"$search": "x"}}))
    assert info.value.code == 27
    col.insert_one({"name": "x"})
    col.create_index([("name", 1)])
    with pytest.raises(OperationFailure, match="text index required"):
        col.count_documents({"$text": {"$search": "x"}})


@pytest.mark.parametrize("query, message", [
    ({"$text": "bike"}, "\\$text expects an object"),
    ({"$text": {"$search": 5}}, "\\$search needs a String"),
    ({"$text": {}}, "\\$search needs a String"),
    ({"$text": {"$search": "x", "$regex": ".*"}}, "extra fields in \\$text"),
    ({"$text": {"$search": "x", "$caseSensitive": "yes"}}, "requires a boolean"),
    ({"$and": [{"$text": {"$search": "a"}}, {"$text": {"$search": "b"}}]}, "Too many text expressions"),
    ({"$nor": [{"$text": {"$search": "a"}}]}, "text expression not allowed in nor"),
    ({"name": {"$elemMatch": {"$text": {"$search": "a"}}}}, "top level"),
    ({"name": {"$not": {"$text": {"$search": "a"}}}}, "top level"),
])
def test_malformed_or_misplaced_text_is_refused(collection, query, message):
    with pytest.raises(OperationFailure, match=message):
        list(collection.find(query))


def test_text_under_or_is_not_emulated(collection):
    with pytest.raises(NotImplementedError):
        list(collection.find({"$or": [{"$text": {"$search": "a"}}, {"_id": 1}]}))


def test_text_score_in_find_is_not_emulated(collection):
    with pytest.raises(NotImplementedError):
        list(collection.find({"$text": {"$search": "bike"}}, {"score": {"$meta": "textScore"}}))


def test_text_score_follows_the_servers_formula():
    col = embedded.make_client().db.things
    col.create_index([("name", TEXT), ("description", TEXT)], name="text", default_language="none")
    col.insert_many([
        {"_id": 1, "name": "Bike", "description": "bike bike repair"},
        {"_id": 2, "name": "Bike courier", "description": "fast"},
        {"_id": 3, "name": "coffee", "description": "x"},
    ])
    rows = list(col.aggregate([{"$match": {"$text": {"$search": "bike coffee -x"}}},
                               {"$addFields": {"score": {"$meta": "textScore"}}},
                               {"$sort": {"score": -1}}, {"$project": {"score": 1}}]))
    # 1: name "Bike" = 1 * 1.0 * 1.1 (whole field); description: freq 1 + 1/2, coeff 0.5 * 2/3 + 0.5.
    # 2: name "Bike courier": freq 1, coeff 0.5 * 1/2 + 0.5. 3 is excluded by -x.
    assert rows == [{"_id": 1, "score": pytest.approx(1.1 + 1.5 * (0.5 * 2 / 3 + 0.5))},
                    {"_id": 2, "score": pytest.approx(0.75)}]
    ordered = list(col.aggregate([{"$match": {"$text": {"$search": "bike"}}},
                                  {"$sort": {"anything": {"$meta": "textScore"}}}, {"$project": {"_id": 1}}]))
    assert ordered == [{"_id": 1}, {"_id": 2}]


def test_text_score_without_a_text_match_is_refused(collection):
    with pytest.raises(OperationFailure, match="text score metadata") as info:
        list(collection.aggregate([{"$match": {}}, {"$addFields": {"score": {"$meta": "textScore"}}}]))
    assert info.value.code == 40218


@pytest.fixture
def places():
    col = embedded.make_client().db.places
    col.create_index([("location", GEOSPHERE)], name="location_2dsphere")
    col.create_index([("name", TEXT)], name="name_text", default_language="none")
    col.insert_many([
        {"_id": 1, "name": "bike shop", "location": {"type": "Point", "coordinates": [0.0, 0.01]}},
        {"_id": 2, "name": "bike shop", "location": {"type": "Point", "coordinates": [0.0, 1.0]}},
        {"_id": 3, "name": "bakery", "location": {"type": "Point", "coordinates": [0.0, 0.001]}},
    ])
    return col


def test_text_with_geo_within_is_allowed(places):
    area = {"$geoWithin": {"$centerSphere": [[0.0, 0.0], 5000 / 6378100.0]}}
    assert [doc["_id"] for doc in places.find({"$text": {"$search": "bike"}, "location": area})] == [1]


def test_text_with_near_is_refused(places):
    near = {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": 5000}}
    with pytest.raises(OperationFailure, match="text and geoNear not allowed in same query"):
        list(places.find({"$text": {"$search": "bike"}, "location": near}))
    with pytest.raises(OperationFailure, match="text and geoNear"):
        list(places.find({"$and": [{"$text": {"$search": "bike"}}, {"location": {"$nearSphere": near["$near"]}}]}))


def test_text_in_aggregation_only_in_a_first_match_and_never_in_geo_near(places):
    point = {"type": "Point", "coordinates": [0, 0]}
    with pytest.raises(OperationFailure, match="\\$geoNear is not allowed to have a \\$text query"):
        list(places.aggregate([{"$geoNear": {"near": point, "distanceField": "d", "key": "location",
                                             "query": {"$text": {"$search": "bike"}}}}]))
    with pytest.raises(OperationFailure, match="only allowed as the first pipeline stage") as info:
        list(places.aggregate([{"$match": {"_id": {"$gt": 0}}}, {"$match": {"$text": {"$search": "bike"}}}]))
    assert info.value.code == 17313
    rows = list(places.aggregate([{"$geoNear": {"near": point, "distanceField": "d", "key": "location",
                                                "maxDistance": 5000, "query": {"name": "bakery"}}}]))
    assert [row["_id"] for row in rows] == [3]
