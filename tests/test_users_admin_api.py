"""Staff user management: search and filters, suspension and what it stops, admin changes."""
from datetime import timedelta

import pytest
from bson import ObjectId

from allynet import clock as clock_module
from allynet.fields import iso
from tests.helpers import error_code

USERS = "/api/v1/users"
PARIS = {"lat": 48.8566, "lng": 2.3522}
NEAR_PARIS = (48.8611, 2.3522)


def listed(client, caller, query=""):
    response = client.get(f"{USERS}?{query}", headers=caller.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def suspend(client, admin, user, **body):
    return client.post(f"{USERS}/{user.id}/suspend", headers=admin.headers, json={"reason": "spam", **body})


# ---- listing and search -------------------------------------------------------------------------

def test_staff_search_by_email_prefix_or_display_name(client, make_user, moderator):
    alice = make_user(email="alice.martin@example.com", display_name="Alice")
    bob = make_user(email="bob@example.com", display_name="Robert Alicea")
    make_user(email="carol@example.com", display_name="Carol")
    found = {item["id"] for item in listed(client, moderator, "q=ALICE")["data"]}
    assert found == {alice.id, bob.id}  # alice by email prefix, bob by display name
    # an email matches only from its start: "martin" is inside alice's address, not a prefix
    assert [item["id"] for item in listed(client, moderator, "q=martin@")["data"]] == []
    item = listed(client, moderator, "q=bob@")["data"][0]
    assert item["email"] == "bob@example.com" and item["suspended"] is False and item["suspension"] is None
    assert "password_hash" not in item


def test_regex_characters_in_q_are_literal(client, make_user, moderator):
    make_user(display_name="a.b")
    make_user(display_name="axb")
    assert [item["display_name"] for item in listed(client, moderator, "q=a.b")["data"]] == ["a.b"]


def test_filters_role_verified_helper_and_status(client, make_user, admin, moderator):
    helper = make_user(is_helper=True, verified=True)
    plain = make_user()
    assert suspend(client, admin, plain).status_code == 200
    assert {i["id"] for i in listed(client, moderator, "is_helper=true&verified=true")["data"]} == {helper.id}
    assert {i["id"] for i in listed(client, moderator, "role=moderator")["data"]} == {moderator.id}
    assert {i["id"] for i in listed(client, moderator, "status=suspended")["data"]} == {plain.id}
    active = {i["id"] for i in listed(client, moderator, "status=active")["data"]}
    assert plain.id not in active and helper.id in active


def test_list_pages_newest_first_without_gaps(client, make_user, moderator, clock):
    users = []
    for _ in range(5):
        clock.advance(seconds=1)
        users.append(make_user(display_name="Pager"))
    seen, cursor = [], None
    while True:
        body = listed(client, moderator, "q=Pager&limit=2" + (f"&cursor={cursor}" if cursor else ""))
        seen += [item["id"] for item in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [user.id for user in reversed(users)]


@pytest.mark.parametrize("query", ["role=root", "status=gone", "verified=yes", "limit=0", "cursor=%%%",
                                   "q=", "colour=red"])
def test_bad_list_queries_are_400(client, moderator, query):
    response = client.get(f"{USERS}?{query}", headers=moderator.headers)
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_plain_users_cannot_list_or_view_staff_fields(client, make_user):
    user = make_user()
    assert client.get(USERS, headers=user.headers).status_code == 403
    assert client.get(f"{USERS}/{user.id}/admin", headers=user.headers).status_code == 403
    assert client.get(USERS).status_code == 401


# ---- suspension -----------------------------------------------------------------------------------

def test_suspension_refuses_tokens_at_once_and_is_audited(client, db, make_user, admin):
    user = make_user()
    assert client.get("/api/v1/profile", headers=user.headers).status_code == 200
    response = suspend(client, admin, user, reason="harassment")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["suspended"] is True and data["suspension"]["reason"] == "harassment"
    assert data["suspension"]["until"] is None and data["suspension"]["by"] == admin.id
    refused = client.get("/api/v1/profile", headers=user.headers)
    assert refused.status_code == 401 and error_code(refused) == "account_suspended"
    login = client.post("/api/v1/auth/login", json={"email": user["email"], "password": "password123"})
    assert login.status_code == 401 and error_code(login) == "account_suspended"
    refresh = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {user['refresh_token']}"})
    assert refresh.status_code == 401 and error_code(refresh) == "account_suspended"
    entry = db.audit_log.find_one({"action": "user.suspend"})
    assert entry["actor_id"] == admin["_id"] and entry["target_id"] == user["_id"]
    assert entry["reason"] == "harassment"


def test_suspension_ends_sockets_and_refuses_reconnect(client, make_user, admin, socket_client):
    user = make_user()
    sio = socket_client(user)
    assert sio.is_connected()
    sio.get_received()
    assert suspend(client, admin, user).status_code == 200
    assert [e["args"] for e in sio.queue if e["name"] == "session:ended"] == [[{"reason": "suspended"}]]
    assert not sio.is_connected()
    again = socket_client(user)
    assert not again.is_connected()


def test_suspension_with_an_end_lapses_by_itself(client, make_user, admin, clock):
    user = make_user()
    until = iso(clock_module.now() + timedelta(hours=1))
    assert suspend(client, admin, user, until=until).status_code == 200
    assert client.get("/api/v1/profile", headers=user.headers).status_code == 401
    clock.advance(hours=1, seconds=1)
    assert client.get("/api/v1/profile", headers=user.headers).status_code == 200


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "x", "until": "2000-01-01T00:00:00Z"},
                                  {"reason": "x", "until": "soon"}, {"reason": "x", "extra": 1}])
def test_bad_suspensions_are_400_and_change_nothing(client, make_user, admin, body):
    user = make_user()
    response = client.post(f"{USERS}/{user.id}/suspend", headers=admin.headers, json=body)
    assert response.status_code == 400
    assert client.get("/api/v1/profile", headers=user.headers).status_code == 200


def test_suspended_helper_is_not_alerted_and_their_own_sos_stays(client, db, make_user, admin):
    helper = make_user(is_helper=True, verified=True, location=NEAR_PARIS)
    own = client.post("/api/v1/emergencies", headers=helper.headers, json={"type": "medical", "location": PARIS})
    assert own.status_code == 201
    own_id = own.get_json()["data"]["emergency"]["id"]
    other_helper = make_user(is_helper=True, verified=True, location=NEAR_PARIS)
    on_duty = make_user(is_helper=True, verified=True, location=NEAR_PARIS)
    assert suspend(client, admin, helper).status_code == 200
    assert suspend(client, admin, other_helper).status_code == 200
    requester = make_user()
    response = client.post("/api/v1/emergencies", headers=requester.headers,
                           json={"type": "medical", "location": PARIS})
    assert response.status_code == 201
    stored = db.emergencies.find_one({"user_id": requester["_id"]})
    assert stored["notified_helper_ids"] == [on_duty["_id"]]
    assert db.emergencies.find_one({"_id": ObjectId(own_id)})["status"] == "active"


def test_suspension_ends_active_party_membership(client, make_user, admin):
    leader, rider = make_user(), make_user()
    party = client.post("/api/v1/parties", headers=leader.headers, json={"name": "Ride"}).get_json()["data"]
    assert client.post("/api/v1/parties/join", headers=rider.headers,
                       json={"invite_code": party["invite_code"]}).status_code == 200
    assert suspend(client, admin, rider).status_code == 200
    members = client.get(f"/api/v1/parties/{party['id']}", headers=leader.headers).get_json()["data"]["members"]
    assert [member["user_id"] for member in members] == [leader.id]


def test_last_admin_cannot_be_suspended(client, db, admin):
    response = suspend(client, admin, admin)
    assert response.status_code == 409 and error_code(response) == "last_admin"
    assert client.get("/api/v1/profile", headers=admin.headers).status_code == 200
    assert db.audit_log.count_documents({"action": "user.suspend"}) == 0


def test_an_admin_with_a_colleague_can_be_suspended_then_the_colleague_is_last(client, make_user, admin):
    other = make_user(role="admin")
    assert suspend(client, other, admin).status_code == 200
    response = suspend(client, other, other)
    assert response.status_code == 409 and error_code(response) == "last_admin"


def test_unsuspend_restores_access_and_is_audited(client, db, make_user, admin):
    user = make_user()
    assert suspend(client, admin, user).status_code == 200
    response = client.post(f"{USERS}/{user.id}/unsuspend", headers=admin.headers)
    assert response.status_code == 200 and response.get_json()["data"]["suspended"] is False
    assert client.get("/api/v1/profile", headers=user.headers).status_code == 200
    assert db.audit_log.count_documents({"action": "user.unsuspend", "target_id": user["_id"]}) == 1
    again = client.post(f"{USERS}/{user.id}/unsuspend", headers=admin.headers)
    assert again.status_code == 409 and error_code(again) == "conflict"


def test_suspending_an_unknown_user_is_404(client, admin):
    response = client.post(f"{USERS}/{'0' * 24}/suspend", headers=admin.headers, json={"reason": "x"})
    assert response.status_code == 404
    response = client.post(f"{USERS}/{'0' * 24}/unsuspend", headers=admin.headers)
    assert response.status_code == 404


@pytest.mark.parametrize("role", ["user", "moderator"])
def test_only_admins_suspend(client, make_user, role):
    caller, target = make_user(role=role), make_user()
    assert suspend(client, caller, target).status_code == 403
    assert client.get("/api/v1/profile", headers=target.headers).status_code == 200


def test_staff_view_shows_the_suspension(client, make_user, admin, moderator):
    user = make_user()
    assert suspend(client, admin, user, reason="fake reports").status_code == 200
    data = client.get(f"{USERS}/{user.id}/admin", headers=moderator.headers).get_json()["data"]
    assert data["suspended"] is True and data["suspension"]["reason"] == "fake reports"


# ---- admin changes --------------------------------------------------------------------------------

def test_admin_sets_helper_verified_and_role_in_one_patch(client, db, make_user, admin):
    user = make_user()
    response = client.patch(f"{USERS}/{user.id}", headers=admin.headers,
                            json={"is_helper": True, "verified": True, "role": "moderator"})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert (data["is_helper"], data["verified"], data["role"]) == (True, True, "moderator")
    entry = db.audit_log.find_one({"action": "user.update", "target_id": user["_id"]})
    assert entry["before"] == {"is_helper": False, "verified": False, "role": "user"}
    assert entry["after"] == {"is_helper": True, "verified": True, "role": "moderator"}


def test_patch_is_helper_must_be_a_boolean(client, make_user, admin):
    user = make_user()
    response = client.patch(f"{USERS}/{user.id}", headers=admin.headers, json={"is_helper": "yes"})
    assert response.status_code == 400 and error_code(response) == "validation_error"
