"""Organization schemas: what owners, staff and members may write, and the public and member views."""
import re

from flask import current_app, has_app_context
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet.fields import (DateTimeZ, Email, Id, Location, Name, ObjectIdField, StrictBool, Text,
                            indexable_geometry)
from allynet.help_requests.schemas import Near

KINDS = ("volunteer_group", "club", "company", "agency")
ORG_ROLES = ("owner", "admin", "dispatcher", "member")
PLANS = ("free", "pro")
DEFAULT_MAX_AREA_KM2 = 5000.0
# E.164 once spaces, dots, dashes and brackets are taken out: "+", then 7 to 15 digits.
PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
PHONE_SEPARATORS = re.compile(r"[\s.()-]")
MAX_VERTICES = 1000


def max_area_km2():
    """The configured bound on a service area (ORG_MAX_AREA_KM2)."""
    if has_app_context():
        return float(current_app.config.get("ORG_MAX_AREA_KM2", DEFAULT_MAX_AREA_KM2))
    return DEFAULT_MAX_AREA_KM2


def area_km2(geometry):
    """Geodesic area (WGS84) of a valid Polygon or MultiPolygon in km², holes taken out.

    Each ring's signed area is reduced to the smaller of the two regions it bounds, which is
    the region MongoDB's 2dsphere takes a ring to enclose, whatever its winding.
    """
    from geographiclib.geodesic import Geodesic

    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    total = 0.0
    for rings in polygons:
        for index, ring in enumerate(rings):
            polygon = Geodesic.WGS84.Polygon()
            for lng, lat, *_ in ring[:-1]:
                polygon.AddPoint(lat, lng)
            area = abs(polygon.Compute(False, True)[2]) / 1e6
            total += area if index == 0 else -area
    return total


class ServiceArea(fields.Field):
    """A GeoJSON Polygon or MultiPolygon that a 2dsphere index takes, no larger than ORG_MAX_AREA_KM2."""

    default_error_messages = {
        "invalid": "Must be a GeoJSON object with type Polygon or MultiPolygon and coordinates.",
        "too_big": "The service area is {area:.0f} km²; at most {limit:.0f} km² is allowed.",
        "too_many": f"At most {MAX_VERTICES} vertices.",
    }

    def openapi_property(self):
        """OpenAPI: a GeoJSON Polygon or MultiPolygon ([lng, lat] positions); ring rules in the description."""
        position = {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}}
        ring = {"type": "array", "minItems": 4, "items": position}
        return {"type": "object", "required": ["type", "coordinates"], "additionalProperties": False,
                "properties": {"type": {"type": "string", "enum": ["Polygon", "MultiPolygon"]},
                               "coordinates": {"type": "array", "minItems": 1,
                                               "items": {"type": "array", "items": {"anyOf": [ring, position]}}}},
                "description": "GeoJSON [lng, lat]; closed rings a 2dsphere index takes, at most "
                               f"{MAX_VERTICES} vertices, an area of at most ORG_MAX_AREA_KM2 (5,000 km²)"}

    def _serialize(self, value, attr, obj, **kwargs):
        return value

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict) or value.get("type") not in ("Polygon", "MultiPolygon") \
                or set(value) - {"type", "coordinates"} or not isinstance(value.get("coordinates"), list):
            raise self.make_error("invalid")
        geometry = {"type": value["type"], "coordinates": value["coordinates"]}
        if _count_positions(geometry["coordinates"]) > MAX_VERTICES:
            raise self.make_error("too_many")
        indexable_geometry(geometry)  # closed rings, valid coordinates, no crossing edges: MongoDB's rules
        limit = max_area_km2()
        area = area_km2(geometry)
        if area > limit:
            raise self.make_error("too_big", area=area, limit=limit)
        return geometry


def _count_positions(coordinates, depth=0):
    if depth > 3 or not isinstance(coordinates, list):
        return 0
    if coordinates and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coordinates):
        return 1
    return sum(_count_positions(item, depth + 1) for item in coordinates)


class Phone(fields.String):
    """A phone number in international form (E.164: +, country code, number); separators dropped."""

    default_error_messages = {"phone": "Must be an international number such as +33 1 23 45 67 89."}

    def _deserialize(self, value, attr, data, **kwargs):
        number = PHONE_SEPARATORS.sub("", super()._deserialize(value, attr, data, **kwargs))
        if not PHONE.fullmatch(number):
            raise self.make_error("phone")
        return number


class ContactSchema(Schema):
    email = Email(allow_none=True)
    phone = Phone(allow_none=True)
    website = fields.URL(allow_none=True, schemes={"http", "https"}, require_tld=True,
                         validate=validate.Length(max=300))


class OrganizationCreateSchema(Schema):
    name = Name(required=True, min_len=2, max_len=100)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    description = Text(max_len=2000, allow_none=True)
    contact = fields.Nested(ContactSchema)
    service_area = ServiceArea(required=True)


class OrganizationUpdateSchema(Schema):
    """Owner and org admins edit the profile; staff set `verified` (the plan follows the subscription)."""

    OPENAPI = {"minProperties": 1}  # not_empty below

    name = Name(min_len=2, max_len=100)
    kind = fields.String(validate=validate.OneOf(KINDS))
    description = Text(max_len=2000, allow_none=True)
    contact = fields.Nested(ContactSchema)
    service_area = ServiceArea()
    verified = StrictBool()

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one field.")


class ListQuerySchema(Schema):
    near = Near(metadata={"description": "lat,lng: only organizations whose service area covers it"})
    kind = fields.String(validate=validate.OneOf(KINDS))
    cursor = fields.String()
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class PageQuerySchema(Schema):
    cursor = fields.String()
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class JoinSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=8, max=64))


class RoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ORG_ROLES))


class AssignSchema(Schema):
    user_id = ObjectIdField(required=True)


class OrgJoinEventSchema(Schema):
    organization_id = ObjectIdField(required=True)


# ---- what clients read ----------------------------------------------------------------------

class MemberSchema(Schema):
    """A member as the organization's members see them (no contact details)."""

    user_id = ObjectIdField()
    display_name = fields.String(allow_none=True)
    role = fields.String()
    vouched = fields.Boolean()
    joined_at = DateTimeZ()


class OrganizationSchema(Schema):
    """The public view; `members` and `my_role` only for the organization's members."""

    id = Id()
    name = fields.String()
    kind = fields.String()
    description = fields.String(allow_none=True)
    contact = fields.Dict()
    service_area = fields.Dict()
    verified = fields.Boolean()
    plan = fields.String(metadata={"enum": list(PLANS), "description": "follows the subscription: pro while "
                                                                      "paid and during a grace period"})
    subscription_status = fields.String(allow_none=True, metadata={
        "enum": ["incomplete", "active", "past_due", "canceled", None],
        "description": "members only; null: never subscribed"})
    plan_grace_until = DateTimeZ(allow_none=True, metadata={
        "description": "members only; past_due: pro until then, free afterwards"})
    member_count = fields.Integer()
    created_at = DateTimeZ()
    updated_at = DateTimeZ()
    my_role = fields.String(allow_none=True)
    members = fields.List(fields.Nested(MemberSchema))


class InvitationSchema(Schema):
    code = fields.String()
    expires_at = DateTimeZ()


class DispatchEmergencySchema(Schema):
    """An open SOS inside the service area, as the organization's dispatchers see it."""

    id = Id()
    user_id = ObjectIdField()
    type = fields.String()
    description = fields.String(allow_none=True)
    location = Location()
    status = fields.String()
    responders = fields.Method("_responders")
    created_at = DateTimeZ()

    def _responders(self, emergency):
        return len(emergency.get("responses") or ())


class OrgPartySchema(Schema):
    """A club ride: `invite_code` while it is active (org members may join it)."""

    id = Id()
    name = fields.String()
    leader_id = ObjectIdField()
    is_active = fields.Boolean()
    member_count = fields.Method("_member_count")
    invite_code = fields.Method("_invite_code")
    created_at = DateTimeZ()
    ended_at = DateTimeZ(allow_none=True)

    def _member_count(self, party):
        return len(party.get("members") or ())

    def _invite_code(self, party):
        return party.get("invite_code") if party.get("is_active") else None


create_schema = OrganizationCreateSchema()
update_schema = OrganizationUpdateSchema()
list_query_schema = ListQuerySchema()
page_query_schema = PageQuerySchema()
join_schema = JoinSchema()
role_schema = RoleSchema()
assign_schema = AssignSchema()
org_join_event_schema = OrgJoinEventSchema()
organization_schema = OrganizationSchema()
member_schema = MemberSchema()
invitation_schema = InvitationSchema()
dispatch_emergency_schema = DispatchEmergencySchema()
org_party_schema = OrgPartySchema()
