"""Ended sessions across two servers sharing Redis: a logout, a reused refresh token or a role
change handled by server A ends the user's socket on server B, through the queue.

With MONGO_TEST_URI set the servers are real `wsgi.py` processes on that MongoDB; otherwise two
in-process servers on one mongomock store.
"""
import pytest
import requests
import socketio

from tests.scaleout_support import SioClient, wait_until
from tests.scaleout_support import cluster, quiet_werkzeug, redis_prefix  # noqa: F401  (fixtures)

API = "/api/v1"
FAST_UPDATES = {"MAX_UPDATE_HZ": 1000}
POSITION = {"lat": 48.85, "lng": 2.35}


def post(server, path, user=None, token=None, **kwargs):
    token = token or user["access_token"]
    return requests.post(f"{server.url}{API}{path}", headers={"Authorization": f"Bearer {token}"},
                         timeout=5, **kwargs)


def after_end(sock):
    """Names of the events a socket received after its `session:ended`."""
    names = [event for event, _ in sock.events]
    return names[names.index("session:ended") + 1:]


def test_logout_on_server_a_ends_the_members_socket_on_server_b(cluster, make_user):
    a, b = cluster(2, processes_ok=True, **FAST_UPDATES)
    alice, bob, carol = (make_user(display_name=name) for name in ("alice", "bob", "carol"))
    party = post(a, "/parties", alice, json={"name": "ride"}).json()["data"]
    sockets = {"alice": cluster.connect(a, alice), "bob": cluster.connect(b, bob),
               "carol": cluster.connect(b, carol)}
    for sock in sockets.values():
        assert sock.call("party:join", {"invite_code": party["invite_code"]})["ok"]
    everyone = sorted(user.id for user in (alice, bob, carol))
    sockets["alice"].wait_for("party:presence", lambda p: p["online"] == everyone)

    assert post(a, "/auth/logout", bob).status_code == 200

    assert sockets["bob"].wait_for("session:ended") == {"reason": "logout"}
    wait_until(lambda: not sockets["bob"].sio.connected, message="bob's socket on B to be disconnected")
    sockets["alice"].wait_for("party:presence", lambda p: p["online"] == sorted([alice.id, carol.id]))
    # The ride goes on: carol (same server as bob) gets alice's position and chat, bob nothing more.
    assert sockets["alice"].call("party:update", {"party_id": party["id"], "location": POSITION})["ok"]
    assert sockets["alice"].call("party:message", {"party_id": party["id"], "text": "still here?"})["ok"]
    sockets["carol"].wait_for("party:message", lambda m: m["text"] == "still here?")
    sockets["carol"].wait_for("party:update", lambda u: u["user_id"] == alice.id)
    assert not {"party:update", "party:message"} & set(after_end(sockets["bob"]))
    assert sockets["carol"].received("session:ended") == sockets["alice"].received("session:ended") == []
    # Bob's events are refused: the socket is gone, and the token opens no other.
    with pytest.raises(socketio.exceptions.BadNamespaceError):
        sockets["bob"].call("party:update", {"party_id": party["id"], "location": POSITION})
    with pytest.raises(socketio.exceptions.ConnectionError):
        SioClient(b.url, bob["access_token"])


def test_refresh_reuse_on_a_and_role_change_on_b_end_sockets_on_the_other_server(cluster, make_user):
    a, b = cluster(2, processes_ok=True)
    user, admin = make_user(), make_user(role="admin")
    tokens = requests.post(f"{a.url}{API}/auth/login", json={"email": user["email"], "password": user["password"]},
                           timeout=5).json()["data"]
    stolen_login = cluster.connect(b, {"access_token": tokens["access_token"]})
    first_login = cluster.connect(b, user)
    assert post(a, "/auth/refresh", token=tokens["refresh_token"]).status_code == 200
    reused = post(a, "/auth/refresh", token=tokens["refresh_token"])
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "token_revoked"
    assert stolen_login.wait_for("session:ended") == {"reason": "token_revoked"}
    wait_until(lambda: not stolen_login.sio.connected, message="the reused login's socket to end")
    assert first_login.sio.connected and first_login.received("session:ended") == []

    changed = requests.patch(f"{b.url}{API}/users/{user.id}", json={"role": "moderator"},
                             headers=admin.headers, timeout=5)
    assert changed.status_code == 200
    on_a = cluster.connect(a, user)
    changed = requests.patch(f"{b.url}{API}/users/{user.id}", json={"role": "user"},
                             headers=admin.headers, timeout=5)
    assert changed.status_code == 200
    assert on_a.wait_for("session:ended") == {"reason": "role_changed"}
    wait_until(lambda: not on_a.sio.connected, message="the socket on A to end")
