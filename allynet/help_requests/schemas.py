"""Help request schemas, and the marketplace vocabulary shared with skills.

Categories (both help requests and skills): transport, groceries, repairs,
childcare, elderly_care, pets, tech, moving, other.

Money (`budget`, `price`, skill `rate`): `{amount >= 0, currency}` with
`currency` an ISO 4217 code of a circulating currency (CURRENCIES below; a
fixed list rather than a new dependency). Lower-case codes are accepted and
stored upper-case.
"""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet import geo
from allynet.fields import Cursor, DateTimeZ, Finite, Id, ListFormat, Location, Name, ObjectIdField, Text
from allynet.payments.schemas import PaymentSummarySchema, payment_summary_schema  # noqa: F401

CATEGORIES = ("transport", "groceries", "repairs", "childcare", "elderly_care", "pets", "tech", "moving", "other")
STATUSES = ("open", "assigned", "completed", "cancelled")
OFFER_STATUSES = ("pending", "accepted", "declined")
ROLES = ("requester", "helper")

# ISO 4217 codes of circulating currencies (no fund, precious-metal or testing codes).
CURRENCIES = frozenset("""
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
    GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
    STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG
    XOF XPF YER ZAR ZMW ZWG
""".split())

MAX_AMOUNT = 1_000_000_000
RADIUS_M = (100, 50_000)
DEFAULT_RADIUS_M = 10_000
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


class Currency(fields.String):
    """An ISO 4217 currency code (case-insensitive in, upper-case out)."""

    def openapi_property(self):
        """OpenAPI: the codes, upper-case (lower-case is accepted too)."""
        return {"type": "string", "enum": sorted(CURRENCIES)}

    def _deserialize(self, value, attr, data, **kwargs):
        code = super()._deserialize(value, attr, data, **kwargs).strip().upper()
        if code not in CURRENCIES:
            raise ValidationError("Not an ISO 4217 currency code (e.g. EUR, USD, GBP).")
        return code


class Near(fields.Field):
    """A `near=lat,lng` query parameter, loaded as {"lat", "lng"}."""

    def openapi_property(self):
        """OpenAPI: a "lat,lng" string in range."""
        return {"type": "string", "pattern": geo.NEAR_PATTERN, "example": "52.52,13.405"}

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            lat, lng = geo.parse_near(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        return {"lat": lat, "lng": lng}


class MoneySchema(Schema):
    """An amount of money: {amount >= 0, currency}."""

    amount = Finite(required=True, strict=True, validate=validate.Range(0, MAX_AMOUNT))
    currency = Currency(required=True, metadata={
        "description": "ISO 4217 code of a circulating currency, e.g. EUR, USD, GBP (stored upper-case)"})


class OfferSchema(Schema):
    """An offer to help, as the owner (or the offerer) sees it."""

    id = Id()
    help_request_id = ObjectIdField()
    user_id = ObjectIdField()
    message = fields.String()
    price = fields.Nested(MoneySchema, allow_none=True)
    status = fields.String()
    created_at = DateTimeZ()


class HelpRequestSchema(Schema):
    """A help request; `offers` only for its owner (all) or an offerer (their own); `distance_m` in lists."""

    id = Id()
    user_id = ObjectIdField()
    title = fields.String()
    description = fields.String()
    category = fields.String()
    location = Location()
    budget = fields.Nested(MoneySchema, allow_none=True)
    status = fields.String()
    helper_id = ObjectIdField(allow_none=True)
    accepted_offer_id = ObjectIdField(allow_none=True)
    offers_count = fields.Integer()
    offers = fields.List(fields.Nested(OfferSchema))
    payment = fields.Nested(PaymentSummarySchema, allow_none=True, metadata={
        "description": "the requester and the helper only: the accepted offer's payment (null: none)"})
    distance_m = fields.Float()
    created_at = DateTimeZ()
    updated_at = DateTimeZ()


class HelpRequestCreateSchema(Schema):
    title = Name(required=True, min_len=3, max_len=120)
    description = Text(required=True, min_len=1, max_len=2000)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    location = Location(required=True)
    budget = fields.Nested(MoneySchema, allow_none=True)


class HelpRequestUpdateSchema(Schema):
    """What an owner may change while the request is open (`budget: null` removes it)."""

    OPENAPI = {"minProperties": 1}  # not_empty below

    title = Name(min_len=3, max_len=120)
    description = Text(min_len=1, max_len=2000)
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    location = Location()
    budget = fields.Nested(MoneySchema, allow_none=True)

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one field to update.")


class OfferCreateSchema(Schema):
    message = Text(required=True, min_len=1, max_len=1000)
    price = fields.Nested(MoneySchema, allow_none=True)



class AcceptSchema(Schema):
    offer_id = ObjectIdField(required=True)


class PageQuerySchema(Schema):
    """`limit` and the opaque `cursor` of the previous page's `meta.next_cursor`."""

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT), strict=False)
    cursor = Cursor(validate=validate.Length(max=512))


class HelpRequestListQuerySchema(PageQuerySchema):
    """`near` defaults to the caller's profile location; `status` to open."""

    near = Near(metadata={"description": "lat,lng; default: your profile location"})
    radius_m = Finite(load_default=DEFAULT_RADIUS_M, validate=validate.Range(*RADIUS_M))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    status = fields.String(load_default="open", validate=validate.OneOf(STATUSES))
    format = ListFormat()


class MineQuerySchema(PageQuerySchema):
    """GET /help-requests/mine: `role` requester (default: the requests you posted) or helper."""

    role = fields.String(load_default="requester", validate=validate.OneOf(ROLES), metadata={
        "description": "requester: the requests you posted; helper: those you offered on or were assigned to"})


money_schema = MoneySchema()
offer_schema = OfferSchema()
help_request_schema = HelpRequestSchema()
help_request_create_schema = HelpRequestCreateSchema()
help_request_update_schema = HelpRequestUpdateSchema()
offer_create_schema = OfferCreateSchema()
accept_schema = AcceptSchema()
help_request_list_query_schema = HelpRequestListQuerySchema()
mine_query_schema = MineQuerySchema()
