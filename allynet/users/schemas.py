"""User schemas: what a user may write, what they and others may read."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet.fields import BoundedList, DateTimeZ, Finite, Id, Location, Name, ObjectIdField, StrictBool

VEHICLE_TYPES = ("car", "motorcycle", "bicycle", "scooter", "truck", "walking", "other")
ROLES = ("user", "moderator", "admin")
REPORT_TYPES = ("speed_camera", "police", "hazard", "accident", "road_closure", "traffic", "weather")
EMERGENCY_RADIUS = (100, 20000)


class PreferencesSchema(Schema):
    notifications = StrictBool()
    units = fields.String(validate=validate.OneOf(("metric", "imperial")))
    language = fields.String(validate=validate.Length(min=2, max=10))
    share_location = StrictBool()
    alert_types = BoundedList(fields.String(validate=validate.OneOf(REPORT_TYPES)),
                              validate=validate.Length(max=len(REPORT_TYPES)))


class ProfileSchema(Schema):
    """Own full profile (never the password hash)."""

    id = Id()
    email = fields.String()
    display_name = fields.String()
    vehicle_type = fields.String(allow_none=True)
    preferences = fields.Dict()
    role = fields.String()
    is_helper = fields.Boolean()
    verified = fields.Boolean()
    trust_score = fields.Float()
    emergency_radius_m = fields.Float(allow_none=True)
    location = Location(allow_none=True)
    location_accuracy_m = fields.Float(allow_none=True)
    location_updated_at = DateTimeZ(allow_none=True)
    active_emergency_id = ObjectIdField(allow_none=True)
    created_at = DateTimeZ()


class PublicUserSchema(Schema):
    """What anyone may see of a user."""

    id = Id()
    display_name = fields.String()
    vehicle_type = fields.String(allow_none=True)
    is_helper = fields.Boolean()
    verified = fields.Boolean()
    trust_score = fields.Float()


class ProfileUpdateSchema(Schema):
    """The only profile fields a user may change."""

    OPENAPI = {"minProperties": 1}  # not_empty below

    display_name = Name(min_len=1, max_len=50)
    vehicle_type = fields.String(validate=validate.OneOf(VEHICLE_TYPES), allow_none=True)
    preferences = fields.Nested(PreferencesSchema)
    is_helper = StrictBool()
    emergency_radius_m = Finite(strict=True, validate=validate.Range(*EMERGENCY_RADIUS))

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one field to update.")


class LocationUpdateSchema(Schema):
    lat = Finite(required=True, strict=True, validate=validate.Range(-90, 90))
    lng = Finite(required=True, strict=True, validate=validate.Range(-180, 180))
    accuracy_m = Finite(strict=True, validate=validate.Range(0, 100000))


class AdminUserUpdateSchema(Schema):
    OPENAPI = {"minProperties": 1}  # not_empty below

    role = fields.String(validate=validate.OneOf(ROLES))
    verified = StrictBool()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send role and/or verified.")


profile_schema = ProfileSchema()
public_user_schema = PublicUserSchema()
profile_update_schema = ProfileUpdateSchema()
location_update_schema = LocationUpdateSchema()
admin_user_update_schema = AdminUserUpdateSchema()
