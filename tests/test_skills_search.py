"""Skill search: by distance (known points), category, free text (words, phrases, negation, regex characters)."""
import pytest

from allynet import geo
from tests.helpers import error_code

URL = "/api/v1/skills"
STEP_M = 1113.19  # 0.01 degree on MongoDB's sphere

SKILLS = [
    # name, description, category, (lat, lng)
    ("Bike repair", "Punctures, brakes and gears fixed", "repairs", (0.02, 0.0)),
    ("Café barista", "Coffee for your party", "other", (0.01, 0.0)),
    ("C++ tutoring", "Programming lessons: C++, Python (beginners)", "tech", (0.0, 0.03)),
    ("Dog walking", "Long walks, any weather", "pets", (0.04, 0.0)),
    ("Bike courier", "Fast delivery by bike.*", "transport", (0.3, 0.0)),  # 33 km away
]


@pytest.fixture
def catalogue(client, make_user):
    owner = make_user()
    ids = {}
    for name, description, category, (lat, lng) in SKILLS:
        response = client.post(URL, headers=owner.headers, json={
            "name": name, "description": description, "category": category, "location": {"lat": lat, "lng": lng}})
        assert response.status_code == 201
        ids[name] = response.get_json()["data"]["id"]
    return ids


@pytest.fixture
def viewer(make_user):
    return make_user()


def search(client, viewer, query):
    response = client.get(f"{URL}?{query}", headers=viewer.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def names(result):
    return [item["name"] for item in result["data"]]


def test_near_sorts_by_distance_with_distance_m(client, catalogue, viewer):
    result = search(client, viewer, "near=0,0&radius_m=5000")
    assert names(result) == ["Café barista", "Bike repair", "C++ tutoring", "Dog walking"]
    distances = [item["distance_m"] for item in result["data"]]
    assert distances == pytest.approx([STEP_M, 2 * STEP_M, 3 * STEP_M, 4 * STEP_M], abs=0.01)
    assert distances[2] == pytest.approx(geo.haversine_m(0, 0, 0.03, 0), rel=1e-9)
    assert result["meta"] == {"next_cursor": None, "count": 4}


def test_radius_and_category_filter(client, catalogue, viewer):
    assert names(search(client, viewer, "near=0,0&radius_m=2500")) == ["Café barista", "Bike repair"]
    assert names(search(client, viewer, "near=0,0&radius_m=50000&category=transport")) == ["Bike courier"]
    assert names(search(client, viewer, "near=0,0&category=transport")) == []  # default radius 10 km


def test_near_pages_with_cursor(client, catalogue, viewer):
    first = search(client, viewer, "near=0,0&radius_m=50000&limit=3")
    assert names(first) == ["Café barista", "Bike repair", "C++ tutoring"]
    cursor = first["meta"]["next_cursor"]
    second = search(client, viewer, f"near=0,0&radius_m=50000&limit=3&cursor={cursor}")
    assert names(second) == ["Dog walking", "Bike courier"] and second["meta"]["next_cursor"] is None


def test_text_search_without_near_is_best_match_first(client, viewer, make_user):
    owner = make_user(location=(0, 0))
    for name, description in [("Bike", "Bikes and more bike"), ("Bike polishing", "Shiny"),
                              ("Painting", "Walls, fences, a bike shed"), ("Bike polishing", "Shiny"),
                              ("Cooking", "Pasta")]:
        response = client.post(URL, headers=owner.headers, json={"name": name, "description": description,
                                                                  "category": "other"})
        assert response.status_code == 201
    result = search(client, viewer, "q=bike")
    # "Bike" is the whole name (boosted) and twice in its description; equal scores: newest first.
    ranked = [(item["name"], item["id"]) for item in result["data"]]
    assert [name for name, _ in ranked] == ["Bike", "Bike polishing", "Bike polishing", "Painting"]
    assert ranked[1][1] > ranked[2][1]
    assert all("distance_m" not in item and "text_score" not in item for item in result["data"])
    paged, cursor = [], None
    while True:
        page = search(client, viewer, "q=bike&limit=1" + (f"&cursor={cursor}" if cursor else ""))
        paged += [(item["name"], item["id"]) for item in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert paged == ranked


@pytest.mark.parametrize("q, expected", [
    ("BIKE", ["Bike courier", "Bike repair"]),  # best match first
    ("cafe", ["Café barista"]),  # diacritics folded
    ("coffee walks", ["Dog walking", "Café barista"]),  # any term
    ("bike -courier", ["Bike repair"]),  # negation
    ("-bike", []),  # only negations: nothing
    ('"for your party"', ["Café barista"]),  # phrase
    ('"your for party"', []),
    ("lessons -\"c++\"", []),  # negated phrase
    ("pre-bike", ["Bike courier", "Bike repair"]),  # a hyphen inside a word is no negation
])
def test_text_search_semantics(client, catalogue, viewer, q, expected):
    from urllib.parse import quote

    assert names(search(client, viewer, f"q={quote(q)}")) == expected


@pytest.mark.parametrize("q, expected", [
    (".*", []), ("(", []), ("[a-z]+", []), ("^Bike", ["Bike courier", "Bike repair"]),
    ("bike.*", ["Bike courier", "Bike repair"]), ("c++", ["C++ tutoring"]), ("$where", []),
    ('{"$gt": ""}', []),
])
def test_regex_characters_are_plain_text(client, catalogue, viewer, q, expected):
    from urllib.parse import quote

    assert names(search(client, viewer, f"q={quote(q)}")) == expected


def test_text_and_near_together_rank_by_distance(client, catalogue, viewer):
    result = search(client, viewer, "near=0,0&radius_m=50000&q=bike")
    assert names(result) == ["Bike repair", "Bike courier"]
    distances = [item["distance_m"] for item in result["data"]]
    assert distances == pytest.approx([2 * STEP_M, 30 * STEP_M], abs=0.05)
    assert names(search(client, viewer, "near=0,0&radius_m=5000&q=bike")) == ["Bike repair"]
    assert names(search(client, viewer, "near=0,0&radius_m=50000&q=bike&category=transport")) == ["Bike courier"]


def test_text_and_near_pages_with_cursor(client, catalogue, viewer):
    first = search(client, viewer, "near=0,0&radius_m=50000&q=bike%20coffee%20dog&limit=2")
    assert names(first) == ["Café barista", "Bike repair"]
    second = search(client, viewer,
                    f"near=0,0&radius_m=50000&q=bike%20coffee%20dog&limit=2&cursor={first['meta']['next_cursor']}")
    assert names(second) == ["Dog walking", "Bike courier"] and second["meta"]["next_cursor"] is None


def test_category_only_lists_newest_first(client, catalogue, viewer):
    assert names(search(client, viewer, "category=pets")) == ["Dog walking"]
    assert len(search(client, viewer, "")["data"]) == len(SKILLS)


@pytest.mark.parametrize("query, field", [
    ("near=0,0&radius_m=99", "radius_m"), ("near=0,0&radius_m=50001", "radius_m"),
    ("radius_m=-5", "radius_m"), ("near=0,200", "near"), ("near=x", "near"),
    ("category=plumbing", "category"), ("q=", "q"), ("q=" + "a" * 201, "q"),
    ("limit=0", "limit"), ("cursor=%%%", "cursor"), ("near=0,0&cursor=WyJ4Il0", "cursor"),
    ("cursor=WzEsMl0", "cursor"), ("unknown=1", "unknown"), ("q=bike&cursor=W05hTiwiMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwIl0", "cursor"),
])
def test_bad_search_queries_are_400(client, catalogue, viewer, query, field):
    response = client.get(f"{URL}?{query}", headers=viewer.headers)
    assert response.status_code == 400, response.get_json()
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
