"""Two real servers sharing rooms through the Redis message queue.

Each server is its own app with its own Socket.IO server (SOCKETIO_PRIVATE_INSTANCE), its own
port and its own Redis queue connection; only the store is shared (one mongomock client, or the
real MongoDB of MONGO_TEST_URI). So an event emitted on server A reaches a socket on server B
only through Redis: the control tests show it does NOT arrive without the queue, or on another
channel. Rate limits are checked across two real `wsgi.py` processes as well.
"""
import logging

import redis
import requests

from allynet import realtime
from tests.scaleout_support import (REDIS_TEST_URL, SioClient, WsgiProcess, unique_prefix, wait_until)
from tests.scaleout_support import cluster, quiet_werkzeug, redis_prefix  # noqa: F401  (fixtures)

import pytest

# How long a control test waits for an event that must not come (the positive path takes ~10 ms).
NEGATIVE_WAIT = 0.4


def emit_from(server, user, event, data):
    """Emit to a user's room from code running in `server`'s app (as a service would)."""
    with server.app.app_context():
        assert realtime.emit_to_user(user.id, event, data)


def test_emit_on_server_a_reaches_socket_on_server_b(cluster, make_user):
    a, b = cluster(2)
    user = make_user()
    on_a, on_b = cluster.connect(a, user), cluster.connect(b, user)

    emit_from(a, user, "ping:test", {"n": 1})

    assert on_b.wait_for("ping:test") == {"n": 1}
    assert on_a.wait_for("ping:test") == {"n": 1}
    assert a.queue.published >= 1


def test_without_queue_the_event_stays_on_its_server(cluster, make_user):
    # The control: the same two servers minus Redis. A's own socket gets the event, B's never does,
    # so the test above can only pass by crossing Redis.
    a, b = cluster(2, queue=False)
    user = make_user()
    on_a, on_b = cluster.connect(a, user), cluster.connect(b, user)

    emit_from(a, user, "ping:test", {"n": 1})

    on_a.wait_for("ping:test")
    with pytest.raises(AssertionError):
        on_b.wait_for("ping:test", timeout=NEGATIVE_WAIT)


def test_servers_on_different_channels_do_not_share_rooms(cluster, make_user):
    a = cluster(1)[0]
    b = cluster(1, SOCKETIO_CHANNEL=f"{unique_prefix()}-other")[0]
    user = make_user()
    on_a, on_b = cluster.connect(a, user), cluster.connect(b, user)

    emit_from(a, user, "ping:test", {"n": 1})

    on_a.wait_for("ping:test")
    with pytest.raises(AssertionError):
        on_b.wait_for("ping:test", timeout=NEGATIVE_WAIT)


def test_emit_to_several_rooms_reaches_each_socket_once_across_servers(cluster, make_user):
    a, b = cluster(2)
    first, second = make_user(), make_user()
    first_on_b, second_on_a = cluster.connect(b, first), cluster.connect(a, second)

    with a.app.app_context():
        realtime.emit_to_rooms([realtime.user_room(first.id), realtime.user_room(second.id)],
                               "ping:multi", {"n": 2})
        realtime.emit_to_user(first.id, "ping:end", {})
        realtime.emit_to_user(second.id, "ping:end", {})

    first_on_b.wait_for("ping:end")
    second_on_a.wait_for("ping:end")
    assert first_on_b.received("ping:multi") == [{"n": 2}]
    assert second_on_a.received("ping:multi") == [{"n": 2}]


def test_external_write_only_emitter_reaches_every_server(cluster, make_user, redis_prefix):
    # What a maintenance script does: no app, no server, only the queue.
    a, b = cluster(2)
    user = make_user()
    on_a, on_b = cluster.connect(a, user), cluster.connect(b, user)
    emitter = realtime.external_emitter(REDIS_TEST_URL, channel=f"{redis_prefix}-socketio")
    try:
        assert realtime.emit_to_user(user.id, "notice", {"text": "maintenance at 03:00"})
    finally:
        realtime.uninstall_external_emitter()

    assert on_a.wait_for("notice") == {"text": "maintenance at 03:00"}
    assert on_b.wait_for("notice") == {"text": "maintenance at 03:00"}
    assert emitter.queue.published == 1


def test_without_an_emitter_outside_an_app_emits_are_dropped_not_raised():
    assert realtime.emit_to_room("party:x", "party:update", {"x": 1}) is False


def login(base_url_or_client, email, password="wrong-password"):
    body = {"email": email, "password": password}
    if isinstance(base_url_or_client, str):
        return requests.post(f"{base_url_or_client}/api/v1/auth/login", json=body, timeout=5).status_code
    return base_url_or_client.post("/api/v1/auth/login", json=body).status_code


def test_rate_limit_counts_in_redis_across_two_servers(cluster, make_user, redis_prefix):
    a, b = cluster(2, LOGIN_RATE_LIMIT_EMAIL="3/minute", LOGIN_RATE_LIMIT_IP="1000/minute")
    user = make_user()
    statuses = [login(served.url, user["email"]) for served in (a, b, a, b)]

    assert statuses == [401, 401, 401, 429]
    # The counter is in the shared Redis. (In one process both apps also share Flask-Limiter's
    # one Limiter object, so the real cross-process proof is the wsgi.py test below.)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    keys = client.keys(f"LIMITS:*email:{user['email']}*")
    assert keys
    client.delete(*keys)


@pytest.fixture
def two_processes(redis_prefix):
    prefix = redis_prefix
    processes = []

    def start(**env):
        for _ in range(2):
            processes.append(WsgiProcess({
                "REDIS_URL": REDIS_TEST_URL, "REDIS_KEY_PREFIX": f"{prefix}:", "RATELIMIT_KEY_PREFIX": prefix,
                "SOCKETIO_CHANNEL": f"{prefix}-socketio", **env}))
        return [process.wait_ready() for process in processes]

    yield start
    for process in processes:
        process.stop()


def test_two_wsgi_processes_share_rate_limits_and_the_queue(two_processes, redis_prefix):
    prefix = redis_prefix
    # Real processes, each with its own embedded store: the login limit per email (10/minute
    # by default) still counts across both because the counters live in Redis.
    a, b = two_processes()
    email = f"nobody-{prefix}@example.com"
    statuses = [login(server.url, email) for server in (a, b) * 5]
    assert statuses == [401] * 10
    assert login(a.url, email) == 429
    assert login(b.url, email) == 429

    # Each process subscribed to the queue when it started (wsgi.py), before any connection.
    channel = f"{prefix}-socketio"
    counter = redis.Redis.from_url(REDIS_TEST_URL)
    wait_until(lambda: dict(counter.pubsub_numsub(channel))[channel.encode()] == 2, timeout=5,
               message="both processes to subscribe")
    counter.close()

    # A script's write-only emitter reaches a socket on each process.
    sockets = []
    for server in (a, b):
        registered = requests.post(f"{server.url}/api/v1/auth/register", timeout=5, json={
            "email": f"rider-{server.port}-{prefix}@example.com", "password": "password123",
            "display_name": "Rider"}).json()["data"]
        sockets.append((registered["user"]["id"], SioClient(server.url, registered["access_token"])))
    try:
        realtime.external_emitter(REDIS_TEST_URL, channel=channel)
        for user_id, sio_client in sockets:
            assert realtime.emit_to_user(user_id, "notice", {"to": user_id})
        for user_id, sio_client in sockets:
            assert sio_client.wait_for("notice") == {"to": user_id}
    finally:
        realtime.uninstall_external_emitter()
        for _, sio_client in sockets:
            sio_client.close()
