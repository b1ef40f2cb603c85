"""Party schemas: REST bodies, socket payloads, and what members may read.

`validate_update` is a hand-written loader for the `party:update` hot path
(1 Hz per rider): it enforces the same rules as a marshmallow schema (unknown
fields refused, finite numbers, ranges) at a fraction of the cost, and raises
marshmallow's ValidationError so the ack has the usual shape.
"""
import math
import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet.fields import Cursor, DateTimeZ, Id, Location, Name, ObjectIdField, StrictBool, Text

STATUSES = ("riding", "stopped", "paused", "sos")
MAX_SPEED_KMH = 400
# What riders may flag to each other; the server adds member_left_behind and
# member_stopped, the reports feature its own report types.
CLIENT_ALERT_TYPES = ("hazard", "police", "speed_camera", "accident", "road_closure", "traffic",
                      "weather", "breakdown", "fuel", "regroup", "sos", "other")
# 8 characters from an alphabet without look-alikes (no 0/O, 1/I/L).
INVITE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
INVITE_CODE_LENGTH = 8
_INVITE_RE = re.compile(f"^[{INVITE_ALPHABET}]{{{INVITE_CODE_LENGTH}}}$")
INVITE_CODE_PATTERN = "^[A-HJKMNP-Za-hjkmnp-z2-9]{8}$"
_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")


class InviteCode(fields.String):
    """An invite code; case-insensitive on input (people type them), stored upper-case."""

    default_error_messages = {"invalid_code": "Not a valid invite code."}

    def openapi_property(self):
        """OpenAPI: 8 characters of the invite alphabet, either case."""
        return {"type": "string", "pattern": INVITE_CODE_PATTERN, "example": "K7M2PQ9X"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip().upper()
        if not _INVITE_RE.match(text):
            raise self.make_error("invalid_code")
        return text


# ---- REST bodies -----------------------------------------------------------

class PartyCreateSchema(Schema):
    name = Name(required=True, min_len=1, max_len=100)


class PartyJoinSchema(Schema):
    invite_code = InviteCode(required=True)


class HistoryQuerySchema(Schema):
    cursor = Cursor(validate=validate.Length(min=1, max=200))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500), strict=False)


class PartyListQuerySchema(Schema):
    """GET /parties: `active` filters on your membership (true: the party you ride in now)."""

    active = fields.Boolean(truthy={"true"}, falsy={"false"}, metadata={
        "description": "true: the party you are in now; false: parties you left or that ended"})
    cursor = Cursor(validate=validate.Length(min=1, max=200))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100), strict=False)


# ---- socket payloads -------------------------------------------------------

class SocketCreateSchema(PartyCreateSchema):
    pass


class SocketJoinSchema(Schema):
    party_id = ObjectIdField()
    invite_code = InviteCode()

    @validates_schema
    def one_of(self, data, **kwargs):
        if "party_id" not in data and "invite_code" not in data:
            raise ValidationError("Send party_id or invite_code.")


class SocketPartySchema(Schema):
    party_id = ObjectIdField(required=True)


class SocketBatchSchema(Schema):
    enabled = StrictBool(required=True)


class SocketMessageSchema(Schema):
    party_id = ObjectIdField(required=True)
    text = Text(required=True, min_len=1, max_len=1000)


class SocketAlertSchema(Schema):
    party_id = ObjectIdField(required=True)
    type = fields.String(required=True, validate=validate.OneOf(CLIENT_ALERT_TYPES))
    location = Location(required=True)
    description = Text(min_len=1, max_len=500)


# The fields a `party:update` payload may carry. client_ts: optional, any finite number, never
# stored; echoed in the broadcast and the ack so clients (and load tests) can order updates and
# measure their own lag.
UPDATE_FIELDS = frozenset(("party_id", "location", "speed_kmh", "heading", "status", "client_ts"))


def _number(value):
    # bool is an int in Python; a client sending true is a bug, not 1 km/h.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int beyond a double (the decoder refuses those from the wire)
        return None
    return value if math.isfinite(value) else None


def validate_update(payload):
    """Load a `party:update` payload -> dict (party_id str, location GeoJSON, ...); ValidationError if bad."""
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["Payload must be an object."]})
    errors = {}
    for key in payload:
        if key not in UPDATE_FIELDS:
            errors[str(key)] = ["Unknown field."]
    party_id = payload.get("party_id")
    if not isinstance(party_id, str) or not _HEX24.match(party_id):
        errors["party_id"] = ["Missing data for required field." if party_id is None else "Not a valid id."]
    location = payload.get("location")
    point = None
    if not isinstance(location, dict):
        errors["location"] = ["Missing data for required field." if location is None
                              else "Must be an object with lat and lng."]
    else:
        lat, lng = _number(location.get("lat")), _number(location.get("lng"))
        extra = set(location) - {"lat", "lng"}
        if lat is None or lng is None or not -90 <= lat <= 90 or not -180 <= lng <= 180 or extra:
            errors["location"] = ["Needs finite lat in -90..90 and lng in -180..180 (and nothing else)."]
        else:
            point = {"type": "Point", "coordinates": [lng, lat]}
    data = {"party_id": party_id.lower() if isinstance(party_id, str) else None, "location": point}
    if "speed_kmh" in payload:
        speed = _number(payload["speed_kmh"])
        if speed is None or not 0 <= speed <= MAX_SPEED_KMH:
            errors["speed_kmh"] = [f"Must be a number between 0 and {MAX_SPEED_KMH}."]
        data["speed_kmh"] = speed
    if "heading" in payload:
        heading = _number(payload["heading"])
        if heading is None or not 0 <= heading <= 360:
            errors["heading"] = ["Must be a number between 0 and 360."]
        data["heading"] = heading
    if "client_ts" in payload:
        client_ts = payload["client_ts"]
        if _number(client_ts) is None or (type(client_ts) is int and not -2 ** 63 <= client_ts < 2 ** 63):
            errors["client_ts"] = ["Must be a finite number (integers within 64 bits)."]
        data["client_ts"] = client_ts
    if "status" in payload:
        if payload["status"] not in STATUSES:
            errors["status"] = [f"Must be one of: {', '.join(STATUSES)}."]
        data["status"] = payload["status"]
    if errors:
        raise ValidationError(errors)
    return data


# ---- what members read -----------------------------------------------------

class PartyMemberSchema(Schema):
    user_id = ObjectIdField()
    display_name = fields.String(allow_none=True)
    joined_at = DateTimeZ()
    is_leader = fields.Boolean()
    online = fields.Boolean()
    last_location = Location(allow_none=True)
    last_speed_kmh = fields.Float(allow_none=True)
    heading = fields.Float(allow_none=True)
    status = fields.String(allow_none=True)
    last_update_at = DateTimeZ(allow_none=True)


class PartySchema(Schema):
    """A party as its members see it."""

    id = Id()
    name = fields.String()
    invite_code = fields.String()
    leader_id = ObjectIdField()
    is_active = fields.Boolean()
    created_at = DateTimeZ()
    ended_at = DateTimeZ(allow_none=True)
    members = fields.List(fields.Nested(PartyMemberSchema))
    online = fields.List(fields.String())


class PartyJoinResultSchema(PartySchema):
    """The party you created or joined, and the one that moved you out of (null when none)."""

    left_party_id = ObjectIdField(allow_none=True)


class MembershipSchema(Schema):
    """Your membership of a party: `left_reason` is `left` or `ended`, null while you are in it."""

    active = fields.Boolean()
    joined_at = DateTimeZ()
    left_at = DateTimeZ(allow_none=True)
    left_reason = fields.String(allow_none=True)


class PartySummarySchema(Schema):
    """A party in your list; `leader_id`/`member_count` where you may read the party, `invite_code` while in it."""

    id = Id()
    name = fields.String()
    is_active = fields.Boolean()
    created_at = DateTimeZ()
    ended_at = DateTimeZ(allow_none=True)
    leader_id = ObjectIdField()
    member_count = fields.Integer()
    invite_code = fields.String()
    membership = fields.Nested(MembershipSchema)


class HistoryItemSchema(Schema):
    """One entry of a ride's history: a trail point, a message or an alert."""

    kind = fields.String()  # trail | message | alert
    id = Id()
    ts = DateTimeZ()
    user_id = ObjectIdField(allow_none=True)
    location = Location(allow_none=True)
    speed_kmh = fields.Float(allow_none=True)
    heading = fields.Float(allow_none=True)
    status = fields.String(allow_none=True)
    text = fields.String()
    type = fields.String()
    description = fields.String(allow_none=True)


party_create_schema = PartyCreateSchema()
party_join_schema = PartyJoinSchema()
history_query_schema = HistoryQuerySchema()
party_list_query_schema = PartyListQuerySchema()
party_join_result_schema = PartyJoinResultSchema()
party_summary_schema = PartySummarySchema()
socket_create_schema = SocketCreateSchema()
socket_join_schema = SocketJoinSchema()
socket_party_schema = SocketPartySchema()
socket_message_schema = SocketMessageSchema()
socket_batch_schema = SocketBatchSchema()
socket_alert_schema = SocketAlertSchema()
party_schema = PartySchema()
history_item_schema = HistoryItemSchema()
