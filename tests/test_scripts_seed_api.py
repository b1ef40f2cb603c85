"""A seeded city as clients see it: every feature's REST API serves the seeded documents."""
import pytest

from allynet import clock, maintenance, seeding
from allynet.fields import DateTimeZ

CENTRE = seeding.CITIES[seeding.DEFAULT_CITY]
NEAR = f"{CENTRE[0]},{CENTRE[1]}"


@pytest.fixture
def city(app, db):
    """A small seeded city (every feature present) and a login helper."""
    plan = seeding.SeedPlan(users=200, fast_hashes=True, seed=3, parties=4, reports=60, alerts=3, sos=2,
                            help_requests=40, skills=40, trail_points=12)
    result = seeding.seed(db=db, config=app.config, plan=plan, show_progress=False)
    client = app.test_client()

    def headers(email):
        response = client.post("/api/v1/auth/login", json={"email": email, "password": seeding.DEMO_PASSWORD})
        assert response.status_code == 200, email
        return {"Authorization": f"Bearer {response.get_json()['data']['access_token']}"}

    return result, client, headers


def demo(local):
    return f"{local}@{seeding.DEMO_DOMAIN}"


def test_every_feature_is_seeded(city):
    result, _, _ = city
    for collection in ("users", "skills", "help_requests", "parties", "party_members", "trail_points",
                       "party_messages", "routes", "reports", "report_votes", "alerts", "audit_log", "emergencies",
                       "organizations", "businesses"):
        assert result.created[collection] > 0, collection


def test_open_sos_reach_helpers_and_can_be_answered(city, db):
    _, client, headers = city
    helper = headers(demo("helper"))
    near = client.get(f"/api/v1/emergencies?near={NEAR}&radius_m=20000", headers=helper)
    assert near.status_code == 200
    open_ids = {item["id"] for item in near.get_json()["data"]}
    assert len(open_ids) == 2
    # The one near the centre alerted the demo helper, who can read it and respond.
    sos = db.emergencies.find_one({"notified_helper_ids": db.users.find_one({"email": demo("helper")})["_id"]})
    assert sos is not None and str(sos["_id"]) in open_ids
    assert client.get(f"/api/v1/emergencies/{sos['_id']}", headers=helper).status_code == 200
    if sos["status"] == "active":
        answered = client.post(f"/api/v1/emergencies/{sos['_id']}/respond", json={"eta_minutes": 4}, headers=helper)
        assert answered.status_code == 200 and answered.get_json()["data"]["status"] == "responding"
    # The owner holds the one-open-SOS slot: a second SOS is refused.
    owner = db.users.find_one({"_id": sos["user_id"]})
    again = client.post("/api/v1/emergencies", headers=headers(owner["email"]),
                        json={"type": "medical", "location": {"lat": CENTRE[0], "lng": CENTRE[1]}})
    assert again.status_code == 409
    assert again.get_json()["error"]["details"]["emergency_id"] == str(sos["_id"])
    mine = client.get("/api/v1/emergencies/mine", headers=headers(owner["email"])).get_json()["data"]
    assert [item["id"] for item in mine] == [str(sos["_id"])]


def test_businesses_running_promotions_and_safe_places_are_seeded(city, db):
    _, client, headers = city
    member = headers(demo("user"))
    listed = client.get(f"/api/v1/businesses?near={NEAR}&radius_m=20000&limit=100", headers=member)
    assert listed.status_code == 200
    items = listed.get_json()["data"]
    assert items and [item["distance_m"] for item in items] == sorted(item["distance_m"] for item in items)
    assert any(item["safe_place_active"] and item["open_now"] for item in items)
    # Every listed promotion is running now, and an ended one exists for the maintenance to remove.
    promotions = client.get(f"/api/v1/promotions?near={NEAR}&limit=100", headers=member).get_json()["data"]
    now = clock.now()
    assert promotions
    for item in promotions:
        period = [DateTimeZ().deserialize(item["promotion"][key]) for key in ("starts_at", "ends_at")]
        assert period[0] <= now < period[1]
    assert db.businesses.count_documents({"promotions.ends_at": {"$lte": now}}) > 0
    assert maintenance.expire(db=db, config=client.application.config)["promotions_removed"] > 0
    assert db.businesses.count_documents({"promotions.ends_at": {"$lte": now}}) == 0


def test_help_requests_and_skills_are_browsable_and_actionable(city, db):
    _, client, headers = city
    member = headers(demo("user"))
    listed = client.get(f"/api/v1/help-requests?near={NEAR}&radius_m=20000", headers=member)
    assert listed.status_code == 200
    items = listed.get_json()["data"]
    assert items and all(item["status"] == "open" for item in items)
    distances = [item["distance_m"] for item in items]
    assert distances == sorted(distances)
    # An open request with offers: its owner accepts one through the API.
    request = db.help_requests.find_one({"status": "open", "offers_count": {"$gt": 0}})
    owner = db.users.find_one({"_id": request["user_id"]})
    offer_id = str(request["offers"][0]["_id"])
    accepted = client.post(f"/api/v1/help-requests/{request['_id']}/accept", json={"offer_id": offer_id},
                           headers=headers(owner["email"]))
    assert accepted.status_code == 200 and accepted.get_json()["data"]["status"] == "assigned"
    skills = client.get(f"/api/v1/skills?near={NEAR}&radius_m=20000", headers=member)
    assert skills.status_code == 200 and skills.get_json()["data"]
    skill = skills.get_json()["data"][0]
    assert client.get(f"/api/v1/skills/{skill['id']}", headers=member).status_code == 200


def test_reports_alerts_and_moderation_queue(city, db):
    _, client, headers = city
    member = headers(demo("user"))
    reports = client.get(f"/api/v1/reports?near={NEAR}&radius_m=20000&limit=100", headers=member)
    assert reports.status_code == 200
    assert {item["type"] for item in reports.get_json()["data"]} >= {"police", "traffic"}
    feed = client.get(f"/api/v1/alerts?lat={CENTRE[0]}&lng={CENTRE[1]}&radius_m=20000", headers=member)
    assert feed.status_code == 200
    assert {item["source"] for item in feed.get_json()["data"]} == {"official", "report"}
    # Votes on a seeded report move its exact counters.
    me = db.users.find_one({"email": demo("user")})["_id"]
    mine = db.report_votes.distinct("report_id", {"user_id": me})
    report = db.reports.find_one({"status": "active", "user_id": {"$ne": me}, "_id": {"$nin": mine}})
    before = report["upvotes"]
    voted = client.post(f"/api/v1/reports/{report['_id']}/vote", json={"value": "up"}, headers=member)
    assert voted.status_code == 200 and voted.get_json()["data"]["upvotes"] == before + 1
    # Pending speed cameras wait for the moderator.
    pending = client.get("/api/v1/reports?status=pending", headers=headers(demo("moderator")))
    assert pending.status_code == 200
    assert {item["type"] for item in pending.get_json()["data"]} <= {"speed_camera"}


def test_rider_sees_the_live_party_and_its_history(city, db):
    _, client, headers = city
    rider = headers(demo("rider"))
    rider_id = db.users.find_one({"email": demo("rider")})["_id"]
    party = db.parties.find_one({"leader_id": rider_id, "is_active": True})
    body = client.get(f"/api/v1/parties/{party['_id']}", headers=rider)
    assert body.status_code == 200
    members = body.get_json()["data"]["members"]
    assert len(members) >= 2 and all(member["last_location"] for member in members)
    history = client.get(f"/api/v1/parties/{party['_id']}/history", headers=rider)
    assert history.status_code == 200 and history.get_json()["data"]
    # Outsiders cannot see it.
    assert client.get(f"/api/v1/parties/{party['_id']}", headers=headers(demo("user"))).status_code == 404
    route = db.routes.find_one()
    owner = db.users.find_one({"_id": route["user_id"]})
    routes = client.get("/api/v1/routes", headers=headers(owner["email"]))
    assert routes.status_code == 200 and str(route["_id"]) in {item["id"] for item in routes.get_json()["data"]}


def test_seeded_trust_scores_follow_the_trust_rule(city, db):
    # A full rebuild from the sources changes nothing: the seed already applied the rule.
    result = maintenance.recompute_trust(db=db, dry_run=True)
    assert result["users_changed"] == 0
    assert db.users.count_documents({"trust_score": {"$ne": 50.0}}) > 0


def test_seeded_paid_and_unpaid_help_requests_work_through_the_api(city):
    _, client, headers = city
    user, helper, admin = headers(demo("user")), headers(demo("helper")), headers(demo("admin"))
    payments = client.get("/api/v1/payments", headers=user).get_json()["data"]
    by_status = sorted((item["status"], (item["last_error"] or {}).get("code", "")) for item in payments)
    assert by_status == [("requires_capture", ""), ("requires_payment_method", ""),
                         ("requires_payment_method", "card_declined"), ("succeeded", "")]
    # The demo helper is paid for those four, and pays their rescue team's pro plan.
    kinds = sorted(item["kind"] for item in client.get("/api/v1/payments", headers=helper).get_json()["data"])
    assert kinds == ["help_request"] * 4 + ["subscription"]
    mine = client.get("/api/v1/help-requests/mine", headers=user).get_json()["data"]
    shown = {item["payment"]["id"]: item for item in mine if item.get("payment")}
    assert len(shown) == 4
    for payment in payments:
        request = shown[payment["id"]]
        if payment["status"] == "requires_capture":  # secured: completing captures it
            done = client.post(f"/api/v1/help-requests/{request['id']}/complete", headers=user)
            assert done.get_json()["data"]["payment"]["status"] == "succeeded"
        elif payment["last_error"]:  # declined: another card works
            again = client.post(f"/api/v1/payments/{payment['id']}/confirm", headers=user,
                                json={"payment_method": "pm_card_visa"})
            assert again.get_json()["data"]["status"] == "requires_capture"
        elif payment["status"] == "succeeded":  # paid: staff can refund it
            refunded = client.post(f"/api/v1/payments/{payment['id']}/refund", headers=admin,
                                   json={"reason": "demo"})
            assert refunded.get_json()["data"]["status"] == "refunded"
