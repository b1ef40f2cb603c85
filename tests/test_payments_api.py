"""Payments as each actor sees them: lists, reading, confirming and refunding someone else's payment
(BOLA), fields no client may set, refunds by staff (full, partial, audited), logged-out and suspended
callers, the offline-only confirm route, idempotency keys and races."""
import pytest
from bson import ObjectId

from allynet.payments import provider as provider_module
from allynet.payments.offline import OfflineProvider
from tests.helpers import all_at_once, error_code
from tests.payments_helpers import accepted, confirm, get, people, post, priced_request  # noqa: F401


def captured(client, users):
    request, payment_id = accepted(client, users)
    assert confirm(client, users["requester"], payment_id).status_code == 200
    assert post(client, users["requester"], f"/help-requests/{request['id']}/complete").status_code == 200
    return request, payment_id


def refund(client, user, payment_id, body=None, headers=None):
    return post(client, user, f"/payments/{payment_id}/refund",
                body if body is not None else {"reason": "Helper did not come"}, headers)


# ---- who may read and act ------------------------------------------------------------------------

def test_a_stranger_gets_404_for_anothers_payment_and_changes_nothing(client, people):
    users, _ = people
    _, payment_id = accepted(client, users)
    stranger = users["stranger"]
    for response in (get(client, stranger, f"/payments/{payment_id}"), confirm(client, stranger, payment_id),
                     refund(client, stranger, payment_id)):
        assert response.status_code == 404 and error_code(response) == "not_found"
    assert get(client, stranger, "/payments").get_json()["data"] == []
    payment = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert payment["status"] == "requires_payment_method" and len(payment["history"]) == 1


def test_the_payee_reads_but_cannot_confirm_or_refund(client, people):
    users, _ = people
    _, payment_id = accepted(client, users)
    helper = users["helper"]
    seen = get(client, helper, f"/payments/{payment_id}").get_json()["data"]
    assert seen["payee_id"] == helper.id and "client_secret" not in seen
    response = confirm(client, helper, payment_id)
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert [item["id"] for item in get(client, helper, "/payments").get_json()["data"]] == [payment_id]
    assert get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]["status"] == \
        "requires_payment_method"


def test_staff_read_any_payment_but_never_confirm_it(client, people, moderator, admin):
    users, _ = people
    _, payment_id = accepted(client, users)
    for staff in (moderator, admin):
        seen = get(client, staff, f"/payments/{payment_id}")
        assert seen.status_code == 200 and "client_secret" not in seen.get_json()["data"]
        assert confirm(client, staff, payment_id).status_code == 403


def test_the_payer_and_payee_cannot_refund(client, people):
    users, _ = people
    _, payment_id = captured(client, users)
    for user in (users["requester"], users["helper"]):
        response = refund(client, user, payment_id)
        assert response.status_code == 403 and error_code(response) == "forbidden"
    assert get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]["status"] == "succeeded"


@pytest.mark.parametrize("field, value", [("amount", 1), ("fee_amount", 0), ("status", "succeeded"),
                                          ("payee_id", "0" * 24), ("currency", "JPY")])
def test_no_client_sets_an_amount_fee_status_or_payee(client, people, field, value, db):
    users, _ = people
    request_id, offer_id = priced_request(client, users)
    accept = post(client, users["requester"], f"/help-requests/{request_id}/accept",
                  {"offer_id": offer_id, field: value})
    assert accept.status_code == 400 and field in accept.get_json()["error"]["details"]
    assert db.payments.count_documents({}) == 0
    _, payment_id = accepted(client, users)
    response = post(client, users["requester"], f"/payments/{payment_id}/confirm",
                    {"payment_method": "pm_card_visa", field: value})
    assert response.status_code == 400 and field in response.get_json()["error"]["details"]
    payment = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert (payment["status"], payment["amount"], payment["fee_amount"], payment["payee_id"]) == \
        ("requires_payment_method", 3550, 355, users["helper"].id)


@pytest.mark.parametrize("body", [{}, {"payment_method": "pm_card_mastercard"}, {"payment_method": 4242},
                                  {"payment_method": None}])
def test_bad_confirm_bodies_are_400_and_change_nothing(client, people, body):
    users, _ = people
    _, payment_id = accepted(client, users)
    response = post(client, users["requester"], f"/payments/{payment_id}/confirm", body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert len(get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]["history"]) == 1


def test_logged_out_callers_get_401(client, people):
    users, _ = people
    _, payment_id = accepted(client, users)
    for method, path, body in (("GET", "/payments", None), ("GET", f"/payments/{payment_id}", None),
                               ("POST", f"/payments/{payment_id}/confirm", {"payment_method": "pm_card_visa"}),
                               ("POST", f"/payments/{payment_id}/refund", {"reason": "x"}),
                               ("POST", "/payments/connect/onboarding", None)):
        response = client.open(f"/api/v1{path}", method=method, json=body)
        assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_a_suspended_payer_is_refused_like_everywhere_else(client, people, admin):
    users, _ = people
    _, payment_id = accepted(client, users)
    suspended = post(client, admin, f"/users/{users['requester'].id}/suspend", {"reason": "fraud"})
    assert suspended.status_code == 200
    for response in (get(client, users["requester"], f"/payments/{payment_id}"),
                     confirm(client, users["requester"], payment_id),
                     get(client, users["requester"], "/payments")):
        assert response.status_code == 401 and error_code(response) == "account_suspended"
    assert get(client, admin, f"/payments/{payment_id}").get_json()["data"]["status"] == "requires_payment_method"


def test_unknown_payment_ids_are_404(client, people):
    users, _ = people
    assert get(client, users["requester"], f"/payments/{ObjectId()}").status_code == 404
    assert client.get("/api/v1/payments/not-an-id", headers=users["requester"].headers).status_code == 404


def test_confirm_is_404_under_a_provider_whose_sdk_confirms(client, people, app):
    users, _ = people
    _, payment_id = accepted(client, users)

    class SdkConfirmed(OfflineProvider):
        name = "stripe"

    app.extensions[provider_module.EXTENSION_KEY] = SdkConfirmed(app.config)
    response = confirm(client, users["requester"], payment_id)
    assert response.status_code == 404 and error_code(response) == "not_found"


# ---- lists ---------------------------------------------------------------------------------------

def test_my_payments_page_newest_first_and_add_up(client, people, app, db):
    users, _ = people
    ids = [accepted(client, users)[1] for _ in range(3)]
    first = get(client, users["requester"], "/payments?limit=2").get_json()
    assert [item["id"] for item in first["data"]] == ids[::-1][:2]
    second = get(client, users["requester"], f"/payments?limit=2&cursor={first['meta']['next_cursor']}").get_json()
    assert [item["id"] for item in second["data"]] == ids[:1] and second["meta"]["next_cursor"] is None
    with app.app_context():
        provider = provider_module.get_provider()
        provider_total = sum(provider.retrieve_intent(record["provider_intent_id"])["amount"]
                             for record in db.payments.find())
    assert sum(item["amount"] for item in first["data"] + second["data"]) == provider_total
    assert get(client, users["requester"], "/payments?cursor=%%%").status_code == 400


# ---- refunds -------------------------------------------------------------------------------------

def test_staff_refund_in_part_then_the_rest_and_the_audit_log_keeps_why(client, people, admin, moderator, db):
    users, _ = people
    request, payment_id = captured(client, users)
    part = refund(client, moderator, payment_id, {"amount": 1000, "reason": "Came late"})
    assert part.status_code == 200
    assert (part.get_json()["data"]["status"], part.get_json()["data"]["refunded_amount"]) == \
        ("partially_refunded", 1000)
    too_much = refund(client, admin, payment_id, {"amount": 2551, "reason": "Oops"})
    assert too_much.status_code == 400 and "amount" in too_much.get_json()["error"]["details"]
    rest = refund(client, admin, payment_id, {"reason": "Did not come back"})
    data = rest.get_json()["data"]
    assert (data["status"], data["refunded_amount"]) == ("refunded", 3550)
    assert [made["amount"] for made in data["refunds"]] == [1000, 2550]
    assert [entry["status"] for entry in data["history"]][-2:] == ["partially_refunded", "refunded"]
    again = refund(client, admin, payment_id, {"reason": "Twice"})
    assert again.status_code == 409 and error_code(again) == "invalid_transition"
    entries = list(db.audit_log.find({"action": "payment.refund"}).sort("at", 1))
    assert [(entry["actor_id"], entry["reason"], entry["after"]["amount"]) for entry in entries] == [
        (moderator["_id"], "Came late", 1000), (admin["_id"], "Did not come back", 2550)]
    shown = get(client, users["requester"], f"/help-requests/{request['id']}").get_json()["data"]["payment"]
    assert (shown["status"], shown["refunded_amount"]) == ("refunded", 3550)


def test_an_uncaptured_payment_cannot_be_refunded(client, people, admin):
    users, _ = people
    _, payment_id = accepted(client, users)
    response = refund(client, admin, payment_id)
    assert response.status_code == 409 and error_code(response) == "invalid_transition"


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "x", "amount": 0}, {"reason": "x", "amount": 1.5},
                                  {"reason": "x", "amount": "100"}, {"reason": "x" * 501}])
def test_bad_refund_bodies_are_400(client, people, admin, body):
    users, _ = people
    _, payment_id = captured(client, users)
    response = refund(client, admin, payment_id, body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert get(client, admin, f"/payments/{payment_id}").get_json()["data"]["refunded_amount"] == 0


def test_a_refund_reported_again_by_the_provider_counts_once(client, people, admin, app, db):
    from allynet.payments import events

    users, _ = people
    _, payment_id = captured(client, users)
    refund(client, admin, payment_id, {"amount": 500, "reason": "Late"})
    record = db.payments.find_one({"_id": ObjectId(payment_id)})
    with app.test_request_context():
        provider = provider_module.get_provider()
        charge = provider.retrieve_charge(provider.retrieve_intent(record["provider_intent_id"])["latest_charge"])
        # a refund made in the provider's dashboard, then the charge.refunded event for both
        made = provider.refund(record["provider_intent_id"], idempotency_key="dashboard", amount=300)
        charge = provider.retrieve_charge(charge["id"])
        for event_id in ("evt_a", "evt_b"):
            events.handle(db=db, provider=provider, source="offline",
                          event={"id": event_id, "type": "charge.refunded", "data": {"object": charge}})
        events.handle(db=db, provider=provider, source="offline",
                      event={"id": "evt_c", "type": "refund.created", "data": {"object": made}})
    data = get(client, admin, f"/payments/{payment_id}").get_json()["data"]
    assert (data["status"], data["refunded_amount"]) == ("partially_refunded", 800)
    assert sorted(item["amount"] for item in data["refunds"]) == [300, 500]


# ---- idempotency and races -----------------------------------------------------------------------

def test_an_accept_retried_with_its_key_makes_one_payment(client, people, db):
    users, _ = people
    request_id, offer_id = priced_request(client, users)
    key = {"Idempotency-Key": "accept-1"}
    first = post(client, users["requester"], f"/help-requests/{request_id}/accept", {"offer_id": offer_id}, key)
    again = post(client, users["requester"], f"/help-requests/{request_id}/accept", {"offer_id": offer_id}, key)
    assert first.status_code == again.status_code == 200
    assert first.get_json()["data"] == again.get_json()["data"]
    assert db.payments.count_documents({}) == 1


def test_concurrent_accepts_with_one_key_make_one_payment(app, client, people, db):
    users, _ = people
    request_id, offer_id = priced_request(client, users)
    results = all_at_once([
        lambda: app.test_client().post(f"/api/v1/help-requests/{request_id}/accept", json={"offer_id": offer_id},
                                       headers={**users["requester"].headers, "Idempotency-Key": "tap"})
        for _ in range(6)])
    statuses = sorted(result.status_code for result in results)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}, statuses
    assert all(error_code(r) == "request_in_progress" for r in results if r.status_code == 409)
    assert db.payments.count_documents({}) == 1
    with app.app_context():
        assert db.offline_provider.count_documents({"obj.object": "payment_intent"}) == 1


def test_concurrent_accepts_of_two_offers_leave_one_live_payment(app, client, people, make_user, db):
    users, _ = people
    request_id, offer_a = priced_request(client, users)
    other = make_user()
    offer_b = post(client, other, f"/help-requests/{request_id}/offers",
                   {"message": "me too", "price": {"amount": 30, "currency": "EUR"}}).get_json()["data"]["id"]
    results = all_at_once([
        lambda offer=offer: app.test_client().post(f"/api/v1/help-requests/{request_id}/accept",
                                                   json={"offer_id": offer}, headers=users["requester"].headers)
        for offer in (offer_a, offer_b)])
    assert sorted(r.status_code for r in results) == [200, 409]
    live = [record for record in db.payments.find() if record["status"] != "canceled"]
    assert len(live) == 1
    winner = next(r for r in results if r.status_code == 200).get_json()["data"]
    assert winner["payment"]["id"] == str(live[0]["_id"])


def test_two_concurrent_captures_capture_once(app, client, people, db):
    from allynet.payments import service as payments_service

    users, _ = people
    _, payment_id = accepted(client, users)
    confirm(client, users["requester"], payment_id)

    def capture():
        with app.test_request_context():
            return payments_service.capture(db=db, payment_id=ObjectId(payment_id))["status"]

    assert all_at_once([capture, capture]) == ["succeeded", "succeeded"]
    payment = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert [entry["status"] for entry in payment["history"]].count("succeeded") == 1
    with app.app_context():
        intent = provider_module.get_provider().retrieve_intent(db.payments.find_one()["provider_intent_id"])
    assert intent["amount_received"] == 3550


def test_two_concurrent_completes_capture_once(app, client, people, db):
    users, _ = people
    request, payment_id = accepted(client, users)
    confirm(client, users["requester"], payment_id)
    results = all_at_once([lambda: app.test_client().post(f"/api/v1/help-requests/{request['id']}/complete",
                                                          headers=users["requester"].headers)
                           for _ in range(2)])
    assert sorted(r.status_code for r in results) == [200, 409]
    history = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]["history"]
    assert [entry["status"] for entry in history] == ["requires_payment_method", "requires_capture", "succeeded"]


def test_concurrent_refunds_never_refund_more_than_was_paid(app, client, people, admin, db):
    users, _ = people
    _, payment_id = captured(client, users)
    results = all_at_once([lambda n=n: app.test_client().post(
        f"/api/v1/payments/{payment_id}/refund", json={"amount": 2000, "reason": f"try {n}"},
        headers=admin.headers) for n in range(3)])
    assert sorted(r.status_code for r in results)[0] == 200
    data = get(client, admin, f"/payments/{payment_id}").get_json()["data"]
    assert data["refunded_amount"] == 2000 and data["status"] == "partially_refunded"
    with app.app_context():
        provider = provider_module.get_provider()
        charge = provider.retrieve_charge(provider.retrieve_intent(db.payments.find_one()["provider_intent_id"])
                                          ["latest_charge"])
    assert charge["amount_refunded"] == 2000


def test_a_confirm_retried_with_its_key_replays_the_first_answer(client, people):
    users, _ = people
    _, payment_id = accepted(client, users)
    key = {"Idempotency-Key": "confirm-1"}
    first = confirm(client, users["requester"], payment_id, "pm_card_chargeDeclined", key)
    again = confirm(client, users["requester"], payment_id, "pm_card_chargeDeclined", key)
    assert first.get_json() == again.get_json()
    assert len(get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]["history"]) == 2
    other_body = confirm(client, users["requester"], payment_id, "pm_card_visa", key)
    assert other_body.status_code == 422 and error_code(other_body) == "idempotency_key_reused"


def test_account_updated_events_decide_where_the_helper_is_paid(client, people, app, db):
    from allynet.payments import events

    users, _ = people
    post(client, users["helper"], "/payments/connect/onboarding")
    account_id = db.payment_accounts.find_one({"_id": users["helper"]["_id"]})["account_id"]
    with app.test_request_context():
        provider = provider_module.get_provider()
        events.handle(db=db, provider=provider, source="offline", event={
            "id": "evt_acct", "type": "account.updated",
            "data": {"object": {"id": account_id, "object": "account", "charges_enabled": False,
                                "payouts_enabled": False}}})
    request, _ = accepted(client, users)
    assert request["payment"]["payout"] == "connected_account"  # re-read from the provider: still onboarded
    assert db.payment_accounts.find_one({"_id": users["helper"]["_id"]})["onboarded"] is True
