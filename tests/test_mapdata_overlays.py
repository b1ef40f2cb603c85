"""Overlays and vector tiles: public layers only, bbox exact, limits, MVT decoding, ETag/304."""
import math
from datetime import timedelta

import h3
import mapbox_vector_tile
import pytest
from bson import ObjectId

from allynet import clock
from allynet.mapdata.bbox import tile_bbox
from tests.helpers import error_code

Z = 14
LAT, LNG = 45.7640, 4.8357


def tile_of(lat, lng, z=Z):
    n = 2 ** z
    x = int((lng + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


X, Y = tile_of(LAT, LNG)
TILE = tile_bbox(Z, X, Y)
INSIDE = ((TILE.west + TILE.east) / 2, (TILE.south + TILE.north) / 2)  # lng, lat
NEAR_INSIDE = (TILE.east - 1e-5, TILE.north - 1e-5)  # just inside the north-east corner
OUTSIDE = (TILE.east + 1e-4, (TILE.south + TILE.north) / 2)  # just east: the next tile
BBOX = f"{TILE.west},{TILE.south},{TILE.east},{TILE.north}"


def point(lng, lat):
    return {"type": "Point", "coordinates": [lng, lat]}


@pytest.fixture
def world(db):
    """One of everything, inside the tile and just outside it."""
    now = clock.now()
    later = now + timedelta(hours=2)
    ids = {}

    def report(name, where, status, **extra):
        ids[name] = db.reports.insert_one({"type": "hazard", "location": point(*where), "description": name,
                                           "status": status, "user_id": ObjectId(), "upvotes": 1, "downvotes": 0,
                                           "created_at": now, "expires_at": later, **extra}).inserted_id

    report("visible", INSIDE, "active")
    report("corner", NEAR_INSIDE, "approved")
    report("outside", OUTSIDE, "active")
    report("pending", INSIDE, "pending")
    report("hidden", INSIDE, "hidden")
    report("expired", INSIDE, "active", expires_at=now - timedelta(minutes=1))
    ids["alert"] = db.alerts.insert_one({"type": "police", "location": point(*INSIDE), "description": "Checkpoint",
                                         "expires_at": later, "created_at": now, "created_by": ObjectId()}).inserted_id

    def business(name, where, **flags):
        doc = {"owner_id": ObjectId(), "name": name, "category": "garage", "location": point(*where),
               "address": "1 rue de la Paix", "phone": "+33 4 00 00 00 00", "website": "https://example.com",
               "opening_hours": "Mo-Fr 08:00-18:00", "verified": True, "hidden": False, "safe_place": False,
               "promotions": [{"title": "10% off"}], "created_at": now, "updated_at": now}
        doc.update(flags)
        ids[name] = db.businesses.insert_one(doc).inserted_id

    business("Garage", INSIDE)
    business("Cafe", INSIDE, safe_place=True)
    business("Unverified", INSIDE, verified=False, safe_place=True)
    business("Hidden", INSIDE, hidden=True, safe_place=True)
    business("Far garage", OUTSIDE)
    # What never shows on a map layer: an SOS and a rider's position.
    db.emergencies.insert_one({"type": "medical", "location": point(*INSIDE), "status": "active", "is_open": True,
                               "user_id": ObjectId(), "created_at": now})
    db.party_members.insert_one({"party_id": ObjectId(), "user_id": ObjectId(), "active": True,
                                 "last_location": point(*INSIDE), "last_update_at": now})
    cell = h3.latlng_to_cell(INSIDE[1], INSIDE[0], 9)
    lat, lng = h3.cell_to_latlng(cell)
    db.traffic_cells.insert_one({"_id": cell, "center": point(lng, lat), "speed_median_kmh": 22.0,
                                 "speed_p85_kmh": 31.0, "riders": "3-5", "level": "slow", "updated_at": now,
                                 "expires_at": now + timedelta(minutes=10)})
    ids["cell"] = cell
    return ids


def overlays(client, headers, query):
    return client.get(f"/api/v1/overlays?{query}", headers=headers)


def by_layer(body):
    layers = {}
    for feature in body["features"]:
        layers.setdefault(feature["properties"]["layer"], []).append(feature)
    return layers


def test_overlays_hold_public_layers_only(client, auth_headers, world):
    response = overlays(client, auth_headers, f"bbox={BBOX}")
    assert response.status_code == 200
    assert response.mimetype == "application/geo+json"
    body = response.get_json()
    assert body["type"] == "FeatureCollection" and body["truncated"] == {}
    layers = by_layer(body)
    assert sorted(f["properties"]["description"] for f in layers["reports"]) == ["corner", "visible"]
    assert [f["properties"]["description"] for f in layers["alerts"]] == ["Checkpoint"]
    assert [f["properties"]["h3"] for f in layers["traffic"]] == [world["cell"]]
    assert layers["traffic"][0]["geometry"]["type"] == "Polygon"
    assert sorted(f["properties"]["name"] for f in layers["businesses"]) == ["Cafe", "Garage"]
    assert [f["properties"]["name"] for f in layers["safe_places"]] == ["Cafe"]
    garage = next(f for f in layers["businesses"] if f["properties"]["name"] == "Garage")
    assert garage["properties"] == {"layer": "businesses", "id": str(world["Garage"]), "name": "Garage",
                                    "category": "garage", "address": "1 rue de la Paix",
                                    "website": "https://example.com", "phone": "+33 4 00 00 00 00"}
    assert set(layers) == {"reports", "alerts", "traffic", "businesses", "safe_places"}
    text = response.get_data(as_text=True)
    for secret in ("owner_id", "promotions", "opening_hours", "user_id", "party_id", "medical"):
        assert secret not in text


def test_overlays_layers_and_limit(client, auth_headers, world):
    body = overlays(client, auth_headers, f"bbox={BBOX}&layers=reports,safe_places&limit=1").get_json()
    layers = by_layer(body)
    assert set(layers) == {"reports", "safe_places"}
    assert len(layers["reports"]) == 1 and len(layers["safe_places"]) == 1
    assert body["truncated"] == {"reports": True}


@pytest.mark.parametrize("query", ["", "bbox=0,40,10,50", "bbox=1,2,3", f"bbox={BBOX}&layers=sos",
                                   f"bbox={BBOX}&layers=", f"bbox={BBOX}&limit=0", f"bbox={BBOX}&limit=2001",
                                   f"bbox={BBOX}&other=1"])
def test_overlays_refuse_bad_queries(client, auth_headers, query):
    response = overlays(client, auth_headers, query)
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_overlays_need_a_login(client):
    assert overlays(client, {}, f"bbox={BBOX}").status_code == 401


def tile_url(layer, z=Z, x=X, y=Y):
    return f"/api/v1/tiles/{layer}/{z}/{x}/{y}.mvt"


def decode(response):
    return mapbox_vector_tile.decode(response.data)


def test_a_tile_decodes_to_the_features_of_its_bbox(client, world):
    response = client.get(tile_url("reports"))
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.mapbox-vector-tile"
    tile = decode(response)
    assert set(tile) == {"reports"}
    features = tile["reports"]["features"]
    assert sorted(f["properties"]["description"] for f in features) == ["corner", "visible"]
    assert all(f["properties"]["id"] in (str(world["visible"]), str(world["corner"])) for f in features)
    extent = tile["reports"]["extent"]
    for feature in features:
        x, y = feature["geometry"]["coordinates"]
        assert 0 <= x <= extent and 0 <= y <= extent
    # The report just outside is in the next tile, and only there.
    east = decode(client.get(tile_url("reports", x=X + 1)))
    assert [f["properties"]["description"] for f in east["reports"]["features"]] == ["outside"]


def test_business_tiles_hold_public_fields_only(client, world):
    features = decode(client.get(tile_url("businesses")))["businesses"]["features"]
    assert sorted(f["properties"]["name"] for f in features) == ["Cafe", "Garage"]
    assert set(features[0]["properties"]) == {"id", "name", "category", "address", "website", "phone"}
    safe = decode(client.get(tile_url("safe_places")))["safe_places"]["features"]
    assert [f["properties"]["name"] for f in safe] == ["Cafe"]


def test_traffic_and_alert_tiles(client, world):
    traffic = decode(client.get(tile_url("traffic")))["traffic"]["features"]
    assert [f["properties"]["h3"] for f in traffic] == [world["cell"]]
    assert traffic[0]["geometry"]["type"] == "Polygon" and traffic[0]["properties"]["level"] == "slow"
    alerts = decode(client.get(tile_url("alerts")))["alerts"]["features"]
    assert [f["properties"]["type"] for f in alerts] == ["police"]


def test_empty_tile_is_204(client, world):
    response = client.get(tile_url("reports", x=X + 5))
    assert response.status_code == 204 and response.data == b""
    assert "max-age" in response.headers["Cache-Control"]


def test_etag_and_304(client, world):
    first = client.get(tile_url("reports"))
    etag = first.headers["ETag"]
    assert etag and first.headers["Cache-Control"].startswith("public, max-age=")
    again = client.get(tile_url("reports"), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    other = client.get(tile_url("reports"), headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data


def test_a_changed_tile_gets_a_new_etag(client, world, db):
    etag = client.get(tile_url("reports")).headers["ETag"]
    db.reports.update_one({"_id": world["visible"]}, {"$set": {"status": "hidden"}})
    changed = client.get(tile_url("reports"), headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert [f["properties"]["description"] for f in decode(changed)["reports"]["features"]] == ["corner"]


@pytest.mark.parametrize("url", [tile_url("reports", z=7, x=0, y=0), tile_url("reports", z=17, x=0, y=0),
                                 tile_url("sos"), tile_url("parties"), tile_url("reports", x=2 ** Z),
                                 "/api/v1/tiles/reports/14/1/-1.mvt", "/api/v1/tiles/sos.json"])
def test_out_of_range_tiles_are_404(client, url):
    response = client.get(url)
    assert response.status_code == 404 and error_code(response) == "not_found"


@pytest.mark.parametrize("z", [8, 16])
def test_zoom_bounds_are_served(client, world, z):
    x, y = tile_of(INSIDE[1], INSIDE[0], z)
    assert client.get(tile_url("reports", z=z, x=x, y=y)).status_code == 200


def test_tilejson(client):
    response = client.get("/api/v1/tiles/traffic.json")
    assert response.status_code == 200
    body = response.get_json()
    assert body["tilejson"] == "3.0.0" and body["minzoom"] == 8 and body["maxzoom"] == 16
    assert body["tiles"] == ["http://localhost/api/v1/tiles/traffic/{z}/{x}/{y}.mvt"]
    assert body["vector_layers"][0]["id"] == "traffic"
    assert set(body["vector_layers"][0]["fields"]) == {"h3", "speed_median_kmh", "speed_p85_kmh", "riders", "level",
                                                       "updated_at"}
