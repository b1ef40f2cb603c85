"""MongoDB unreachable: quick 503s and error acks, nothing half-written.

A real pymongo client pointed at a closed local port (500 ms server-selection timeout) shows
the outage path of every layer; faults injected into the embedded store (a write raising
AutoReconnect, as pymongo does when the primary goes away mid-operation) show that a failed
SOS holds neither the user's one-open-SOS slot nor its idempotency key, and that socket
handlers answer `service_unavailable` through their ack without dropping the connection.
"""
import time

import pytest
from bson import ObjectId
from flask_jwt_extended import create_access_token
from mongomock.collection import Collection
from pymongo.errors import AutoReconnect

from tests.emergencies_helpers import SOS_BODY, place_helper
from tests.helpers import error_code, events_named
from tests.scaleout_support import free_port

TIMEOUT_MS = 500


@pytest.fixture
def dead_mongo_app(app_factory):
    started = time.monotonic()
    app = app_factory(MONGO_CLIENT=None, MONGO_URI=f"mongodb://127.0.0.1:{free_port()}",
                      MONGO_DB="allynet_unreachable", MONGO_SERVER_SELECTION_TIMEOUT_MS=TIMEOUT_MS)
    assert time.monotonic() - started < 3  # starts anyway: indexes are retried in the background
    yield app
    app.extensions["allynet_db"].client.close()


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    response = fn(*args, **kwargs)
    return response, time.monotonic() - started


def assert_quick_503(response, took):
    assert response.status_code == 503, response.get_data(as_text=True)
    assert error_code(response) == "service_unavailable"
    # pymongo waits out the selection timeout in half-second re-checks: 0.5-1.0 s measured here.
    assert took < TIMEOUT_MS / 1000 + 1.5  # 1.0 s at most, plus margin for a loaded test machine


def test_requests_answer_503_within_the_selection_timeout(dead_mongo_app):
    client = dead_mongo_app.test_client()
    with dead_mongo_app.app_context():
        token = create_access_token(identity=str(ObjectId()), additional_claims={"role": "user"})
    headers = {"Authorization": f"Bearer {token}"}

    assert_quick_503(*timed(client.post, "/api/v1/auth/register", json={
        "email": "a@example.com", "password": "password123", "display_name": "A"}))
    assert_quick_503(*timed(client.post, "/api/v1/auth/login", json={
        "email": "a@example.com", "password": "password123"}))
    assert_quick_503(*timed(client.get, "/api/v1/profile", headers=headers))
    assert_quick_503(*timed(client.post, "/api/v1/emergencies", json=SOS_BODY, headers=headers))
    assert_quick_503(*timed(client.get, "/api/v1/parties/" + str(ObjectId()), headers=headers))

    ready, took = timed(client.get, "/readyz")
    assert_quick_503(ready, took)
    assert ready.get_json()["error"]["details"]["mongodb"].startswith("unreachable")
    assert client.get("/healthz").status_code == 200


def test_socket_refused_quickly_when_mongo_is_unreachable(dead_mongo_app):
    with dead_mongo_app.app_context():
        token = create_access_token(identity=str(ObjectId()), additional_claims={"role": "user"})
    sio = dead_mongo_app.extensions["socketio"]
    sio_client, took = timed(sio.test_client, dead_mongo_app, auth={"token": token})
    assert not sio_client.is_connected()
    assert took < TIMEOUT_MS / 1000 + 1.5


@pytest.fixture
def mongo_fault(monkeypatch):
    """fail(method, collection=None): that write (or read) raises AutoReconnect until heal()."""
    failing = {}

    class Fault:
        @staticmethod
        def fail(method, collection=None):
            if method not in failing:
                original = getattr(Collection, method)

                def broken(self, *args, **kwargs):
                    wanted = failing.get(method)
                    if wanted is not None and (wanted == "*" or self.name == wanted):
                        raise AutoReconnect("connection to the primary lost")
                    return original(self, *args, **kwargs)

                monkeypatch.setattr(Collection, method, broken)
            failing[method] = collection or "*"

        @staticmethod
        def heal():
            failing.clear()

    return Fault


def test_sos_whose_insert_failed_holds_no_slot_and_no_key(client, db, make_user, socket_client, mongo_fault):
    helper = place_helper(make_user, 300)
    helper_socket = socket_client(helper)
    requester = make_user()
    headers = {**requester.headers, "Idempotency-Key": "sos-1"}

    mongo_fault.fail("insert_one", "emergencies")
    failed = client.post("/api/v1/emergencies", json=SOS_BODY, headers=headers)
    assert failed.status_code == 503 and error_code(failed) == "service_unavailable"
    assert db.users.find_one({"_id": requester["_id"]}).get("active_emergency_id") is None
    assert db.idempotency_keys.count_documents({"user_id": requester["_id"]}) == 0
    assert db.emergencies.count_documents({"user_id": requester["_id"]}) == 0
    assert events_named(helper_socket, "emergency.created") == []  # no alert for an SOS that is not there

    mongo_fault.heal()
    retried = client.post("/api/v1/emergencies", json=SOS_BODY, headers=headers)
    assert retried.status_code == 201, retried.get_json()
    again = client.post("/api/v1/emergencies", json=SOS_BODY, headers=headers)
    assert again.status_code == 201
    assert again.get_json()["data"]["emergency"]["id"] == retried.get_json()["data"]["emergency"]["id"]
    assert db.emergencies.count_documents({"user_id": requester["_id"]}) == 1
    assert len(events_named(helper_socket, "emergency.created")) == 1


def test_socket_handlers_ack_service_unavailable_and_keep_the_connection(client, make_user, socket_client,
                                                                         mongo_fault):
    rider, friend = make_user(), make_user()
    party = client.post("/api/v1/parties", json={"name": "ride"}, headers=rider.headers).get_json()["data"]
    rider_socket, friend_socket = socket_client(rider), socket_client(friend)
    assert friend_socket.emit("party:join", {"invite_code": party["invite_code"]}, callback=True)["ok"]
    assert rider_socket.emit("party:join", {"party_id": party["id"]}, callback=True)["ok"]
    friend_socket.get_received()

    mongo_fault.fail("insert_one", "party_messages")
    ack = rider_socket.emit("party:message", {"party_id": party["id"], "text": "hello?"}, callback=True)
    assert ack == {"ok": False, "error": {"code": "service_unavailable",
                                          "message": "Database unavailable, retry shortly"}}
    assert events_named(friend_socket, "party:message") == []  # never sent what was never stored

    mongo_fault.fail("find_one")
    ack = friend_socket.emit("emergency:join", {"emergency_id": str(ObjectId())}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "service_unavailable"

    mongo_fault.heal()
    assert rider_socket.is_connected() and friend_socket.is_connected()
    ack = rider_socket.emit("party:message", {"party_id": party["id"], "text": "back"}, callback=True)
    assert ack["ok"]
    assert [m["text"] for m in events_named(friend_socket, "party:message")] == ["back"]
