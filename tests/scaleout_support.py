"""Helpers of the scale-out and fault tests: real servers, real clients, a Redis the test owns.

- `serve(app)`: the app's own Socket.IO server on a free port (threading
  mode, werkzeug in a thread), so two apps in one process are two servers
  whose events cross only through their Redis queues.
- `WsgiProcess`: `python wsgi.py` in a subprocess (a real separate process).
- `SioClient`: a python-socketio client (websocket transport) that records
  events and waits for them by polling with a short timeout.
- `RedisProcess`: a `redis-server` on a spare port that the test may kill and restart.
"""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis
import requests
import socketio
from werkzeug.serving import make_server

from allynet import redis_client
from allynet.transport import queue_of, start_listening

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
MONGO_TEST_URI = os.environ.get("MONGO_TEST_URI")
TEST_JWT_SECRET = "test-secret-key-that-is-long-enough-for-hs256"


def wait_until(predicate, timeout=5.0, interval=0.02, message="condition"):
    """Poll `predicate` until truthy (returns its value) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_prefix():
    """A per-test namespace for Redis keys, channels and rate-limit counters."""
    return f"t{uuid.uuid4().hex[:10]}"


def redis_overrides(prefix, url=REDIS_TEST_URL, **extra):
    """Config overrides that put an app on `url` under its own namespace."""
    values = {
        "REDIS_URL": url,
        "RATELIMIT_STORAGE_URI": url,
        "REDIS_KEY_PREFIX": f"{prefix}:",
        "RATELIMIT_KEY_PREFIX": prefix,
        "SOCKETIO_CHANNEL": f"{prefix}-socketio",
        "SOCKETIO_PRIVATE_INSTANCE": True,
    }
    values.update(extra)
    return values


class ServedApp:
    """One app serving HTTP and Socket.IO on its own port from a thread."""

    def __init__(self, app):
        self.app = app
        self.sio = app.extensions["socketio"]
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def queue(self):
        return queue_of(self.sio)

    def listen(self, timeout=5.0):
        """Start the queue listener and wait until it is subscribed."""
        assert start_listening(self.sio, timeout=timeout), "queue listener did not subscribe"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        queue = self.queue
        if queue is not None:
            queue.close()
        redis_client.close(self.app)


def serve(app):
    """Serve `app` on a free port; the caller stops it."""
    return ServedApp(app)


class SioClient:
    """A real Socket.IO client that records every event it receives."""

    def __init__(self, base_url, token, connect=True):
        self.base_url = base_url
        self.token = token
        self.events = []
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._record)
        if connect:
            self.connect()

    def _record(self, event, *args):
        with self.lock:
            self.events.append((event, args[0] if args else None))

    def connect(self):
        self.sio.connect(self.base_url, auth={"token": self.token}, transports=["websocket"],
                         wait_timeout=5)

    def call(self, event, payload, timeout=5):
        """Emit with an ack and return the ack."""
        return self.sio.call(event, payload, timeout=timeout)

    def received(self, name):
        """Payloads of `name` received so far (oldest first)."""
        with self.lock:
            return [data for event, data in self.events if event == name]

    def wait_for(self, name, predicate=lambda data: True, timeout=5.0):
        """The first `name` payload matching `predicate`, waiting up to `timeout` seconds."""
        def found():
            for data in self.received(name):
                if predicate(data):
                    return data or True
            return None

        return wait_until(found, timeout=timeout, message=f"event {name}")

    def clear(self):
        with self.lock:
            self.events.clear()

    def close(self):
        """Disconnect cleanly, without websocket-client's 3 s wait for a close frame that the
        werkzeug test server never sends back."""
        ws = getattr(self.sio.eio, "ws", None)
        if ws is not None:
            close = ws.close
            ws.close = lambda *args, **kwargs: close(timeout=0.05)
        if self.sio.connected:
            self.sio.disconnect()

    def drop(self):
        """Lose the connection abruptly (network drop): no close handshake."""
        ws = getattr(self.sio.eio, "ws", None)
        if ws is not None and ws.sock is not None:
            try:
                ws.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        wait_until(lambda: not self.sio.connected, timeout=5, message="client to notice the drop")


class RedisProcess:
    """A `redis-server` on a spare port, owned (killed and restarted) by the test."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/ensure_redis.sh installs it)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        try:
            wait_until(lambda: self._ping(client), timeout=5, message="redis-server to start")
        finally:
            client.close()
        return self

    @staticmethod
    def _ping(client):
        try:
            return client.ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class WsgiProcess:
    """`python wsgi.py` in its own process (eventlet, as deployed), on a free port."""

    def __init__(self, env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("MONGO_", "REDIS_", "RATELIMIT_", "SOCKETIO_", "ALLYNET_"))}
        full_env.update({"PORT": str(self.port), "HOST": "127.0.0.1",
                         "ALLYNET_ENV": "development", "JWT_SECRET_KEY": TEST_JWT_SECRET,
                         "BCRYPT_ROUNDS": "4", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
        full_env["WEATHER_PROVIDER"] = "off"  # a test server never calls out (a test may turn it on)
        if os.environ.get("ALLYNET_TRANSPORT"):  # the suite's transport (tests/conftest.py)
            full_env["ALLYNET_TRANSPORT"] = os.environ["ALLYNET_TRANSPORT"]
        full_env.update(env)
        self.log_path = f"/tmp/allynet-wsgi-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "wsgi.py"], cwd=REPO, env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=20):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"wsgi.py exited: {open(self.log_path).read()[-2000:]}")
            try:
                return requests.get(self.url + "/healthz", timeout=0.5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout=timeout, interval=0.1, message="wsgi.py to serve")
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


# ---- fixtures (import them into a test module to use them) ---------------------------------

@pytest.fixture
def served(app, quiet_werkzeug):  # noqa: F811
    """The test's `app` served over HTTP and Socket.IO on a free port (stopped afterwards)."""
    server = serve(app)
    yield server
    server.stop()


@pytest.fixture
def quiet_werkzeug():
    """The werkzeug test server logs every websocket close as a bad request: keep it quiet."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture
def redis_prefix():
    """A per-test Redis namespace, whose keys are deleted afterwards."""
    value = unique_prefix()
    yield value
    client = redis.Redis.from_url(REDIS_TEST_URL)
    keys = list(client.scan_iter(match=f"*{value}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def cluster(app_factory, make_user, mongo_session, redis_prefix, quiet_werkzeug):
    """start(n=2, queue=True, processes=False, **overrides) -> n servers on one Redis namespace.

    In-process (default): each server is its own app (own Socket.IO server, own port, own Redis
    queue connection) sharing the test's store. With `processes=True` and MONGO_TEST_URI set,
    they are real `wsgi.py` processes on the test's MongoDB database instead (overrides become
    environment variables). `start.connect(server, user)` gives a recording SioClient.
    """
    servers, processes, clients = [], [], []

    def start(n=2, queue=True, processes_ok=False, **overrides):
        started = []
        for _ in range(n):
            if processes_ok and mongo_session is not None:
                client, name = mongo_session
                env = {"MONGO_URI": MONGO_TEST_URI, "MONGO_DB": name, "REDIS_URL": REDIS_TEST_URL,
                       "REDIS_KEY_PREFIX": f"{redis_prefix}:", "RATELIMIT_KEY_PREFIX": redis_prefix,
                       "SOCKETIO_CHANNEL": f"{redis_prefix}-socketio"}
                env.update({key: str(value) for key, value in overrides.items()})
                process = WsgiProcess(env)
                processes.append(process)
                started.append(process)
                continue
            values = (redis_overrides(redis_prefix, **overrides) if queue
                      else {"SOCKETIO_PRIVATE_INSTANCE": True, **overrides})
            served = serve(app_factory(**values))
            servers.append(served)
            started.append(served)
            if queue:
                served.listen()
        for server in started:
            if isinstance(server, WsgiProcess):
                server.wait_ready()
        return started

    connected_processes = set()

    def connect(server, user):
        sio_client = SioClient(server.url, user["access_token"])
        clients.append(sio_client)
        if isinstance(server, WsgiProcess) and server.port not in connected_processes:
            # A process subscribes to the queue after its first connection: wait for it, so no
            # event published before the subscription is missed.
            connected_processes.add(server.port)
            channel = f"{redis_prefix}-socketio"
            counter = redis.Redis.from_url(REDIS_TEST_URL)
            try:
                wait_until(lambda: dict(counter.pubsub_numsub(channel)).get(channel.encode(), 0)
                           >= len(connected_processes), timeout=10, message="the process to subscribe")
            finally:
                counter.close()
        return sio_client

    def worker(**overrides):
        """An app that serves nothing (a script, a background worker) on the same queue."""
        return app_factory(**redis_overrides(redis_prefix, **overrides))

    start.connect = connect
    start.worker = worker
    start.prefix = redis_prefix
    yield start
    for sio_client in clients:
        sio_client.close()
    for served in servers:
        served.stop()
    for process in processes:
        process.stop()
