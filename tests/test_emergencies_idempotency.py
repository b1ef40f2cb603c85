"""One open SOS per user under concurrency, idempotent replays, nothing half-written."""
import threading

import pytest
from pymongo.errors import AutoReconnect

from allynet import idempotency
from allynet.emergencies import service
from tests.emergencies_helpers import CENTER, SOS_BODY, act, place_helper, sos
from tests.helpers import error_code, events_named


@pytest.fixture
def app(app_factory):
    return app_factory(EMERGENCY_CREATE_RATE_LIMIT="1000/minute")


def _race(app, user, count, headers_for=lambda index: {}):
    """`count` threads POST an SOS as `user` at once; returns their responses."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(index):
        client = app.test_client()
        barrier.wait()
        results[index] = sos(client, user, headers=headers_for(index))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_twenty_concurrent_creates_give_exactly_one_sos(app, make_user, db, socket_client):
    helper_socket = socket_client(place_helper(make_user, 1000))
    requester = make_user(location=CENTER)

    results = _race(app, requester, 20)

    created = [r for r in results if r.status_code == 201]
    refused = [r for r in results if r.status_code != 201]
    assert len(created) == 1
    emergency_id = created[0].get_json()["data"]["emergency"]["id"]
    assert len(refused) == 19
    for response in refused:
        assert response.status_code == 409 and error_code(response) == "active_emergency_exists"
        assert response.get_json()["error"]["details"]["emergency_id"] == emergency_id
    assert db.emergencies.count_documents({"user_id": requester["_id"]}) == 1
    assert len(events_named(helper_socket, "emergency.created")) == 1


def test_twenty_concurrent_retries_with_one_key_create_once(app, make_user, db, socket_client):
    helper_socket = socket_client(place_helper(make_user, 1000))
    requester = make_user(location=CENTER)

    results = _race(app, requester, 20, headers_for=lambda index: {"Idempotency-Key": "k-race"})

    created = [r for r in results if r.status_code == 201]
    assert created and len({r.get_json()["data"]["emergency"]["id"] for r in created}) == 1
    for response in results:
        assert response.status_code == 201 or error_code(response) == "request_in_progress"
    assert db.emergencies.count_documents({"user_id": requester["_id"]}) == 1
    assert len(events_named(helper_socket, "emergency.created")) == 1


def test_same_key_same_body_replays_the_first_response(client, make_user, db, socket_client):
    helper_socket = socket_client(place_helper(make_user, 1000))
    requester = make_user(location=CENTER)
    headers = {"Idempotency-Key": "sos-1"}

    first = sos(client, requester, headers=headers, description="help")
    second = sos(client, requester, headers=headers, description="help")

    assert first.status_code == second.status_code == 201
    assert second.get_json() == first.get_json()
    assert db.emergencies.count_documents({}) == 1
    assert len(events_named(helper_socket, "emergency.created")) == 1


def test_replay_is_the_first_response_even_after_the_sos_moved_on(client, make_user):
    requester = make_user(location=CENTER)
    first = sos(client, requester, headers={"Idempotency-Key": "sos-2"})
    act(client, requester, first.get_json()["data"]["emergency"]["id"], "cancel")
    replay = sos(client, requester, headers={"Idempotency-Key": "sos-2"})
    assert replay.status_code == 201 and replay.get_json() == first.get_json()


def test_body_request_id_works_like_the_header(client, make_user, db):
    requester = make_user(location=CENTER)
    first = sos(client, requester, request_id="req-7")
    again = sos(client, requester, request_id="req-7")
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert db.emergencies.count_documents({}) == 1


def test_same_key_other_body_is_422_and_changes_nothing(client, make_user, db):
    requester = make_user(location=CENTER)
    sos(client, requester, headers={"Idempotency-Key": "sos-3"})
    other = sos(client, requester, headers={"Idempotency-Key": "sos-3"}, type="fire")
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    assert db.emergencies.count_documents({}) == 1


def test_keys_are_scoped_to_the_user(client, make_user, db):
    first = sos(client, make_user(location=CENTER), headers={"Idempotency-Key": "shared"})
    second = sos(client, make_user(location=CENTER), headers={"Idempotency-Key": "shared"})
    assert first.status_code == second.status_code == 201
    assert first.get_json()["data"]["emergency"]["id"] != second.get_json()["data"]["emergency"]["id"]


def test_a_retry_while_the_first_runs_is_409_request_in_progress(app, client, make_user, db, monkeypatch):
    requester = make_user(location=CENTER)
    original = service.open_emergency
    seen = {}

    def open_and_meanwhile_retry(**kwargs):
        # The client gives up waiting and retries while the first request is still working.
        seen["retry"] = app.test_client().post("/api/v1/emergencies", json=SOS_BODY,
                                               headers={**requester.headers, "Idempotency-Key": "slow"})
        return original(**kwargs)

    monkeypatch.setattr(service, "open_emergency", open_and_meanwhile_retry)
    first = sos(client, requester, headers={"Idempotency-Key": "slow"})

    assert first.status_code == 201
    assert seen["retry"].status_code == 409 and error_code(seen["retry"]) == "request_in_progress"
    assert db.emergencies.count_documents({}) == 1


def test_a_failed_request_forgets_its_key(client, make_user, db):
    requester = make_user(location=CENTER)
    open_one = sos(client, requester)
    refused = sos(client, requester, headers={"Idempotency-Key": "after"}, type="fire")
    assert refused.status_code == 409 and error_code(refused) == "active_emergency_exists"
    act(client, requester, open_one.get_json()["data"]["emergency"]["id"], "resolve")
    retried = sos(client, requester, headers={"Idempotency-Key": "after"}, type="fire")
    assert retried.status_code == 201


def test_malformed_keys_are_400(client, make_user, db):
    requester = make_user(location=CENTER)
    for key in ("x" * 129, "   "):
        response = sos(client, requester, headers={"Idempotency-Key": key})
        assert response.status_code == 400 and error_code(response) == "validation_error"
    assert db.emergencies.count_documents({}) == 0


def test_a_pending_key_abandoned_by_a_dead_process_is_taken_over(app, client, make_user, db, clock):
    requester = make_user(location=CENTER)
    with app.app_context():
        payload = {"type": "medical", "location": {"type": "Point", "coordinates": [CENTER[1], CENTER[0]]}}
        db.idempotency_keys.insert_one({
            "user_id": requester["_id"], "key": "orphan", "scope": service.IDEMPOTENCY_SCOPE,
            "body_hash": idempotency.body_hash(payload), "state": "pending",
            "started_at": clock(), "created_at": clock()})
    assert error_code(sos(client, requester, headers={"Idempotency-Key": "orphan"})) == "request_in_progress"
    clock.advance(seconds=idempotency.PENDING_TIMEOUT_S + 1)
    assert sos(client, requester, headers={"Idempotency-Key": "orphan"}).status_code == 201


def test_an_insert_failure_releases_the_slot_and_the_key(client, make_user, db, monkeypatch):
    requester = make_user(location=CENTER)
    collection_class = type(db.emergencies)  # mongomock's or pymongo's (MONGO_TEST_URI)
    original = collection_class.insert_one

    def failing_insert(self, document, *args, **kwargs):
        if self.name == "emergencies":
            raise AutoReconnect("connection lost")
        return original(self, document, *args, **kwargs)

    monkeypatch.setattr(collection_class, "insert_one", failing_insert)
    failed = sos(client, requester, headers={"Idempotency-Key": "flaky"})
    assert failed.status_code == 503 and error_code(failed) == "service_unavailable"
    monkeypatch.setattr(collection_class, "insert_one", original)

    assert db.users.find_one({"_id": requester["_id"]})["active_emergency_id"] is None
    assert db.emergencies.count_documents({}) == 0
    assert db.idempotency_keys.count_documents({}) == 0
    assert sos(client, requester, headers={"Idempotency-Key": "flaky"}).status_code == 201


def test_the_unique_partial_index_backs_the_user_slot(client, make_user, db):
    requester = make_user(location=CENTER)
    first = sos(client, requester).get_json()["data"]["emergency"]["id"]
    # A slot cleared behind the service's back: the index still refuses a second open SOS.
    db.users.update_one({"_id": requester["_id"]}, {"$set": {"active_emergency_id": None}})
    second = sos(client, requester, type="fire")
    assert second.status_code == 409 and error_code(second) == "active_emergency_exists"
    assert second.get_json()["error"]["details"]["emergency_id"] == first
    assert db.emergencies.count_documents({"user_id": requester["_id"]}) == 1
    assert db.users.find_one({"_id": requester["_id"]})["active_emergency_id"] is None


def test_a_slot_left_by_a_crashed_create_is_reclaimed_after_the_grace(client, make_user, db, clock):
    from bson import ObjectId

    requester = make_user(location=CENTER)
    ghost = ObjectId()
    db.users.update_one({"_id": requester["_id"]},
                        {"$set": {"active_emergency_id": ghost, "active_emergency_claimed_at": clock()}})
    in_flight = sos(client, requester)
    assert in_flight.status_code == 409
    assert in_flight.get_json()["error"]["details"]["emergency_id"] == str(ghost)
    clock.advance(seconds=service.SLOT_GRACE.total_seconds() + 1)
    assert sos(client, requester).status_code == 201


def test_the_idempotency_module_on_its_own(app, db, make_user):
    user = make_user()
    runs = []

    def work(value):
        def fn():
            runs.append(value)
            return {"value": value}, 201
        return fn

    with app.app_context():
        assert idempotency.run(db=db, user_id=user["_id"], key=None, scope="s", payload={}, fn=work(1)) == (
            {"value": 1}, 201)
        idempotency.run(db=db, user_id=user["_id"], key=None, scope="s", payload={}, fn=work(2))
        first = idempotency.run(db=db, user_id=user["_id"], key="k", scope="a", payload={"x": 1}, fn=work(3))
        replay = idempotency.run(db=db, user_id=user["_id"], key="k", scope="a", payload={"x": 1}, fn=work(4))
        other_scope = idempotency.run(db=db, user_id=user["_id"], key="k", scope="b", payload={"x": 2},
                                      fn=work(5))
        with pytest.raises(Exception) as reused:
            idempotency.run(db=db, user_id=user["_id"], key="k", scope="a", payload={"x": 2}, fn=work(6))
    assert first == replay == ({"value": 3}, 201) and other_scope == ({"value": 5}, 201)
    assert runs == [1, 2, 3, 5]
    assert reused.value.code == "idempotency_key_reused" and reused.value.status == 422
    assert idempotency.body_hash({"a": 1, "b": [1, 2]}) == idempotency.body_hash({"b": [1, 2], "a": 1})
