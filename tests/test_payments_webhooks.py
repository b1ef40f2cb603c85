"""POST /api/v1/payments/webhooks/stripe: deliveries signed with the stripe library's own scheme
(`stripe.WebhookSignature.generate_signature_header`, the helper the library ships for tests), and
forged, tampered, stale and replayed ones; each event id processed once, concurrent deliveries too."""
import json
import time

import pytest
import stripe

from allynet.payments import events
from allynet.payments.provider import ProviderError
from allynet.payments.webhooks import TOLERANCE_SECONDS
from tests.helpers import all_at_once, error_code
from tests.stripe_fake import WEBHOOK_SECRET, stripe_config, stripe_fake  # noqa: F401 (fixture)

URL = "/api/v1/payments/webhooks/stripe"


@pytest.fixture
def app(app_factory, stripe_fake):  # noqa: F811
    return app_factory(**stripe_config(stripe_fake))


@pytest.fixture
def probe(monkeypatch):
    """A handler for `allynet.probe` events that records each run (removed after the test)."""
    runs = []

    def handle(db, provider, event):
        runs.append(event["id"])
        db.probe_effects.insert_one({"event_id": event["id"]})

    monkeypatch.setitem(events._handlers, "allynet.probe", handle)  # registry of the events module
    return runs


def payload_of(event):
    return json.dumps(event, separators=(",", ":"))


def deliver(client, event, secret=WEBHOOK_SECRET, timestamp=None, payload=None, header=None):
    """POST `event` as Stripe does: the raw JSON body and its Stripe-Signature."""
    payload = payload if payload is not None else payload_of(event)
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return client.post(URL, data=payload, content_type="application/json", headers={"Stripe-Signature": header})


def event(fake, event_type="allynet.probe"):
    return fake.event(event_type, {"id": "pi_123", "object": "payment_intent", "status": "succeeded"})


def test_a_signed_event_is_processed_and_acknowledged(client, db, stripe_fake, probe):
    sent = event(stripe_fake)

    response = deliver(client, sent)

    assert response.status_code == 200
    assert response.get_json()["data"] == {"received": True, "duplicate": False, "handled": True}
    assert probe == [sent["id"]]
    assert db.payment_events.find_one({"_id": sent["id"]})["source"] == "stripe"


def test_the_same_event_twice_has_one_effect(client, db, stripe_fake, probe):
    sent = event(stripe_fake)

    first, again = deliver(client, sent), deliver(client, sent)  # Stripe's retry: a fresh signature

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.get_json()["data"]["duplicate"] is True
    assert probe == [sent["id"]] and db.probe_effects.count_documents({}) == 1


def test_two_concurrent_deliveries_of_one_event_have_one_effect(app, db, stripe_fake, probe):
    sent = event(stripe_fake)
    clients = [app.test_client(), app.test_client()]

    responses = all_at_once([lambda c=c: deliver(c, sent) for c in clients])

    assert [r.status_code for r in responses] == [200, 200]
    assert sorted(r.get_json()["data"]["duplicate"] for r in responses) == [False, True]
    assert probe == [sent["id"]] and db.probe_effects.count_documents({}) == 1


def test_an_event_nobody_handles_is_acknowledged(client, db, stripe_fake, probe):
    sent = event(stripe_fake, "customer.created")

    response = deliver(client, sent)

    assert response.status_code == 200
    assert response.get_json()["data"] == {"received": True, "duplicate": False, "handled": False}
    assert probe == [] and db.payment_events.count_documents({"_id": sent["id"]}) == 1


def refused(response, db, probe):
    """A 400 naming the signature, and nothing processed or stored."""
    body = response.get_json()
    assert response.status_code == 400 and error_code(response) == "bad_request", body
    assert "Stripe-Signature" in body["error"]["details"]
    assert probe == [] and db.payment_events.count_documents({}) == 0


def test_a_forged_signature_is_refused(client, db, stripe_fake, probe):
    refused(deliver(client, event(stripe_fake), secret="whsec_someone_else"), db, probe)


def test_a_body_changed_after_signing_is_refused(client, db, stripe_fake, probe):
    sent = event(stripe_fake)
    header = stripe.WebhookSignature.generate_signature_header(payload_of(sent), WEBHOOK_SECRET)
    sent["data"]["object"]["status"] = "canceled"

    refused(deliver(client, sent, header=header), db, probe)


def test_a_stale_signature_is_refused(client, db, stripe_fake, probe):
    stale = int(time.time()) - TOLERANCE_SECONDS - 60

    refused(deliver(client, event(stripe_fake), timestamp=stale), db, probe)


def test_a_replayed_delivery_is_refused_once_stale(client, db, stripe_fake, probe):
    # An attacker who captured a delivery re-sends it, byte for byte, later.
    sent = event(stripe_fake)
    payload = payload_of(sent)
    captured = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET,
                                                                 timestamp=int(time.time()) - TOLERANCE_SECONDS - 1)

    refused(deliver(client, sent, payload=payload, header=captured), db, probe)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=deadbeef", "t=1700000000", "nonsense"])
def test_a_missing_or_malformed_signature_is_refused(client, db, stripe_fake, probe, header):
    sent = event(stripe_fake)
    headers = {"Stripe-Signature": header} if header else {}

    response = client.post(URL, data=payload_of(sent), content_type="application/json", headers=headers)

    refused(response, db, probe)


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"[1]", b"not json"])
def test_unsigned_junk_is_refused(client, db, probe, body):
    refused(client.post(URL, data=body, content_type="application/json"), db, probe)


def test_the_input_gates_bad_values_are_refused_unsigned_and_change_nothing(client, db, probe):
    from tests.inputgate_cases import DEEP, GATE_VALUES, OTHER_VALUES

    for label, value in {**GATE_VALUES, **OTHER_VALUES, "deep": DEEP}.items():
        for body in (value, f'{{"id": {value}, "type": "allynet.probe", "data": {{"object": {value}}}}}'):
            response = client.post(URL, data=body, content_type="application/json",
                                   headers={"Stripe-Signature": "t=1,v1=00"})
            assert response.status_code in (400, 413), (label, response.get_data(as_text=True)[:200])
    big = client.post(URL, data=json.dumps({"x": "x" * (client.application.config["MAX_CONTENT_LENGTH"] + 1)}),
                      content_type="application/json")
    assert big.status_code == 413
    assert probe == [] and db.payment_events.count_documents({}) == 0


def test_signed_bodies_that_are_not_events_are_refused(client, db, probe):
    for payload in ("[1]", "not json", json.dumps({"id": "evt_1", "object": "event", "data": {"object": {}}})):
        header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
        response = client.post(URL, data=payload, content_type="application/json",
                               headers={"Stripe-Signature": header})
        assert response.status_code == 400, payload
    assert probe == [] and db.payment_events.count_documents({}) == 0


@pytest.mark.parametrize("overrides", [{}, {"STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}])
def test_the_route_refuses_unsigned_events_under_the_offline_provider(app_factory, stripe_fake, probe, overrides):
    app = app_factory(**overrides)  # PAYMENTS_PROVIDER=offline
    db = app.extensions["allynet_db"]

    refused(deliver(app.test_client(), event(stripe_fake), secret="whsec_guess"), db, probe)


def test_with_no_secret_configured_even_a_signed_event_is_refused(app_factory, stripe_fake, probe):
    app = app_factory(**{**stripe_config(stripe_fake), "STRIPE_WEBHOOK_SECRET": None})

    refused(deliver(app.test_client(), event(stripe_fake)), app.extensions["allynet_db"], probe)


def test_provider_unreachable_is_503_and_the_retry_runs_the_handler(client, db, stripe_fake, monkeypatch):
    runs = []

    def handle(db, provider, event):
        runs.append(event["id"])
        if len(runs) == 1:
            raise ProviderError("Stripe is down", status=502)

    monkeypatch.setitem(events._handlers, "allynet.probe", handle)
    sent = event(stripe_fake)

    failed, retried = deliver(client, sent), deliver(client, sent)

    assert failed.status_code == 503 and error_code(failed) == "service_unavailable"
    assert retried.status_code == 200 and retried.get_json()["data"]["duplicate"] is False
    assert runs == [sent["id"], sent["id"]] and db.payment_events.count_documents({}) == 1


def test_the_readme_lists_the_event_types_the_server_handles(app):
    import re

    from tests.helpers import ROOT

    section = (ROOT / "README.md").read_text().split("## Payments: switching to Stripe")[1].split("\n## ")[0]
    listed = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", section))

    assert listed == set(events.handled_types()), sorted(listed ^ set(events.handled_types()))
