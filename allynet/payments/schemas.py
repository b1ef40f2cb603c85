"""The payment object clients read (GET /payments, /payments/<id>, /organizations/<id>/payments).

Amounts are integers in the currency's minor unit (EUR 15.50 is 1550; JPY has no minor unit).
`client_secret` is shown to the payer only (the view drops it for anyone else).
"""
from marshmallow import Schema, fields, validate

from allynet.fields import Cursor, DateTimeZ, Id, ObjectIdField, Text

PAYOUTS = ("connected_account", "awaiting_onboarding")
MAX_MINOR_AMOUNT = 10 ** 15


class HistoryEntrySchema(Schema):
    status = fields.String()
    at = DateTimeZ()
    cause = fields.String()


class LastErrorSchema(Schema):
    code = fields.String(allow_none=True)
    message = fields.String(allow_none=True)


class RefundEntrySchema(Schema):
    id = fields.String(metadata={"description": "the provider's refund id"})
    amount = fields.Integer(metadata={"description": "minor units"})
    reason = fields.String(allow_none=True)
    at = DateTimeZ()


class PaymentSchema(Schema):
    id = Id()
    kind = fields.String(metadata={"enum": ["help_request", "subscription", "promotion"]})
    help_request_id = ObjectIdField()
    organization_id = ObjectIdField()
    business_id = ObjectIdField()
    promotion_id = ObjectIdField()
    payer_id = ObjectIdField()
    payee_id = ObjectIdField(allow_none=True)
    amount = fields.Integer(metadata={"description": "minor units of `currency`"})
    fee_amount = fields.Integer(metadata={"description": "the platform's fee, minor units"})
    payee_amount = fields.Integer(metadata={"description": "amount - fee_amount: the payee's share"})
    refunded_amount = fields.Integer()
    refunds = fields.List(fields.Nested(RefundEntrySchema))
    payout = fields.String(allow_none=True, metadata={
        "enum": list(PAYOUTS), "description": "help requests: connected_account (the helper's share goes to "
                                              "their connected account) or awaiting_onboarding (the platform "
                                              "holds it until the helper onboards)"})
    currency = fields.String(metadata={"description": "ISO 4217 code, upper-case"})
    status = fields.String()
    history = fields.List(fields.Nested(HistoryEntrySchema))
    last_error = fields.Nested(LastErrorSchema, allow_none=True)
    livemode = fields.Boolean()
    client_secret = fields.String(metadata={"description": "the payer only: confirms the payment "
                                                          "through the provider's SDK"})
    created_at = DateTimeZ()
    updated_at = DateTimeZ()


class PaymentSummarySchema(Schema):
    """What a help request shows of its payment, to its requester and its helper."""

    id = ObjectIdField()
    status = fields.String()
    amount = fields.Integer(metadata={"description": "minor units of `currency`"})
    currency = fields.String()
    fee_amount = fields.Integer()
    payee_amount = fields.Integer()
    refunded_amount = fields.Integer()
    last_error = fields.Nested(LastErrorSchema, allow_none=True, metadata={
        "description": "why the payment is not secured (a declined card: code card_declined)"})
    payout = fields.String(allow_none=True, metadata={"enum": list(PAYOUTS)})
    livemode = fields.Boolean()


class ConfirmSchema(Schema):
    """POST /payments/<id>/confirm (offline provider): one of its test payment methods."""

    payment_method = fields.String(required=True, validate=validate.OneOf(
        ("pm_card_visa", "pm_card_chargeDeclined", "pm_card_authenticationRequired")), metadata={
        "description": "pm_card_visa succeeds, pm_card_chargeDeclined declines, pm_card_authenticationRequired "
                       "asks for action (confirm again to pass it)"})


class RefundSchema(Schema):
    """POST /payments/<id>/refund (staff): all that is left, or `amount` minor units of it."""

    amount = fields.Integer(strict=True, validate=validate.Range(1, MAX_MINOR_AMOUNT),
                            metadata={"description": "minor units; default: all that is left"})
    reason = Text(required=True, min_len=1, max_len=500)


class PaymentPageQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100), strict=False)
    cursor = Cursor(validate=validate.Length(max=512))


class OnboardingLinkSchema(Schema):
    url = fields.String(metadata={"description": "the provider's onboarding page for your connected account"})
    expires_at = DateTimeZ()


payment_schema = PaymentSchema()
payments_schema = PaymentSchema(many=True)
payment_summary_schema = PaymentSummarySchema()
confirm_schema = ConfirmSchema()
refund_schema = RefundSchema()
payment_page_query_schema = PaymentPageQuerySchema()
onboarding_link_schema = OnboardingLinkSchema()


def for_viewer(record, *, viewer_id):
    """The record as `viewer_id` may read it: the client secret for the payer only."""
    view = dict(record)
    if record.get("payer_id") != viewer_id:
        view.pop("client_secret", None)
    return view


# ---- organization subscriptions (allynet/payments/subscriptions.py) ------------------------------

class SubscriptionSchema(Schema):
    """POST /organizations/<id>/subscription: the provider's subscription."""

    id = fields.String(metadata={"description": "the provider's subscription id"})
    status = fields.String(metadata={"description": "the provider's status: incomplete until the first "
                                                    "payment, then active, past_due, canceled"})
    organization_id = fields.String()
    client_secret = fields.String(metadata={"description": "while incomplete: confirms the first payment "
                                                          "through the provider's SDK"})


EPOCH_SECONDS = (0, 4_102_444_800)  # up to 2100-01-01
AMOUNT_RANGE = (0, 10**9)


def _provider_id(prefix, required=False):
    pattern = rf"^{prefix}_[A-Za-z0-9_]{{1,100}}$"
    return fields.String(required=required, validate=validate.Regexp(pattern), metadata={"pattern": pattern})


class OfflineEventObjectSchema(Schema):
    """`data.object`: the subscription's id; for invoice events, fields of the invoice to set (the rest
    comes from the offline provider's subscription: the next unpaid period, its price)."""

    subscription = _provider_id("sub", required=True)
    id = _provider_id("in")
    amount_paid = fields.Integer(strict=True, validate=validate.Range(*AMOUNT_RANGE))
    amount_due = fields.Integer(strict=True, validate=validate.Range(*AMOUNT_RANGE))
    period_start = fields.Integer(strict=True, validate=validate.Range(*EPOCH_SECONDS))
    period_end = fields.Integer(strict=True, validate=validate.Range(*EPOCH_SECONDS))


class OfflineEventDataSchema(Schema):
    object = fields.Nested(OfflineEventObjectSchema, required=True)


class OfflineEventSchema(Schema):
    """POST /payments/offline/events: a provider-shaped event of an organization's subscription."""

    id = _provider_id("evt")
    type = fields.String(required=True, validate=validate.OneOf(
        ["invoice.paid", "invoice.payment_failed", "customer.subscription.deleted"]))
    created = fields.Integer(strict=True, validate=validate.Range(*EPOCH_SECONDS),
                             metadata={"description": "epoch seconds; default now"})
    data = fields.Nested(OfflineEventDataSchema, required=True)


class OfflineEventResultSchema(Schema):
    event_id = fields.String()
    type = fields.String()
    received = fields.Boolean()
    duplicate = fields.Boolean(metadata={"description": "this event id was processed before: no effect"})
    handled = fields.Boolean()


subscription_schema = SubscriptionSchema()
offline_event_schema = OfflineEventSchema()
offline_event_result_schema = OfflineEventResultSchema()
