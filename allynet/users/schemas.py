"""User schemas: what a user may write, what they and others may read."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet.fields import (BoundedList, DateTimeZ, Finite, Id, Location, Name, ObjectIdField, StrictBool,
                            Text)

VEHICLE_TYPES = ("car", "motorcycle", "bicycle", "scooter", "truck", "walking", "other")
ROLES = ("user", "moderator", "admin")
REPORT_TYPES = ("speed_camera", "police", "hazard", "accident", "road_closure", "traffic", "weather")
EMERGENCY_RADIUS = (100, 20000)
USER_STATUSES = ("active", "suspended")


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
    is_helper = StrictBool()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send role, verified and/or is_helper.")


class SuspensionSchema(Schema):
    """A suspension as staff see it."""

    reason = fields.String()
    until = DateTimeZ(allow_none=True)  # null: until lifted
    by = ObjectIdField()
    at = DateTimeZ()


class AdminUserSchema(ProfileSchema):
    """A user as staff see it: the full profile, whether suspended and why."""

    suspended = fields.Boolean()  # set by the service (users.service.for_staff)
    suspension = fields.Nested(SuspensionSchema, allow_none=True)


class UserListQuerySchema(Schema):
    """GET /users (staff)."""

    q = Text(min_len=1, max_len=100)
    role = fields.String(validate=validate.OneOf(ROLES))
    status = fields.String(validate=validate.OneOf(USER_STATUSES))
    verified = fields.Boolean(truthy={"true"}, falsy={"false"})
    is_helper = fields.Boolean(truthy={"true"}, falsy={"false"})
    cursor = fields.String(validate=validate.Length(max=200))
    limit = fields.Integer(validate=validate.Range(1, 200), load_default=50)


class SuspendSchema(Schema):
    """POST /users/<id>/suspend."""

    reason = Text(required=True, min_len=1, max_len=500)
    until = DateTimeZ(load_default=None, allow_none=True)


profile_schema = ProfileSchema()
public_user_schema = PublicUserSchema()
profile_update_schema = ProfileUpdateSchema()
location_update_schema = LocationUpdateSchema()
admin_user_update_schema = AdminUserUpdateSchema()
admin_user_schema = AdminUserSchema()
user_list_query_schema = UserListQuerySchema()
suspend_schema = SuspendSchema()
