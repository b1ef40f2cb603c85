"""Promoted offers through the real server: the business's owner pays to feature a promotion, confirms
the payment, and the promotion ranks first near a point for its duration; everyone else is refused."""
from datetime import timedelta

import pytest
import requests
from bson import ObjectId

from allynet.payments import provider as payments_provider
from tests.helpers import all_at_once
from tests.scaleout_support import quiet_werkzeug, served  # noqa: F401 (fixtures)

API = "/api/v1"
PARIS = (48.8566, 2.3522)


@pytest.fixture
def app(app_factory):
    return app_factory(RATELIMIT_ENABLED=False)


def call(server, method, path, user=None, body=None, **params):
    headers = {"Authorization": f"Bearer {user['access_token']}"} if user else {}
    response = requests.request(method, f"{server.url}{API}{path}", json=body, headers=headers, params=params,
                                timeout=10)
    return response.status_code, response.json()


def at(metres_north):
    return {"lat": PARIS[0] + metres_north / 111_320, "lng": PARIS[1]}


def business_with_promotion(server, owner, name, metres, clock, hours=5):
    code, body = call(server, "POST", "/businesses", owner, {"name": name, "category": "cafe",
                                                             "location": at(metres)})
    assert code == 201, body
    business_id = body["data"]["id"]
    promotion = {"title": f"{name} deal", "radius_m": 3000,
                 "starts_at": (clock.current - timedelta(hours=1)).isoformat() + "Z",
                 "ends_at": (clock.current + timedelta(hours=hours)).isoformat() + "Z"}
    code, body = call(server, "POST", f"/businesses/{business_id}/promotions", owner, promotion)
    assert code == 201, body
    return business_id, body["data"]["id"]


def near(server, user):
    code, body = call(server, "GET", "/promotions", user, near=f"{PARIS[0]},{PARIS[1]}")
    assert code == 200, body
    return [(item["business_name"], item["featured"]) for item in body["data"]]


def test_a_paid_promotion_ranks_first_for_its_duration(served, make_user, db, clock):
    owner, rival, rider = make_user(), make_user(), make_user()
    staff = make_user(role="admin")
    near_id = business_with_promotion(served, rival, "Near", 100, clock)
    business_id, promotion_id = business_with_promotion(served, owner, "Far", 1500, clock)
    assert near(served, rider) == [("Near", False), ("Far", False)]
    path = f"/businesses/{business_id}/promotions/{promotion_id}/feature"

    # Only the business's owner pays to feature it.
    for user, status in ((None, 401), (rider, 403), (rival, 403), (staff, 403)):
        assert call(served, "POST", path, user)[0] == status
    assert call(served, "POST", f"/businesses/{near_id[0]}/promotions/{promotion_id}/feature", rival)[0] == 404
    code, payment = call(served, "POST", path, owner)
    assert code == 201, payment
    payment = payment["data"]
    assert (payment["kind"], payment["amount"], payment["currency"], payment["status"]) == (
        "promotion", 1500, "EUR", "requires_payment_method")
    assert payment["business_id"] == business_id and payment["promotion_id"] == promotion_id
    assert (payment["fee_amount"], payment["payee_amount"], payment["payee_id"]) == (1500, 0, None)
    assert payment["client_secret"] and payment["livemode"] is False
    # Asked again before it is paid: the same payment.
    assert call(served, "POST", path, owner)[1]["data"]["id"] == payment["id"]

    # A declined card features nothing; the owner pays with another one.
    confirm = f"/payments/{payment['id']}/confirm"
    code, body = call(served, "POST", confirm, owner, {"payment_method": "pm_card_chargeDeclined"})
    assert code == 200 and body["data"]["status"] == "requires_payment_method"
    assert near(served, rider) == [("Near", False), ("Far", False)]
    assert call(served, "POST", confirm, rider, {"payment_method": "pm_card_visa"})[0] == 404
    code, body = call(served, "POST", confirm, owner, {"payment_method": "pm_card_visa"})
    assert code == 200 and body["data"]["status"] == "succeeded", body
    assert near(served, rider) == [("Far", True), ("Near", False)]
    code, body = call(served, "GET", f"/businesses/{business_id}", owner)
    assert body["data"]["promotions"][0]["featured_until"] == (clock.current + timedelta(hours=5)).isoformat(
        timespec="milliseconds") + "Z"
    code, body = call(served, "POST", path, owner)
    assert code == 409 and body["error"]["code"] == "conflict"
    # Extending the promotion afterwards does not extend what was paid for.
    assert call(served, "PATCH", f"/businesses/{business_id}/promotions/{promotion_id}", owner,
                {"ends_at": (clock.current + timedelta(hours=48)).isoformat() + "Z"})[0] == 200
    clock.advance(hours=6)
    assert near(served, rider) == [("Far", False)]  # Near's promotion ended, Far's featuring too

    # The payment is the owner's, with its history; a stranger does not see it.
    code, body = call(served, "GET", f"/payments/{payment['id']}", owner)
    assert [h["status"] for h in body["data"]["history"]] == [
        "requires_payment_method", "requires_payment_method", "succeeded"]
    assert call(served, "GET", f"/payments/{payment['id']}", rider)[0] == 404


def test_a_full_refund_ends_the_featuring_and_an_ended_promotion_cannot_be_featured(served, app, make_user, db,
                                                                                     clock):
    owner, rider, staff = make_user(), make_user(), make_user(role="admin")
    business_id, promotion_id = business_with_promotion(served, owner, "Cafe", 200, clock, hours=2)
    path = f"/businesses/{business_id}/promotions/{promotion_id}/feature"
    payment_id = call(served, "POST", path, owner)[1]["data"]["id"]
    assert call(served, "POST", f"/payments/{payment_id}/confirm", owner, {"payment_method": "pm_card_visa"})[0] == 200
    assert near(served, rider) == [("Cafe", True)]
    code, body = call(served, "POST", f"/payments/{payment_id}/refund", staff, {"reason": "promotion withdrawn"})
    assert code == 200 and body["data"]["status"] == "refunded", body
    assert near(served, rider) == [("Cafe", False)]
    code, body = call(served, "POST", path, owner)
    assert code == 409 and body["error"]["details"]["payment_id"] == payment_id

    _, other_promotion = business_with_promotion(served, owner, "Cafe two", 200, clock, hours=1)
    clock.advance(hours=2)
    code, body = call(served, "POST", f"/businesses/{business_id}/promotions/{other_promotion}/feature", owner)
    assert code in (404, 409)  # ended (409), or already removed by the maintenance task (404)
    assert db.payments.count_documents({"promotion_id": ObjectId(other_promotion)}) == 0


def test_two_concurrent_requests_make_one_payment_and_one_intent(served, app, make_user, db, clock):
    owner = make_user()
    business_id, promotion_id = business_with_promotion(served, owner, "Cafe", 200, clock)
    path = f"/businesses/{business_id}/promotions/{promotion_id}/feature"
    results = all_at_once([lambda: call(served, "POST", path, owner)] * 2)
    assert [code for code, _ in results] == [201, 201]
    assert results[0][1]["data"]["id"] == results[1][1]["data"]["id"]
    records = list(db.payments.find({"kind": "promotion"}))
    assert len(records) == 1
    with app.app_context():
        intent = payments_provider.get_provider(app).retrieve_intent(records[0]["provider_intent_id"])
    assert intent["amount"] == 1500 and intent["capture_method"] == "automatic"
