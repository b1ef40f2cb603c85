"""Businesses through the real server (HTTP on a port, requests as the client): open now, promotions near a
point, safe places in an SOS, and every refusal leaving the data as it was."""
from datetime import datetime, timedelta

import pytest
import requests
from bson import ObjectId

from allynet.seeding import destination
from tests.scaleout_support import quiet_werkzeug, served  # noqa: F401  (fixtures)

PARIS = (48.8566, 2.3522)
# Wednesday 14 January 2026, 12:00 UTC = 13:00 in Paris (CET).
WEDNESDAY_NOON = datetime(2026, 1, 14, 12, 0)
ALL_DAY = [{"day": day, "open": "00:00", "close": "00:00"} for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]


def at(distance_m, bearing=0.0):
    """{lat, lng} `distance_m` from central Paris."""
    lat, lng = destination(PARIS[0], PARIS[1], distance_m, bearing)
    return {"lat": lat, "lng": lng}


def hours(*intervals, timezone="Europe/Paris"):
    return {"timezone": timezone, "intervals": [{"day": d, "open": o, "close": c} for d, o, c in intervals]}


@pytest.fixture
def api(served):
    """Call the served API as a user (or anonymously): the `requests.Response`."""

    def call(method, path, user=None, body=None, **params):
        headers = user.headers if user is not None else {}
        return requests.request(method, f"{served.url}/api/v1{path}", json=body, headers=headers, params=params,
                                timeout=10)

    return call


@pytest.fixture
def now(clock):
    clock.current = WEDNESDAY_NOON
    return clock


def create(api, owner, **fields):
    body = {"name": "Corner cafe", "category": "cafe", "location": at(0), **fields}
    response = api("POST", "/businesses", owner, body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def staff_set(api, staff, business_id, **fields):
    response = api("PATCH", f"/businesses/{business_id}", staff, fields)
    assert response.status_code == 200, response.text
    return response.json()["data"]


# ---- open now ----------------------------------------------------------------------------------

def test_open_now_follows_the_hours_across_midnight(api, make_user, clock):
    owner, rider = make_user(), make_user()
    clock.current = datetime(2026, 1, 10, 20, 30)  # Saturday 21:30 in Paris
    night = create(api, owner, name="Night bar", category="restaurant", location=at(200),
                   opening_hours=hours(("sat", "22:00", "02:00")))
    day = create(api, owner, name="Day cafe", location=at(100), opening_hours=hours(("sat", "08:00", "18:00")))
    unknown = create(api, owner, name="No hours", location=at(50))

    def open_ids():
        response = api("GET", "/businesses", rider, near=f"{PARIS[0]},{PARIS[1]}", open_now="true")
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]]

    everything = api("GET", "/businesses", rider, near=f"{PARIS[0]},{PARIS[1]}").json()["data"]
    assert [item["id"] for item in everything] == [unknown["id"], day["id"], night["id"]]  # nearest first
    assert open_ids() == []  # Saturday 21:30: the cafe closed at 18:00, the bar opens at 22:00
    clock.current = datetime(2026, 1, 11, 0, 30)  # Sunday 01:30
    assert open_ids() == [night["id"]]
    seen = api("GET", f"/businesses/{night['id']}", rider).json()["data"]
    assert seen["open_now"] is True and seen["closes_at"] == "2026-01-11T01:00:00Z"
    clock.current = datetime(2026, 1, 11, 1, 30)  # Sunday 02:30
    assert open_ids() == []
    assert api("GET", f"/businesses/{night['id']}", rider).json()["data"]["open_now"] is False


def test_the_list_filters_by_category_and_radius_and_answers_geojson(api, make_user, now):
    owner, rider = make_user(), make_user()
    garage = create(api, owner, name="Garage", category="garage", location=at(300))
    create(api, owner, name="Cafe", category="cafe", location=at(100))
    create(api, owner, name="Far garage", category="garage", location=at(8000))
    near = f"{PARIS[0]},{PARIS[1]}"
    listed = api("GET", "/businesses", rider, near=near, category="garage", radius_m=5000).json()
    assert [item["id"] for item in listed["data"]] == [garage["id"]]
    assert 299 < listed["data"][0]["distance_m"] < 301
    collection = api("GET", "/businesses", rider, near=near, category="garage", radius_m=10000, format="geojson")
    assert collection.headers["Content-Type"].startswith("application/geo+json")
    features = collection.json()["features"]
    assert [feature["properties"]["name"] for feature in features] == ["Garage", "Far garage"]
    assert features[0]["id"] == garage["id"]
    assert features[0]["geometry"]["type"] == "Point" and features[0]["properties"]["category"] == "garage"
    # Pages: one at a time, nearest first, none repeated.
    first = api("GET", "/businesses", rider, near=near, limit=1, radius_m=50000).json()
    second = api("GET", "/businesses", rider, near=near, limit=1, radius_m=50000,
                 cursor=first["meta"]["next_cursor"]).json()
    assert first["data"][0]["name"] == "Cafe" and second["data"][0]["name"] == "Garage"


# ---- promotions --------------------------------------------------------------------------------

def test_promotions_near_a_point_are_the_running_ones_that_cover_it(api, make_user, now, db):
    owner, rival, rider, admin = make_user(), make_user(), make_user(), make_user(role="admin")
    cafe = create(api, owner, name="Cafe", location=at(500))
    staff_set(api, admin, cafe["id"], verified=True)
    shop = create(api, rival, name="Shop", category="shop", location=at(1500, 90))
    hidden = create(api, rival, name="Hidden", category="shop", location=at(100))
    staff_set(api, admin, hidden["id"], hidden=True)

    def promote(business, title, start_h, end_h, radius_m):
        body = {"title": title, "starts_at": f"{(now.current + timedelta(hours=start_h)).isoformat()}Z",
                "ends_at": f"{(now.current + timedelta(hours=end_h)).isoformat()}Z", "radius_m": radius_m}
        response = api("POST", f"/businesses/{business['id']}/promotions", business["_owner"], body)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    cafe["_owner"], shop["_owner"], hidden["_owner"] = owner, rival, rival
    running = promote(cafe, "Coffee for riders", -1, 5, 2000)
    promote(cafe, "Ends soon", -1, 1, 2000)  # ended by the time we look (below)
    promote(cafe, "Tomorrow", 20, 30, 2000)  # not started
    promote(cafe, "Too small", -1, 5, 100)  # running, but 500 m away is outside its 100 m
    far_reaching = promote(shop, "Tyre check", -2, 5, 3000)
    promote(hidden, "Hidden shop's", -1, 5, 3000)
    now.advance(hours=2)

    response = api("GET", "/promotions", rider, near=f"{PARIS[0]},{PARIS[1]}")
    assert response.status_code == 200, response.text
    items = response.json()["data"]
    assert [(item["business_name"], item["promotion"]["id"]) for item in items] == [
        ("Cafe", running["id"]), ("Shop", far_reaching["id"])]
    assert items[0]["business_id"] == cafe["id"] and items[0]["verified"] is True and items[1]["verified"] is False
    assert not items[0]["featured"] and not items[1]["featured"]  # nobody paid to feature them
    assert 499 < items[0]["distance_m"] < 501 and items[0]["promotion"]["title"] == "Coffee for riders"
    # The public view carries the running promotions only; the owner sees all four.
    assert [p["title"] for p in api("GET", f"/businesses/{cafe['id']}", rider).json()["data"]["promotions"]] == [
        "Coffee for riders", "Too small"]
    assert len(api("GET", f"/businesses/{cafe['id']}", owner).json()["data"]["promotions"]) == 4
    # Edited and deleted by the owner; listed no more once gone.
    edited = api("PATCH", f"/businesses/{cafe['id']}/promotions/{running['id']}", owner, {"radius_m": 400})
    assert edited.status_code == 200 and edited.json()["data"]["radius_m"] == 400
    assert [item["business_name"] for item in api("GET", "/promotions", rider,
                                                  near=f"{PARIS[0]},{PARIS[1]}").json()["data"]] == ["Shop"]
    assert api("DELETE", f"/businesses/{shop['id']}/promotions/{far_reaching['id']}", rival).status_code == 200
    assert api("GET", "/promotions", rider, near=f"{PARIS[0]},{PARIS[1]}").json()["data"] == []
    assert db.businesses.find_one({"_id": ObjectId(shop["id"])})["promotions"] == []


# ---- safe places in an SOS ---------------------------------------------------------------------

def test_an_sos_lists_the_open_safe_place_nearby_for_its_owner_and_responders(api, make_user, now):
    owner, admin, moderator = make_user(), make_user(role="admin"), make_user(role="moderator")
    sos_at = (PARIS[0], PARIS[1])
    responder = make_user(is_helper=True, verified=True, location=(at(300)["lat"], at(300)["lng"]))
    onlooker = make_user(is_helper=True, verified=True, location=(at(600)["lat"], at(600)["lng"]))
    business_owner = make_user()
    open_daytime = hours(("wed", "08:00", "20:00"))  # 13:00 in Paris: open until 19:00 UTC

    def place(name, distance, bearing, opening_hours, verified=True, safe_place=True, hidden=False):
        business = create(api, business_owner, name=name, category="pharmacy", location=at(distance, bearing),
                          opening_hours=opening_hours, safe_place=safe_place)
        if verified or hidden:
            staff_set(api, admin, business["id"], verified=verified, hidden=hidden)
        return business

    listed = place("Open pharmacy", 400, 45, open_daytime)
    place("Closed pharmacy", 300, 90, hours(("wed", "18:00", "23:00")))
    place("Far pharmacy", 3000, 180, open_daytime)
    place("Unverified pharmacy", 200, 270, open_daytime, verified=False)
    place("Not opted in", 100, 0, open_daytime, safe_place=False)
    place("Hidden pharmacy", 250, 300, open_daytime, hidden=True)

    created = api("POST", "/emergencies", owner, {"type": "crime", "location": {"lat": sos_at[0], "lng": sos_at[1]}})
    assert created.status_code == 201, created.text
    sos_id = created.json()["data"]["emergency"]["id"]
    assert api("POST", f"/emergencies/{sos_id}/respond", responder, {}).status_code == 200

    for user in (owner, responder):
        detail = api("GET", f"/emergencies/{sos_id}", user)
        assert detail.status_code == 200
        places = detail.json()["data"]["safe_places"]
        assert [item["name"] for item in places] == ["Open pharmacy"]
        assert places[0]["id"] == listed["id"] and 399 < places[0]["distance_m"] < 401
        assert places[0]["closes_at"] == "2026-01-14T19:00:00Z" and places[0]["location"] == at(400, 45)
    for user in (onlooker, moderator):  # may read the SOS, but the safe places are for the people in it
        detail = api("GET", f"/emergencies/{sos_id}", user)
        assert detail.status_code == 200 and "safe_places" not in detail.json()["data"]
    # Once the SOS is over there is nothing to walk to.
    assert api("POST", f"/emergencies/{sos_id}/cancel", owner, {}).status_code == 200
    assert api("GET", f"/emergencies/{sos_id}", owner).json()["data"]["safe_places"] == []


def test_a_safe_place_counts_only_while_verified(api, make_user, now):
    owner, admin, person = make_user(), make_user(role="admin"), make_user()
    business = create(api, owner, location=at(300), opening_hours={"timezone": "Europe/Paris", "intervals": ALL_DAY})
    opted = api("PATCH", f"/businesses/{business['id']}", owner, {"safe_place": True}).json()["data"]
    assert opted["safe_place"] is True and opted["safe_place_active"] is False
    staff_set(api, admin, business["id"], verified=True)
    created = api("POST", "/emergencies", person, {"type": "medical", "location": at(0)})
    sos_id = created.json()["data"]["emergency"]["id"]
    assert [p["id"] for p in api("GET", f"/emergencies/{sos_id}", person).json()["data"]["safe_places"]] == [
        business["id"]]
    assert api("GET", f"/emergencies/{sos_id}", person).json()["data"]["safe_places"][0]["closes_at"] is None
    staff_set(api, admin, business["id"], verified=False)
    assert api("GET", f"/emergencies/{sos_id}", person).json()["data"]["safe_places"] == []


# ---- staff -------------------------------------------------------------------------------------

def test_staff_verify_unverify_and_hide_and_the_audit_log_says_so(api, make_user, now, db):
    owner, rider, moderator = make_user(), make_user(), make_user(role="moderator")
    business = create(api, owner)
    assert staff_set(api, moderator, business["id"], verified=True)["verified"] is True
    assert staff_set(api, moderator, business["id"], verified=False, hidden=True)["hidden"] is True
    assert api("GET", f"/businesses/{business['id']}", rider).status_code == 404
    assert api("GET", "/businesses", rider, near=f"{PARIS[0]},{PARIS[1]}").json()["data"] == []
    assert api("GET", f"/businesses/{business['id']}", owner).json()["data"]["hidden"] is True
    entries = list(db.audit_log.find({"target_type": "business", "target_id": ObjectId(business["id"])}).sort("at", 1))
    assert [(e["action"], e["before"], e["after"]) for e in entries] == [
        ("business.moderate", {"verified": False}, {"verified": True}),
        ("business.moderate", {"verified": True, "hidden": False}, {"verified": False, "hidden": True})]
    assert all(e["actor_id"] == moderator["_id"] for e in entries)
    assert api("DELETE", f"/businesses/{business['id']}", moderator).status_code == 200
    assert db.audit_log.find_one({"action": "business.delete", "target_id": ObjectId(business["id"])})
    assert api("GET", f"/businesses/{business['id']}", owner).status_code == 404


# ---- refusals change nothing -------------------------------------------------------------------

BAD_HOURS = [
    {"timezone": "Europe/Atlantis", "intervals": []},
    {"timezone": "Europe/Paris", "intervals": [{"day": "funday", "open": "08:00", "close": "18:00"}]},
    {"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "25:00", "close": "18:00"}]},
    {"timezone": "Europe/Paris", "intervals": "mon 8-18"},
]


def test_every_endpoint_refuses_others_bad_hours_and_bad_categories_and_changes_nothing(api, make_user, now, db):
    owner, other = make_user(), make_user()
    business = create(api, owner, opening_hours={"timezone": "Europe/Paris", "intervals": ALL_DAY})
    promotion = api("POST", f"/businesses/{business['id']}/promotions", owner, {
        "title": "Opening week", "starts_at": "2026-01-14T00:00:00Z", "ends_at": "2026-01-21T00:00:00Z"}).json()["data"]
    base, promo = f"/businesses/{business['id']}", f"/businesses/{business['id']}/promotions/{promotion['id']}"
    # The other owner's own business: a path through it does not reach this business's promotion.
    others = f"/businesses/{create(api, other, name='Rival')['id']}/promotions/{promotion['id']}"
    before = list(db.businesses.find({}))
    future = {"title": "Mine now", "starts_at": "2026-01-15T00:00:00Z", "ends_at": "2026-01-16T00:00:00Z"}

    refusals = [
        # (who, method, path, body) -> status, code, field in details
        (other, "PATCH", base, {"name": "Taken over"}, 403, "forbidden", None),
        (other, "DELETE", base, None, 403, "forbidden", None),
        (other, "POST", f"{base}/promotions", future, 403, "forbidden", None),
        (other, "PATCH", promo, {"title": "Hijacked"}, 403, "forbidden", None),
        (other, "DELETE", promo, None, 403, "forbidden", None),
        (other, "PATCH", others, {"title": "Hijacked"}, 404, "not_found", None),
        (other, "DELETE", others, None, 404, "not_found", None),
        (owner, "PATCH", base, {"verified": True}, 403, "forbidden", None),
        (owner, "PATCH", base, {"hidden": False, "name": "Also"}, 403, "forbidden", None),
        (owner, "PATCH", base, {"category": "bar"}, 400, "validation_error", "category"),
        (owner, "POST", "/businesses", {"name": "Bar", "category": "nightclub", "location": at(0)}, 400,
         "validation_error", "category"),
        (owner, "PATCH", base, {"name": "x", "phone": "call me"}, 400, "validation_error", "phone"),
        (owner, "PATCH", base, {"website": "javascript:alert(1)"}, 400, "validation_error", "website"),
        (owner, "PATCH", base, {"location": {"lat": 91, "lng": 0}}, 400, "validation_error", "location"),
        (owner, "PATCH", base, {"safe_place": "yes"}, 400, "validation_error", "safe_place"),
        (owner, "PATCH", base, {"owner_id": other.id}, 400, "validation_error", "owner_id"),
        (owner, "PATCH", base, {}, 400, "validation_error", "_schema"),
        (owner, "POST", f"{base}/promotions", dict(future, ends_at="2026-01-14T23:00:00Z"), 400,
         "validation_error", "ends_at"),
        (owner, "POST", f"{base}/promotions", dict(future, starts_at="2026-01-10T00:00:00Z",
                                                   ends_at="2026-01-11T00:00:00Z"), 400, "validation_error", "ends_at"),
        (owner, "POST", f"{base}/promotions", dict(future, radius_m=10), 400, "validation_error", "radius_m"),
        (owner, "PATCH", promo, {"ends_at": "2026-01-13T00:00:00Z"}, 400, "validation_error", "ends_at"),
        (owner, "PATCH", f"{base}/promotions/{ObjectId()}", {"title": "Ghost"}, 404, "not_found", None),
        (owner, "DELETE", f"{base}/promotions/{ObjectId()}", None, 404, "not_found", None),
        (owner, "PATCH", f"/businesses/{ObjectId()}", {"name": "Ghost"}, 404, "not_found", None),
        (owner, "GET", "/businesses", None, 400, "validation_error", "near"),
        (owner, "GET", "/promotions", None, 400, "validation_error", "near"),
        (None, "PATCH", base, {"name": "Anonymous"}, 401, "unauthorized", None),
    ]
    refusals += [(owner, "PATCH", base, {"opening_hours": bad}, 400, "validation_error", "opening_hours")
                 for bad in BAD_HOURS]
    refusals += [(owner, "POST", "/businesses", {"name": "Bar", "category": "cafe", "location": at(0),
                                                  "opening_hours": bad}, 400, "validation_error", "opening_hours")
                 for bad in BAD_HOURS]
    for user, method, path, body, status, code, field in refusals:
        response = api(method, path, user, body)
        assert response.status_code == status, (method, path, body, response.text)
        error = response.json()["error"]
        assert error["code"] == code, (method, path, body, error)
        if field is not None:
            assert field in error["details"], (method, path, body, error)
    assert list(db.businesses.find({})) == before
    assert db.audit_log.count_documents({"target_type": "business"}) == 0


def test_the_owner_edits_and_deletes_their_business(api, make_user, now, db):
    owner, rider = make_user(), make_user()
    business = create(api, owner, opening_hours={"timezone": "Europe/Paris", "intervals": ALL_DAY})
    edited = api("PATCH", f"/businesses/{business['id']}", owner, {
        "name": "Corner bistro", "category": "restaurant", "phone": "+33 1 23 45 67 89",
        "website": "https://bistro.example.com", "address": "1 rue de Rivoli", "opening_hours": None})
    assert edited.status_code == 200, edited.text
    data = edited.json()["data"]
    assert (data["name"], data["category"], data["open_now"], data["verified"]) == (
        "Corner bistro", "restaurant", False, False)
    public = api("GET", f"/businesses/{business['id']}", rider).json()["data"]
    assert "hidden" not in public and public["phone"] == "+33 1 23 45 67 89"
    stored = db.businesses.find_one({"_id": ObjectId(business["id"])})
    assert set(stored) == {"_id", "owner_id", "name", "category", "location", "address", "phone", "website",
                           "opening_hours", "verified", "hidden", "safe_place", "promotions", "created_at",
                           "updated_at"}
    assert stored["location"] == {"type": "Point", "coordinates": [at(0)["lng"], at(0)["lat"]]}
    assert api("DELETE", f"/businesses/{business['id']}", owner).status_code == 200
    assert api("GET", f"/businesses/{business['id']}", owner).status_code == 404
    assert db.businesses.count_documents({}) == 0
