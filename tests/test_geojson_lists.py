"""`?format=geojson` on every geographic list: the same items, properties and meta as the JSON form."""
import pytest

from allynet import geo

API = "/api/v1"
PARIS = {"lat": 48.8566, "lng": 2.3522}
NEAR = "48.8566,2.3522"


def offset(north_m=0.0, east_m=0.0):
    """A point `north_m`/`east_m` metres from PARIS (small offsets)."""
    return {"lat": PARIS["lat"] + north_m / 111_195.0, "lng": PARIS["lng"] + east_m / 73_000.0}


def both_forms(client, user, path):
    """(JSON body, GeoJSON response) of one list URL."""
    separator = "&" if "?" in path else "?"
    plain = client.get(f"{API}{path}", headers=user.headers)
    assert plain.status_code == 200, plain.get_json()
    geojson = client.get(f"{API}{path}{separator}format=geojson", headers=user.headers)
    assert geojson.status_code == 200, geojson.get_json()
    return plain.get_json(), geojson


def assert_same_list(plain, geojson):
    """The FeatureCollection holds the JSON list's items, in order, with identical properties and meta."""
    assert geojson.mimetype == "application/geo+json"
    collection = geojson.get_json()
    assert collection["type"] == "FeatureCollection"
    assert collection["meta"] == plain["meta"]
    assert len(collection["features"]) == len(plain["data"])
    for item, feature in zip(plain["data"], collection["features"]):
        assert feature["type"] == "Feature" and feature["id"] == item["id"]
        assert feature["geometry"] == {"type": "Point",
                                       "coordinates": [item["location"]["lng"], item["location"]["lat"]]}
        assert geo.valid_lng_lat(*feature["geometry"]["coordinates"])
        # Exactly the JSON item's fields: the location moved to the geometry, nothing added or dropped.
        assert feature["properties"] == {key: value for key, value in item.items() if key != "location"}
    return collection


def new_report(client, user, location, kind="hazard"):
    response = client.post(f"{API}/reports", headers=user.headers,
                           json={"type": kind, "location": location, "description": "Oil"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def new_help_request(client, user, location, title="Need a ride"):
    response = client.post(f"{API}/help-requests", headers=user.headers, json={
        "title": title, "description": "To the station", "category": "transport", "location": location,
        "budget": {"amount": 10, "currency": "EUR"}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def new_skill(client, user, location, name="Bike repair"):
    response = client.post(f"{API}/skills", headers=user.headers, json={
        "name": name, "category": "repairs", "description": "Brakes", "location": location,
        "rate": {"amount": 20, "currency": "EUR", "unit": "hour"}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def test_reports_near_and_newest_first(client, make_user):
    reporter, viewer = make_user(), make_user()
    near = new_report(client, reporter, offset(100, 50))
    far = new_report(client, reporter, offset(900), kind="police")
    plain, geojson = both_forms(client, viewer, f"/reports?near={NEAR}&radius_m=2000")
    collection = assert_same_list(plain, geojson)
    assert [feature["id"] for feature in collection["features"]] == [near["id"], far["id"]]
    assert collection["features"][0]["properties"]["distance_m"] == pytest.approx(111, rel=0.05)
    assert collection["features"][0]["geometry"]["coordinates"] == [near["location"]["lng"],
                                                                     near["location"]["lat"]]
    # Newest first pages with a cursor, in both forms alike.
    plain, geojson = both_forms(client, viewer, "/reports?limit=1")
    collection = assert_same_list(plain, geojson)
    assert collection["meta"]["next_cursor"] and collection["features"][0]["id"] == far["id"]
    # Anyone: no moderation state (the reporter stays anonymous).
    assert "user_id" not in collection["features"][0]["properties"]


def test_reports_moderators_flagged_list_keeps_the_moderation_view(client, make_user):
    reporter, moderator = make_user(), make_user(role="moderator")
    report = new_report(client, reporter, offset(100))
    for _ in range(2):
        voter = make_user()
        assert client.post(f"{API}/reports/{report['id']}/vote", headers=voter.headers,
                           json={"value": "down"}).status_code == 200
    plain, geojson = both_forms(client, moderator, "/reports?status=flagged")
    collection = assert_same_list(plain, geojson)
    (feature,) = collection["features"]
    assert feature["properties"]["user_id"] == reporter.id and feature["properties"]["flagged"] is True
    # A plain user may not list it in either form.
    stranger = make_user()
    response = client.get(f"{API}/reports?status=flagged&format=geojson", headers=stranger.headers)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"


def test_help_requests_with_pages(client, make_user):
    owner, helper = make_user(), make_user()
    first = new_help_request(client, owner, offset(100))
    second = new_help_request(client, owner, offset(300), title="Need groceries")
    assert client.post(f"{API}/help-requests/{first['id']}/offers", headers=helper.headers,
                       json={"message": "I can"}).status_code == 201
    plain, geojson = both_forms(client, helper, f"/help-requests?near={NEAR}&limit=1")
    collection = assert_same_list(plain, geojson)
    assert [feature["id"] for feature in collection["features"]] == [first["id"]]
    assert collection["features"][0]["properties"]["offers_count"] == 1
    assert "offers" not in collection["features"][0]["properties"]  # the list never shows offers
    cursor = collection["meta"]["next_cursor"]
    assert cursor
    plain, geojson = both_forms(client, helper, f"/help-requests?near={NEAR}&limit=1&cursor={cursor}")
    collection = assert_same_list(plain, geojson)
    assert [feature["id"] for feature in collection["features"]] == [second["id"]]
    assert collection["meta"]["next_cursor"] is None


def test_help_requests_default_to_the_profile_location(client, make_user):
    owner = make_user()
    viewer = make_user(location=(PARIS["lat"], PARIS["lng"]))
    posted = new_help_request(client, owner, offset(200))
    plain, geojson = both_forms(client, viewer, "/help-requests")
    collection = assert_same_list(plain, geojson)
    assert [feature["id"] for feature in collection["features"]] == [posted["id"]]


def test_skills_near_and_near_with_text(client, make_user):
    owner, viewer = make_user(), make_user()
    close = new_skill(client, owner, offset(100))
    further = new_skill(client, owner, offset(500), name="Bike fitting")
    plain, geojson = both_forms(client, viewer, f"/skills?near={NEAR}&radius_m=1000")
    collection = assert_same_list(plain, geojson)
    assert [feature["id"] for feature in collection["features"]] == [close["id"], further["id"]]
    assert collection["features"][0]["properties"]["rate"] == {"amount": 20, "currency": "EUR", "unit": "hour"}
    plain, geojson = both_forms(client, viewer, f"/skills?near={NEAR}&q=fitting")
    collection = assert_same_list(plain, geojson)
    assert [feature["id"] for feature in collection["features"]] == [further["id"]]


@pytest.mark.parametrize("query", ["format=geojson", "format=geojson&q=bike", "format=geojson&category=repairs"])
def test_skills_geojson_needs_a_location_filter(client, make_user, query):
    viewer = make_user()
    response = client.get(f"{API}/skills?{query}", headers=viewer.headers)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and "near" in error["details"]
    # The plain form needs no location.
    assert client.get(f"{API}/skills?{query.replace('format=geojson', 'format=json')}",
                      headers=viewer.headers).status_code == 200


def test_alerts_share_the_same_shape(client, make_user):
    reporter, viewer = make_user(), make_user()
    new_report(client, reporter, offset(100))
    plain, geojson = both_forms(client, viewer, f"/alerts?lat={PARIS['lat']}&lng={PARIS['lng']}")
    collection = assert_same_list(plain, geojson)
    assert len(collection["features"]) == 1 and collection["meta"] == {"next_cursor": None, "count": 1}


@pytest.mark.parametrize("path", ["/reports", f"/help-requests?near={NEAR}", f"/skills?near={NEAR}",
                                  f"/alerts?lat={PARIS['lat']}&lng={PARIS['lng']}"])
@pytest.mark.parametrize("value", ["xml", "GEOJSON", "", "geo json"])
def test_an_unknown_format_is_400(client, make_user, path, value):
    viewer = make_user()
    separator = "&" if "?" in path else "?"
    response = client.get(f"{API}{path}{separator}format={value}", headers=viewer.headers)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and "format" in error["details"]


@pytest.mark.parametrize("path", ["/reports", f"/help-requests?near={NEAR}", f"/skills?near={NEAR}",
                                  f"/alerts?lat={PARIS['lat']}&lng={PARIS['lng']}"])
def test_logged_out_is_401_in_the_envelope(client, path):
    separator = "&" if "?" in path else "?"
    response = client.get(f"{API}{path}{separator}format=geojson")
    assert response.status_code == 401 and response.get_json()["success"] is False


def test_openapi_lists_the_geojson_form(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    for path in ("/api/v1/reports", "/api/v1/help-requests", "/api/v1/skills", "/api/v1/alerts"):
        operation = spec["paths"][path]["get"]
        assert "application/geo+json" in operation["responses"]["200"]["content"]
        assert "format" in {parameter["name"] for parameter in operation["parameters"]}
