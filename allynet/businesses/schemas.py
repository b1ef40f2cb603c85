"""Business and promotion schemas: what an owner may send, and what each audience may read.

Categories: cafe, restaurant, fuel, garage, pharmacy, hospital, shop, lodging, other.
`opening_hours` is validated here (allynet/businesses/hours.py says what it means).
"""
import re

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from allynet.businesses import hours
from allynet.fields import (BoundedList, DateTimeZ, Finite, Id, ListFormat, Location, Name, ObjectIdField,
                            StrictBool, Text)
from allynet.help_requests.schemas import Near, PageQuerySchema

CATEGORIES = ("cafe", "restaurant", "fuel", "garage", "pharmacy", "hospital", "shop", "lodging", "other")
RADIUS_M = (100, 50_000)
DEFAULT_RADIUS_M = 5_000
PROMOTION_RADIUS_M = (50, 50_000)
DEFAULT_PROMOTION_RADIUS_M = 2_000
MAX_PROMOTION_DAYS = 366
# Digits with the usual separators and an optional leading +; 5..20 digits (E.164 has at most 15,
# extensions a few more).
PHONE = re.compile(r"\+?[0-9][0-9 ().\-/]{3,30}")
HHMM_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Phone(Text):
    """A phone number: digits, spaces and ( ) . - /, optionally a leading +; 5..20 digits."""

    default_error_messages = {"phone": "Not a phone number (digits, spaces, ( ) . - /, optional leading +)."}

    def openapi_property(self):
        """OpenAPI: the characters allowed (the 5..20 digits count is the server's to check)."""
        return {"pattern": r"^\+?[0-9][0-9 ().\-/]{3,30}$"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        digits = sum(char.isdigit() for char in text)
        if not PHONE.fullmatch(text) or not text.isascii() or not 5 <= digits <= 20:
            raise self.make_error("phone")
        return text


class IntervalSchema(Schema):
    """One weekly opening interval, local wall-clock times."""

    day = fields.String(required=True, validate=validate.OneOf(hours.DAYS))
    open = fields.String(required=True, metadata={"description": "HH:MM local time", "pattern": HHMM_PATTERN})
    close = fields.String(required=True, metadata={
        "description": "HH:MM local time; at or before `open`: the next day; 00:00-00:00: the whole day",
        "pattern": HHMM_PATTERN})

    @validates("open")
    def _open(self, value, **kwargs):
        _check_hhmm(value)

    @validates("close")
    def _close(self, value, **kwargs):
        _check_hhmm(value)


def _check_hhmm(value):
    try:
        hours.parse_hhmm(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


class OpeningHoursSchema(Schema):
    """`{timezone, intervals}`: weekly hours in the business's IANA time zone."""

    timezone = fields.String(required=True, validate=validate.Length(max=64),
                             metadata={"description": "IANA time zone, e.g. Europe/Paris"})
    intervals = BoundedList(fields.Nested(IntervalSchema), required=True,
                            validate=validate.Length(max=hours.MAX_INTERVALS))

    @validates("timezone")
    def _timezone(self, value, **kwargs):
        if value not in hours.timezones():
            raise ValidationError("Not an IANA time zone (e.g. Europe/Paris).")


class BusinessCreateSchema(Schema):
    """POST /businesses."""

    name = Name(required=True, min_len=2, max_len=120)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    location = Location(required=True)
    address = Text(max_len=300, allow_none=True)
    phone = Phone(max_len=32, allow_none=True)
    website = fields.URL(schemes={"http", "https"}, require_tld=True, allow_none=True,
                         validate=validate.Length(max=2048))
    opening_hours = fields.Nested(OpeningHoursSchema, allow_none=True,
                                  metadata={"description": "null: hours unknown (never open now)"})
    safe_place = StrictBool(metadata={"description": "opt in as a safe place (effective once verified)"})


class BusinessUpdateSchema(BusinessCreateSchema):
    """PATCH /businesses/<id>: any field; `verified` and `hidden` for moderators and admins only."""

    OPENAPI = {"minProperties": 1}  # not_empty below

    name = Name(min_len=2, max_len=120)
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    location = Location()
    verified = StrictBool(metadata={"description": "moderators and admins only"})
    hidden = StrictBool(metadata={"description": "moderators and admins only"})

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one field to update.")


class PromotionSchema(Schema):
    """A promotion embedded in its business."""

    id = Id()
    title = fields.String()
    description = fields.String(allow_none=True)
    starts_at = DateTimeZ()
    ends_at = DateTimeZ()
    radius_m = fields.Float()
    featured_until = DateTimeZ(allow_none=True, metadata={"description": "paid featuring: ranked first "
                                                                         "near a point until then"})
    created_at = DateTimeZ()
    updated_at = DateTimeZ()


class PromotionCreateSchema(Schema):
    """POST /businesses/<id>/promotions."""

    title = Name(required=True, min_len=2, max_len=120)
    description = Text(max_len=1000, allow_none=True)
    starts_at = DateTimeZ(required=True)
    ends_at = DateTimeZ(required=True)
    radius_m = Finite(strict=True, load_default=DEFAULT_PROMOTION_RADIUS_M,
                      validate=validate.Range(*PROMOTION_RADIUS_M))


class PromotionUpdateSchema(PromotionCreateSchema):
    """PATCH /businesses/<id>/promotions/<pid>: any field."""

    OPENAPI = {"minProperties": 1}  # not_empty below

    title = Name(min_len=2, max_len=120)
    starts_at = DateTimeZ()
    ends_at = DateTimeZ()
    radius_m = Finite(strict=True, validate=validate.Range(*PROMOTION_RADIUS_M))

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one field to update.")


class BusinessSchema(Schema):
    """A business. `hidden` only for its owner and staff; `promotions`: all for them, running ones for
    everyone else; `distance_m` in lists."""

    id = Id()
    owner_id = ObjectIdField()
    name = fields.String()
    category = fields.String()
    location = Location()
    address = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    website = fields.String(allow_none=True)
    opening_hours = fields.Nested(OpeningHoursSchema, allow_none=True)
    open_now = fields.Boolean()
    closes_at = DateTimeZ(allow_none=True, metadata={"description": "when it closes, if open now"})
    verified = fields.Boolean()
    hidden = fields.Boolean()
    safe_place = fields.Boolean(metadata={"description": "the owner's opt-in"})
    safe_place_active = fields.Boolean(metadata={"description": "opted in, verified and not hidden"})
    promotions = fields.List(fields.Nested(PromotionSchema))
    distance_m = fields.Float()
    created_at = DateTimeZ()
    updated_at = DateTimeZ()


class BusinessListQuerySchema(PageQuerySchema):
    """GET /businesses?near=lat,lng&radius_m=&category=&open_now=&format=."""

    near = Near(required=True, metadata={"description": "lat,lng"})
    radius_m = Finite(load_default=DEFAULT_RADIUS_M, validate=validate.Range(*RADIUS_M))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    open_now = fields.Boolean(load_default=False, truthy={"true", "1"}, falsy={"false", "0"})
    format = ListFormat()


class PromotionListQuerySchema(Schema):
    """GET /promotions?near=lat,lng&limit=."""

    near = Near(required=True, metadata={"description": "lat,lng"})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100), strict=False)


class PromotionNearSchema(Schema):
    """A running promotion whose radius covers the point."""

    business_id = ObjectIdField()
    business_name = fields.String()
    promotion = fields.Nested(PromotionSchema)
    distance_m = fields.Float()
    featured = fields.Boolean(metadata={"description": "its owner paid to feature it: listed first"})
    verified = fields.Boolean(metadata={"description": "the business is verified"})


class SafePlaceSchema(Schema):
    """A safe place near an SOS: verified, opted in, open now."""

    id = Id()
    name = fields.String()
    location = Location()
    distance_m = fields.Float()
    closes_at = DateTimeZ(allow_none=True, metadata={"description": "null: open around the clock"})


business_create_schema = BusinessCreateSchema()
business_update_schema = BusinessUpdateSchema()
business_schema = BusinessSchema()
business_list_query_schema = BusinessListQuerySchema()
promotion_schema = PromotionSchema()
promotion_create_schema = PromotionCreateSchema()
promotion_update_schema = PromotionUpdateSchema()
promotion_list_query_schema = PromotionListQuerySchema()
promotion_near_schema = PromotionNearSchema()
safe_place_schema = SafePlaceSchema()
