"""Help requests through the HTTP API: posting, browsing by distance, reading, editing, bad input."""
import pytest
from bson import ObjectId

from allynet import geo
from tests.helpers import error_code

URL = "/api/v1/help-requests"
ORIGIN = {"lat": 0.0, "lng": 0.0}
# One hundredth of a degree of latitude on MongoDB's sphere (radius 6378.1 km).
STEP_M = 1113.19


def body(**overrides):
    data = {"title": "Need a lift", "description": "To the station at 9", "category": "transport",
            "location": ORIGIN, "budget": {"amount": 12.5, "currency": "EUR"}}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not ...}


def post(client, user, **overrides):
    return client.post(URL, headers=user.headers, json=body(**overrides))


def new_request(client, user, **overrides):
    response = post(client, user, **overrides)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def browse(client, user, query):
    response = client.get(f"{URL}?{query}", headers=user.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_create_returns_201_with_the_request(client, db, make_user):
    owner = make_user()
    response = post(client, owner, title="  Need a lift  ", budget={"amount": 12.5, "currency": "eur"})
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["title"] == "Need a lift" and data["status"] == "open" and data["category"] == "transport"
    assert data["location"] == ORIGIN and data["budget"] == {"amount": 12.5, "currency": "EUR"}
    assert data["user_id"] == owner.id and data["helper_id"] is None and data["offers"] == []
    assert data["offers_count"] == 0 and data["created_at"].endswith("Z")
    assert "_id" not in data
    stored = db.help_requests.find_one({"_id": ObjectId(data["id"])})
    assert stored["location"] == {"type": "Point", "coordinates": [0.0, 0.0]}
    assert client.get(f"{URL}/{data['id']}", headers=owner.headers).get_json()["data"] == data


def test_budget_is_optional(client, make_user):
    data = new_request(client, make_user(), budget=...)
    assert data["budget"] is None


@pytest.mark.parametrize("overrides, field", [
    ({"budget": {"amount": -1, "currency": "EUR"}}, "budget"),
    ({"budget": {"amount": 5, "currency": "EURO"}}, "budget"),
    ({"budget": {"amount": 5, "currency": "XYZ"}}, "budget"),
    ({"budget": {"amount": 5, "currency": "XAU"}}, "budget"),  # a metal, not a currency
    ({"budget": {"amount": "NaN", "currency": "EUR"}}, "budget"),
    ({"budget": {"amount": True, "currency": "EUR"}}, "budget"),
    ({"budget": {"amount": 5}}, "budget"),
    ({"budget": {"amount": 5, "currency": "EUR", "tip": 1}}, "budget"),
    ({"category": "plumbing"}, "category"),
    ({"category": None}, "category"),
    ({"title": "  "}, "title"),
    ({"title": ...}, "title"),
    ({"description": "x" * 2001}, "description"),
    ({"location": {"lat": 91, "lng": 0}}, "location"),
    ({"location": "0,0"}, "location"),
    ({"location": ...}, "location"),
    ({"status": "assigned"}, "status"),
    ({"user_id": str(ObjectId())}, "user_id"),
])
def test_bad_input_is_400_and_stores_nothing(client, db, make_user, overrides, field):
    response = post(client, make_user(), **overrides)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.help_requests.count_documents({}) == 0


def test_requires_authentication(client):
    assert client.post(URL, json=body()).status_code == 401
    assert client.get(f"{URL}?near=0,0").status_code == 401


def test_browse_sorts_by_distance_with_distance_m(client, make_user):
    owner, viewer = make_user(), make_user()
    far = new_request(client, owner, title="far", location={"lat": 0.03, "lng": 0.0})
    near = new_request(client, owner, title="near", location={"lat": 0.01, "lng": 0.0})
    middle = new_request(client, owner, title="middle", location={"lat": 0.0, "lng": 0.02})
    new_request(client, owner, title="outside", location={"lat": 0.1, "lng": 0.0})  # 11.1 km away
    result = browse(client, viewer, "near=0,0&radius_m=5000")
    assert [item["id"] for item in result["data"]] == [near["id"], middle["id"], far["id"]]
    distances = [item["distance_m"] for item in result["data"]]
    assert distances == pytest.approx([STEP_M, 2 * STEP_M, 3 * STEP_M], abs=0.01)
    assert distances[0] == pytest.approx(geo.haversine_m(0, 0, 0, 0.01), rel=1e-9)
    assert result["meta"] == {"next_cursor": None, "count": 3}
    assert all("offers" not in item for item in result["data"])


def test_browse_filters_by_status_category_and_radius(client, make_user):
    owner, helper, viewer = make_user(), make_user(), make_user()
    transport = new_request(client, owner, location={"lat": 0.01, "lng": 0.0})
    pets = new_request(client, owner, category="pets", location={"lat": 0.02, "lng": 0.0})
    taken = new_request(client, owner, location={"lat": 0.005, "lng": 0.0})
    offer = client.post(f"{URL}/{taken['id']}/offers", headers=helper.headers, json={"message": "me"})
    client.post(f"{URL}/{taken['id']}/accept", headers=owner.headers,
                json={"offer_id": offer.get_json()["data"]["id"]})

    def ids(query):
        return [item["id"] for item in browse(client, viewer, query)["data"]]

    assert ids("near=0,0") == [transport["id"], pets["id"]]  # open by default
    assert ids("near=0,0&category=pets") == [pets["id"]]
    assert ids("near=0,0&status=assigned") == [taken["id"]]
    assert ids("near=0,0&status=completed") == []
    assert ids("near=0,0&radius_m=1500") == [transport["id"]]


def test_browse_defaults_near_to_the_profile_location(client, make_user):
    owner = make_user()
    viewer = make_user(location=(0.02, 0.0))
    close = new_request(client, owner, location={"lat": 0.021, "lng": 0.0})
    new_request(client, owner, location={"lat": 0.0, "lng": 0.0})
    result = browse(client, viewer, "radius_m=1000")
    assert [item["id"] for item in result["data"]] == [close["id"]]
    assert result["data"][0]["distance_m"] == pytest.approx(STEP_M / 10, abs=0.01)


def test_browse_without_near_or_profile_location_is_400(client, make_user):
    response = client.get(URL, headers=make_user().headers)
    assert response.status_code == 400 and "near" in response.get_json()["error"]["details"]


def test_browse_pages_with_cursor_in_distance_order(client, make_user):
    owner, viewer = make_user(), make_user()
    # Two requests at the same distance (north and east) test the tie-break by id.
    points = [(0.01, 0.0), (0.0, 0.01), (0.02, 0.0), (0.03, 0.0), (0.04, 0.0)]
    created = [new_request(client, owner, location={"lat": lat, "lng": lng}) for lat, lng in points]
    seen, cursor = [], None
    for _ in range(5):
        query = "near=0,0&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = browse(client, viewer, query)
        assert page["meta"]["count"] == len(page["data"]) <= 2
        seen += page["data"]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len({item["id"] for item in seen}) == 5
    assert {item["id"] for item in seen} == {item["id"] for item in created}
    keys = [(item["distance_m"], item["id"]) for item in seen]
    assert keys == sorted(keys)


@pytest.mark.parametrize("query, field", [
    ("near=0,0&radius_m=99", "radius_m"),
    ("near=0,0&radius_m=50001", "radius_m"),
    ("near=0,0&radius_m=abc", "radius_m"),
    ("near=0,0&radius_m=nan", "radius_m"),
    ("near=91,0", "near"),
    ("near=0", "near"),
    ("near=a,b", "near"),
    ("near=0,0&category=plumbing", "category"),
    ("near=0,0&status=lost", "status"),
    ("near=0,0&limit=0", "limit"),
    ("near=0,0&limit=101", "limit"),
    ("near=0,0&cursor=notacursor", "cursor"),
    ("near=0,0&cursor=WyJhIiwiYiJd", "cursor"),  # ["a","b"]
    ("near=0,0&cursor=W05hTiwiMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwIl0", "cursor"),  # [NaN, id]
    ("near=0,0&sort=price", "sort"),
])
def test_bad_browse_queries_are_400(client, make_user, query, field):
    response = client.get(f"{URL}?{query}", headers=make_user().headers)
    assert response.status_code == 400, response.get_json()
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]


def test_radius_bounds_are_inclusive(client, make_user):
    viewer = make_user()
    for radius in (100, 50000):
        assert client.get(f"{URL}?near=0,0&radius_m={radius}", headers=viewer.headers).status_code == 200


@pytest.mark.parametrize("path", ["nothex", "123", "0" * 25, "zzzzzzzzzzzzzzzzzzzzzzzz"])
def test_malformed_ids_are_404(client, make_user, path):
    user = make_user()
    for method, suffix, payload in [("get", "", None), ("patch", "", {"title": "New title"}),
                                    ("post", "/offers", {"message": "hi"}),
                                    ("post", "/accept", {"offer_id": str(ObjectId())}),
                                    ("post", "/complete", None), ("post", "/cancel", None)]:
        response = getattr(client, method)(f"{URL}/{path}{suffix}", headers=user.headers, json=payload)
        assert response.status_code == 404 and error_code(response) == "not_found"


def test_unknown_id_is_404(client, make_user):
    user = make_user()
    response = client.get(f"{URL}/{ObjectId()}", headers=user.headers)
    assert response.status_code == 404 and error_code(response) == "not_found"
    response = client.patch(f"{URL}/{ObjectId()}", headers=user.headers, json={"title": "New title"})
    assert response.status_code == 404


def test_owner_edits_an_open_request(client, make_user):
    owner = make_user()
    created = new_request(client, owner)
    response = client.patch(f"{URL}/{created['id']}", headers=owner.headers,
                            json={"title": "Lift to the airport", "category": "moving",
                                  "location": {"lat": 1.5, "lng": -2.25}, "budget": None})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["title"] == "Lift to the airport" and data["category"] == "moving"
    assert data["location"] == {"lat": 1.5, "lng": -2.25} and data["budget"] is None
    assert data["description"] == created["description"] and data["status"] == "open"
    assert client.get(f"{URL}/{created['id']}", headers=owner.headers).get_json()["data"] == data


@pytest.mark.parametrize("payload", [
    {}, {"status": "completed"}, {"helper_id": str(ObjectId())}, {"budget": {"amount": -5, "currency": "EUR"}},
    {"category": "plumbing"}, {"title": ""}, {"user_id": str(ObjectId())},
])
def test_bad_edits_are_400_and_change_nothing(client, make_user, payload):
    owner = make_user()
    created = new_request(client, owner)
    response = client.patch(f"{URL}/{created['id']}", headers=owner.headers, json=payload)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert client.get(f"{URL}/{created['id']}", headers=owner.headers).get_json()["data"] == created


def test_only_the_owner_edits(client, make_user):
    owner, stranger = make_user(), make_user()
    created = new_request(client, owner)
    response = client.patch(f"{URL}/{created['id']}", headers=stranger.headers, json={"title": "Mine now"})
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert client.get(f"{URL}/{created['id']}", headers=owner.headers).get_json()["data"] == created


def test_editing_after_open_is_409(client, make_user):
    owner, helper = make_user(), make_user()
    created = new_request(client, owner)
    offer = client.post(f"{URL}/{created['id']}/offers", headers=helper.headers, json={"message": "me"})
    client.post(f"{URL}/{created['id']}/accept", headers=owner.headers,
                json={"offer_id": offer.get_json()["data"]["id"]})
    response = client.patch(f"{URL}/{created['id']}", headers=owner.headers, json={"title": "Changed title"})
    assert response.status_code == 409 and error_code(response) == "conflict"
    data = client.get(f"{URL}/{created['id']}", headers=owner.headers).get_json()["data"]
    assert data["title"] == created["title"] and data["status"] == "assigned"


def test_body_must_be_a_json_object(client, make_user):
    user = make_user()
    response = client.post(URL, headers=user.headers, data="[1]", content_type="application/json")
    assert response.status_code == 400 and error_code(response) == "bad_request"
