"""Map data query schemas: bbox, layers, a point for the weather."""
from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate

from allynet.fields import Finite
from allynet.mapdata import bbox as bbox_module
from allynet.mapdata.overlays import LAYERS


class BBoxField(fields.Field):
    """`bbox=minLng,minLat,maxLng,maxLat` -> BBox, at most MAP_MAX_BBOX_KM2."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("Must be minLng,minLat,maxLng,maxLat.")
        try:
            box = bbox_module.parse(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        limit = float(current_app.config["MAP_MAX_BBOX_KM2"])
        if box.area_km2() > limit:
            raise ValidationError(f"bbox covers {box.area_km2():.0f} km²; at most {limit:.0f} km² (MAP_MAX_BBOX_KM2).")
        return box


class LayerList(fields.Field):
    """`layers=alerts,traffic` -> a list of known layers (default: all)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(f"Comma-separated values among {', '.join(LAYERS)}.")
        layers = []
        for item in (part.strip() for part in value.split(",")):
            if item not in LAYERS:
                raise ValidationError(f"Comma-separated values among {', '.join(LAYERS)}.")
            if item not in layers:
                layers.append(item)
        return layers


class TrafficQuerySchema(Schema):
    """GET /traffic."""

    bbox = BBoxField(required=True, metadata={"description": "minLng,minLat,maxLng,maxLat"})


class OverlayQuerySchema(Schema):
    """GET /overlays."""

    bbox = BBoxField(required=True, metadata={"description": "minLng,minLat,maxLng,maxLat"})
    layers = LayerList(load_default=lambda: list(LAYERS))
    limit = fields.Integer(validate=validate.Range(1, 2000), metadata={"description": "features per layer"})


class WeatherQuerySchema(Schema):
    """GET /weather."""

    lat = Finite(required=True, validate=validate.Range(-90, 90))
    lng = Finite(required=True, validate=validate.Range(-180, 180))


class _Entry(Schema):
    time = fields.String()
    temperature_c = fields.Float(allow_none=True)
    precipitation_mm = fields.Float(allow_none=True)
    wind_kmh = fields.Float(allow_none=True)
    gusts_kmh = fields.Float(allow_none=True)
    visibility_m = fields.Float(allow_none=True)
    code = fields.Integer(allow_none=True)
    label = fields.String()


class _LatLng(Schema):
    lat = fields.Float()
    lng = fields.Float()


class WeatherSchema(Schema):
    """The weather answer (documentation of what `weather.weather_at` returns)."""

    location = fields.Nested(_LatLng)
    current = fields.Nested(_Entry)
    hourly = fields.List(fields.Nested(_Entry))
    source = fields.String()
    fetched_at = fields.String()
    stale = fields.Boolean()


traffic_query_schema = TrafficQuerySchema()
overlay_query_schema = OverlayQuerySchema()
weather_query_schema = WeatherQuerySchema()
weather_schema = WeatherSchema()
