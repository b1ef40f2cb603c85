"""Organizations as clients meet them: through the real server (HTTP and Socket.IO over the network)
for vouching, dispatch and club rides; through the test client for refusals that must change nothing."""
import pytest
import requests

from allynet import clock
from tests.scaleout_support import SioClient, cluster, quiet_werkzeug, redis_prefix, serve  # noqa: F401 (fixtures)

API = "/api/v1"
PARIS_AREA = {"type": "Polygon", "coordinates": [[[2.30, 48.82], [2.40, 48.82], [2.40, 48.90], [2.30, 48.90],
                                                  [2.30, 48.82]]]}
INSIDE = {"lat": 48.86, "lng": 2.351}
OUTSIDE = {"lat": 48.95, "lng": 2.50}  # north-east of the area, still within 20 km of the helper
ORG = {"name": "Paris Rescue", "kind": "volunteer_group", "service_area": PARIS_AREA,
       "contact": {"email": "desk@rescue.example.org", "phone": "+33 1 23 45 67 89",
                   "website": "https://rescue.example.org"}}


@pytest.fixture
def served(app, quiet_werkzeug):
    server = serve(app)
    clients = []

    def connect(user):
        sio = SioClient(server.url, user["access_token"])
        clients.append(sio)
        return sio

    server.connect = connect
    yield server
    for sio in clients:
        sio.close()
    server.stop()


def call(server, method, path, user=None, body=None):
    headers = {"Authorization": f"Bearer {user['access_token']}"} if user else {}
    response = requests.request(method, f"{server.url}{API}{path}", json=body, headers=headers, timeout=10)
    return response.status_code, response.json()


def helper_at(make_user, db, lat, lng, **fields):
    user = make_user(is_helper=True, location=(lat, lng), **fields)
    db.users.update_one({"_id": user["_id"]}, {"$set": {"location_updated_at": clock.now()}})
    return user


def dispatching_org(server, owner, admin, members=()):
    """A verified pro organization owned by `owner`, with `members` joined by invitation: its id."""
    status, body = call(server, "POST", "/organizations", owner, ORG)
    assert status == 201, body
    org_id = body["data"]["id"]
    assert call(server, "PATCH", f"/organizations/{org_id}", admin, {"verified": True})[0] == 200
    status, body = call(server, "POST", f"/organizations/{org_id}/subscription", owner)
    assert status == 201, body
    event = {"type": "invoice.paid", "data": {"object": {"subscription": body["data"]["id"]}}}
    assert call(server, "POST", "/payments/offline/events", admin, event)[0] == 200
    for member in members:
        status, body = call(server, "POST", f"/organizations/{org_id}/invitations", owner)
        assert status == 201 and set(body["data"]) == {"code", "expires_at"}
        assert call(server, "POST", "/organizations/join", member, {"code": body["data"]["code"]})[0] == 200
    return org_id


def test_vouching_makes_an_sos_reach_a_member_without_verified_and_stops_when_they_leave(served, make_user, db):
    owner, admin = make_user(), make_user(role="admin")
    member = helper_at(make_user, db, 48.861, 2.352)  # is_helper, no `verified` of their own
    org_id = dispatching_org(served, owner, admin, [member])
    sio = served.connect(member)

    requester = make_user()
    status, body = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})
    assert status == 201 and body["data"]["notified_helpers"] == 0  # not vouched yet
    assert call(served, "POST", f"/emergencies/{body['data']['emergency']['id']}/cancel", requester)[0] == 200

    status, body = call(served, "POST", f"/organizations/{org_id}/members/{member.id}/vouch", owner)
    assert status == 200 and body["data"]["vouched"] is True
    status, body = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})
    assert status == 201 and body["data"]["notified_helpers"] == 1
    first = body["data"]["emergency"]["id"]
    assert sio.wait_for("emergency.created", lambda data: data["id"] == first)
    # A vouched helper may respond like a verified one.
    assert call(served, "POST", f"/emergencies/{first}/respond", member)[0] == 200
    assert call(served, "POST", f"/emergencies/{first}/resolve", requester)[0] == 200

    assert call(served, "POST", f"/organizations/{org_id}/leave", member)[0] == 200
    sio.clear()
    status, body = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})
    assert status == 201 and body["data"]["notified_helpers"] == 0
    assert db.emergencies.find_one({"_id": __import__("bson").ObjectId(body["data"]["emergency"]["id"])})[
        "notified_helper_ids"] == []


def test_losing_verification_ends_the_vouch_on_the_next_sos(served, make_user, db):
    owner, admin, requester = make_user(), make_user(role="admin"), make_user()
    member = helper_at(make_user, db, 48.861, 2.352)
    org_id = dispatching_org(served, owner, admin, [member])
    assert call(served, "POST", f"/organizations/{org_id}/members/{member.id}/vouch", owner)[0] == 200
    assert call(served, "PATCH", f"/organizations/{org_id}", admin, {"verified": False})[0] == 200
    status, body = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})
    assert status == 201 and body["data"]["notified_helpers"] == 0
    assert call(served, "POST", f"/emergencies/{body['data']['emergency']['id']}/cancel", requester)[0] == 200
    assert call(served, "PATCH", f"/organizations/{org_id}", admin, {"verified": True})[0] == 200
    status, body = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})
    assert body["data"]["notified_helpers"] == 1  # verified again: the vouch holds again


def test_a_dispatcher_receives_an_sos_inside_the_area_and_nothing_outside(served, make_user, db):
    owner, admin = make_user(), make_user(role="admin")
    dispatcher = make_user()
    org_id = dispatching_org(served, owner, admin, [dispatcher])
    sio = served.connect(dispatcher)
    # Granted the role while connected: the connection is in org:<id> at once.
    status, body = call(served, "PATCH", f"/organizations/{org_id}/members/{dispatcher.id}", owner,
                        {"role": "dispatcher"})
    assert status == 200 and body["data"]["role"] == "dispatcher"

    outside_requester, inside_requester = make_user(), make_user()
    status, outside = call(served, "POST", "/emergencies", outside_requester, {"type": "medical", "location": OUTSIDE})
    assert status == 201
    status, inside = call(served, "POST", "/emergencies", inside_requester, {"type": "fire", "location": INSIDE})
    inside_id = inside["data"]["emergency"]["id"]
    created = sio.wait_for("emergency.created", lambda data: data["id"] == inside_id)
    assert created["location"] == INSIDE
    assert [e["id"] for e in sio.received("emergency.created")] == [inside_id]

    status, body = call(served, "GET", f"/organizations/{org_id}/emergencies", dispatcher)
    assert status == 200 and [e["id"] for e in body["data"]] == [inside_id]
    assert call(served, "POST", f"/emergencies/{inside_id}/cancel", inside_requester)[0] == 200
    assert sio.wait_for("emergency.status_changed", lambda d: d == {"emergency_id": inside_id,
                                                                    "status": "cancelled"})
    status, body = call(served, "GET", f"/organizations/{org_id}/emergencies", dispatcher)
    assert body["data"] == []  # closed: its location is no longer shown
    # A plain member sees none of it.
    member = make_user()
    code = call(served, "POST", f"/organizations/{org_id}/invitations", owner)[1]["data"]["code"]
    call(served, "POST", "/organizations/join", member, {"code": code})
    status, body = call(served, "GET", f"/organizations/{org_id}/emergencies", member)
    assert status == 403 and body["error"]["code"] == "forbidden"
    member_sio = served.connect(member)
    assert member_sio.call("org:join", {"organization_id": org_id})["error"]["code"] == "forbidden"


def test_a_dispatcher_connecting_later_is_in_the_room_and_a_demoted_one_leaves_it(served, make_user):
    owner, admin, dispatcher = make_user(), make_user(role="admin"), make_user()
    org_id = dispatching_org(served, owner, admin, [dispatcher])
    call(served, "PATCH", f"/organizations/{org_id}/members/{dispatcher.id}", owner, {"role": "dispatcher"})
    sio = served.connect(dispatcher)  # in org:<id> from connect
    requester = make_user()
    first = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})[1]
    assert sio.wait_for("emergency.created", lambda d: d["id"] == first["data"]["emergency"]["id"])
    call(served, "POST", f"/emergencies/{first['data']['emergency']['id']}/cancel", requester)
    assert call(served, "PATCH", f"/organizations/{org_id}/members/{dispatcher.id}", owner,
                {"role": "member"})[0] == 200
    owner_sio = served.connect(owner)
    second = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})[1]
    second_id = second["data"]["emergency"]["id"]
    assert owner_sio.wait_for("emergency.created", lambda d: d["id"] == second_id)  # the room still works
    assert all(e["id"] != second_id for e in sio.received("emergency.created"))


def test_assign_alerts_a_vouched_member_who_may_then_respond(served, make_user, db):
    owner, admin, requester = make_user(), make_user(role="admin"), make_user()
    far_member = helper_at(make_user, db, 45.76, 4.83)  # Lyon: never alerted by distance
    outsider = helper_at(make_user, db, 48.861, 2.352, verified=True)
    org_id = dispatching_org(served, owner, admin, [far_member])
    call(served, "POST", f"/organizations/{org_id}/members/{far_member.id}/vouch", owner)
    sio = served.connect(far_member)
    emergency_id = call(served, "POST", "/emergencies", requester,
                        {"type": "medical", "location": INSIDE})[1]["data"]["emergency"]["id"]
    status, body = call(served, "POST", f"/organizations/{org_id}/emergencies/{emergency_id}/assign", owner,
                        {"user_id": outsider.id})
    assert status == 403 and body["error"]["code"] == "forbidden"  # not a member
    status, body = call(served, "POST", f"/organizations/{org_id}/emergencies/{emergency_id}/assign", owner,
                        {"user_id": far_member.id})
    assert status == 200, body
    alert = sio.wait_for("emergency.created", lambda d: d["id"] == emergency_id)
    assert alert["assigned_by"] == owner.id and alert["organization_id"] == org_id
    assert call(served, "POST", f"/emergencies/{emergency_id}/respond", far_member)[0] == 200


def test_a_non_member_cannot_create_or_join_a_club_ride(served, make_user):
    owner, member, stranger = make_user(), make_user(), make_user()
    status, body = call(served, "POST", "/organizations", owner, dict(ORG, kind="club"))
    org_id = body["data"]["id"]
    code = call(served, "POST", f"/organizations/{org_id}/invitations", owner)[1]["data"]["code"]
    call(served, "POST", "/organizations/join", member, {"code": code})

    status, body = call(served, "POST", "/parties", owner, {"name": "Sunday club ride", "organization_id": org_id})
    assert status == 201 and body["data"]["organization_id"] == org_id
    party_id, invite_code = body["data"]["id"], body["data"]["invite_code"]
    status, body = call(served, "POST", "/parties/join", stranger, {"invite_code": invite_code})
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert call(served, "GET", f"/parties/{party_id}", stranger)[0] == 404  # still not a member
    stranger_sio = served.connect(stranger)
    assert stranger_sio.call("party:join", {"invite_code": invite_code})["error"]["code"] == "forbidden"
    assert stranger_sio.call("party:create", {"name": "x", "organization_id": org_id})["error"]["code"] == "forbidden"
    status, body = call(served, "POST", "/parties", stranger, {"name": "Fake", "organization_id": org_id})
    assert status == 403
    assert call(served, "POST", "/parties/join", member, {"invite_code": invite_code})[0] == 200

    status, body = call(served, "GET", f"/organizations/{org_id}/parties", member)
    assert status == 200 and [(p["id"], p["is_active"], p["member_count"]) for p in body["data"]] == [
        (party_id, True, 2)]
    assert call(served, "GET", f"/organizations/{org_id}/parties", stranger)[0] == 403
    assert call(served, "POST", f"/parties/{party_id}/end", owner)[0] == 200
    status, body = call(served, "GET", f"/organizations/{org_id}/parties", member)
    assert body["data"][0]["is_active"] is False and body["data"][0]["invite_code"] is None


def test_the_dispatch_room_follows_the_role_on_every_process(cluster, make_user):
    """A dispatcher's connections on two servers (over Redis) enter org:<id> when the role is granted
    on one server and leave it when it is taken away on the other."""
    a, b = cluster(2, processes_ok=True, EMERGENCY_CREATE_RATE_LIMIT="1000/minute")
    owner, admin, dispatcher, requester = make_user(), make_user(role="admin"), make_user(), make_user()
    org_id = dispatching_org(a, owner, admin, [dispatcher])
    witnesses = [cluster.connect(a, owner), cluster.connect(b, owner)]  # in org:<id> from connect
    sockets = [cluster.connect(a, dispatcher), cluster.connect(b, dispatcher)]
    assert call(a, "PATCH", f"/organizations/{org_id}/members/{dispatcher.id}", owner,
                {"role": "dispatcher"})[0] == 200

    first = call(b, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})[1]
    first_id = first["data"]["emergency"]["id"]
    for sock in sockets + witnesses:
        sock.wait_for("emergency.created", lambda d: d["id"] == first_id)
    assert call(b, "POST", f"/emergencies/{first_id}/cancel", requester)[0] == 200
    for sock in sockets:
        sock.wait_for("emergency.status_changed", lambda d: d["emergency_id"] == first_id)

    assert call(b, "PATCH", f"/organizations/{org_id}/members/{dispatcher.id}", owner, {"role": "member"})[0] == 200
    second = call(a, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})[1]
    second_id = second["data"]["emergency"]["id"]
    for witness, sock in zip(witnesses, sockets):
        witness.wait_for("emergency.created", lambda d: d["id"] == second_id)
        # A round trip on the same connection: an event sent before its ack would be here by now.
        assert sock.call("org:join", {"organization_id": org_id})["error"]["code"] == "forbidden"
        assert [d["id"] for d in sock.received("emergency.created")] == [first_id]


# ---- refusals that change nothing (test client) ---------------------------------------------------

BAD_AREAS = [
    ({"type": "Polygon", "coordinates": [[[2.3, 48.8], [2.4, 48.8], [2.4, 48.9], [2.3, 48.9]]]}, "not closed"),
    ({"type": "Polygon", "coordinates": [[[2.3, 48.8], [200, 48.8], [2.4, 48.9], [2.3, 48.8]]]}, "out of bounds"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "cross"),
    ({"type": "Point", "coordinates": [2.3, 48.8]}, "Polygon or MultiPolygon"),
    ({"type": "Polygon", "coordinates": [[[0, 40], [5, 40], [5, 45], [0, 45], [0, 40]]]}, "km²"),
    ({"type": "Polygon", "coordinates": "nope"}, ""),
    ({"type": "MultiPolygon", "coordinates": [[]]}, ""),
]


@pytest.mark.parametrize("area, says", BAD_AREAS)
def test_bad_service_areas_are_refused_and_nothing_is_stored(client, make_user, db, area, says):
    owner = make_user()
    response = client.post(f"{API}/organizations", json=dict(ORG, service_area=area), headers=owner.headers)
    body = response.get_json()
    assert response.status_code == 400 and body["error"]["code"] == "validation_error", body
    assert "service_area" in body["error"]["details"] and says in str(body["error"]["details"])
    assert db.organizations.count_documents({}) == 0


def test_a_multipolygon_is_accepted_and_found_by_either_part(client, make_user):
    owner = make_user()
    area = {"type": "MultiPolygon", "coordinates": [PARIS_AREA["coordinates"],
                                                    [[[4.8, 45.7], [4.9, 45.7], [4.9, 45.8], [4.8, 45.7]]]]}
    response = client.post(f"{API}/organizations", json=dict(ORG, service_area=area), headers=owner.headers)
    assert response.status_code == 201
    for near in ("48.86,2.35", "45.72,4.85"):
        assert len(client.get(f"{API}/organizations?near={near}", headers=owner.headers).get_json()["data"]) == 1
    assert client.get(f"{API}/organizations?near=0,0", headers=owner.headers).get_json()["data"] == []


@pytest.mark.parametrize("contact", [{"email": "not-an-email"}, {"phone": "0123"}, {"website": "ftp://x.org"},
                                     {"website": "javascript:alert(1)"}, {"fax": "+331"}])
def test_bad_contacts_are_refused(client, make_user, db, contact):
    response = client.post(f"{API}/organizations", json=dict(ORG, contact=contact), headers=make_user().headers)
    assert response.status_code == 400 and "contact" in response.get_json()["error"]["details"]
    assert db.organizations.count_documents({}) == 0


def test_the_public_view_has_no_members_and_other_owners_cannot_edit(client, make_user, db):
    owner, other_owner = make_user(), make_user()
    org = client.post(f"{API}/organizations", json=ORG, headers=owner.headers).get_json()["data"]
    client.post(f"{API}/organizations", json=dict(ORG, name="Other"), headers=other_owner.headers)
    public = client.get(f"{API}/organizations/{org['id']}", headers=other_owner.headers).get_json()["data"]
    assert "members" not in public and "my_role" not in public and public["member_count"] == 1
    before = db.organizations.find_one({"name": "Paris Rescue"})
    for body in ({"name": "Hijacked"}, {"verified": True}):
        response = client.patch(f"{API}/organizations/{org['id']}", json=body, headers=other_owner.headers)
        assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    # The owner may not verify their own organization either.
    assert client.patch(f"{API}/organizations/{org['id']}", json={"verified": True},
                        headers=owner.headers).status_code == 403
    # The plan follows the subscription only: nobody sets it, not even a platform admin.
    for user in (owner, make_user(role="admin")):
        response = client.patch(f"{API}/organizations/{org['id']}", json={"plan": "pro"}, headers=user.headers)
        assert response.status_code == 400 and response.get_json()["error"]["details"] == {
            "plan": ["Unknown field."]}
    assert db.organizations.find_one({"name": "Paris Rescue"}) == before


def test_free_plan_limits_bind_with_the_limit_in_details(app_factory, make_user):
    app = app_factory(ORG_FREE_MEMBERS=3)
    client = app.test_client()
    owner, first, second, third = (make_user() for _ in range(4))
    org_id = client.post(f"{API}/organizations", json=ORG, headers=owner.headers).get_json()["data"]["id"]
    for member in (first, second):
        code = client.post(f"{API}/organizations/{org_id}/invitations",
                           headers=owner.headers).get_json()["data"]["code"]
        assert client.post(f"{API}/organizations/join", json={"code": code}, headers=member.headers).status_code == 200
    response = client.post(f"{API}/organizations/{org_id}/invitations", headers=owner.headers)
    assert response.status_code == 403 and response.get_json()["error"] == {
        "code": "plan_limit", "message": "The free plan has at most 3 members",
        "details": {"plan": "free", "members": 3}}
    # One dispatcher on the free plan.
    assert client.patch(f"{API}/organizations/{org_id}/members/{first.id}", json={"role": "dispatcher"},
                        headers=owner.headers).status_code == 200
    response = client.patch(f"{API}/organizations/{org_id}/members/{second.id}", json={"role": "dispatcher"},
                            headers=owner.headers)
    assert response.status_code == 403 and response.get_json()["error"]["details"] == {"plan": "free",
                                                                                       "dispatchers": 1}
    # Dispatch and vouching need pro (and vouching a verified organization).
    response = client.get(f"{API}/organizations/{org_id}/emergencies", headers=first.headers)
    assert response.status_code == 403
    org = client.get(f"{API}/organizations/{org_id}", headers=owner.headers).get_json()["data"]
    assert org["member_count"] == 3
    assert [m["role"] for m in org["members"]] == ["owner", "dispatcher", "member"]
    # The last owner cannot step down.
    response = client.patch(f"{API}/organizations/{org_id}/members/{owner.id}", json={"role": "member"},
                            headers=owner.headers)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "last_owner"
    # A third member once the organization paid for pro.
    admin = make_user(role="admin")
    subscription = client.post(f"{API}/organizations/{org_id}/subscription", headers=owner.headers).get_json()["data"]
    assert client.post(f"{API}/payments/offline/events", headers=admin.headers, json={
        "type": "invoice.paid", "data": {"object": {"subscription": subscription["id"]}}}).status_code == 200
    code = client.post(f"{API}/organizations/{org_id}/invitations", headers=owner.headers).get_json()["data"]["code"]
    assert client.post(f"{API}/organizations/join", json={"code": code}, headers=third.headers).status_code == 200


def test_invitation_codes_are_single_use_and_expire(app, client, make_user, clock):
    owner, first, second = make_user(), make_user(), make_user()
    org_id = client.post(f"{API}/organizations", json=ORG, headers=owner.headers).get_json()["data"]["id"]
    code = client.post(f"{API}/organizations/{org_id}/invitations", headers=owner.headers).get_json()["data"]["code"]
    assert client.post(f"{API}/organizations/join", json={"code": code}, headers=first.headers).status_code == 200
    assert client.post(f"{API}/organizations/join", json={"code": code}, headers=second.headers).status_code == 404
    code = client.post(f"{API}/organizations/{org_id}/invitations", headers=owner.headers).get_json()["data"]["code"]
    clock.advance(hours=73)
    assert client.post(f"{API}/organizations/join", json={"code": code}, headers=second.headers).status_code == 404
    # A member may not invite; the owner hands over and may then leave.
    assert client.post(f"{API}/organizations/{org_id}/invitations", headers=first.headers).status_code == 403
    assert client.patch(f"{API}/organizations/{org_id}/members/{first.id}", json={"role": "owner"},
                        headers=owner.headers).status_code == 200
    assert client.post(f"{API}/organizations/{org_id}/leave", headers=owner.headers).status_code == 200
    org = client.get(f"{API}/organizations/{org_id}", headers=first.headers).get_json()["data"]
    assert [(m["user_id"], m["role"]) for m in org["members"]] == [(first.id, "owner")]
    assert all("email" not in m for m in org["members"])


def test_every_membership_change_is_audited(client, make_user, db):
    owner, member = make_user(), make_user()
    org_id = client.post(f"{API}/organizations", json=ORG, headers=owner.headers).get_json()["data"]["id"]
    code = client.post(f"{API}/organizations/{org_id}/invitations", headers=owner.headers).get_json()["data"]["code"]
    client.post(f"{API}/organizations/join", json={"code": code}, headers=member.headers)
    client.patch(f"{API}/organizations/{org_id}/members/{member.id}", json={"role": "admin"}, headers=owner.headers)
    client.delete(f"{API}/organizations/{org_id}/members/{member.id}", headers=owner.headers)
    actions = [entry["action"] for entry in db.audit_log.find({"target_type": "organization"}).sort("at", 1)]
    assert actions == ["organization.create", "organization.invite", "organization.join", "organization.role",
                       "organization.remove"]


def test_maintenance_removes_used_and_expired_invitations_only(app, client, make_user, db, clock):
    from allynet import maintenance

    owner, member = make_user(), make_user()
    org_id = client.post(f"{API}/organizations", json=ORG, headers=owner.headers).get_json()["data"]["id"]

    def invite():
        response = client.post(f"{API}/organizations/{org_id}/invitations", headers=owner.headers)
        return response.get_json()["data"]["code"]

    used, expired = invite(), invite()
    client.post(f"{API}/organizations/join", json={"code": used}, headers=member.headers)
    clock.advance(hours=73)
    valid = invite()
    result = maintenance.expire(db=db, config=app.config)
    assert result["invitations_removed"] == 2
    assert [doc["code"] for doc in db.organization_invitations.find()] == [valid]
    assert expired != valid


def test_the_demo_city_has_organizations_whose_vouched_members_are_helpers(app, db):
    from allynet import seeding

    seeding.seed(db=db, config=app.config, plan=seeding.SeedPlan(users=200, fast_hashes=True))
    orgs = {org["name"]: org for org in db.organizations.find()}
    rescue = orgs["City Volunteer Rescue"]
    assert rescue["verified"] and rescue["plan"] == "pro" and rescue["member_count"] > 2
    vouched = [m["user_id"] for m in rescue["members"] if m["vouched"]]
    assert vouched and all(db.users.find_one({"_id": uid})["vouched_by"] == [rescue["_id"]] for uid in vouched)
    centre = {"type": "Point", "coordinates": [seeding.SeedPlan.city_lng, seeding.SeedPlan.city_lat]}
    covering = db.organizations.find({"service_area": {"$geoIntersects": {"$geometry": centre}}})
    assert {org["name"] for org in covering} == set(orgs)
