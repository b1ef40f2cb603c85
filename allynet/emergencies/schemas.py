"""Emergency schemas: what a client may send, and what each audience may read."""
from marshmallow import Schema, fields, validate

from allynet import geo
from allynet.fields import Cursor, DateTimeZ, Finite, Id, Location, ObjectIdField, Text

EMERGENCY_TYPES = ("medical", "fire", "crime", "accident", "breakdown", "other")
STATUSES = ("active", "responding", "resolved", "cancelled")
RADIUS_RANGE = (100, 20000)
MAX_DESCRIPTION = 1000
MAX_MESSAGE = 1000
MAX_ETA_MINUTES = 24 * 60


class NearField(fields.Field):
    """`near=lat,lng` in a query string -> (lat, lng)."""

    default_error_messages = {"invalid": "Must be 'lat,lng' with lat in [-90, 90] and lng in [-180, 180]."}

    def openapi_property(self):
        """OpenAPI: a "lat,lng" string in range."""
        return {"type": "string", "pattern": geo.NEAR_PATTERN, "example": "52.52,13.405"}

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return geo.parse_near(value)
        except ValueError as exc:
            raise self.make_error("invalid") from exc


# ---- input -------------------------------------------------------------------------------------

class CreateEmergencySchema(Schema):
    """POST /emergencies."""

    type = fields.String(required=True, validate=validate.OneOf(EMERGENCY_TYPES))
    location = Location(required=True)
    description = Text(max_len=MAX_DESCRIPTION, allow_none=True)
    radius_m = Finite(strict=True, validate=validate.Range(*RADIUS_RANGE))
    request_id = fields.String(validate=validate.Length(min=1, max=128))


class RespondSchema(Schema):
    """POST /emergencies/<id>/respond."""

    eta_minutes = fields.Integer(strict=True, allow_none=True, validate=validate.Range(0, MAX_ETA_MINUTES))


class NearQuerySchema(Schema):
    """GET /emergencies?near=lat,lng&radius_m=."""

    near = NearField()
    radius_m = Finite(validate=validate.Range(*RADIUS_RANGE))
    limit = fields.Integer(validate=validate.Range(1, 100))


class MineQuerySchema(Schema):
    """GET /emergencies/mine?cursor=&limit=."""

    cursor = Cursor(validate=validate.Length(max=200))
    limit = fields.Integer(validate=validate.Range(1, 100))


class JoinEventSchema(Schema):
    """Socket.IO `emergency:join`."""

    emergency_id = ObjectIdField(required=True)


class RespondEventSchema(RespondSchema):
    """`emergency:respond` payload."""

    emergency_id = ObjectIdField(required=True)


class MessageEventSchema(Schema):
    """Socket.IO `emergency:message`."""

    emergency_id = ObjectIdField(required=True)
    text = Text(required=True, min_len=1, max_len=MAX_MESSAGE)  # stripped first: blanks are refused


# ---- output ------------------------------------------------------------------------------------

class ResponseSchema(Schema):
    helper_id = ObjectIdField()
    responded_at = DateTimeZ()
    eta_minutes = fields.Integer(allow_none=True)


class TimelineEntrySchema(Schema):
    status = fields.String()
    at = DateTimeZ()
    by = ObjectIdField(allow_none=True)


class EmergencySchema(Schema):
    """An SOS as its viewers see it (never the list of who was alerted)."""

    id = Id()
    user_id = ObjectIdField()
    type = fields.String()
    description = fields.String(allow_none=True)
    location = Location()
    radius_m = fields.Float()
    search_radius_m = fields.Float()
    wave = fields.Integer()
    status = fields.String(validate=validate.OneOf(STATUSES))
    responses = fields.List(fields.Nested(ResponseSchema))
    timeline = fields.List(fields.Nested(TimelineEntrySchema))
    notified_count = fields.Method("_notified_count")
    created_at = DateTimeZ()
    updated_at = DateTimeZ()
    resolved_at = DateTimeZ(allow_none=True)
    cancelled_at = DateTimeZ(allow_none=True)

    def _notified_count(self, obj):
        return len(obj.get("notified_helper_ids") or [])


class CreateResultSchema(Schema):
    """201 body of POST /emergencies."""

    emergency = fields.Nested(EmergencySchema)
    notified_helpers = fields.Integer()


class EmergencyAlertSchema(Schema):
    """`emergency.created`: what an alerted helper needs to decide and go."""

    id = Id()
    emergency_id = ObjectIdField(attribute="_id")
    user_id = ObjectIdField()
    type = fields.String()
    description = fields.String(allow_none=True)
    location = Location()
    status = fields.String()
    created_at = DateTimeZ()


class NearbyEmergencySchema(EmergencyAlertSchema):
    """An open SOS in GET /emergencies?near=, with its distance from the caller."""

    distance_m = fields.Float()
    responders = fields.Method("_responders")

    def _responders(self, obj):
        return len(obj.get("responses") or [])


class MessageSchema(Schema):
    """`emergency:message` as the room receives it."""

    id = Id()
    emergency_id = ObjectIdField()
    user_id = ObjectIdField()
    text = fields.String()
    ts = DateTimeZ(attribute="created_at")


create_schema = CreateEmergencySchema()
respond_schema = RespondSchema()
near_query_schema = NearQuerySchema()
mine_query_schema = MineQuerySchema()
join_event_schema = JoinEventSchema()
message_event_schema = MessageEventSchema()
respond_event_schema = RespondEventSchema()
messages_query_schema = MineQuerySchema()
emergency_schema = EmergencySchema()
create_result_schema = CreateResultSchema()
alert_schema = EmergencyAlertSchema()
nearby_schema = NearbyEmergencySchema()
message_schema = MessageSchema()
