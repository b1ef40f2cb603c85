"""Map data over HTTP: traffic, weather, overlays, vector tiles and their TileJSON."""
from flask import Response, current_app, jsonify, request, url_for

from allynet.auth.decorators import auth_required, user_or_ip_key
from allynet.db import get_db
from allynet.errors import NotFound
from allynet.extensions import limiter
from allynet.http import GEOJSON_MIMETYPE, doc, ok, use_query
from allynet.mapdata import bp, overlays, traffic, weather
from allynet.mapdata.schemas import overlay_query_schema, traffic_query_schema, weather_query_schema, weather_schema

MVT_MIMETYPE = "application/vnd.mapbox-vector-tile"
_GEOJSON = {GEOJSON_MIMETYPE: {"schema": {"type": "object", "required": ["type", "features"]}}}


def _geojson(collection):
    response = jsonify(collection)
    response.mimetype = GEOJSON_MIMETYPE
    return response


@bp.get("/traffic")
@auth_required
@doc(summary="Traffic from our riders in bbox: a bare GeoJSON FeatureCollection of H3 cell polygons "
             "(h3, speed_median_kmh, speed_p85_kmh, riders bucket, level, updated_at); bbox over "
             "MAP_MAX_BBOX_KM2 is 400", content=_GEOJSON, tags=["map"])
@use_query(traffic_query_schema)
def get_traffic(query):
    cells, _ = traffic.cells_in(db=get_db(), box=query["bbox"])
    return _geojson({"type": "FeatureCollection", "features": [traffic.feature(doc) for doc in cells]})


@bp.get("/weather")
@auth_required
@limiter.limit(lambda: current_app.config["WEATHER_RATE_LIMIT"], key_func=user_or_ip_key)
@doc(summary="Current weather and the next 6 hours at lat,lng (cached per H3 res-6 cell; stale: true while "
             "the provider is down); 503 weather_unavailable with nothing to give or WEATHER_PROVIDER=off",
     response=weather_schema, tags=["map"])
@use_query(weather_query_schema)
def get_weather(query):
    return ok(weather.weather_at(db=get_db(), lat=query["lat"], lng=query["lng"]))


@bp.get("/overlays")
@auth_required
@doc(summary="Public map layers in bbox as one bare GeoJSON FeatureCollection, each feature with "
             "properties.layer; truncated: {layer: true} for each layer cut at limit", content=_GEOJSON,
     tags=["map"])
@use_query(overlay_query_schema)
def get_overlays(query):
    limit = query.get("limit") or int(current_app.config["OVERLAY_LAYER_LIMIT"])
    return _geojson(overlays.overlays(db=get_db(), box=query["bbox"], layers=query["layers"], limit=limit))


def _known_layer(layer):
    if layer not in overlays.LAYERS:
        raise NotFound("No such layer")


@bp.get("/tiles/<layer>.json")
@doc(summary="TileJSON 3.0 of a public layer (alerts, reports, traffic, businesses, safe_places)", auth=False,
     content={"application/json": {"schema": {"type": "object", "required": ["tilejson", "tiles"]}}},
     tags=["map"], errors={404: "not_found (no such layer)"})
def get_tilejson(layer):
    _known_layer(layer)
    template = url_for("mapdata.get_tile", layer=layer, z=0, x=0, y=0, _external=True)
    template = template.replace("/0/0/0.mvt", "/{z}/{x}/{y}.mvt")
    return jsonify(overlays.tilejson(layer=layer, tiles_url=template))


@bp.get("/tiles/<layer>/<z>/<x>/<y>.mvt")
@doc(summary="A Mapbox Vector Tile (2.1) of a public layer, zoom 8..16 (else 404); 204 when empty; ETag and "
             "Cache-Control, If-None-Match answers 304", auth=False,
     content={MVT_MIMETYPE: {"schema": {"type": "string", "format": "binary"}}}, tags=["map"],
     errors={204: "an empty tile (no body)", 304: "not modified (If-None-Match)",
             404: "not_found (no such layer, or a tile outside zoom 8..16)"})
def get_tile(layer, z, x, y):
    _known_layer(layer)
    if not all(part.isascii() and part.isdigit() and len(part) <= 6 for part in (z, x, y)):
        raise NotFound("No such tile: zoom 8..16, x and y below 2^zoom")
    z, x, y = int(z), int(x), int(y)
    if not (overlays.TILE_MIN_ZOOM <= z <= overlays.TILE_MAX_ZOOM) or x >= 2 ** z or y >= 2 ** z:
        raise NotFound("No such tile: zoom 8..16, x and y below 2^zoom")
    content = overlays.tile(db=get_db(), layer=layer, z=z, x=x, y=y,
                            traffic_res=int(current_app.config["TRAFFIC_H3_RES"]))
    headers = {"Cache-Control": f"public, max-age={int(current_app.config['TILE_CACHE_SECONDS'])}"}
    if not content:
        return Response(status=204, headers=headers)
    response = Response(content, mimetype=MVT_MIMETYPE, headers=headers)
    response.set_etag(overlays.etag(content))
    return response.make_conditional(request)
