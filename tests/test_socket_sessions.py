"""Live Socket.IO sessions follow access: logout, refresh reuse, role changes and expiry end them.

Each actor as a client meets it: the member who logs out (the socket of that login ends, another
device's login does not), the other members (keep riding, stop seeing the ended socket), staff
demoted by an admin, a socket whose token expires or is renewed in time, and a stranger's token.
"""
import uuid
from datetime import datetime, timedelta, timezone

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

from allynet import realtime, socket_sessions
from tests.emergencies_helpers import SOS_BODY
from tests.helpers import error_code
from tests.helpers import events_named as events_of_connected
from tests.scaleout_support import wait_until

API = "/api/v1"
MUNICH = {"lat": 48.137, "lng": 11.575}


@pytest.fixture
def party(client, make_user, socket_client):
    """A party of `alice` and `bob`, both connected; `eve` is connected outside it."""
    users = {name: make_user(display_name=name) for name in ("alice", "bob", "eve")}
    created = client.post(f"{API}/parties", json={"name": "ride"}, headers=users["alice"].headers)
    party = created.get_json()["data"]
    joined = client.post(f"{API}/parties/join", json={"invite_code": party["invite_code"]},
                         headers=users["bob"].headers)
    assert joined.status_code == 200
    sockets = {name: socket_client(user) for name, user in users.items()}
    for sio in sockets.values():
        assert sio.is_connected()
        sio.get_received()
    return party, users, sockets


def received(sio):
    """Every event a test client got (drained), connected or not: the test client's own
    get_received refuses once the server has disconnected it."""
    events, sio.queue = [event for event in sio.queue if event["namespace"] == "/"], []
    return events


def events_named(sio, name):
    if sio.is_connected():
        return events_of_connected(sio, name)
    return [event["args"][0] for event in received(sio) if event["name"] == name]


def update(sio, party_id):
    return sio.emit("party:update", {"party_id": party_id, "location": MUNICH}, callback=True)


def login(client, user):
    response = client.post(f"{API}/auth/login", json={"email": user["email"], "password": user["password"]})
    assert response.status_code == 200
    return response.get_json()["data"]


def access_token(app, user, seconds, **claims):
    """An access token of `user` (in a new login family unless `fam` is given) lasting `seconds`."""
    claims.setdefault("fam", uuid.uuid4().hex)
    with app.app_context():
        return create_access_token(identity=user.id, additional_claims=claims,
                                   expires_delta=timedelta(seconds=seconds))


def signed(app, **claims):
    """A token signed with the server's key, with exactly `claims` (plus exp/iat)."""
    now = datetime.now(timezone.utc)
    payload = {"iat": now, "nbf": now, "exp": now + timedelta(minutes=5), **claims}
    return pyjwt.encode(payload, app.config["JWT_SECRET_KEY"], algorithm="HS256")


# ---- logout ------------------------------------------------------------------------------------

def test_logout_ends_that_logins_socket_which_then_sees_nothing(client, party, socket_client):
    party_doc, users, sockets = party
    bob = users["bob"]
    other_device = socket_client(token=login(client, bob)["access_token"])  # bob's second login
    for sio in [other_device, *sockets.values()]:
        sio.get_received()

    assert client.post(f"{API}/auth/logout", headers=bob.headers).status_code == 200

    events = received(sockets["bob"])
    # (The test client also records what the server sends after the DISCONNECT packet, such as the
    # party:presence of the disconnect itself; a real client has closed the namespace by then.)
    assert events[0] == {"name": "session:ended", "args": [{"reason": "logout"}], "namespace": "/"}
    assert not sockets["bob"].is_connected()
    # The party goes on without that socket: alice's positions and chat no longer reach it.
    assert update(sockets["alice"], party_doc["id"])["ok"]
    assert sockets["alice"].emit("party:message", {"party_id": party_doc["id"], "text": "hi"},
                                 callback=True)["ok"]
    assert not sockets["bob"].is_connected()
    assert [event["name"] for event in received(sockets["bob"])] == []
    # Bob's other login is untouched and still a member on the move; eve, outside, saw nothing.
    assert other_device.is_connected()
    assert len(events_named(other_device, "party:message")) == 1
    assert events_named(sockets["eve"], "session:ended") == []
    assert events_named(sockets["alice"], "session:ended") == []
    # The logged-out token cannot open a new socket.
    assert not socket_client(bob).is_connected()


def test_logout_ends_every_socket_of_that_login_even_with_an_older_access_token(client, make_user, socket_client):
    user = make_user()
    first = login(client, user)
    old_socket = socket_client(token=first["access_token"])
    rotated = client.post(f"{API}/auth/refresh",
                          headers={"Authorization": f"Bearer {first['refresh_token']}"}).get_json()["data"]
    new_socket = socket_client(token=rotated["access_token"])
    assert client.post(f"{API}/auth/logout",
                       headers={"Authorization": f"Bearer {rotated['access_token']}"}).status_code == 200
    for sio in (old_socket, new_socket):
        assert events_named(sio, "session:ended") == [{"reason": "logout"}]
        assert not sio.is_connected()
    # The login's older access token is revoked with it.
    response = client.get(f"{API}/profile", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert response.status_code == 401 and error_code(response) == "token_revoked"


def test_logout_with_a_token_from_before_login_families_ends_only_its_own_sockets(app, client, make_user,
                                                                                 socket_client):
    user = make_user()
    with app.app_context():
        legacy = create_access_token(identity=user.id)  # no `fam` claim
    legacy_socket, current_socket = socket_client(token=legacy), socket_client(user)
    assert client.post(f"{API}/auth/logout", headers={"Authorization": f"Bearer {legacy}"}).status_code == 200
    assert events_named(legacy_socket, "session:ended") == [{"reason": "logout"}]
    assert current_socket.is_connected() and events_named(current_socket, "session:ended") == []


# ---- refresh token reuse ---------------------------------------------------------------------

def test_refresh_reuse_revokes_the_login_and_ends_its_sockets(client, make_user, socket_client):
    user = make_user()
    stolen = login(client, user)
    other_login = login(client, user)
    victim_socket = socket_client(token=stolen["access_token"])
    other_socket = socket_client(token=other_login["access_token"])
    refresh = {"Authorization": f"Bearer {stolen['refresh_token']}"}
    assert client.post(f"{API}/auth/refresh", headers=refresh).status_code == 200
    assert not events_named(victim_socket, "session:ended")  # a normal rotation ends nothing

    reused = client.post(f"{API}/auth/refresh", headers=refresh)
    assert reused.status_code == 401 and error_code(reused) == "token_revoked"
    assert events_named(victim_socket, "session:ended") == [{"reason": "token_revoked"}]
    assert not victim_socket.is_connected()
    assert not socket_client(token=stolen["access_token"]).is_connected()
    assert other_socket.is_connected() and events_named(other_socket, "session:ended") == []
    assert client.get(f"{API}/profile",
                      headers={"Authorization": f"Bearer {other_login['access_token']}"}).status_code == 200


# ---- role change -----------------------------------------------------------------------------

def test_demoted_moderator_leaves_emergency_rooms_joined_as_staff(client, make_user, socket_client):
    owner, moderator, admin = make_user(), make_user(role="moderator"), make_user(role="admin")
    emergency = client.post(f"{API}/emergencies", json=SOS_BODY, headers=owner.headers).get_json()["data"]
    emergency_id = emergency["emergency"]["id"]
    staff_socket = socket_client(moderator)
    assert staff_socket.emit("emergency:join", {"emergency_id": emergency_id}, callback=True)["ok"]
    owner_socket = socket_client(owner)

    # A change that leaves the role alone ends nothing; a non-admin cannot change roles at all.
    assert client.patch(f"{API}/users/{moderator.id}", json={"verified": True},
                        headers=admin.headers).status_code == 200
    assert client.patch(f"{API}/users/{moderator.id}", json={"role": "user"},
                        headers=owner.headers).status_code == 403
    assert staff_socket.is_connected() and events_named(staff_socket, "session:ended") == []

    assert client.patch(f"{API}/users/{moderator.id}", json={"role": "user"},
                        headers=admin.headers).status_code == 200
    assert events_named(staff_socket, "session:ended") == [{"reason": "role_changed"}]
    assert not staff_socket.is_connected()
    assert owner_socket.is_connected() and events_named(owner_socket, "session:ended") == []
    # Reconnected, the former moderator is an ordinary user: the room is closed to them.
    again = socket_client(moderator)
    assert again.is_connected()
    ack = again.emit("emergency:join", {"emergency_id": emergency_id}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    client.post(f"{API}/emergencies/{emergency_id}/cancel", headers=owner.headers)
    assert events_named(again, "emergency.status_changed") == []


def test_end_user_sessions_is_the_one_call_for_other_reasons(app, make_user, socket_client):
    user, bystander = make_user(), make_user()
    sockets = [socket_client(user), socket_client(user)]
    other = socket_client(bystander)
    with app.app_context():
        assert realtime.end_user_sessions(user["_id"], "suspended") == 2
        with pytest.raises(ValueError):
            realtime.end_user_sessions(user["_id"], "bored")
    for sio in sockets:
        assert events_named(sio, "session:ended") == [{"reason": "suspended"}]
        assert not sio.is_connected()
    assert other.is_connected()


# ---- expiry and renewal ----------------------------------------------------------------------

def test_events_after_expiry_are_refused_and_end_the_session(app, party, clock):
    party_doc, users, sockets = party
    clock.advance(minutes=14)
    assert update(sockets["bob"], party_doc["id"])["ok"]
    clock.advance(minutes=1, seconds=1)  # past the 15-minute access token
    for sio, ack in ((sockets["bob"], update(sockets["bob"], party_doc["id"])),
                     (sockets["alice"], sockets["alice"].emit(
                         "party:message", {"party_id": party_doc["id"], "text": "late"}, callback=True))):
        assert ack == {"ok": False, "error": {"code": "token_expired", "message": "Token has expired"}}
        wait_until(lambda: not sio.is_connected(), message="the expired socket to be disconnected")
        assert events_named(sio, "session:ended") == [{"reason": "token_expired"}]
    assert events_named(sockets["eve"], "session:ended") == []  # eve sent nothing: the sweep's job


def test_the_sweep_ends_idle_expired_sockets(app, make_user, socket_client, clock):
    old, fresh = make_user(), make_user()
    idle = socket_client(old)
    clock.advance(minutes=10)
    later = socket_client(token=access_token(app, fresh, 3600))
    assert socket_sessions.end_expired_sessions(app) == 0
    clock.advance(minutes=5, seconds=1)
    assert socket_sessions.end_expired_sessions(app) == 1
    assert events_named(idle, "session:ended") == [{"reason": "token_expired"}]
    assert not idle.is_connected()
    assert later.is_connected() and events_named(later, "session:ended") == []


def test_renew_keeps_the_socket_alive_past_the_old_expiry(app, party, clock):
    party_doc, users, sockets = party
    bob = users["bob"]
    clock.advance(minutes=10)
    token = access_token(app, bob, 3600)
    ack = sockets["bob"].emit("auth:renew", {"token": token}, callback=True)
    expected = pyjwt.decode(token, options={"verify_signature": False})["exp"]
    assert ack == {"ok": True, "expires_at": datetime.fromtimestamp(expected, tz=timezone.utc)
                   .strftime("%Y-%m-%dT%H:%M:%SZ")}
    clock.advance(minutes=10)  # 20 minutes after connecting
    assert update(sockets["bob"], party_doc["id"])["ok"]
    assert events_named(sockets["alice"], "party:update")
    assert socket_sessions.end_expired_sessions(app) == 2  # alice and eve, not bob
    assert sockets["bob"].is_connected()


@pytest.mark.parametrize("case", ["other_user", "refresh", "garbage", "expired", "revoked", "no_jti", "missing"])
def test_renew_with_a_bad_token_is_refused_and_changes_nothing(app, client, party, clock, case):
    party_doc, users, sockets = party
    bob = users["bob"]
    fresh = login(client, bob)
    if case == "revoked":
        client.post(f"{API}/auth/logout", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    payload = {
        "other_user": {"token": access_token(app, users["alice"], 3600)},
        "refresh": {"token": fresh["refresh_token"]},
        "garbage": {"token": "not.a.token"},
        "expired": {"token": access_token(app, bob, -10)},
        "revoked": {"token": fresh["access_token"]},
        "no_jti": {"token": signed(app, sub=bob.id, type="access")},
        "missing": {},
    }[case]
    ack = sockets["bob"].emit("auth:renew", payload, callback=True)
    assert ack["ok"] is False
    assert ack["error"]["code"] == ("validation_error" if case == "missing" else "unauthorized")
    assert sockets["bob"].is_connected()
    assert events_named(sockets["bob"], "session:ended") == []
    clock.advance(minutes=15, seconds=1)  # the socket still lives on its first token, and dies with it
    assert update(sockets["bob"], party_doc["id"])["error"]["code"] == "token_expired"


# ---- tokens we never issued ------------------------------------------------------------------

@pytest.mark.parametrize("claims", [
    {"type": "access"},  # no jti
    {"type": "password_reset", "jti": "x1"},
    {"jti": "x2"},  # no type
    {"type": "refresh", "jti": "x3"},
])
def test_validly_signed_tokens_we_do_not_issue_are_refused(app, client, make_user, socket_client, claims):
    user = make_user()
    token = signed(app, sub=user.id, **claims)
    response = client.get(f"{API}/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and error_code(response) == "unauthorized"
    assert not socket_client(token=token).is_connected()


def test_refresh_endpoint_refuses_refresh_tokens_without_an_id(app, client, make_user):
    user = make_user()
    token = signed(app, sub=user.id, type="refresh")
    response = client.post(f"{API}/auth/refresh", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_token_of_a_deleted_user_is_401_everywhere(client, db, make_user, socket_client):
    user, admin = make_user(), make_user(role="admin")
    db.users.delete_many({"_id": {"$in": [user["_id"], admin["_id"]]}})
    for response in (client.get(f"{API}/profile", headers=user.headers),
                     client.get(f"{API}/users/{admin.id}", headers=user.headers),
                     client.patch(f"{API}/users/{user.id}", json={"verified": True}, headers=admin.headers),
                     client.post(f"{API}/auth/refresh", headers={"Authorization": f"Bearer {user['refresh_token']}"})):
        assert response.status_code == 401 and error_code(response) == "unauthorized"
    assert not socket_client(user).is_connected()
