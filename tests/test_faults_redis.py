"""Redis down at start, Redis dying mid-run and coming back, a Redis that hangs.

Every test owns its Redis: a `redis-server` on a spare port that it kills and restarts (or a
port where nothing listens, or a socket that accepts and never answers). What must hold: REST
keeps serving, an SOS is still created and reaches the helpers connected to the same process,
rate limits fall back to process memory with a warning, /readyz says Redis failed (503), no
call blocks for long, and the queue comes back by itself when Redis does.
"""
import logging
import socket
import time

import pytest
import requests

from allynet import realtime, redis_client
from allynet.extensions import limiter
from tests.emergencies_helpers import SOS_BODY, place_helper
from allynet.transport import start_listening
from tests.scaleout_support import (RedisProcess, SioClient, free_port, redis_overrides, serve, unique_prefix,
                                    wait_until)

# Test speed-ups: retry the queue and optional Redis work after 0.1-0.3 s instead of 1-2 s.
FAST_RETRY = {"REDIS_RETRY_SECONDS": 0.1, "SOCKETIO_QUEUE_RETRY_MAX": 0.3}
NEGATIVE_WAIT = 0.4


@pytest.fixture(autouse=True)
def quiet_werkzeug():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def fresh_limiter_state():
    # Flask-Limiter keeps one Limiter per process (extensions.limiter) with a "storage is dead"
    # flag; these tests kill its storage, so they start and leave it clean for the next apps.
    limiter._storage_dead = False
    yield
    limiter._storage_dead = False


@pytest.fixture
def own_redis():
    server = RedisProcess().start()
    yield server
    server.stop()


@pytest.fixture
def servers(app_factory, make_user):
    """start(url, n=1, **overrides) -> served apps on the Redis at `url`."""
    started, clients = [], []
    prefix = unique_prefix()

    def start(url, n=1, **overrides):
        result = []
        for _ in range(n):
            served = serve(app_factory(**redis_overrides(prefix, url=url, **FAST_RETRY, **overrides)))
            started.append(served)
            result.append(served)
        return result

    def connect(server, user):
        sio_client = SioClient(server.url, user["access_token"])
        clients.append(sio_client)
        return sio_client

    start.connect = connect
    yield start
    for sio_client in clients:
        sio_client.close()
    for served in started:
        served.stop()


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


def post_sos(server, user):
    return requests.post(f"{server.url}/api/v1/emergencies", json=SOS_BODY, headers=user.headers, timeout=10)


def readyz(server):
    return requests.get(f"{server.url}/readyz", timeout=10)


def login(server, email, password):
    return requests.post(f"{server.url}/api/v1/auth/login", json={"email": email, "password": password},
                         timeout=10)


def test_redis_down_at_start_rest_sos_limits_and_readyz(servers, make_user, caplog):
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    server = servers(dead_url, LOGIN_RATE_LIMIT_EMAIL="3/minute", LOGIN_RATE_LIMIT_IP="1000/minute")[0]
    helper = place_helper(make_user, 500)
    requester = make_user()
    helper_socket = servers.connect(server, helper)

    registered, took = timed(requests.post, f"{server.url}/api/v1/auth/register", timeout=10, json={
        "email": f"new-{unique_prefix()}@example.com", "password": "password123", "display_name": "New"})
    assert registered.status_code == 201 and took < 2

    created, took = timed(post_sos, server, requester)
    assert created.status_code == 201, created.text
    assert took < 2
    assert created.json()["data"]["notified_helpers"] == 1
    assert helper_socket.wait_for("emergency.created")["id"] == created.json()["data"]["emergency"]["id"]

    caplog.set_level(logging.WARNING)
    statuses = [login(server, requester["email"], "wrong-password").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]  # per-process memory still limits
    assert "falling back to in-memory storage" in caplog.text

    ready, took = timed(readyz, server)
    assert ready.status_code == 503 and took < 3
    body = ready.json()
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["details"]["mongodb"] == "ok"
    assert body["error"]["details"]["redis"].startswith("unreachable")


def test_redis_dies_mid_run_and_the_queue_comes_back_without_restart(servers, make_user, own_redis):
    a, b = servers(own_redis.url, n=2)
    for served in (a, b):
        served.listen()
    helper_on_b = place_helper(make_user, 400)
    helper_on_a = place_helper(make_user, 600)
    far_socket = servers.connect(b, helper_on_b)
    near_socket = servers.connect(a, helper_on_a)
    first, second, third = make_user(), make_user(), make_user()

    sos1 = post_sos(a, first).json()["data"]["emergency"]["id"]
    assert far_socket.wait_for("emergency.created", lambda d: d["id"] == sos1)
    assert readyz(a).status_code == 200

    own_redis.stop()

    created, took = timed(post_sos, a, second)
    assert created.status_code == 201, created.text
    assert took < 2
    sos2 = created.json()["data"]["emergency"]["id"]
    assert created.json()["data"]["notified_helpers"] == 2  # both were found and alerted...
    assert near_socket.wait_for("emergency.created", lambda d: d["id"] == sos2)  # ...locally delivered
    with pytest.raises(AssertionError):  # ...but B cannot hear A without Redis
        far_socket.wait_for("emergency.created", lambda d: d["id"] == sos2, timeout=NEGATIVE_WAIT)
    ready = readyz(a)
    assert ready.status_code == 503 and ready.json()["error"]["details"]["redis"] != "ok"
    assert login(a, first["email"], "wrong-password").status_code == 401  # limits fell back, no 500
    assert requests.get(f"{b.url}/api/v1/profile", headers=first.headers, timeout=5).status_code == 200

    own_redis.start()  # same port

    wait_until(lambda: a.queue.subscribed.is_set() and b.queue.subscribed.is_set(), timeout=10,
               message="both queue listeners to resubscribe")
    assert readyz(a).status_code == 200
    sos3 = post_sos(a, third).json()["data"]["emergency"]["id"]
    assert far_socket.wait_for("emergency.created", lambda d: d["id"] == sos3)


def test_redis_down_at_start_then_up_the_queue_connects(servers, make_user, own_redis):
    own_redis.stop()
    a, b = servers(own_redis.url, n=2)
    for served in (a, b):
        assert not start_listening(served.sio)  # the listener runs but cannot subscribe yet
    user = make_user()
    on_b = servers.connect(b, user)
    with a.app.app_context():
        assert realtime.emit_to_user(user.id, "ping:test", {"n": 1}) is True  # dropped across, not raised

    own_redis.start()
    wait_until(lambda: a.queue.subscribed.is_set() and b.queue.subscribed.is_set(), timeout=10,
               message="queue listeners to subscribe")

    def crossed():
        with a.app.app_context():
            realtime.emit_to_user(user.id, "ping:test", {"n": 2})
        return {"n": 2} in on_b.received("ping:test")

    wait_until(crossed, timeout=5, interval=0.15, message="an emit from A to reach B")


@pytest.fixture
def silent_redis():
    """A port that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_a_hung_redis_never_blocks_emits_or_requests_for_long(servers, make_user, silent_redis):
    server = servers(silent_redis, LOGIN_RATE_LIMIT_IP="1000/minute")[0]
    helper = place_helper(make_user, 500)
    requester = make_user()
    helper_socket = servers.connect(server, helper)

    with server.app.app_context():
        _, first = timed(realtime.emit_to_user, helper.id, "ping:test", {"n": 1})
        _, later = timed(realtime.emit_to_user, helper.id, "ping:test", {"n": 2})
    assert first < 2.0  # two publish attempts, each bounded by REDIS_SOCKET_TIMEOUT (0.5 s)
    assert later < 0.2  # then publishing is skipped until REDIS_RETRY_SECONDS have passed
    assert helper_socket.wait_for("ping:test", lambda d: d == {"n": 2})
    assert server.queue.dropped >= 2

    created, took = timed(post_sos, server, requester)
    assert created.status_code == 201 and took < 3
    assert helper_socket.wait_for("emergency.created")
    ready, took = timed(readyz, server)
    assert ready.status_code == 503 and took < 3


def test_a_hung_queue_connection_is_abandoned_and_reopened(servers, own_redis):
    # The listener pings an idle connection and reconnects when answers stop; shown here with
    # short intervals on a Redis paused by DEBUG SLEEP (its socket stays open but silent).
    import redis

    server = servers(own_redis.url)[0]
    queue = server.queue
    queue.ping_every, queue.stale_after = 0.1, 0.5
    server.listen()
    control = redis.Redis.from_url(own_redis.url)
    try:
        control.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        wait_until(lambda: not queue.subscribed.is_set(), timeout=5, message="the listener to give up")
        wait_until(queue.subscribed.is_set, timeout=10, message="the listener to resubscribe")
    finally:
        control.close()


def test_redis_client_call_degrades_to_the_default(app_factory, own_redis, caplog):
    app = app_factory(REDIS_URL=own_redis.url, REDIS_RETRY_SECONDS=0.2)
    with app.app_context():
        key = redis_client.key("counter")
        assert key.startswith(app.config["REDIS_KEY_PREFIX"])
        assert redis_client.call(lambda r: r.incr(key)) == 1
        assert redis_client.get_redis().get(key) == "1"

        own_redis.stop()
        caplog.set_level(logging.WARNING)
        value, took = timed(redis_client.call, lambda r: r.incr(key), default="fallback")
        assert value == "fallback" and took < 1.5
        assert redis_client.call(lambda r: r.incr(key), default=0) == 0  # skipped: no new attempt
        assert caplog.text.count("Redis unreachable") == 1

        own_redis.start()
        wait_until(lambda: redis_client.call(lambda r: r.incr(key)) == 1, timeout=5,
                   message="Redis calls to succeed again")
    redis_client.close(app)


def test_no_redis_configured_means_no_client(app):
    with app.app_context():
        assert redis_client.get_redis() is None
        assert redis_client.call(lambda r: r.ping(), default="local") == "local"


def test_a_party_on_one_process_keeps_riding_while_redis_is_down(servers, make_user, own_redis):
    server = servers(own_redis.url, MAX_UPDATE_HZ=1000)[0]
    server.listen()
    ann, ben = make_user(), make_user()
    ann_socket, ben_socket = servers.connect(server, ann), servers.connect(server, ben)
    party = requests.post(f"{server.url}/api/v1/parties", json={"name": "ride"}, headers=ann.headers,
                          timeout=5).json()["data"]
    assert ann_socket.call("party:join", {"party_id": party["id"]})["ok"]

    own_redis.stop()

    ack, took = timed(ben_socket.call, "party:join", {"invite_code": party["invite_code"]})
    assert ack["ok"] and took < 2
    assert ack["party"]["online"] == sorted([ann.id, ben.id])  # presence from this process's sockets
    ann_socket.wait_for("party:presence", lambda p: p["online"] == sorted([ann.id, ben.id]))
    assert ben_socket.call("party:update", {"party_id": party["id"], "location": {"lat": 48.1, "lng": 2.1}})["ok"]
    assert ann_socket.wait_for("party:update")["user_id"] == ben.id
    sent = ann_socket.call("party:message", {"party_id": party["id"], "text": "still here"})
    assert sent["ok"]
    assert ben_socket.wait_for("party:message")["text"] == "still here"
    state = requests.get(f"{server.url}/api/v1/parties/{party['id']}", headers=ann.headers, timeout=5)
    assert state.status_code == 200 and state.json()["data"]["online"] == sorted([ann.id, ben.id])
