"""The payment object clients read (GET /payments, /payments/<id>, /organizations/<id>/payments).

Amounts are integers in the currency's minor unit (EUR 15.50 is 1550; JPY has no minor unit).
`client_secret` is shown to the payer only (the view drops it for anyone else).
"""
from marshmallow import Schema, fields

from allynet.fields import DateTimeZ, Id, ObjectIdField


class HistoryEntrySchema(Schema):
    status = fields.String()
    at = DateTimeZ()
    cause = fields.String()


class LastErrorSchema(Schema):
    code = fields.String(allow_none=True)
    message = fields.String(allow_none=True)


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
    currency = fields.String(metadata={"description": "ISO 4217 code, upper-case"})
    status = fields.String()
    history = fields.List(fields.Nested(HistoryEntrySchema))
    last_error = fields.Nested(LastErrorSchema, allow_none=True)
    livemode = fields.Boolean()
    client_secret = fields.String(metadata={"description": "the payer only: confirms the payment "
                                                          "through the provider's SDK"})
    created_at = DateTimeZ()
    updated_at = DateTimeZ()


payment_schema = PaymentSchema()
payments_schema = PaymentSchema(many=True)


def for_viewer(record, *, viewer_id):
    """The record as `viewer_id` may read it: the client secret for the payer only."""
    view = dict(record)
    if record.get("payer_id") != viewer_id:
        view.pop("client_secret", None)
    return view
