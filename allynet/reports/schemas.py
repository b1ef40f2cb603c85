"""Report, vote, moderation, alert and audit-log schemas: what clients send and what they read."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet import geo
from allynet.fields import Cursor, DateTimeZ, Finite, Id, ListFormat, Location, ObjectIdField, Text

REPORT_TYPES = ("speed_camera", "police", "hazard", "accident", "road_closure", "traffic", "weather")
# Official alerts use the report types plus a catch-all for what fits none of them.
ALERT_TYPES = REPORT_TYPES + ("other",)
REPORT_STATUSES = ("pending", "active", "approved", "hidden", "rejected")
# `status` values a moderator may list with GET /reports?status=...
MODERATION_LISTS = ("flagged", "pending", "hidden", "rejected")
MODERATION_ACTIONS = ("approve", "reject", "hide")
RADIUS_M = (100, 50000)
DEFAULT_RADIUS_M = 5000
MAX_DESCRIPTION = 500


class NearField(fields.Field):
    """`near=lat,lng` in a query string -> GeoJSON Point."""

    default_error_messages = {"invalid": "Must be 'lat,lng' with lat in -90..90 and lng in -180..180."}

    def openapi_property(self):
        """OpenAPI: a "lat,lng" string in range."""
        return {"type": "string", "pattern": geo.NEAR_PATTERN, "example": "52.52,13.405"}

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            lat, lng = geo.parse_near(value)
        except ValueError as exc:
            raise self.make_error("invalid") from exc
        return geo.to_point(lat, lng)


class TypeList(fields.Field):
    """`types=police,hazard` in a query string -> a list of known alert types."""

    default_error_messages = {"invalid": f"Comma-separated values among {', '.join(ALERT_TYPES)}."}

    def openapi_property(self):
        """OpenAPI: a comma-separated list of alert types."""
        one = "(?:" + "|".join(ALERT_TYPES) + ")"
        return {"type": "string", "pattern": f"^{one}(?:,{one})*$", "example": "police,hazard"}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        types = [item.strip() for item in value.split(",") if item.strip()]
        if not types or any(item not in ALERT_TYPES for item in types):
            raise self.make_error("invalid")
        return sorted(set(types))


class ReportCreateSchema(Schema):
    """POST /reports."""

    type = fields.String(required=True, validate=validate.OneOf(REPORT_TYPES))
    location = Location(required=True)
    description = Text(max_len=MAX_DESCRIPTION, load_default="")


class VoteSchema(Schema):
    """POST /reports/<id>/vote."""

    value = fields.String(required=True, validate=validate.OneOf(("up", "down")))


class ModerateSchema(Schema):
    """POST /reports/<id>/moderate."""

    action = fields.String(required=True, validate=validate.OneOf(MODERATION_ACTIONS))
    reason = Text(max_len=MAX_DESCRIPTION, load_default=None, allow_none=True)


class ReportListQuerySchema(Schema):
    """GET /reports: near a point (sorted by distance) or newest first; `status` is for moderators."""

    near = NearField()
    radius_m = Finite(validate=validate.Range(*RADIUS_M))
    type = fields.String(validate=validate.OneOf(REPORT_TYPES))
    status = fields.String(validate=validate.OneOf(MODERATION_LISTS))
    cursor = Cursor(validate=validate.Length(max=200))
    limit = fields.Integer(validate=validate.Range(1, 200), load_default=50)
    format = ListFormat()

    @validates_schema
    def near_rules(self, data, **kwargs):
        if "radius_m" in data and "near" not in data:
            raise ValidationError("Only with near=lat,lng.", field_name="radius_m")
        if "cursor" in data and "near" in data:
            raise ValidationError("Near queries return one page, nearest first.", field_name="cursor")


class AlertQuerySchema(Schema):
    """GET /alerts."""

    lat = Finite(required=True, validate=validate.Range(-90, 90))
    lng = Finite(required=True, validate=validate.Range(-180, 180))
    radius_m = Finite(validate=validate.Range(*RADIUS_M), load_default=DEFAULT_RADIUS_M)
    types = TypeList()
    format = ListFormat()
    limit = fields.Integer(validate=validate.Range(1, 500), load_default=200)


class AlertCreateSchema(Schema):
    """POST /alerts (moderators and admins)."""

    type = fields.String(required=True, validate=validate.OneOf(ALERT_TYPES))
    location = Location(required=True)
    description = Text(required=True, min_len=1, max_len=MAX_DESCRIPTION)
    expires_at = DateTimeZ(required=True)


class AuditQuerySchema(Schema):
    """GET /audit-log."""

    target_type = fields.String(validate=validate.Length(min=1, max=50))
    target_id = ObjectIdField()
    cursor = Cursor(validate=validate.Length(max=200))
    limit = fields.Integer(validate=validate.Range(1, 200), load_default=50)


class ReportSchema(Schema):
    """A community report as anyone sees it (the reporter stays anonymous)."""

    id = Id()
    type = fields.String()
    location = Location()
    description = fields.String()
    status = fields.String()
    upvotes = fields.Integer()
    downvotes = fields.Integer()
    expires_at = DateTimeZ(allow_none=True)  # null: a speed camera that stays
    created_at = DateTimeZ()
    distance_m = fields.Float()  # only in near queries


class ModerationReportSchema(ReportSchema):
    """A report as moderators see it: with its reporter and its moderation state."""

    user_id = ObjectIdField()
    hidden_by = fields.String(allow_none=True)  # "votes" or "moderator"
    reviewed = fields.Boolean()
    flagged = fields.Boolean()  # set by the service (see service.is_flagged)
    moderated_by = ObjectIdField(allow_none=True)
    moderated_at = DateTimeZ(allow_none=True)
    moderation_reason = fields.String(allow_none=True)


class AlertSchema(Schema):
    """One entry of the alerts feed: an official alert or a credible community report."""

    id = fields.String()
    source = fields.String()  # "report" or "official"
    type = fields.String()
    location = Location()
    description = fields.String()
    upvotes = fields.Integer(allow_none=True)  # null for official alerts
    downvotes = fields.Integer(allow_none=True)
    expires_at = DateTimeZ(allow_none=True)
    created_at = DateTimeZ()
    distance_m = fields.Float()


class OfficialAlertSchema(Schema):
    """An official alert as created."""

    id = Id()
    source = fields.Constant("official")
    type = fields.String()
    location = Location()
    description = fields.String()
    expires_at = DateTimeZ()
    created_at = DateTimeZ()
    created_by = ObjectIdField()


class AuditEntrySchema(Schema):
    """One audit-log entry."""

    id = Id()
    actor_id = ObjectIdField()
    action = fields.String()
    target_type = fields.String()
    target_id = ObjectIdField()
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)
    reason = fields.String(allow_none=True)
    at = DateTimeZ()


report_create_schema = ReportCreateSchema()
vote_schema = VoteSchema()
moderate_schema = ModerateSchema()
report_list_query_schema = ReportListQuerySchema()
alert_query_schema = AlertQuerySchema()
alert_create_schema = AlertCreateSchema()
audit_query_schema = AuditQuerySchema()
report_schema = ReportSchema()
moderation_report_schema = ModerationReportSchema()
alert_schema = AlertSchema()
official_alert_schema = OfficialAlertSchema()
audit_entry_schema = AuditEntrySchema()
