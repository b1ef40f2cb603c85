"""The embedded store's fast paths give exactly what plain mongomock's full scans give."""
import threading
from datetime import datetime

import mongomock
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import DuplicateKeyError

from allynet import embedded
from allynet.embedded import store as embedded_store

VALUES = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["a", "b", "c"]), st.booleans(),
                   st.floats(-2, 2).map(lambda f: round(f, 0)),
                   st.lists(st.integers(-3, 3), max_size=3),
                   st.fixed_dictionaries({"x": st.integers(-2, 2)}))
DOCS = st.lists(st.fixed_dictionaries({}, optional={"k": VALUES, "n": VALUES, "s": VALUES}), max_size=25)
UPDATES = st.lists(st.tuples(st.sampled_from(["k", "n", "s"]), VALUES, st.sampled_from(["k", "n"]), VALUES),
                   max_size=8)
QUERIES = st.lists(st.tuples(st.sampled_from(["k", "n", "s", "k.x", "n.x"]),
                             st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["a", "b"]))),
                   min_size=1, max_size=6)


def _apply(collection, docs, updates):
    if docs:
        collection.insert_many([dict(doc, _id=i) for i, doc in enumerate(docs)])
    for field, match, set_field, value in updates:
        collection.update_many({field: match}, {"$set": {set_field: value}})
    collection.delete_many({"s": "c"})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS, UPDATES, QUERIES)
def test_equality_queries_match_a_full_scan(docs, updates, queries):
    fast = embedded.make_client().db.c
    fast.create_index("k")
    _apply(fast, docs, updates)
    reference = [dict(doc) for doc in fast.find({})]  # no equality: mongomock's own full scan
    for field, value in queries:
        expected = [doc["_id"] for doc in reference
                    if mongomock.filtering.filter_applies({field: value}, doc)]
        assert [doc["_id"] for doc in fast.find({field: value})] == expected
        assert [doc["_id"] for doc in fast.find({"$and": [{field: value}, {}]})] == expected
        assert fast.count_documents({field: value}) == len(expected)
        others = [other for _, other in queries]
        expected_in = [doc["_id"] for doc in reference
                       if mongomock.filtering.filter_applies({field: {"$in": others}}, doc)]
        assert [doc["_id"] for doc in fast.find({field: {"$in": others}})] == expected_in
        assert [doc["_id"] for doc in fast.find({field: {"$nin": others}})] == \
            [doc["_id"] for doc in reference if doc["_id"] not in expected_in]
        assert [doc["_id"] for doc in fast.find({"$and": [{field: {"$in": others, "$ne": "a"}}]})] == \
            [i for i in expected_in if mongomock.filtering.filter_applies(
                {field: {"$ne": "a"}}, next(doc for doc in reference if doc["_id"] == i))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS, UPDATES, QUERIES, QUERIES)
def test_several_equalities_match_a_full_scan(docs, updates, firsts, seconds):
    # The lookup takes the narrowest of the fields' indexes; the answer is the full scan's.
    fast = embedded.make_client().db.c
    _apply(fast, docs, updates)
    reference = [dict(doc) for doc in fast.find({})]
    for field, value in firsts:  # index each queried path (indexes are made by first use)
        list(fast.find({field: value}))
    for (field, value), (other, other_value) in zip(firsts, seconds):
        query = {field: value, other: other_value} if other != field else {field: value, "s": other_value}
        expected = [doc["_id"] for doc in reference if mongomock.filtering.filter_applies(query, doc)]
        assert [doc["_id"] for doc in fast.find(query)] == expected
        assert fast.count_documents(query) == len(expected)


def test_lookups_start_from_the_most_selective_field_never_a_worse_one():
    from allynet.embedded import indexes as embedded_index

    collection = embedded.make_client().db.c
    collection.insert_many([{"party": p, "user": p * 8 + u, "active": True} for p in range(10) for u in range(8)])
    store = collection._store
    list(collection.find({"active": True}))  # indexes `active`: every document in one bucket
    # The first field is indexed on first use and beats an indexed but unselective one...
    assert embedded_index.narrowest(store, [("user", 9), ("active", True)]) == ("user", 9)
    # ...and a later field wins once it is indexed and narrower.
    assert embedded_index.narrowest(store, [("party", 1), ("user", 9), ("active", True)]) == ("user", 9)
    assert embedded_index.narrowest(store, [("party", 1), ("active", True)]) == ("party", 1)
    assert [doc["user"] for doc in collection.find({"party": 1, "user": 9, "active": True})] == [9]


def test_unique_and_partial_unique_indexes_still_hold():
    collection = embedded.make_client().db.members
    collection.create_index([("party_id", 1), ("user_id", 1)], unique=True)
    collection.create_index("user_id", unique=True, partialFilterExpression={"active": True})
    user = ObjectId()
    collection.insert_one({"party_id": 1, "user_id": user, "active": True})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"party_id": 1, "user_id": user, "active": False})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"party_id": 2, "user_id": user, "active": True})
    collection.insert_one({"party_id": 2, "user_id": user, "active": False})
    with pytest.raises(DuplicateKeyError):
        collection.update_one({"party_id": 2}, {"$set": {"active": True}})
    assert collection.find_one({"party_id": 2})["active"] is False  # the failed update left no trace
    collection.update_one({"party_id": 1}, {"$set": {"active": False}})
    collection.update_one({"party_id": 2}, {"$set": {"active": True}})
    assert [d["party_id"] for d in collection.find({"user_id": user, "active": True})] == [2]
    collection.delete_one({"party_id": 2})
    collection.insert_one({"party_id": 3, "user_id": user, "active": True})
    assert collection.count_documents({"user_id": user}) == 2


def test_set_updates_follow_indexes_created_and_dropped_later():
    from pymongo import GEOSPHERE
    from pymongo.errors import WriteError

    collection = embedded.make_client().db.c
    collection.insert_many([{"_id": 1, "u": 1}, {"_id": 2, "u": 2}])
    collection.update_one({"_id": 2}, {"$set": {"u": 3, "loc": [500, 0]}})  # no index: both allowed
    collection.create_index("u", unique=True)
    with pytest.raises(DuplicateKeyError):
        collection.update_one({"_id": 2}, {"$set": {"u": 1}})
    collection.create_index([("where", GEOSPHERE)])
    with pytest.raises(WriteError):
        collection.update_one({"_id": 1}, {"$set": {"where": {"type": "Point", "coordinates": [500, 0]}}})
    collection.drop_index("u_1")
    collection.update_one({"_id": 2}, {"$set": {"u": 1}})
    assert [doc["u"] for doc in collection.find({}, sort=[("_id", 1)])] == [1, 1]
    assert "where" not in collection.find_one({"_id": 1})


def test_compare_and_set_by_id_is_atomic_under_threads():
    collection = embedded.make_client().db.users
    user_id = collection.insert_one({"slot": None}).inserted_id
    winners = []

    def claim(n):
        if collection.find_one_and_update({"_id": user_id, "slot": None}, {"$set": {"slot": n}}):
            winners.append(n)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert collection.find_one({"_id": user_id})["slot"] == winners[0]


def test_drop_forgets_indexed_documents():
    collection = embedded.make_client().db.c
    collection.insert_many([{"k": 1}, {"k": 1}])
    assert collection.count_documents({"k": 1}) == 2
    collection.drop()
    assert collection.count_documents({"k": 1}) == 0
    collection.insert_one({"k": 1})
    assert collection.count_documents({"k": 1}) == 1


BSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
              st.binary(max_size=4), st.datetimes(), st.builds(ObjectId)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=4), children, max_size=4)),
    max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=4), BSON_VALUES, max_size=5), st.booleans())
def test_document_copy_is_an_independent_deep_copy(document, ordered):
    import copy
    from collections import OrderedDict

    from allynet.embedded.copies import copy_document

    if ordered:
        document = OrderedDict(document, nested=OrderedDict(inner=[document]))
    copied = copy_document(document)
    assert copied == copy.deepcopy(document) and type(copied) is type(document)

    def containers(value):
        if isinstance(value, (dict, list)):
            yield value
            for item in (value.values() if isinstance(value, dict) else value):
                yield from containers(item)

    originals = {id(c) for c in containers(document)}
    assert not any(id(c) in originals for c in containers(copied))  # no container shared


@settings(max_examples=100, deadline=None)
@given(BSON_VALUES, st.booleans(), st.booleans())
def test_datetime_patch_is_mongomocks_own(value, ordered, aware):
    from collections import OrderedDict
    from datetime import datetime, timedelta, timezone

    from allynet.embedded import copies as doccopy

    embedded.install()
    if ordered:
        value = OrderedDict(v=value, t=(value, 1))
    if aware:
        value = {"v": value, "at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))}
    patched = doccopy.patch_datetime_awareness(value)
    expected = doccopy._patch_datetimes(value)
    assert patched == expected and repr(patched) == repr(expected)


def test_updates_do_not_leak_into_documents_read_earlier():
    collection = embedded.make_client().db.c
    collection.insert_one({"_id": 1, "where": {"type": "Point", "coordinates": [1.0, 2.0]}, "tags": ["a"]})
    before = collection.find_one({"_id": 1})
    collection.update_one({"_id": 1}, {"$set": {"where.coordinates": [3.0, 4.0]}, "$push": {"tags": "b"}})
    assert before == {"_id": 1, "where": {"type": "Point", "coordinates": [1.0, 2.0]}, "tags": ["a"]}
    before["tags"].append("local")
    assert collection.find_one({"_id": 1})["tags"] == ["a", "b"]


# No booleans among other values: mongomock counts 0 -> false as "not modified" (Python's 0 == False),
# MongoDB (and the fast path) as modified.
SCALARS = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["a", "b"]))
GEO = st.sampled_from([None, {"type": "Point", "coordinates": [11.5, 48.1]},
                       {"type": "Point", "coordinates": [500, 0]},  # not a valid geo key: refused
                       {"type": "Point", "coordinates": [11.5, 48.2]}])
SET_DOCS = st.lists(st.fixed_dictionaries({}, optional={"u": st.just(0), "x": SCALARS, "active": st.booleans()}),
                    max_size=8)
SET_FIELDS = st.fixed_dictionaries({}, optional={
    "u": SCALARS, "g": st.integers(0, 3), "active": st.booleans(), "loc": GEO,
    "x": st.one_of(SCALARS, st.lists(st.integers(0, 2), max_size=2), st.fixed_dictionaries({"k": SCALARS}))})
SET_UPDATES = st.lists(st.tuples(st.sampled_from([{}, {"g": 0}, {"g": 1}, {"x": "a"}, {"active": True}]),
                                 SET_FIELDS.filter(bool), st.booleans()), max_size=6)


def _set_collection(docs):
    from pymongo import GEOSPHERE

    collection = embedded.make_client().db.c
    collection.create_index("u", unique=True, sparse=True)
    collection.create_index("g", unique=True, partialFilterExpression={"active": True})
    collection.create_index([("loc", GEOSPHERE)])
    for i, doc in enumerate(docs):
        doc = dict(doc, _id=i, g=i)
        if "u" in doc:
            doc["u"] = i  # unique to start with; updates may collide
        collection.insert_one(doc)
    return collection


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SET_DOCS, SET_UPDATES)
def test_fast_set_updates_match_mongomocks_own(docs, updates):
    fast, reference = _set_collection(docs), _set_collection(docs)
    for query, fields, multi in updates:
        outcomes = []
        for collection, update in ((fast, {"$set": fields}),
                                   # an extra no-op operator sends the same change through mongomock's path
                                   (reference, {"$set": fields, "$unset": {"never_there": ""}})):
            method = collection.update_many if multi else collection.update_one
            try:
                result = method(query, update)
                outcomes.append(("ok", result.matched_count, result.modified_count))
            except Exception as exc:  # noqa: BLE001 - the same refusal is what is compared
                outcomes.append((type(exc).__name__,))
        assert outcomes[0] == outcomes[1], (query, fields, multi)
        assert list(fast.find({})) == list(reference.find({}))
        for field in ("u", "g", "x"):
            for value in (0, 1, "a", None):
                assert [d["_id"] for d in fast.find({field: value})] == \
                    [d["_id"] for d in reference.find({field: value})]


def test_expired_documents_go_once_a_minute_as_with_mongodbs_ttl_monitor(monkeypatch):
    from datetime import datetime, timedelta

    clock = [1000.0]
    monkeypatch.setattr(embedded.store.time, "monotonic", lambda: clock[0])
    collection = embedded.make_client().db.ttl_docs
    collection.create_index("expires_at", expireAfterSeconds=0)
    past = datetime.utcnow() - timedelta(minutes=1)
    collection.insert_many([{"_id": 1, "expires_at": past}, {"_id": 2, "expires_at": past + timedelta(days=1)}])
    clock[0] += 59
    assert collection.count_documents({}) == 2  # like MongoDB: expired, still there until the next sweep
    clock[0] += 1
    assert [doc["_id"] for doc in collection.find()] == [2]
    collection.insert_one({"_id": 3, "expires_at": past})
    clock[0] += 59
    assert collection.find_one({"_id": 3}) is not None
    clock[0] += 1
    assert collection.find_one({"_id": 3}) is None


def test_the_clock_reads_naive_utc_in_whole_milliseconds_as_mongodb_stores_it():
    from datetime import datetime, timezone

    from allynet import clock

    before = datetime.now(timezone.utc).replace(tzinfo=None)
    reading = clock.now()
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert reading.tzinfo is None and reading.microsecond % 1000 == 0
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= reading <= after
    collection = embedded.make_client().db.clock_docs
    collection.insert_one({"_id": 1, "at": reading})
    assert collection.find_one({"_id": 1})["at"] == reading  # survives the store unchanged


TIMES = st.one_of(st.none(), st.integers(0, 10).map(lambda m: datetime(2026, 1, 1, 0, m)),
                  st.integers(0, 10), st.sampled_from(["2026-01-01T00:05:00", "x"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"a": VALUES}, optional={"ts": TIMES, "b": VALUES}), max_size=25),
       st.integers(0, 11))
def test_scan_since_matches_find(docs, minute):
    collection = embedded.make_client().db.c
    if docs:
        collection.insert_many([dict(doc, _id=i) for i, doc in enumerate(docs)])
    since = datetime(2026, 1, 1, 0, minute)
    expected = list(collection.find({"ts": {"$gte": since}}))
    assert embedded_store.scan_since(collection, "ts", since) == expected


CHANGES = st.lists(st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 12), VALUES),
    st.tuples(st.just("delete"), st.integers(0, 12), st.none()),
    st.tuples(st.just("update"), st.integers(0, 12), VALUES),
    st.tuples(st.just("replace"), st.integers(0, 12), VALUES),
    st.tuples(st.just("read"), st.just(0), st.none()),
    st.tuples(st.just("drop"), st.just(0), st.none()),
), max_size=30)


def _apply_changes(view, found):
    for change, item in found:
        if change == embedded_store.ADDED:
            view[item["_id"]] = dict(item)
        elif change == embedded_store.REMOVED:
            view.pop(item, None)
        else:
            view.clear()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(VALUES, max_size=10), CHANGES)
def test_a_followed_collection_is_its_snapshot_plus_its_changes(initial, steps):
    collection = embedded.make_client().db.c
    if initial:
        collection.insert_many([{"_id": i, "a": value} for i, value in enumerate(initial)])
    view = {doc["_id"]: dict(doc) for doc in embedded_store.follow(collection)}
    for step, key, value in steps:
        if step == "insert":
            try:
                collection.insert_one({"_id": key, "a": value})
            except DuplicateKeyError:
                pass
        elif step == "delete":
            collection.delete_one({"_id": key})
        elif step == "update":
            collection.update_many({"_id": {"$lte": key}}, {"$set": {"a": value}})
        elif step == "replace":
            collection.replace_one({"_id": key}, {"a": value, "b": 1}, upsert=True)
        elif step == "drop":
            collection.drop()
        else:
            _apply_changes(view, embedded_store.changes(collection))
            assert view == {doc["_id"]: doc for doc in collection.find()}
    _apply_changes(view, embedded_store.changes(collection))
    assert view == {doc["_id"]: doc for doc in collection.find()}


def test_an_unfollowed_collection_has_no_changes():
    collection = embedded.make_client().db.c
    collection.insert_one({"_id": 1})
    assert embedded_store.changes(collection) is None
    assert embedded_store.follow(collection) == [{"_id": 1}]
    collection.insert_one({"_id": 2})
    assert [(change, item["_id"]) for change, item in embedded_store.changes(collection)] == [("+", 2)]
    assert list(embedded_store.changes(collection)) == []
