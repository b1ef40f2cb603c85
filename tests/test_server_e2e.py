"""The real server: `python wsgi.py` in a subprocess, driven over HTTP and a real Socket.IO client."""
import os
import threading
import time

import pytest
import requests
import socketio

from tests.scaleout_support import WsgiProcess


@pytest.fixture(scope="module")
def server():
    env = {"ALLYNET_BOOTSTRAP_ADMIN": "root@example.com:rootpassword"}
    if os.environ.get("MONGO_TEST_URI"):
        env.update(MONGO_URI=os.environ["MONGO_TEST_URI"], MONGO_DB=f"allynet_e2e_{os.getpid()}")
    process = WsgiProcess(env)
    try:
        yield process.wait_ready(timeout=30).url
    finally:
        process.stop()


def test_newcomer_flow_over_http_and_socketio(server):
    api = f"{server}/api/v1"
    registered = requests.post(f"{api}/auth/register", json={
        "email": "newcomer@example.com", "password": "a good password", "display_name": "Newcomer"}, timeout=10)
    assert registered.status_code == 201, registered.text
    login = requests.post(f"{api}/auth/login", json={
        "email": "newcomer@example.com", "password": "a good password"}, timeout=10)
    assert login.status_code == 200
    tokens = login.json()["data"]
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    profile = requests.get(f"{api}/profile", headers=headers, timeout=10)
    assert profile.json()["data"]["email"] == "newcomer@example.com"
    updated = requests.patch(f"{api}/profile", headers=headers, json={"display_name": "Rider"}, timeout=10)
    assert updated.json()["data"]["display_name"] == "Rider"
    located = requests.put(f"{api}/profile/location", headers=headers, json={"lat": 48.85, "lng": 2.35},
                           timeout=10)
    assert located.json()["data"]["location"] == {"lat": 48.85, "lng": 2.35}

    connected = threading.Event()
    client = socketio.Client(reconnection=False)
    client.on("connect", lambda: connected.set())
    client.connect(server, auth={"token": tokens["access_token"]}, transports=["websocket"], wait_timeout=10)
    assert connected.wait(10)
    client.disconnect()

    refused = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(server, auth={"token": "bad"}, transports=["websocket"], wait_timeout=5)

    rotated = requests.post(f"{api}/auth/refresh",
                            headers={"Authorization": f"Bearer {tokens['refresh_token']}"}, timeout=10)
    assert rotated.status_code == 200
    new = rotated.json()["data"]
    reused = requests.post(f"{api}/auth/refresh",
                           headers={"Authorization": f"Bearer {tokens['refresh_token']}"}, timeout=10)
    assert reused.json()["error"]["code"] == "token_revoked"
    # A reused refresh token revokes its whole login, the rotated pair included: log in again.
    stale = requests.get(f"{api}/profile", headers={"Authorization": f"Bearer {new['access_token']}"}, timeout=10)
    assert stale.json()["error"]["code"] == "token_revoked"
    new = requests.post(f"{api}/auth/login", json={
        "email": "newcomer@example.com", "password": "a good password"}, timeout=10).json()["data"]

    new_headers = {"Authorization": f"Bearer {new['access_token']}"}
    out = requests.post(f"{api}/auth/logout", headers=new_headers, json={"refresh_token": new["refresh_token"]},
                        timeout=10)
    assert out.status_code == 200
    assert requests.get(f"{api}/profile", headers=new_headers, timeout=10).json()["error"]["code"] == "token_revoked"

    admin = requests.post(f"{api}/auth/login", json={"email": "root@example.com", "password": "rootpassword"},
                          timeout=10)
    assert admin.json()["data"]["user"]["role"] == "admin"
    assert requests.get(f"{server}/readyz", timeout=10).status_code == 200
    assert requests.get(f"{api}/openapi.json", timeout=10).json()["openapi"].startswith("3.")


def _rider(api, email):
    requests.post(f"{api}/auth/register", json={"email": email, "password": "a good password",
                                                "display_name": email.split("@")[0]}, timeout=10)
    login = requests.post(f"{api}/auth/login", json={"email": email, "password": "a good password"}, timeout=10)
    return login.json()["data"]["access_token"]


@pytest.fixture(params=["eventlet", "gevent", "threading"])
def any_mode_server(request, server):
    """The module's eventlet server, or a fresh one in another async mode."""
    if request.param == "eventlet":
        yield server
        return
    process = WsgiProcess({"SOCKETIO_ASYNC_MODE": request.param, "RATELIMIT_ENABLED": "0"})
    try:
        yield process.wait_ready(timeout=30).url
    finally:
        process.stop()


def test_batched_positions_arrive_on_the_servers_own_tick(any_mode_server):
    """party:batch on the real server, in every async mode: its background tick delivers party:updates."""
    server = any_mode_server
    api = f"{server}/api/v1"
    tag = server.rsplit(":", 1)[1]
    leader, rider = _rider(api, f"leader{tag}@example.com"), _rider(api, f"rider{tag}@example.com")
    party = requests.post(f"{api}/parties", json={"name": "e2e ride"},
                          headers={"Authorization": f"Bearer {leader}"}, timeout=10).json()["data"]
    joined = requests.post(f"{api}/parties/join", json={"invite_code": party["invite_code"]},
                           headers={"Authorization": f"Bearer {rider}"}, timeout=10)
    assert joined.status_code == 200, joined.text
    batches, singles, got = [], [], threading.Event()
    watcher = socketio.Client(reconnection=False)
    watcher.on("party:updates", lambda data: (batches.append(data), got.set()))
    watcher.on("party:update", singles.append)
    sender = socketio.Client(reconnection=False)
    try:
        watcher.connect(server, auth={"token": leader}, transports=["websocket"], wait_timeout=10)
        sender.connect(server, auth={"token": rider}, transports=["websocket"], wait_timeout=10)
        ack = watcher.call("party:batch", {"enabled": True}, timeout=10)
        assert ack["ok"] is True and ack["interval_ms"] == 200
        acks = [sender.call("party:update", {"party_id": party["id"], "location": {"lat": 48.1, "lng": 11.5 + i / 1000},
                                             "client_ts": i}, timeout=10) for i in range(2)]
        assert all(a["ok"] for a in acks), acks
        assert got.wait(5)
        deadline = time.monotonic() + 5
        while sum(len(b["updates"]) for b in batches) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        updates = [u for b in batches for u in b["updates"]]
        assert [u["client_ts"] for u in updates] == [0, 1]
        assert all(b["party_id"] == party["id"] for b in batches)
        assert singles == []
    finally:
        watcher.disconnect()
        sender.disconnect()


class _Recorder:
    """A real client that records `session:ended` and when it was disconnected."""

    def __init__(self, server, token):
        self.events, self.gone = [], threading.Event()
        self.client = socketio.Client(reconnection=False)
        self.client.on("session:ended", lambda data: self.events.append(("session:ended", data)))
        self.client.on("disconnect", lambda *args: (self.events.append(("disconnect", None)), self.gone.set()))
        self.client.connect(server, auth={"token": token}, transports=["websocket"], wait_timeout=10)


def test_sessions_end_and_renew_on_the_real_server(server):
    """Under eventlet: auth:renew moves a socket to a new token; logout ends it (event, then disconnect)."""
    api = f"{server}/api/v1"
    requests.post(f"{api}/auth/register", json={"email": "leaver@example.com", "password": "a good password",
                                                "display_name": "Leaver"}, timeout=10)
    tokens = requests.post(f"{api}/auth/login", json={"email": "leaver@example.com", "password": "a good password"},
                           timeout=10).json()["data"]
    rider = _Recorder(server, tokens["access_token"])
    try:
        rotated = requests.post(f"{api}/auth/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"},
                                timeout=10).json()["data"]
        ack = rider.client.call("auth:renew", {"token": rotated["access_token"]}, timeout=10)
        assert ack["ok"] is True and ack["expires_at"].endswith("Z")
        assert rider.client.call("auth:renew", {"token": "bad"}, timeout=10)["error"]["code"] == "unauthorized"
        out = requests.post(f"{api}/auth/logout", headers={"Authorization": f"Bearer {rotated['access_token']}"},
                            timeout=10)
        assert out.status_code == 200
        assert rider.gone.wait(10)
        assert rider.events == [("session:ended", {"reason": "logout"}), ("disconnect", None)]
    finally:
        if rider.client.connected:
            rider.client.disconnect()


def test_expired_sessions_end_on_the_real_server():
    """Under eventlet, with 2-second tokens (and no sweep in the way): the first event after expiry gets
    the `token_expired` ack, then the socket gets `session:ended` and is disconnected."""
    process = WsgiProcess({"JWT_ACCESS_TOKEN_EXPIRES": "2", "SOCKET_SESSION_SWEEP_SECONDS": "3600",
                           "RATELIMIT_ENABLED": "0"})
    try:
        api = f"{process.wait_ready(timeout=30).url}/api/v1"
        talker = _Recorder(process.url, _rider(api, "short@example.com"))
        deadline = time.monotonic() + 10
        update = {"party_id": "0" * 24, "location": {"lat": 48.1, "lng": 11.5}}  # the bare hot path
        while True:  # poll with events until the token has expired (until then: no such party)
            ack = talker.client.call("party:update", update, timeout=10)
            if ack["error"]["code"] != "not_found" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ack == {"ok": False, "error": {"code": "token_expired", "message": "Token has expired"}}
        assert talker.gone.wait(10)
        assert talker.events == [("session:ended", {"reason": "token_expired"}), ("disconnect", None)]
    finally:
        process.stop()
