"""The help-request payment end to end on the offline provider, through the API: accept a priced
offer -> confirm -> secured (the helper is told) -> complete -> captured; cancel; a declined card;
action required; Connect onboarding; and what the provider's events do to a payment."""
from allynet.payments import events
from allynet.payments.provider import ProviderError, get_provider

from tests.payments_helpers import HELP, accepted, confirm, get, people, post, priced_request  # noqa: F401
from tests.helpers import error_code, events_named


def test_accept_secure_complete_captures_with_the_fee_and_the_helpers_share(client, people, app):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    assert request["status"] == "assigned"
    assert request["payment"] == {"id": payment_id, "status": "requires_payment_method", "amount": 3550,
                                  "currency": "EUR", "fee_amount": 355, "payee_amount": 3195,
                                  "refunded_amount": 0, "last_error": None, "payout": "awaiting_onboarding",
                                  "livemode": False}
    payment = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert payment["client_secret"].startswith("pi_offline_") and payment["livemode"] is False
    assert payment["kind"] == "help_request" and payment["help_request_id"] == request["id"]
    assert payment["payer_id"] == users["requester"].id and payment["payee_id"] == users["helper"].id
    assert events_named(helper_socket, "help_request.payment_secured") == []

    confirmed = confirm(client, users["requester"], payment_id)
    assert confirmed.status_code == 200 and confirmed.get_json()["data"]["status"] == "requires_capture"
    assert events_named(helper_socket, "help_request.payment_secured") == [{
        "help_request_id": request["id"], "payment_id": payment_id, "amount": 3550, "currency": "EUR",
        "payee_amount": 3195, "payout": "awaiting_onboarding"}]
    seen_by_helper = get(client, users["helper"], f"/help-requests/{request['id']}").get_json()["data"]
    assert seen_by_helper["payment"]["status"] == "requires_capture"

    completed = post(client, users["requester"], f"/help-requests/{request['id']}/complete")
    assert completed.status_code == 200
    assert completed.get_json()["data"]["status"] == "completed"
    assert completed.get_json()["data"]["payment"]["status"] == "succeeded"
    payment = get(client, users["helper"], f"/payments/{payment_id}").get_json()["data"]
    assert "client_secret" not in payment
    assert (payment["status"], payment["amount"], payment["fee_amount"], payment["payee_amount"]) == \
        ("succeeded", 3550, 355, 3195)
    assert [entry["status"] for entry in payment["history"]] == ["requires_payment_method", "requires_capture",
                                                                 "succeeded"]
    with app.app_context():
        intent = get_provider().retrieve_intent(
            app.extensions["allynet_db"].payments.find_one()["provider_intent_id"])
    assert (intent["status"], intent["amount_received"], intent["capture_method"]) == ("succeeded", 3550, "manual")


def test_the_amount_follows_the_currencys_minor_unit(client, people):
    users, _ = people
    _, payment_id = accepted(client, users, price=1500, currency="JPY", budget={"amount": 2000, "currency": "JPY"})
    payment = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert (payment["amount"], payment["currency"], payment["fee_amount"]) == (1500, "JPY", 150)


def test_accept_then_cancel_cancels_the_payment(client, people):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    assert confirm(client, users["requester"], payment_id).status_code == 200
    cancelled = post(client, users["requester"], f"/help-requests/{request['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["data"]["payment"]["status"] == "canceled"
    payment = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert payment["status"] == "canceled" and payment["history"][-1]["cause"] == "help_request_cancelled"
    # nothing to confirm any more
    again = confirm(client, users["requester"], payment_id)
    assert again.status_code == 409 and error_code(again) == "invalid_transition"


def test_a_declined_card_leaves_the_request_unpaid_and_says_why(client, people):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    declined = confirm(client, users["requester"], payment_id, "pm_card_chargeDeclined")
    assert declined.status_code == 200
    assert declined.get_json()["data"]["status"] == "requires_payment_method"
    assert declined.get_json()["data"]["last_error"]["code"] == "card_declined"
    shown = get(client, users["requester"], f"/help-requests/{request['id']}").get_json()["data"]["payment"]
    assert shown["status"] == "requires_payment_method" and shown["last_error"]["code"] == "card_declined"
    assert events_named(helper_socket, "help_request.payment_secured") == []
    refused = post(client, users["requester"], f"/help-requests/{request['id']}/complete")
    assert refused.status_code == 409 and error_code(refused) == "payment_not_secured"
    assert get(client, users["requester"], f"/help-requests/{request['id']}").get_json()["data"]["status"] == \
        "assigned"
    # another card then works, and the error goes
    assert confirm(client, users["requester"], payment_id).get_json()["data"]["last_error"] is None
    shown = get(client, users["helper"], f"/help-requests/{request['id']}").get_json()["data"]["payment"]
    assert shown["status"] == "requires_capture" and shown["last_error"] is None
    assert len(events_named(helper_socket, "help_request.payment_secured")) == 1


def test_authentication_required_asks_for_action_then_passes(client, people):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    first = confirm(client, users["requester"], payment_id, "pm_card_authenticationRequired")
    assert first.get_json()["data"]["status"] == "requires_action"
    assert events_named(helper_socket, "help_request.payment_secured") == []
    second = confirm(client, users["requester"], payment_id, "pm_card_authenticationRequired")
    assert second.get_json()["data"]["status"] == "requires_capture"
    assert len(events_named(helper_socket, "help_request.payment_secured")) == 1
    history = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]["history"]
    assert [entry["status"] for entry in history] == ["requires_payment_method", "requires_action",
                                                      "requires_capture"]


def test_an_offer_above_the_budget_cannot_be_accepted_and_nothing_changes(client, people, db):
    users, _ = people
    request_id, offer_id = priced_request(client, users, price=40.01)
    refused = post(client, users["requester"], f"/help-requests/{request_id}/accept", {"offer_id": offer_id})
    assert refused.status_code == 409 and error_code(refused) == "price_above_budget"
    other_currency_id, other_offer = priced_request(client, users, price=10, currency="GBP")
    refused = post(client, users["requester"], f"/help-requests/{other_currency_id}/accept",
                   {"offer_id": other_offer})
    assert refused.status_code == 409 and error_code(refused) == "price_above_budget"
    assert get(client, users["requester"], f"/help-requests/{request_id}").get_json()["data"]["status"] == "open"
    assert db.payments.count_documents({}) == 0


def test_an_offer_without_a_price_makes_no_payment(client, people, db):
    users, _ = people
    request_id = post(client, users["requester"], "/help-requests", HELP).get_json()["data"]["id"]
    offer_id = post(client, users["helper"], f"/help-requests/{request_id}/offers",
                    {"message": "free"}).get_json()["data"]["id"]
    data = post(client, users["requester"], f"/help-requests/{request_id}/accept",
                {"offer_id": offer_id}).get_json()["data"]
    assert data["payment"] is None
    assert post(client, users["requester"], f"/help-requests/{request_id}/complete").status_code == 200
    assert db.payments.count_documents({}) == 0


def test_the_payment_summary_is_for_the_two_parties_only(client, people, make_user):
    users, _ = people
    request, _ = accepted(client, users)
    assert "payment" not in get(client, users["stranger"], f"/help-requests/{request['id']}").get_json()["data"]
    mine = get(client, users["helper"], "/help-requests/mine?role=helper").get_json()["data"]
    assert mine[0]["payment"]["amount"] == 3550


def test_an_onboarded_helper_is_paid_through_their_connected_account(client, people, app, db):
    users, helper_socket = people
    link = post(client, users["helper"], "/payments/connect/onboarding")
    assert link.status_code == 200
    assert link.get_json()["data"]["url"].startswith("https://") and link.get_json()["data"]["expires_at"]
    again = post(client, users["helper"], "/payments/connect/onboarding")
    assert db.payment_accounts.count_documents({}) == 1 and again.status_code == 200
    request, payment_id = accepted(client, users)
    assert request["payment"]["payout"] == "connected_account"
    account_id = db.payment_accounts.find_one({"_id": users["helper"]["_id"]})["account_id"]
    with app.app_context():
        intent = get_provider().retrieve_intent(db.payments.find_one()["provider_intent_id"])
    assert intent["transfer_data"] == {"destination": account_id} and intent["application_fee_amount"] == 355


def test_intent_events_move_a_payment_forward_only_and_once(client, people, app, db):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    intent_id = db.payments.find_one()["provider_intent_id"]
    assert confirm(client, users["requester"], payment_id).status_code == 200
    assert post(client, users["requester"], f"/help-requests/{request['id']}/complete").status_code == 200
    with app.test_request_context():
        provider = get_provider()
        late = {"id": "evt_late", "type": "payment_intent.amount_capturable_updated",
                "data": {"object": {"id": intent_id, "object": "payment_intent", "status": "requires_capture"}}}
        # an event from before the capture, arriving after it: the intent is re-read, nothing moves back
        assert events.handle(db=db, provider=provider, event=late, source="offline")["handled"] is True
        assert events.handle(db=db, provider=provider, event=late, source="offline")["duplicate"] is True
    payment = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert payment["status"] == "succeeded" and len(payment["history"]) == 3
    assert len(events_named(helper_socket, "help_request.payment_secured")) == 1  # from the confirm only


def test_an_event_brings_a_payment_the_server_missed_up_to_date(client, people, app, db):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    intent_id = db.payments.find_one()["provider_intent_id"]
    with app.test_request_context():
        provider = get_provider()
        # the client confirmed through the provider directly (as with Stripe's SDK)
        provider.confirm_intent(intent_id, payment_method="pm_card_visa", idempotency_key="sdk-confirm")
        event = {"id": "evt_1", "type": "payment_intent.amount_capturable_updated",
                 "data": {"object": {"id": intent_id, "object": "payment_intent"}}}
        events.handle(db=db, provider=provider, event=event, source="offline")
    shown = get(client, users["requester"], f"/help-requests/{request['id']}").get_json()["data"]["payment"]
    assert shown["status"] == "requires_capture"
    assert len(events_named(helper_socket, "help_request.payment_secured")) == 1


def provider_down(app, monkeypatch, method):
    """The provider's `method` fails as when the provider cannot be reached: (provider, the real method)."""
    with app.app_context():
        provider = get_provider()
    real = getattr(provider, method)

    def unavailable(*args, **kwargs):
        raise ProviderError("timed out", code="api_connection_error", status=502)

    monkeypatch.setattr(provider, method, unavailable)
    return provider, real


def test_a_failed_capture_is_shown_and_completing_again_retries_it(client, people, app, monkeypatch):
    users, _ = people
    request, payment_id = accepted(client, users)
    confirm(client, users["requester"], payment_id)
    provider_down(app, monkeypatch, "capture_intent")
    done = post(client, users["requester"], f"/help-requests/{request['id']}/complete")
    assert done.status_code == 200 and done.get_json()["data"]["status"] == "completed"
    shown = done.get_json()["data"]["payment"]
    assert (shown["status"], shown["last_error"]["code"]) == ("requires_capture", "capture_failed")
    monkeypatch.undo()
    again = post(client, users["requester"], f"/help-requests/{request['id']}/complete")
    assert again.status_code == 200
    shown = again.get_json()["data"]["payment"]
    assert (shown["status"], shown["last_error"]) == ("succeeded", None)
    # nothing left to retry: completing a third time is the usual refusal
    third = post(client, users["requester"], f"/help-requests/{request['id']}/complete")
    assert third.status_code == 409 and error_code(third) == "invalid_transition"


def test_a_failed_cancel_is_shown_until_the_providers_event_cancels_it(client, people, app, db, monkeypatch):
    users, _ = people
    request, payment_id = accepted(client, users)
    confirm(client, users["requester"], payment_id)
    provider, real_cancel = provider_down(app, monkeypatch, "cancel_intent")
    done = post(client, users["requester"], f"/help-requests/{request['id']}/cancel")
    assert done.status_code == 200 and done.get_json()["data"]["status"] == "cancelled"
    shown = done.get_json()["data"]["payment"]
    assert (shown["status"], shown["last_error"]["code"]) == ("requires_capture", "cancel_failed")
    intent_id = db.payments.find_one()["provider_intent_id"]
    with app.test_request_context():
        real_cancel(intent_id, idempotency_key="lapsed")  # the authorization lapses at the provider
        events.handle(db=db, provider=provider, source="offline", event={
            "id": "evt_lapse", "type": "payment_intent.canceled",
            "data": {"object": {"id": intent_id, "object": "payment_intent"}}})
    shown = get(client, users["helper"], f"/help-requests/{request['id']}").get_json()["data"]["payment"]
    assert (shown["status"], shown["last_error"]) == ("canceled", None)
