"""Races: many requests at once through the Flask test client (one per thread), and what every
client sees afterwards is what a one-at-a-time order could have produced.

The simpler races live next to their feature (twenty key-less SOS creates and two responders in
test_emergencies_*, fifty voters and one flipping voter in test_reports_votes, one user joining
four parties in test_parties_service); these are the harder mixes.
"""
import pytest
from bson import ObjectId

from tests.emergencies_helpers import CENTER, place_helper, sos
from tests.helpers import all_at_once, error_code, events_named

API = "/api/v1"
HERE = {"lat": 52.52, "lng": 13.405}


@pytest.fixture
def app(app_factory):
    # The races are about state, not about the per-user limits that would refuse part of them.
    return app_factory(EMERGENCY_CREATE_RATE_LIMIT="1000/minute")


def post(app, path, user=None, body=None, headers=None):
    """A call that POSTs through its own test client (one per thread)."""
    auth = user.headers if user is not None else {}
    return lambda: app.test_client().post(f"{API}{path}", json=body if body is not None else {},
                                          headers={**auth, **(headers or {})})


# ---- emergencies ------------------------------------------------------------------------------

def test_concurrent_sos_creates_with_their_own_keys_give_one_201(app, make_user, db, socket_client):
    helper_socket = socket_client(place_helper(make_user, 800))
    requester = make_user(location=CENTER)
    body = {"type": "medical", "location": {"lat": CENTER[0], "lng": CENTER[1]}}

    results = all_at_once([post(app, "/emergencies", requester, body, {"Idempotency-Key": f"tap-{n}"})
                           for n in range(16)])

    created = [r for r in results if r.status_code == 201]
    assert len(created) == 1, [r.status_code for r in results]
    emergency_id = created[0].get_json()["data"]["emergency"]["id"]
    for refused in (r for r in results if r.status_code != 201):
        assert refused.status_code == 409 and error_code(refused) == "active_emergency_exists"
        assert refused.get_json()["error"]["details"]["emergency_id"] == emergency_id
    assert db.emergencies.count_documents({"user_id": requester["_id"]}) == 1
    assert len(events_named(helper_socket, "emergency.created")) == 1
    # a refused key was not kept as a success: replaying it answers the same 409
    lost = next(n for n, r in enumerate(results) if r.status_code != 201)
    again = app.test_client().post(f"{API}/emergencies", json=body,
                                   headers={**requester.headers, "Idempotency-Key": f"tap-{lost}"})
    assert again.status_code == 409 and error_code(again) == "active_emergency_exists"


def test_n_helpers_responding_at_once_all_land_and_the_status_moves_once(app, client, make_user, db,
                                                                        socket_client):
    helpers = [place_helper(make_user, 200 + 100 * n) for n in range(8)]
    owner = make_user(location=CENTER)
    created = sos(client, owner).get_json()["data"]
    assert created["notified_helpers"] == len(helpers)
    emergency_id = created["emergency"]["id"]
    owner_socket = socket_client(owner)
    owner_socket.get_received()

    results = all_at_once([post(app, f"/emergencies/{emergency_id}/respond", helper, {"eta_minutes": 5})
                           for helper in helpers])

    assert [r.status_code for r in results] == [200] * len(helpers)
    stored = db.emergencies.find_one({"_id": ObjectId(emergency_id)})
    assert sorted(str(r["helper_id"]) for r in stored["responses"]) == sorted(h.id for h in helpers)
    assert [entry["status"] for entry in stored["timeline"]] == ["active", "responding"]
    assert stored["status"] == "responding"
    events = owner_socket.get_received()
    joined = [e["args"][0]["helper_id"] for e in events if e["name"] == "helper.joined"]
    assert sorted(joined) == sorted(h.id for h in helpers)
    changed = [e["args"][0] for e in events if e["name"] == "emergency.status_changed"]
    assert changed == [{"emergency_id": emergency_id, "status": "responding"}]
    # every helper's answer lists every response that landed before it, itself included
    for helper, result in zip(helpers, results):
        assert helper.id in [r["helper_id"] for r in result.get_json()["data"]["responses"]]


# ---- votes ------------------------------------------------------------------------------------

def test_many_users_flipping_at_once_leave_exact_counts(app, client, make_user, db):
    report = client.post(f"{API}/reports", headers=make_user().headers,
                         json={"type": "hazard", "location": HERE})
    report_id = report.get_json()["data"]["id"]
    url = f"/reports/{report_id}/vote"
    steady = [make_user() for _ in range(10)]  # keeps the report visible whatever the flippers end on
    for voter in steady:
        assert client.post(f"{API}{url}", headers=voter.headers, json={"value": "up"}).status_code == 200
    flippers = [make_user() for _ in range(10)]

    calls = [post(app, url, voter, {"value": value})
             for voter in flippers for value in ("up", "down", "up", "down")]
    results = all_at_once(calls)

    assert {r.status_code for r in results} == {200}
    votes = list(db.report_votes.find({"report_id": ObjectId(report_id)}))
    by_user = {}
    for vote in votes:
        by_user.setdefault(vote["user_id"], []).append(vote["value"])
    assert all(len(values) == 1 for values in by_user.values()) and len(by_user) == 20
    ups = sum(1 for vote in votes if vote["value"] == "up")
    doc = db.reports.find_one({"_id": ObjectId(report_id)})
    assert (doc["upvotes"], doc["downvotes"]) == (ups, len(votes) - ups)
    seen = client.get(f"{API}/reports/{report_id}", headers=steady[0].headers).get_json()["data"]
    assert (seen["upvotes"], seen["downvotes"]) == (ups, len(votes) - ups)


# ---- parties ----------------------------------------------------------------------------------

def party_of(client, user, party_id):
    response = client.get(f"{API}/parties/{party_id}", headers=user.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def stored_members(db, party_id):
    party = db.parties.find_one({"_id": ObjectId(party_id)})
    listed = sorted(str(member["user_id"]) for member in party["members"])
    active = sorted(str(m["user_id"]) for m in db.party_members.find({"party_id": ObjectId(party_id),
                                                                      "active": True}))
    return party, listed, active


def test_concurrent_joins_and_leaves_keep_one_member_list_and_one_leader(app, client, make_user, db):
    alice = make_user()
    party = client.post(f"{API}/parties", json={"name": "ride"}, headers=alice.headers).get_json()["data"]
    code = {"invite_code": party["invite_code"]}
    riders = [make_user() for _ in range(12)]

    joined = all_at_once([post(app, "/parties/join", rider, code) for rider in riders])

    assert [r.status_code for r in joined] == [200] * len(riders)
    record, listed, active = stored_members(db, party["id"])
    assert listed == active == sorted([alice.id] + [rider.id for rider in riders])

    # The leader and half the riders leave while four newcomers join.
    leavers, stayers = [alice] + riders[:6], riders[6:]
    newcomers = [make_user() for _ in range(4)]
    calls = [post(app, f"/parties/{party['id']}/leave", user) for user in leavers]
    calls += [post(app, "/parties/join", user, code) for user in newcomers]
    results = all_at_once(calls)

    assert [r.status_code for r in results] == [200] * len(calls)
    record, listed, active = stored_members(db, party["id"])
    assert listed == active == sorted(user.id for user in stayers + newcomers)
    assert record["is_active"] is True and str(record["leader_id"]) in listed
    seen = party_of(client, stayers[0], party["id"])
    assert sorted(m["user_id"] for m in seen["members"]) == listed
    assert [m["user_id"] for m in seen["members"] if m["is_leader"]] == [str(record["leader_id"])]
    assert client.get(f"{API}/parties/{party['id']}", headers=alice.headers).status_code == 404

    # Everyone left leaves at once: the party ends exactly once, with nobody in it.
    everyone = stayers + newcomers
    results = all_at_once([post(app, f"/parties/{party['id']}/leave", user) for user in everyone])

    assert [r.status_code for r in results] == [200] * len(everyone)
    assert sum(1 for r in results if r.get_json()["data"]["is_active"] is False) == 1
    record, listed, active = stored_members(db, party["id"])
    assert record["is_active"] is False and record["ended_at"] is not None
    assert listed == active == []


# ---- auth -------------------------------------------------------------------------------------

def test_concurrent_refreshes_with_one_token_rotate_exactly_once(app, make_user):
    user = make_user()
    refresh = {"Authorization": f"Bearer {user['refresh_token']}"}

    results = all_at_once([lambda: app.test_client().post(f"{API}/auth/refresh", headers=refresh)
                           for _ in range(10)])

    won = [r for r in results if r.status_code == 200]
    assert len(won) == 1, [r.status_code for r in results]
    for lost in (r for r in results if r.status_code != 200):
        assert lost.status_code == 401 and error_code(lost) == "token_revoked"
    # The nine others were reuses of a rotated refresh token: the whole login is revoked, the
    # winner's new pair included (reuse means the token may be in someone else's hands).
    tokens = won[0].get_json()["data"]
    client = app.test_client()
    again = client.post(f"{API}/auth/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert again.status_code == 401 and error_code(again) == "token_revoked"
    profile = client.get(f"{API}/profile", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert profile.status_code == 401
