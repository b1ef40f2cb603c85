"""Saved-route schemas: bodies (waypoints as {lat, lng}) and what the owner reads."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet import geo
from allynet.fields import (LAT_LNG_OPENAPI, BoundedList, Cursor, DateTimeZ, Id, LatLngSchema, Name, Text,
                            indexable_geometry)


class RouteCreateSchema(Schema):
    name = Name(required=True, min_len=1, max_len=100)
    waypoints = BoundedList(fields.Nested(LatLngSchema), required=True, validate=validate.Length(2, 500))

    @validates_schema
    def no_degenerate_segments(self, data, **kwargs):
        # MongoDB's 2dsphere index refuses a LineString with repeated or (nearly) antipodal
        # consecutive vertices; say so here rather than as an error on insert.
        points = data.get("waypoints") or []
        for index in range(1, len(points)):
            a, b = points[index - 1], points[index]
            if a["lat"] == b["lat"] and a["lng"] == b["lng"]:
                raise ValidationError({"waypoints": [f"Waypoints {index - 1} and {index} are the same point."]})
            if geo.nearly_antipodal(a["lng"], a["lat"], b["lng"], b["lat"]):
                raise ValidationError({"waypoints": [f"Waypoints {index - 1} and {index} are (nearly) antipodal."]})
        if len(points) >= 2:
            try:
                indexable_geometry({"type": "LineString", "coordinates": [[p["lng"], p["lat"]] for p in points]})
            except ValidationError as exc:
                raise ValidationError({"waypoints": exc.messages}) from exc


class RouteUpdateSchema(RouteCreateSchema):
    """What an owner may change on a route: its name, its waypoints (same rules as on create), or both."""

    name = Text(min_len=1, max_len=100)
    waypoints = fields.List(fields.Nested(LatLngSchema), validate=validate.Length(2, 500))

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send name, waypoints or both.")


class RouteListQuerySchema(Schema):
    cursor = Cursor(validate=validate.Length(min=1, max=200))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200), strict=False)


class LineStringLatLng(fields.Field):
    """A GeoJSON LineString in Mongo, a list of {lat, lng} on the wire."""

    def openapi_property(self):
        """OpenAPI: an array of `{lat, lng}`."""
        return {"type": "array", "items": dict(LAT_LNG_OPENAPI)}

    def _serialize(self, value, attr, obj, **kwargs):
        if not value:
            return []
        return [{"lat": lat, "lng": lng} for lng, lat in value["coordinates"]]


class RouteSchema(Schema):
    id = Id()
    name = fields.String()
    waypoints = LineStringLatLng()
    distance_m = fields.Float()
    created_at = DateTimeZ()
    updated_at = DateTimeZ()


route_create_schema = RouteCreateSchema()
route_list_query_schema = RouteListQuerySchema()
route_update_schema = RouteUpdateSchema()
route_schema = RouteSchema()
