"""Public map layers, as one GeoJSON FeatureCollection (`GET /overlays`) or Mapbox Vector Tiles.

Layers: `alerts` (official alerts, not expired), `reports` (credible community reports: active or
approved, not expired; never pending or hidden), `traffic` (published cells, `traffic.py`),
`businesses` (verified, not hidden; the business's public fields only) and `safe_places` (the same,
flagged `safe_place`). Never an SOS, a rider's position or a party. Each layer is one geo query
(`$geoWithin` on its 2dsphere field, `bbox.BBox.geo_filter`) per request.

Tiles are MVT 2.1 encoded by `mapbox-vector-tile`, one MVT layer named after the URL's layer, in
web-mercator tile coordinates (extent 4096); zoom `TILE_MIN_ZOOM`..`TILE_MAX_ZOOM`.
"""
import hashlib
import math

import h3
import mapbox_vector_tile
from shapely.geometry import Point, Polygon, box as shapely_box

from allynet import clock
from allynet.fields import iso
from allynet.mapdata import traffic
from allynet.mapdata.bbox import BBox, mercator, tile_bbox
from allynet.reports.alerts_service import CREDIBLE, not_expired

LAYERS = ("alerts", "reports", "traffic", "businesses", "safe_places")
TILE_MIN_ZOOM, TILE_MAX_ZOOM = 8, 16
TILE_EXTENT = 4096
TILE_MAX_FEATURES = 2000  # per tile and layer
BUSINESS_FIELDS = ("name", "category", "address", "website", "phone")


def _point_feature(layer, doc, properties):
    lng, lat = doc["location"]["coordinates"][:2]
    return {"type": "Feature", "id": str(doc["_id"]), "geometry": {"type": "Point", "coordinates": [lng, lat]},
            "properties": {"layer": layer, "id": str(doc["_id"]), **properties}}


def _alert_properties(doc):
    return {"type": doc["type"], "description": doc.get("description") or "",
            "expires_at": iso(doc["expires_at"]) if doc.get("expires_at") else None}


def _report_properties(doc):
    return {"type": doc["type"], "description": doc.get("description") or "", "upvotes": doc.get("upvotes", 0),
            "downvotes": doc.get("downvotes", 0), "created_at": iso(doc["created_at"]),
            "expires_at": iso(doc["expires_at"]) if doc.get("expires_at") else None}


def _business_properties(doc):
    return {field: doc.get(field) for field in BUSINESS_FIELDS}


_ALERT_FIELDS = ("type", "description", "expires_at")
_REPORT_FIELDS = ("type", "description", "upvotes", "downvotes", "created_at", "expires_at")

# layer -> (collection, filter of what is public, the fields read, properties)
_POINT_LAYERS = {
    "alerts": ("alerts", lambda now: not_expired(now), _ALERT_FIELDS, _alert_properties),
    "reports": ("reports", lambda now: {"status": {"$in": list(CREDIBLE)}, **not_expired(now)}, _REPORT_FIELDS,
                _report_properties),
    "businesses": ("businesses", lambda now: {"verified": True, "hidden": {"$ne": True}}, BUSINESS_FIELDS,
                   _business_properties),
    "safe_places": ("businesses", lambda now: {"verified": True, "hidden": {"$ne": True}, "safe_place": True},
                    BUSINESS_FIELDS, _business_properties),
}


def _point_layer(db, layer, box, limit):
    collection, public, read, properties = _POINT_LAYERS[layer]
    query = {**public(clock.now()), **box.geo_filter("location")}  # cheap conditions first
    projection = {"location": 1, **{name: 1 for name in read}}
    features = []
    for doc in db[collection].find(query, projection=projection).sort("_id", 1):
        coordinates = (doc.get("location") or {}).get("coordinates")
        if not coordinates or not box.contains(coordinates[0], coordinates[1]):
            continue
        if len(features) >= limit:
            return features, True
        features.append(_point_feature(layer, doc, properties(doc)))
    return features, False


def _traffic_layer(db, box, limit):
    cells, truncated = traffic.cells_in(db=db, box=box, limit=limit)
    features = []
    for doc in cells:
        item = traffic.feature(doc)
        item["properties"] = {"layer": "traffic", **item["properties"]}
        features.append(item)
    return features, truncated


def layer_features(*, db, layer, box, limit):
    """The features of one public layer in `box` (at most `limit`); returns (features, truncated)."""
    if layer == "traffic":
        return _traffic_layer(db, box, limit)
    return _point_layer(db, layer, box, limit)


def overlays(*, db, box, layers, limit):
    """One FeatureCollection of the asked layers in `box`, `truncated` naming each cut layer."""
    features, truncated = [], {}
    for layer in layers:
        found, cut = layer_features(db=db, layer=layer, box=box, limit=limit)
        features.extend(found)
        if cut:
            truncated[layer] = True
    return {"type": "FeatureCollection", "bbox": box.as_list(), "features": features, "truncated": truncated}


# ---------------------------------------------------------------------------
# Vector tiles
# ---------------------------------------------------------------------------

def _traffic_tile_box(tile, res):
    # A hexagon drawn in a tile may have its centre in the next one: look one cell further.
    margin = h3.average_hexagon_edge_length(res, unit="km") * 2 / 111.0
    lat_margin = margin
    lng_margin = margin / max(0.01, math.cos(math.radians(max(abs(tile.south), abs(tile.north)))))
    return BBox(max(-180.0, tile.west - lng_margin), max(-90.0, tile.south - lat_margin),
                min(180.0, tile.east + lng_margin), min(90.0, tile.north + lat_margin))


def _mvt_properties(properties):
    return {key: value for key, value in properties.items() if value is not None and key != "layer"}


def tile(*, db, layer, z, x, y, traffic_res):
    """The MVT bytes of one tile of `layer`, or b"" when the tile holds nothing."""
    bounds = tile_bbox(z, x, y)
    west, south = mercator(bounds.west, bounds.south)
    east, north = mercator(bounds.east, bounds.north)
    frame = shapely_box(west, south, east, north)
    mvt_features = []
    if layer == "traffic":
        cells, _ = traffic.cells_in(db=db, box=_traffic_tile_box(bounds, traffic_res), limit=TILE_MAX_FEATURES)
        for doc in cells:
            hexagon = Polygon([mercator(lng, lat) for lat, lng in h3.cell_to_boundary(doc["_id"])])
            if hexagon.intersects(frame):
                mvt_features.append({"geometry": hexagon, "properties": traffic.properties(doc)})
    else:
        found, _ = _point_layer(db, layer, bounds, TILE_MAX_FEATURES)
        for item in found:
            lng, lat = item["geometry"]["coordinates"]
            mvt_features.append({"geometry": Point(mercator(lng, lat)),
                                 "properties": _mvt_properties(item["properties"])})
    if not mvt_features:
        return b""
    return mapbox_vector_tile.encode([{"name": layer, "features": mvt_features}],
                                     default_options={"quantize_bounds": (west, south, east, north),
                                                      "extents": TILE_EXTENT})


def etag(content):
    """A strong ETag of the tile bytes."""
    return hashlib.sha256(content).hexdigest()[:32]


def tilejson(*, layer, tiles_url):
    """The TileJSON 3.0 document of one layer."""
    fields = {"alerts": ["id", "type", "description", "expires_at"],
              "reports": ["id", "type", "description", "upvotes", "downvotes", "created_at", "expires_at"],
              "traffic": ["h3", "speed_median_kmh", "speed_p85_kmh", "riders", "level", "updated_at"],
              "businesses": ["id", *BUSINESS_FIELDS], "safe_places": ["id", *BUSINESS_FIELDS]}[layer]
    return {"tilejson": "3.0.0", "name": f"allynet {layer}", "scheme": "xyz", "tiles": [tiles_url],
            "minzoom": TILE_MIN_ZOOM, "maxzoom": TILE_MAX_ZOOM, "bounds": [-180, -85.05112878, 180, 85.05112878],
            "vector_layers": [{"id": layer, "fields": {name: "String" if name not in (
                "upvotes", "downvotes", "speed_median_kmh", "speed_p85_kmh") else "Number" for name in fields},
                "minzoom": TILE_MIN_ZOOM, "maxzoom": TILE_MAX_ZOOM}]}
