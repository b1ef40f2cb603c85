"""POST /api/v1/payments/webhooks/stripe: Stripe's event deliveries (thin view over `webhooks`)."""
from flask import current_app, request

from allynet.db import get_db
from allynet.http import doc, ok
from allynet.payments import bp, webhooks
from allynet.payments.provider import get_provider

SIGNATURE_HEADER = [{
    "in": "header", "name": webhooks.SIGNATURE_HEADER, "required": True, "schema": {"type": "string"},
    "description": "Stripe's signature of the raw body: t=<unix time>,v1=<HMAC-SHA256 hex>, with the "
                   "endpoint's signing secret (STRIPE_WEBHOOK_SECRET), at most 5 minutes old.",
}]


@bp.post("/payments/webhooks/stripe")
@doc(summary="Stripe's webhook: a signed event, processed once per event id (duplicates and event types "
             "nothing handles are acknowledged)", response=webhooks.webhook_result_schema, auth=False,
     tags=["payments"], body=webhooks.stripe_event_schema, headers=SIGNATURE_HEADER,
     errors={400: "bad_request (a missing, forged or stale Stripe-Signature; details name the header) or "
                  "validation_error (a signed body that is not an event)",
             503: "service_unavailable (the provider or MongoDB could not be reached: Stripe retries the event)"})
def stripe_webhook():
    result = webhooks.receive(db=get_db(), provider=get_provider(), payload=request.get_data(),
                              signature=request.headers.get(webhooks.SIGNATURE_HEADER),
                              secret=current_app.config["STRIPE_WEBHOOK_SECRET"])
    return ok(result)
