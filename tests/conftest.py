"""Shared fixtures: app, client, db, users with tokens, Socket.IO clients, clock.

Every test runs on mongomock by default. Set MONGO_TEST_URI to run the same
suite against a real MongoDB (one fresh database per test session, emptied
between tests).
"""
import os
import uuid
from datetime import timedelta

import pytest

from allynet import clock as clock_module
from allynet import create_app

MONGO_TEST_URI = os.environ.get("MONGO_TEST_URI")
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
# ALLYNET_TRANSPORT=plain runs the suite on Flask-SocketIO's plain path (allynet/transport/).
TRANSPORT = os.environ.get("ALLYNET_TRANSPORT")


@pytest.fixture(scope="session")
def mongo_session():
    """(client, db name) of the real MongoDB for this session, or None on mongomock."""
    if not MONGO_TEST_URI:
        yield None
        return
    import pymongo

    client = pymongo.MongoClient(MONGO_TEST_URI, serverSelectionTimeoutMS=5000, tz_aware=False)
    name = f"allynet_test_{uuid.uuid4().hex[:8]}"
    yield client, name
    client.drop_database(name)
    client.close()


@pytest.fixture
def app_factory(mongo_session):
    """Build testing apps with overrides; all share one store per test."""
    shared = {}

    def build(**overrides):
        if TRANSPORT:
            overrides.setdefault("ALLYNET_TRANSPORT", TRANSPORT)
        if mongo_session is not None:
            client, name = mongo_session
            overrides.setdefault("MONGO_CLIENT", client)
            overrides.setdefault("MONGO_DB", name)
        elif "client" in shared:
            overrides.setdefault("MONGO_CLIENT", shared["client"])
        app = create_app("testing", **overrides)
        shared.setdefault("client", app.extensions["allynet_db"].client)
        return app

    yield build
    if mongo_session is not None:
        client, name = mongo_session
        for collection in client[name].list_collection_names():
            client[name][collection].delete_many({})


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app):
    return app.extensions["allynet_db"]


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, start):
        self.current = start

    def __call__(self):
        return self.current

    def advance(self, **delta):
        self.current = self.current + timedelta(**delta)
        return self.current


@pytest.fixture
def clock():
    frozen = FrozenClock(clock_module.now())
    clock_module.set_now(frozen)
    yield frozen
    clock_module.set_now(None)


class TestUser(dict):
    """A user document plus its tokens and ready-made headers."""

    __test__ = False

    @property
    def id(self):
        return str(self["_id"])

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self['access_token']}"}


@pytest.fixture
def make_user(app, db):
    """Create a user directly through the service, with tokens; fields override defaults."""
    from allynet.auth import service as auth_service
    from allynet.users import service as users_service

    counter = {"n": 0}

    def make(role="user", is_helper=False, verified=False, location=None, password="password123", **fields):
        counter["n"] += 1
        email = fields.pop("email", f"user{counter['n']}-{uuid.uuid4().hex[:6]}@example.com")
        display_name = fields.pop("display_name", f"User {counter['n']}")
        with app.app_context():
            point = None
            if location is not None:
                lat, lng = location
                point = {"type": "Point", "coordinates": [lng, lat]}
            user = users_service.create_user(db=db, email=email, password=password,
                                             display_name=display_name, role=role,
                                             is_helper=is_helper, verified=verified, location=point)
            if fields:
                db.users.update_one({"_id": user["_id"]}, {"$set": fields})
                user.update(fields)
            tokens = auth_service.issue_tokens(user)
        result = TestUser(user)
        result.update(tokens, password=password)
        return result

    return make


@pytest.fixture
def admin(make_user):
    """An admin (a module may define its own, e.g. with a location)."""
    return make_user(role="admin")


@pytest.fixture
def moderator(make_user):
    """A moderator."""
    return make_user(role="moderator")


@pytest.fixture
def auth_headers(make_user):
    """Headers of a fresh ordinary user."""
    return make_user().headers


@pytest.fixture
def socket_client(app):
    """Connect Socket.IO test clients as users; all are disconnected afterwards."""
    clients = []

    def connect(user=None, token=None, **kwargs):
        auth = {"token": token if token is not None else user["access_token"]} if (user or token) else None
        sio_client = app.extensions["socketio"].test_client(app, auth=auth, **kwargs)
        clients.append(sio_client)
        return sio_client

    yield connect
    for sio_client in clients:
        if sio_client.is_connected():
            sio_client.disconnect()

