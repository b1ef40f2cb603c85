"""Skill schemas. Categories come from the help request vocabulary (one list for both), money from allynet/fields.py."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet.fields import DateTimeZ, Finite, Id, ListFormat, Location, MoneySchema, Name, ObjectIdField, Text
from allynet.help_requests.schemas import CATEGORIES, DEFAULT_RADIUS_M, RADIUS_M, Near, PageQuerySchema

RATE_UNITS = ("hour", "job")


class RateSchema(MoneySchema):
    """What a skill costs: {amount >= 0, currency (ISO 4217), unit: hour|job}; decimals as MoneySchema allows."""

    unit = fields.String(required=True, validate=validate.OneOf(RATE_UNITS))


class SkillSchema(Schema):
    """A skill as anyone sees it; `distance_m` when listed by distance."""

    id = Id()
    user_id = ObjectIdField()
    name = fields.String()
    category = fields.String()
    description = fields.String(allow_none=True)
    rate = fields.Nested(RateSchema, allow_none=True)
    location = Location()
    distance_m = fields.Float()
    created_at = DateTimeZ()
    updated_at = DateTimeZ()


class SkillCreateSchema(Schema):
    """`location` defaults to the caller's profile location."""

    name = Name(required=True, min_len=2, max_len=100)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    description = Text(max_len=2000, allow_none=True)
    rate = fields.Nested(RateSchema, allow_none=True)
    location = Location()


class SkillUpdateSchema(Schema):
    """What an owner may change (`description: null` and `rate: null` remove them)."""

    OPENAPI = {"minProperties": 1}  # not_empty below

    name = Name(min_len=2, max_len=100)
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    description = Text(max_len=2000, allow_none=True)
    rate = fields.Nested(RateSchema, allow_none=True)
    location = Location()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one field to update.")


class SkillListQuerySchema(PageQuerySchema):
    """With `near`: nearest first with distance_m; else with `q`: best match first; else newest first.

    `q` is plain text (words, "phrases", -negation), never a regex.
    """

    near = Near()
    radius_m = Finite(load_default=DEFAULT_RADIUS_M, validate=validate.Range(*RADIUS_M))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    q = Text(min_len=1, max_len=200)
    format = ListFormat(metadata={"description": "geojson (with near only): a bare GeoJSON FeatureCollection "
                                                 "(application/geo+json) of the same items and meta"})

    @validates_schema
    def geojson_needs_near(self, data, **kwargs):
        if data.get("format") == "geojson" and "near" not in data:
            raise ValidationError("Required with format=geojson.", field_name="near")


rate_schema = RateSchema()
skill_schema = SkillSchema()
skill_create_schema = SkillCreateSchema()
skill_update_schema = SkillUpdateSchema()
skill_list_query_schema = SkillListQuerySchema()
user_skills_query_schema = PageQuerySchema()
