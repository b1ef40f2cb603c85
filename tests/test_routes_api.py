"""Saved routes: create, list, read, edit, delete (owner only; everyone else gets 404, as routes are private)."""
import pytest
from bson import ObjectId

from tests.helpers import error_code

API = "/api/v1"
URL = "/api/v1/routes"
LOOP = [{"lat": 47.0, "lng": 11.0}, {"lat": 47.1, "lng": 11.2}, {"lat": 47.2, "lng": 11.1}]


def test_routes_create_list_delete(client, make_user, db):
    alice, bob = make_user(), make_user()
    body = {"name": "Alps loop", "waypoints": [{"lat": 47.0, "lng": 11.0}, {"lat": 47.1, "lng": 11.2},
                                               {"lat": 47.2, "lng": 11.1}]}
    response = client.post(f"{API}/routes", json=body, headers=alice.headers)
    assert response.status_code == 201
    route = response.get_json()["data"]
    assert route["waypoints"] == body["waypoints"]
    assert route["distance_m"] > 10000
    stored = db.routes.find_one()
    assert stored["waypoints"]["type"] == "LineString"
    assert stored["waypoints"]["coordinates"][0] == [11.0, 47.0]
    assert [r["id"] for r in client.get(f"{API}/routes", headers=alice.headers).get_json()["data"]] == [route["id"]]
    assert client.get(f"{API}/routes", headers=bob.headers).get_json()["data"] == []
    assert client.delete(f"{API}/routes/{route['id']}", headers=bob.headers).status_code == 404
    assert client.delete(f"{API}/routes/{route['id']}", headers=alice.headers).status_code == 200
    assert client.get(f"{API}/routes", headers=alice.headers).get_json()["data"] == []
    assert client.delete(f"{API}/routes/{route['id']}", headers=alice.headers).status_code == 404


def test_routes_list_pages(client, make_user, clock):
    alice = make_user()
    for index in range(5):
        clock.advance(seconds=1)
        client.post(f"{API}/routes", json={"name": f"r{index}", "waypoints": [
            {"lat": 1, "lng": 1}, {"lat": 2, "lng": 2}]}, headers=alice.headers)
    body = client.get(f"{API}/routes?limit=3", headers=alice.headers).get_json()
    assert [r["name"] for r in body["data"]] == ["r4", "r3", "r2"]
    body = client.get(f"{API}/routes?limit=3&cursor={body['meta']['next_cursor']}", headers=alice.headers).get_json()
    assert [r["name"] for r in body["data"]] == ["r1", "r0"]
    assert body["meta"]["next_cursor"] is None


@pytest.mark.parametrize("waypoints", [
    [{"lat": 1, "lng": 1}],
    [{"lat": 1, "lng": 1}] + [{"lat": 1 + i / 1000, "lng": 1} for i in range(1, 501)],
    [{"lat": 91, "lng": 1}, {"lat": 1, "lng": 1}],
    [{"lat": 1, "lng": 181}, {"lat": 1, "lng": 1}],
    [{"lat": "NaN", "lng": 1}, {"lat": 1, "lng": 1}],
    [{"lat": 1, "lng": 1}, {"lat": 1, "lng": 1}],
    [{"lat": 1}, {"lat": 1, "lng": 1}],
    "not a list",
])
def test_routes_bad_waypoints_are_400(client, make_user, waypoints, db):
    response = client.post(f"{API}/routes", json={"name": "bad", "waypoints": waypoints},
                           headers=make_user().headers)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert db.routes.count_documents({}) == 0


def test_routes_accepts_500_points(client, make_user):
    waypoints = [{"lat": 1 + i / 1000, "lng": 1} for i in range(500)]
    response = client.post(f"{API}/routes", json={"name": "long", "waypoints": waypoints},
                           headers=make_user().headers)
    assert response.status_code == 201



@pytest.fixture
def route(client, make_user):
    owner = make_user()
    response = client.post(URL, json={"name": "Alps loop", "waypoints": LOOP}, headers=owner.headers)
    assert response.status_code == 201
    return owner, response.get_json()["data"]


def test_owner_reads_the_route(client, route):
    owner, saved = route
    response = client.get(f"{URL}/{saved['id']}", headers=owner.headers)
    assert response.status_code == 200 and response.get_json()["data"] == saved


def test_owner_renames_and_the_geometry_stays(client, db, route, clock):
    owner, saved = route
    clock.advance(seconds=5)
    response = client.patch(f"{URL}/{saved['id']}", json={"name": "  Tyrol loop "}, headers=owner.headers)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["name"] == "Tyrol loop" and data["waypoints"] == LOOP and data["distance_m"] == saved["distance_m"]
    assert data["created_at"] == saved["created_at"] and data["updated_at"] > saved["created_at"]
    assert client.get(f"{URL}/{saved['id']}", headers=owner.headers).get_json()["data"] == data


def test_owner_replaces_the_waypoints_and_the_length_follows(client, db, route):
    owner, saved = route
    shorter = LOOP[:2]
    response = client.patch(f"{URL}/{saved['id']}", json={"waypoints": shorter}, headers=owner.headers)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["name"] == "Alps loop" and data["waypoints"] == shorter
    assert 0 < data["distance_m"] < saved["distance_m"]
    stored = db.routes.find_one({"_id": ObjectId(saved["id"])})
    assert stored["waypoints"] == {"type": "LineString", "coordinates": [[11.0, 47.0], [11.2, 47.1]]}
    # Both at once.
    response = client.patch(f"{URL}/{saved['id']}", json={"name": "back", "waypoints": LOOP}, headers=owner.headers)
    assert response.get_json()["data"]["distance_m"] == saved["distance_m"]


def test_everyone_else_gets_404_and_changes_nothing(client, make_user, route):
    owner, saved = route
    # A party-mate of the owner, a stranger and staff alike: routes are private.
    mate, stranger, admin = make_user(), make_user(), make_user(role="admin")
    party = client.post("/api/v1/parties", json={"name": "ride"}, headers=owner.headers).get_json()["data"]
    client.post("/api/v1/parties/join", json={"invite_code": party["invite_code"]}, headers=mate.headers)
    for user in (mate, stranger, admin):
        response = client.get(f"{URL}/{saved['id']}", headers=user.headers)
        assert response.status_code == 404 and error_code(response) == "not_found"
        response = client.patch(f"{URL}/{saved['id']}", json={"name": "mine now"}, headers=user.headers)
        assert response.status_code == 404 and error_code(response) == "not_found"
    assert client.get(f"{URL}/{saved['id']}", headers=owner.headers).get_json()["data"] == saved


def test_unknown_or_malformed_ids_are_404(client, route):
    owner, _ = route
    for path in (f"{URL}/{'0' * 24}", f"{URL}/not-an-id"):
        assert client.get(path, headers=owner.headers).status_code == 404
        assert client.patch(path, json={"name": "x"}, headers=owner.headers).status_code == 404


def test_logged_out_is_401(client, route):
    _, saved = route
    assert client.get(f"{URL}/{saved['id']}").status_code == 401
    response = client.patch(f"{URL}/{saved['id']}", json={"name": "x"})
    assert response.status_code == 401 and error_code(response) == "unauthorized"


@pytest.mark.parametrize("body", [
    {},
    {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": None},
    {"waypoints": [{"lat": 1, "lng": 1}]},
    {"waypoints": [{"lat": 1, "lng": 1}] + [{"lat": 1 + i / 1000, "lng": 1} for i in range(1, 501)]},
    {"waypoints": [{"lat": 91, "lng": 1}, {"lat": 1, "lng": 1}]},
    {"waypoints": [{"lat": 1, "lng": 1}, {"lat": 1, "lng": 1}]},
    {"waypoints": [{"lat": 10, "lng": 20}, {"lat": -10, "lng": -160}]},
    {"waypoints": "not a list"}, {"waypoints": None},
    {"name": "ok", "distance_m": 1}, {"name": "ok", "user_id": "0" * 24},
])
def test_bad_bodies_are_400_and_change_nothing(client, route, body):
    owner, saved = route
    response = client.patch(f"{URL}/{saved['id']}", json=body, headers=owner.headers)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert client.get(f"{URL}/{saved['id']}", headers=owner.headers).get_json()["data"] == saved


def test_non_object_body_is_400(client, route):
    owner, saved = route
    response = client.patch(f"{URL}/{saved['id']}", json=["name"], headers=owner.headers)
    assert response.status_code == 400 and error_code(response) == "bad_request"


def test_openapi_documents_get_and_patch(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    item = spec["paths"]["/api/v1/routes/{route_id}"]
    assert {"get", "patch", "delete"} <= set(item)
    assert item["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RouteUpdate")
    assert {"name", "waypoints"} <= set(spec["components"]["schemas"]["RouteUpdate"]["properties"])
