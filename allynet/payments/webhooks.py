"""The Stripe webhook: events verified with the official library, then processed once.

``receive()`` checks the ``Stripe-Signature`` header with ``stripe.Webhook.construct_event`` (the
library's own HMAC-SHA256 scheme, ``STRIPE_WEBHOOK_SECRET``, at most ``TOLERANCE_SECONDS`` old)
before anything is read from the body: a missing, forged or stale signature is a 400 and changes
nothing, under every provider (with no secret configured, every delivery is refused). A verified
event goes to ``events.handle(..., source="stripe")``, which runs its handler once per event id:
a duplicate delivery, or a type no handler takes, is acknowledged (200) so Stripe stops sending it.
When the handler cannot reach the provider (it re-reads the object), the answer is 503 and the
event is not marked, so Stripe's retry runs it again.
"""
import stripe
from marshmallow import INCLUDE, Schema, ValidationError, fields

from allynet.errors import BadRequest, ServiceUnavailable, ValidationFailed
from allynet.payments import events
from allynet.payments.provider import ProviderError

TOLERANCE_SECONDS = 300  # Stripe's default: a signature older than 5 minutes is a replay
SIGNATURE_HEADER = "Stripe-Signature"
REFUSED = "Not a valid Stripe signature of this body"


class EventDataSchema(Schema):
    class Meta:
        unknown = INCLUDE

    object = fields.Dict(required=True, metadata={"description": "the object the event is about, as it was"})


class StripeEventSchema(Schema):
    """A Stripe Event as a webhook endpoint receives it (more fields pass through)."""

    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True, metadata={"example": "evt_1NG8Du2eZvKYlo2CUI79vXWy"})
    object = fields.String(required=True, metadata={"enum": ["event"]})
    type = fields.String(required=True, metadata={"example": "payment_intent.succeeded"})
    created = fields.Integer()
    livemode = fields.Boolean()
    data = fields.Nested(EventDataSchema, required=True)


class WebhookResultSchema(Schema):
    received = fields.Boolean(metadata={"description": "always true: Stripe may stop sending this event"})
    duplicate = fields.Boolean(metadata={"description": "this event id was processed before: nothing done"})
    handled = fields.Boolean(metadata={"description": "false for an event type nothing here handles"})


stripe_event_schema = StripeEventSchema()
webhook_result_schema = WebhookResultSchema()


def signature_refused(reason):
    """The 400 for a delivery whose signature does not hold."""
    return BadRequest(f"{REFUSED} ({reason})", details={SIGNATURE_HEADER: [f"{REFUSED}: {reason}"]})


def verify(*, payload, signature, secret):
    """The event in `payload` (the raw body) when `signature` is Stripe's for it under `secret` and
    recent; raises a 400 otherwise. Nothing of the body is trusted before this."""
    if not secret:
        raise signature_refused("no webhook secret is configured")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:  # Stripe signs UTF-8 text
        raise signature_refused("the body is not UTF-8 text") from exc
    try:
        event = stripe.Webhook.construct_event(text, signature, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise signature_refused(str(exc).split(". ")[0].rstrip(".")) from exc
    except (ValueError, AttributeError) as exc:  # signed, yet not a JSON object (or a thin event)
        raise BadRequest("The event is not a JSON object") from exc
    try:
        return stripe_event_schema.load(event.to_dict(recursive=True))
    except ValidationError as exc:
        raise ValidationFailed("The event is not a Stripe event", details=exc.messages) from exc


def receive(*, db, provider, payload, signature, secret):
    """Verify and process one webhook delivery; ``{received, duplicate, handled}``."""
    event = verify(payload=payload, signature=signature, secret=secret)
    try:
        return events.handle(db=db, provider=provider, event=event, source="stripe")
    except ProviderError as exc:
        raise ServiceUnavailable("The payment provider could not be reached; the event will be retried") from exc
