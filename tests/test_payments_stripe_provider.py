"""The Stripe provider against a local Stripe (tests/stripe_fake.py): the requests it sends and what it
makes of Stripe's answers. The official library does the HTTP; nothing leaves the machine."""
import pytest

from allynet.payments import provider as payments_provider
from allynet.payments.provider import ProviderError
from allynet.payments.stripe_provider import API_VERSION
from tests.stripe_fake import stripe_config, stripe_fake  # noqa: F401 (fixture)


@pytest.fixture
def stripe(app_factory, stripe_fake):  # noqa: F811
    """The app's StripeProvider, talking to the fake."""
    return payments_provider.get_provider(app_factory(**stripe_config(stripe_fake)))


def only(fake, method, path):
    found = fake.requests_to(method, path)
    assert len(found) == 1, [(r.method, r.path) for r in fake.requests]
    return found[0]


def authorized(fake, stripe, amount=2500, **kwargs):
    """A manual-capture intent the client has confirmed with a card that works."""
    intent = stripe.create_intent(amount=amount, currency="EUR", capture_method="manual",
                                  metadata={"payment_id": "p1"}, idempotency_key="payment:p1:intent", **kwargs)
    return fake.confirm(intent["id"])


def test_manual_capture_intent_sends_amount_currency_and_our_idempotency_key(stripe, stripe_fake):
    intent = stripe.create_intent(amount=1550, currency="EUR", capture_method="manual",
                                  metadata={"payment_id": "64b0", "help_request_id": "64a9"},
                                  idempotency_key="payment:64b0:intent")

    sent = only(stripe_fake, "POST", "/v1/payment_intents")
    assert sent.form["amount"] == "1550" and sent.form["currency"] == "eur"
    assert sent.form["capture_method"] == "manual"
    assert sent.params["metadata"] == {"payment_id": "64b0", "help_request_id": "64a9"}
    assert sent.headers["idempotency-key"] == "payment:64b0:intent"
    assert sent.headers["stripe-version"] == API_VERSION
    assert "stripe-account" not in sent.headers  # the platform's own charge
    assert "transfer_data[destination]" not in sent.form and "application_fee_amount" not in sent.form
    # The interface's plain dict in Stripe's shape
    assert type(intent) is dict and type(intent["metadata"]) is dict
    assert intent["status"] == "requires_payment_method" and intent["amount"] == 1550
    assert intent["currency"] == "eur" and intent["client_secret"].startswith(intent["id"] + "_secret_")
    assert intent["livemode"] is False and stripe.livemode is False


def test_destination_charge_names_the_connected_account_and_the_fee(stripe, stripe_fake):
    account = stripe.create_connected_account(email="helper@example.com", metadata={"user_id": "u1"},
                                              idempotency_key="connect:u1")
    intent = stripe.create_intent(amount=1000, currency="JPY", capture_method="manual", metadata={},
                                  idempotency_key="payment:p2:intent", destination=account["id"],
                                  application_fee_amount=100)

    sent = only(stripe_fake, "POST", "/v1/payment_intents")
    assert sent.form["transfer_data[destination]"] == account["id"]
    assert sent.form["application_fee_amount"] == "100" and sent.form["amount"] == "1000"
    assert sent.form["currency"] == "jpy"
    assert intent["transfer_data"] == {"destination": account["id"]} and intent["application_fee_amount"] == 100
    created = only(stripe_fake, "POST", "/v1/accounts")
    assert created.form["type"] == "express" and created.form["capabilities[transfers][requested]"] == "true"
    assert created.headers["idempotency-key"] == "connect:u1"


def test_a_retried_create_with_one_key_is_one_intent(stripe, stripe_fake):
    first = stripe.create_intent(amount=700, currency="EUR", capture_method="manual", metadata={},
                                 idempotency_key="payment:p3:intent")
    again = stripe.create_intent(amount=700, currency="EUR", capture_method="manual", metadata={},
                                 idempotency_key="payment:p3:intent")

    assert again["id"] == first["id"]
    assert len([o for o in stripe_fake.objects.values() if o["object"] == "payment_intent"]) == 1


def test_one_key_with_other_parameters_is_refused(stripe):
    stripe.create_intent(amount=700, currency="EUR", capture_method="manual", metadata={},
                         idempotency_key="payment:p4:intent")

    with pytest.raises(ProviderError) as info:
        stripe.create_intent(amount=900, currency="EUR", capture_method="manual", metadata={},
                             idempotency_key="payment:p4:intent")
    assert info.value.status == 400


def test_capture_in_part_and_cancel_carry_their_keys(stripe, stripe_fake):
    intent = authorized(stripe_fake, stripe)
    captured = stripe.capture_intent(intent["id"], idempotency_key="payment:p1:capture", amount_to_capture=2000)
    other = stripe.create_intent(amount=300, currency="EUR", capture_method="manual", metadata={},
                                 idempotency_key="payment:p5:intent")
    canceled = stripe.cancel_intent(other["id"], idempotency_key="payment:p5:cancel")

    capture = only(stripe_fake, "POST", rf"/v1/payment_intents/{intent['id']}/capture")
    assert capture.form == {"amount_to_capture": "2000"} and capture.headers["idempotency-key"] == "payment:p1:capture"
    assert captured["status"] == "succeeded" and captured["amount_received"] == 2000
    cancel = only(stripe_fake, "POST", rf"/v1/payment_intents/{other['id']}/cancel")
    assert cancel.headers["idempotency-key"] == "payment:p5:cancel"
    assert canceled["status"] == "canceled"


def test_retrieve_reads_stripe_state_now(stripe, stripe_fake):
    intent = stripe.create_intent(amount=1200, currency="EUR", capture_method="manual", metadata={},
                                  idempotency_key="payment:p6:intent")
    stripe_fake.confirm(intent["id"])

    assert stripe.retrieve_intent(intent["id"])["status"] == "requires_capture"
    assert stripe_fake.requests_to("GET", rf"/v1/payment_intents/{intent['id']}")


def test_refund_in_part_then_the_rest(stripe, stripe_fake):
    intent = authorized(stripe_fake, stripe)
    stripe.capture_intent(intent["id"], idempotency_key="payment:p1:capture")

    part = stripe.refund(intent["id"], idempotency_key="payment:p1:refund:1", amount=500,
                         metadata={"reason": "late"})
    rest = stripe.refund(intent["id"], idempotency_key="payment:p1:refund:2")

    first, second = stripe_fake.requests_to("POST", "/v1/refunds")
    assert first.form["payment_intent"] == intent["id"] and first.form["amount"] == "500"
    assert first.form["metadata[reason]"] == "late" and first.headers["idempotency-key"] == "payment:p1:refund:1"
    assert "amount" not in second.form and second.headers["idempotency-key"] == "payment:p1:refund:2"
    assert "reverse_transfer" not in first.form  # no transfer to reverse on the platform's own charge
    assert (part["object"], part["amount"], rest["amount"]) == ("refund", 500, 2000)


def test_refunding_a_destination_charge_reverses_the_transfer_and_the_fee(stripe, stripe_fake):
    account = stripe.create_connected_account(email="h@example.com", metadata={}, idempotency_key="connect:u2")
    intent = authorized(stripe_fake, stripe, destination=account["id"], application_fee_amount=250)
    stripe.capture_intent(intent["id"], idempotency_key="payment:p1:capture")

    stripe.refund(intent["id"], idempotency_key="payment:p1:refund:1")

    sent = only(stripe_fake, "POST", "/v1/refunds")
    assert sent.form["reverse_transfer"] == "true" and sent.form["refund_application_fee"] == "true"


def test_subscription_starts_incomplete_with_its_first_invoice_intent_expanded(stripe, stripe_fake):
    customer = stripe.create_customer(email="org@example.com", metadata={"organization_id": "o1"},
                                      idempotency_key="org:o1:customer")
    sub = stripe.create_subscription(customer_id=customer["id"], price="price_allynet_org_pro",
                                     metadata={"organization_id": "o1"}, idempotency_key="org:o1:subscription")

    sent = only(stripe_fake, "POST", "/v1/subscriptions")
    assert sent.form["customer"] == customer["id"] and sent.form["items[0][price]"] == "price_allynet_org_pro"
    assert sent.form["payment_behavior"] == "default_incomplete"
    assert sent.params["expand"] == ["latest_invoice.payment_intent"]
    assert sent.form["metadata[organization_id]"] == "o1"
    assert sent.headers["idempotency-key"] == "org:o1:subscription"
    assert only(stripe_fake, "POST", "/v1/customers").headers["idempotency-key"] == "org:o1:customer"
    assert sub["status"] == "incomplete" and sub["metadata"] == {"organization_id": "o1"}
    assert sub["latest_invoice"]["payment_intent"]["client_secret"]
    assert sub["items"]["data"][0]["price"]["id"] == "price_allynet_org_pro"
    read = stripe.retrieve_subscription(sub["id"])
    assert read["latest_invoice"]["payment_intent"]["id"] == sub["latest_invoice"]["payment_intent"]["id"]
    assert stripe.cancel_subscription(sub["id"], idempotency_key="org:o1:cancel")["status"] == "canceled"
    assert stripe_fake.requests_to("DELETE", rf"/v1/subscriptions/{sub['id']}")


def test_onboarding_link_for_the_connected_account(stripe, stripe_fake):
    account = stripe.create_connected_account(email="h@example.com", metadata={}, idempotency_key="connect:u3")
    link = stripe.create_account_link(account["id"], refresh_url="https://app.example/refresh",
                                      return_url="https://app.example/return")

    sent = only(stripe_fake, "POST", "/v1/account_links")
    assert sent.form == {"account": account["id"], "refresh_url": "https://app.example/refresh",
                         "return_url": "https://app.example/return", "type": "account_onboarding"}
    assert link["url"].startswith("https://") and isinstance(link["expires_at"], int)
    assert stripe.retrieve_account(account["id"])["charges_enabled"] is False
    stripe_fake.complete_onboarding(account["id"])
    assert stripe.retrieve_account(account["id"])["payouts_enabled"] is True


def test_confirming_on_the_server_is_not_a_stripe_thing(stripe, stripe_fake):
    with pytest.raises(ProviderError) as info:
        stripe.confirm_intent("pi_x", payment_method="pm_card_visa", idempotency_key="k")
    assert info.value.status == 404 and stripe_fake.requests == []


@pytest.mark.parametrize("status, type_, code, expected", [
    (402, "card_error", "card_declined", (402, "card_declined")),
    (400, "invalid_request_error", "amount_too_small", (400, "amount_too_small")),
    (401, "invalid_request_error", None, (502, None)),  # our key refused: not the client's doing
    (429, "invalid_request_error", "rate_limit", (503, "rate_limit")),
    (500, "api_error", None, (502, None)),
])
def test_stripe_errors_become_provider_errors(stripe, stripe_fake, status, type_, code, expected):
    stripe_fake.fail_next("POST", "/v1/payment_intents", status, type_, "Stripe says no", code=code)

    with pytest.raises(ProviderError) as info:
        stripe.create_intent(amount=700, currency="EUR", capture_method="manual", metadata={},
                             idempotency_key="payment:p7:intent")
    assert (info.value.status, info.value.code) == expected


def test_acting_on_an_intent_in_the_wrong_state_or_unknown(stripe):
    intent = stripe.create_intent(amount=700, currency="EUR", capture_method="manual", metadata={},
                                  idempotency_key="payment:p8:intent")

    with pytest.raises(ProviderError) as unconfirmed:
        stripe.capture_intent(intent["id"], idempotency_key="payment:p8:capture")
    with pytest.raises(ProviderError) as unknown:
        stripe.retrieve_intent("pi_nothing")
    assert (unconfirmed.value.status, unconfirmed.value.code) == (400, "payment_intent_unexpected_state")
    assert (unknown.value.status, unknown.value.code) == (404, "resource_missing")


def test_a_wrong_key_is_refused_by_stripe(app_factory, stripe_fake):
    provider = payments_provider.get_provider(app_factory(**{**stripe_config(stripe_fake),
                                                             "STRIPE_API_KEY": "sk_test_wrong"}))

    with pytest.raises(ProviderError) as info:
        provider.retrieve_intent("pi_x")
    assert info.value.status == 502


def test_stripe_down_is_a_provider_error_not_a_hang(app_factory):
    # A port nothing listens on: the library's connection error, no retries.
    provider = payments_provider.get_provider(app_factory(
        PAYMENTS_PROVIDER="stripe", STRIPE_API_KEY="sk_test_x", STRIPE_API_BASE="http://127.0.0.1:9",
        STRIPE_MAX_NETWORK_RETRIES=0))

    with pytest.raises(ProviderError) as info:
        provider.retrieve_intent("pi_x")
    assert info.value.status == 502


def test_live_keys_make_live_payments(app_factory, stripe_fake):
    app = app_factory(**{**stripe_config(stripe_fake), "STRIPE_API_KEY": "sk_live_abc"})
    assert payments_provider.get_provider(app).livemode is True


def test_stripe_without_a_key_does_not_start(app_factory):
    with pytest.raises(ValueError, match="STRIPE_API_KEY"):
        app_factory(PAYMENTS_PROVIDER="stripe")
