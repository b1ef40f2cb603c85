"""Indexes when MongoDB is down at start: retried in the background, `/readyz` 503 until they exist.

The outage is faked on the client classes (mongomock's and pymongo's): while it lasts, listing or
creating an index and `ping` raise ServerSelectionTimeoutError, as a client pointed at a MongoDB
that does not answer does; `heal()` brings the server back.
"""
import logging

import mongomock
import pymongo.collection
import pymongo.database
import pytest
from pymongo.errors import ServerSelectionTimeoutError

from allynet import background
from allynet.db import INDEXES, create_pending_indexes

DOWN_METHODS = [
    (mongomock.collection.Collection, "create_index"),
    (mongomock.collection.Collection, "index_information"),
    (mongomock.database.Database, "command"),
    (pymongo.collection.Collection, "create_index"),
    (pymongo.collection.Collection, "index_information"),
    (pymongo.database.Database, "command"),
]


@pytest.fixture
def outage(monkeypatch):
    """MongoDB down until `outage.heal()` (or `outage.heal(ping=True)`: it answers pings only)."""

    class Outage:
        down = {"ping": True, "indexes": True}

        @classmethod
        def heal(cls, ping_only=False):
            cls.down["ping"] = False
            if not ping_only:
                cls.down["indexes"] = False

    for cls, name in DOWN_METHODS:
        original = getattr(cls, name)
        which = "ping" if name == "command" else "indexes"

        def broken(self, *args, _original=original, _which=which, **kwargs):
            if Outage.down[_which]:
                raise ServerSelectionTimeoutError("no servers found yet")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, broken)
    return Outage


def readyz(app):
    response = app.test_client().get("/readyz")
    return response.status_code, response.get_json()


def test_started_during_an_outage_readyz_waits_for_the_indexes(app_factory, outage, caplog):
    with caplog.at_level(logging.ERROR, logger="allynet.db"):
        app = app_factory()
    assert "indexes will be created when it answers" in caplog.text
    status, body = readyz(app)
    assert status == 503
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["details"]["mongodb"].startswith("unreachable")
    assert body["error"]["details"]["indexes"] == "pending"

    # MongoDB answers again, but nothing has created the indexes yet: still not ready.
    outage.heal(ping_only=True)
    status, body = readyz(app)
    assert status == 503
    assert body["error"]["details"] == {"mongodb": "ok", "indexes": "pending"}

    attempts = []

    def sleep(seconds):  # the retry's pause: MongoDB comes back for good after the second one
        attempts.append(seconds)
        if len(attempts) == 2:
            outage.heal()

    delays = background.retry_until_done(app, "indexes", create_pending_indexes, sleep, first_delay=1.0,
                                         max_delay=30.0)
    assert delays == [1.0, 2.0]  # backoff: doubling between attempts
    status, body = readyz(app)
    assert status == 200, body
    assert body["data"]["checks"] == {"mongodb": "ok", "indexes": "ok"}

    db = app.extensions["allynet_db"]
    assert "email_unique" in db.users.index_information()
    assert "one_open_per_user" in db.emergencies.index_information()
    register = {"email": "twice@example.com", "password": "password123", "display_name": "Twice"}
    client = app.test_client()
    assert client.post("/api/v1/auth/register", json=register).status_code == 201
    again = client.post("/api/v1/auth/register", json={**register, "email": "TWICE@example.com"})
    assert again.status_code == 409  # the unique email index


def test_backoff_is_capped(app_factory, outage):
    app = app_factory()
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 7:
            outage.heal()

    assert background.retry_until_done(app, "indexes", create_pending_indexes, sleep, first_delay=1.0,
                                       max_delay=10.0) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert readyz(app)[0] == 200


def test_a_server_started_while_mongo_answers_is_ready_at_once(app, client):
    body = client.get("/readyz").get_json()
    assert body["data"]["checks"] == {"mongodb": "ok", "indexes": "ok"}
    db = app.extensions["allynet_db"]
    declared = {(collection, options["name"]) for collection, _, options in INDEXES
                if not options.get("real_mongo_only")}
    present = {(collection, name) for collection in {c for c, _ in declared}
               for name in db[collection].index_information()}
    assert declared <= present


def test_start_launches_the_retry_only_when_indexes_are_pending(app_factory, outage, monkeypatch):
    app = app_factory()
    started = []
    sio = app.extensions["socketio"]
    monkeypatch.setattr(sio, "start_background_task", lambda fn, *args, **kwargs: started.append(args))
    background.start(app)  # BACKGROUND_TASKS is off in tests: only the index retry starts
    assert [args[1] for args in started] == ["indexes"]

    outage.heal()
    healthy = app_factory()
    started.clear()
    monkeypatch.setattr(healthy.extensions["socketio"], "start_background_task",
                        lambda fn, *args, **kwargs: started.append(args))
    background.start(healthy)
    assert started == []
