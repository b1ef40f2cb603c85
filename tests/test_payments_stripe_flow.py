"""The payment flows end to end with PAYMENTS_PROVIDER=stripe: the real server, the official library,
and a local Stripe (tests/stripe_fake.py) in place of Stripe's API. The client's part (confirming
with Stripe's SDK) and Stripe's part (events to the webhook, signed with the library's own scheme)
are played by the test; everything the app sends Stripe is asserted."""
import json

import pytest
import stripe

from tests.helpers import error_code, events_named
from tests.payments_helpers import accepted, confirm, get, people, post  # noqa: F401 (fixture)
from tests.stripe_fake import WEBHOOK_SECRET, stripe_config, stripe_fake  # noqa: F401 (fixture)

WEBHOOK = "/api/v1/payments/webhooks/stripe"


@pytest.fixture
def app(app_factory, stripe_fake):  # noqa: F811
    return app_factory(**stripe_config(stripe_fake))


def deliver(client, event):
    """Stripe sends `event` to the webhook."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    response = client.post(WEBHOOK, data=payload, content_type="application/json",
                           headers={"Stripe-Signature": header})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def intent_of(db, payment_id):
    from bson import ObjectId

    return db.payments.find_one({"_id": ObjectId(payment_id)})["provider_intent_id"]


def only(fake, method, path):
    found = fake.requests_to(method, path)
    assert len(found) == 1, [(r.method, r.path) for r in fake.requests]
    return found[0]


def test_accept_secure_complete_on_stripe(client, db, people, stripe_fake):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    intent_id = intent_of(db, payment_id)

    created = only(stripe_fake, "POST", "/v1/payment_intents")
    assert (created.form["amount"], created.form["currency"], created.form["capture_method"]) == \
        ("3550", "eur", "manual")
    assert created.headers["idempotency-key"] == f"payment:{payment_id}:create"
    assert created.form["metadata[payment_id]"] == payment_id
    assert created.form["metadata[help_request_id]"] == request["id"]
    assert "transfer_data[destination]" not in created.form  # the helper has not onboarded
    assert request["payment"]["payout"] == "awaiting_onboarding" and request["payment"]["livemode"] is False
    mine = get(client, users["requester"], f"/payments/{payment_id}").get_json()["data"]
    assert mine["client_secret"] == stripe_fake.objects[intent_id]["client_secret"]
    # With Stripe the server does not confirm: the client does, through Stripe's SDK
    refused = confirm(client, users["requester"], payment_id)
    assert refused.status_code == 404

    stripe_fake.confirm(intent_id)
    authorized = stripe_fake.event("payment_intent.amount_capturable_updated", stripe_fake.objects[intent_id])
    assert deliver(client, authorized) == {"received": True, "duplicate": False, "handled": True}
    assert deliver(client, authorized)["duplicate"] is True
    secured = events_named(helper_socket, "help_request.payment_secured")
    assert [(e["payment_id"], e["amount"], e["payee_amount"]) for e in secured] == [(payment_id, 3550, 3195)]
    assert stripe_fake.requests_to("GET", rf"/v1/payment_intents/{intent_id}")  # re-read, not trusted

    completed = post(client, users["requester"], f"/help-requests/{request['id']}/complete")
    assert completed.status_code == 200 and completed.get_json()["data"]["payment"]["status"] == "succeeded"
    capture = only(stripe_fake, "POST", rf"/v1/payment_intents/{intent_id}/capture")
    assert capture.headers["idempotency-key"].startswith(f"payment:{payment_id}:capture:")
    # Stripe's own events about it, late and out of order, change nothing more
    deliver(client, stripe_fake.event("payment_intent.succeeded", stripe_fake.objects[intent_id]))
    deliver(client, authorized | {"id": "evt_late_copy"})
    payment = get(client, users["helper"], f"/payments/{payment_id}").get_json()["data"]
    assert [h["status"] for h in payment["history"]] == ["requires_payment_method", "requires_capture",
                                                         "succeeded"]
    assert (payment["amount"], payment["fee_amount"], payment["payee_amount"]) == (3550, 355, 3195)
    assert stripe_fake.objects[intent_id]["amount_received"] == payment["amount"]
    assert len(events_named(helper_socket, "help_request.payment_secured")) == 0


def test_an_onboarded_helper_is_paid_through_a_destination_charge(client, db, people, stripe_fake):
    users, _ = people
    link = post(client, users["helper"], "/payments/connect/onboarding")
    assert link.status_code == 200, link.get_json()
    account = only(stripe_fake, "POST", "/v1/accounts")
    account_id = [o for o in stripe_fake.objects.values() if o["object"] == "account"][0]["id"]
    assert account.form["type"] == "express" and account.headers["idempotency-key"] == f"connect:{users['helper'].id}"
    assert only(stripe_fake, "POST", "/v1/account_links").form["account"] == account_id
    assert link.get_json()["data"]["url"].startswith(f"https://connect.stripe.com/setup/e/{account_id}/")
    stripe_fake.complete_onboarding(account_id)
    deliver(client, stripe_fake.event("account.updated", stripe_fake.objects[account_id]))

    request, payment_id = accepted(client, users)

    created = only(stripe_fake, "POST", "/v1/payment_intents")
    assert created.form["transfer_data[destination]"] == account_id
    assert created.form["application_fee_amount"] == "355" and created.form["amount"] == "3550"
    assert "stripe-account" not in created.headers  # the platform's charge, paid out to the helper
    assert request["payment"]["payout"] == "connected_account"


def test_cancel_before_completion_cancels_the_intent(client, db, people, stripe_fake):
    users, _ = people
    request, payment_id = accepted(client, users)
    intent_id = intent_of(db, payment_id)
    stripe_fake.confirm(intent_id)

    cancelled = post(client, users["requester"], f"/help-requests/{request['id']}/cancel")

    assert cancelled.status_code == 200 and cancelled.get_json()["data"]["payment"]["status"] == "canceled"
    cancel = only(stripe_fake, "POST", rf"/v1/payment_intents/{intent_id}/cancel")
    assert cancel.headers["idempotency-key"].startswith(f"payment:{payment_id}:cancel:")
    assert stripe_fake.objects[intent_id]["status"] == "canceled"


def test_a_declined_card_leaves_the_request_unpaid_and_says_why(client, db, people, stripe_fake):
    users, helper_socket = people
    request, payment_id = accepted(client, users)
    intent_id = intent_of(db, payment_id)

    stripe_fake.confirm(intent_id, "pm_card_chargeDeclined")
    deliver(client, stripe_fake.event("payment_intent.payment_failed", stripe_fake.objects[intent_id]))

    shown = get(client, users["requester"], f"/help-requests/{request['id']}").get_json()["data"]["payment"]
    assert shown["status"] == "requires_payment_method" and shown["last_error"]["code"] == "card_declined"
    refused = post(client, users["requester"], f"/help-requests/{request['id']}/complete")
    assert refused.status_code == 409 and error_code(refused) == "payment_not_secured"
    assert stripe_fake.requests_to("POST", r"/v1/payment_intents/\w+/capture") == []
    assert events_named(helper_socket, "help_request.payment_secured") == []


def test_staff_refund_in_part_reaches_stripe_with_its_key(client, db, people, stripe_fake, admin):
    users, _ = people
    request, payment_id = accepted(client, users)
    intent_id = intent_of(db, payment_id)
    stripe_fake.confirm(intent_id)
    deliver(client, stripe_fake.event("payment_intent.amount_capturable_updated", stripe_fake.objects[intent_id]))
    assert post(client, users["requester"], f"/help-requests/{request['id']}/complete").status_code == 200

    refunded = post(client, admin, f"/payments/{payment_id}/refund", {"amount": 1000, "reason": "Late arrival"})

    assert refunded.status_code == 200, refunded.get_json()
    assert refunded.get_json()["data"]["status"] == "partially_refunded"
    sent = only(stripe_fake, "POST", "/v1/refunds")
    assert (sent.form["payment_intent"], sent.form["amount"]) == (intent_id, "1000")
    assert sent.headers["idempotency-key"].startswith(f"payment:{payment_id}:refund:")
    assert stripe_fake.refunded[intent_id] == 1000
    # Stripe then reports the same refund: counted once
    refund = [o for o in stripe_fake.objects.values() if o["object"] == "refund"][0]
    deliver(client, stripe_fake.event("refund.created", refund))
    assert get(client, admin, f"/payments/{payment_id}").get_json()["data"]["refunded_amount"] == 1000


def test_stripe_down_at_accept_is_a_clear_error(client, db, people, stripe_fake):
    users, _ = people
    stripe_fake.fail_next("POST", "/v1/payment_intents", 500, "api_error", "Something went wrong on Stripe's end")

    from tests.payments_helpers import priced_request

    request_id, offer_id = priced_request(client, users)
    response = post(client, users["requester"], f"/help-requests/{request_id}/accept", {"offer_id": offer_id})

    assert response.status_code == 502 and error_code(response) == "payment_provider_error"


def test_an_organizations_pro_plan_follows_stripes_invoice_events(client, stripe_fake, make_user):
    from tests.test_organizations_api import ORG

    owner = make_user()
    org_id = post(client, owner, "/organizations", ORG).get_json()["data"]["id"]

    started = post(client, owner, f"/organizations/{org_id}/subscription")

    assert started.status_code == 201, started.get_json()
    subscription = started.get_json()["data"]
    customer = only(stripe_fake, "POST", "/v1/customers")
    created = only(stripe_fake, "POST", "/v1/subscriptions")
    assert customer.form["metadata[organization_id]"] == org_id
    assert customer.headers["idempotency-key"] == f"organization:{org_id}:customer"
    assert created.form["items[0][price]"] == "price_allynet_org_pro"
    assert created.form["metadata[organization_id]"] == org_id and created.headers["idempotency-key"]
    stored = stripe_fake.objects[subscription["id"]]
    invoice_id = stored["latest_invoice"]
    first_intent = stripe_fake.objects[stripe_fake.objects[invoice_id]["payment_intent"]]
    assert subscription == {"id": stored["id"], "status": "incomplete", "organization_id": org_id,
                            "client_secret": first_intent["client_secret"]}

    def plan():
        data = get(client, owner, f"/organizations/{org_id}").get_json()["data"]
        return data["plan"], data["subscription_status"]

    paid = stripe_fake.pay_invoice(invoice_id)
    deliver(client, stripe_fake.event("invoice.paid", paid))
    assert plan() == ("pro", "active")
    payments = get(client, owner, f"/organizations/{org_id}/payments").get_json()["data"]
    assert [(p["kind"], p["amount"], p["currency"], p["status"]) for p in payments] == \
        [("subscription", 2900, "EUR", "succeeded")]

    period = paid["lines"]["data"][0]["period"]
    next_period = {"start": period["end"], "end": period["end"] + 30 * 86400}
    renewal = dict(paid, id="in_renewal", status="open", amount_paid=0, billing_reason="subscription_cycle",
                   period_end=period["end"], lines={"object": "list", "data": [
                       dict(paid["lines"]["data"][0], period=next_period)]})
    deliver(client, stripe_fake.event("invoice.payment_failed", renewal))
    assert plan() == ("pro", "past_due")

    deliver(client, stripe_fake.event("customer.subscription.deleted", dict(stored, status="canceled")))
    assert plan() == ("free", "canceled")
