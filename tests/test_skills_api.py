"""Skills through the HTTP API: publishing, reading, ownership of edits and deletes, a user's skills, bad input."""
import pytest
from bson import ObjectId

from tests.helpers import error_code

URL = "/api/v1/skills"
BODY = {"name": "Bike repair", "category": "repairs", "description": "Punctures, brakes, gears",
        "rate": {"amount": 20, "currency": "EUR", "unit": "hour"}, "location": {"lat": 52.52, "lng": 13.405}}


def publish(client, user, **overrides):
    body = {**BODY, **overrides}
    return client.post(URL, headers=user.headers, json={k: v for k, v in body.items() if v is not ...})


def new_skill(client, user, **overrides):
    response = publish(client, user, **overrides)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def test_publish_returns_201_with_the_skill(client, db, make_user):
    owner = make_user()
    response = publish(client, owner, name="  Bike repair ", rate={"amount": 20, "currency": "eur", "unit": "hour"})
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert set(data) == {"id", "user_id", "name", "category", "description", "rate", "location",
                         "created_at", "updated_at"}
    assert data["name"] == "Bike repair" and data["user_id"] == owner.id
    assert data["rate"] == {"amount": 20.0, "currency": "EUR", "unit": "hour"}
    assert data["location"] == BODY["location"]
    stored = db.skills.find_one({"_id": ObjectId(data["id"])})
    assert stored["location"] == {"type": "Point", "coordinates": [13.405, 52.52]}
    assert client.get(f"{URL}/{data['id']}", headers=make_user().headers).get_json()["data"] == data


def test_location_defaults_to_the_profile_location(client, make_user):
    owner = make_user(location=(48.85, 2.35))
    data = new_skill(client, owner, location=..., description=..., rate=...)
    assert data["location"] == {"lat": 48.85, "lng": 2.35}
    assert data["description"] is None and data["rate"] is None


def test_no_location_and_no_profile_location_is_400(client, db, make_user):
    response = publish(client, make_user(), location=...)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert "location" in response.get_json()["error"]["details"]
    assert db.skills.count_documents({}) == 0


@pytest.mark.parametrize("overrides, field", [
    ({"name": "x"}, "name"), ({"name": ...}, "name"), ({"name": 5}, "name"),
    ({"category": "plumbing"}, "category"), ({"category": ...}, "category"),
    ({"rate": {"amount": -0.01, "currency": "EUR", "unit": "hour"}}, "rate"),
    ({"rate": {"amount": 10, "currency": "EURO", "unit": "hour"}}, "rate"),
    ({"rate": {"amount": 10, "currency": "QQQ", "unit": "hour"}}, "rate"),
    ({"rate": {"amount": 10, "currency": "EUR", "unit": "day"}}, "rate"),
    ({"rate": {"amount": 10, "currency": "EUR"}}, "rate"),
    ({"rate": {"amount": "Infinity", "currency": "EUR", "unit": "job"}}, "rate"),
    ({"location": {"lat": 0, "lng": 181}}, "location"),
    ({"description": "x" * 2001}, "description"),
    ({"user_id": str(ObjectId())}, "user_id"),
    ({"trust_score": 100}, "trust_score"),
])
def test_bad_input_is_400_and_stores_nothing(client, db, make_user, overrides, field):
    response = publish(client, make_user(location=(1, 1)), **overrides)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.skills.count_documents({}) == 0


def test_owner_edits_the_skill(client, make_user, clock):
    owner = make_user()
    skill = new_skill(client, owner)
    clock.advance(minutes=5)
    response = client.patch(f"{URL}/{skill['id']}", headers=owner.headers,
                            json={"name": "Bicycle repair", "rate": None, "description": None,
                                  "location": {"lat": 1, "lng": 2}, "category": "tech"})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["name"] == "Bicycle repair" and data["rate"] is None and data["description"] is None
    assert data["location"] == {"lat": 1, "lng": 2} and data["category"] == "tech"
    assert data["created_at"] == skill["created_at"] and data["updated_at"] != skill["updated_at"]


def test_editing_someone_elses_skill_is_403_and_changes_nothing(client, make_user):
    owner, other = make_user(), make_user()
    skill = new_skill(client, owner)
    response = client.patch(f"{URL}/{skill['id']}", headers=other.headers, json={"name": "Stolen skill"})
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert client.get(f"{URL}/{skill['id']}", headers=owner.headers).get_json()["data"] == skill


@pytest.mark.parametrize("payload", [{}, {"user_id": str(ObjectId())}, {"location": None},
                                     {"rate": {"amount": -1, "currency": "EUR", "unit": "job"}},
                                     {"category": "plumbing"}])
def test_bad_edits_are_400_and_change_nothing(client, make_user, payload):
    owner = make_user()
    skill = new_skill(client, owner)
    response = client.patch(f"{URL}/{skill['id']}", headers=owner.headers, json=payload)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert client.get(f"{URL}/{skill['id']}", headers=owner.headers).get_json()["data"] == skill


def test_owner_deletes_and_others_cannot(client, make_user):
    owner, other = make_user(), make_user()
    skill = new_skill(client, owner)
    response = client.delete(f"{URL}/{skill['id']}", headers=other.headers)
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert client.get(f"{URL}/{skill['id']}", headers=owner.headers).status_code == 200
    response = client.delete(f"{URL}/{skill['id']}", headers=owner.headers)
    assert response.status_code == 200 and response.get_json()["data"] is None
    assert client.get(f"{URL}/{skill['id']}", headers=owner.headers).status_code == 404
    assert client.delete(f"{URL}/{skill['id']}", headers=owner.headers).status_code == 404


@pytest.mark.parametrize("path", ["nothex", "12345", "g" * 24])
def test_malformed_ids_are_404(client, make_user, path):
    user = make_user()
    for method, payload in (("get", None), ("patch", {"name": "New name"}), ("delete", None)):
        response = getattr(client, method)(f"{URL}/{path}", headers=user.headers, json=payload)
        assert response.status_code == 404 and error_code(response) == "not_found"
    response = client.get(f"/api/v1/users/{path}/skills", headers=user.headers)
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_unknown_ids_are_404(client, make_user):
    user = make_user()
    for method, payload in (("get", None), ("patch", {"name": "New name"}), ("delete", None)):
        response = getattr(client, method)(f"{URL}/{ObjectId()}", headers=user.headers, json=payload)
        assert response.status_code == 404 and error_code(response) == "not_found"
    response = client.get(f"/api/v1/users/{ObjectId()}/skills", headers=user.headers)
    assert response.status_code == 404


def test_a_users_skills_newest_first_with_pages(client, make_user, clock):
    owner, other, viewer = make_user(), make_user(), make_user()
    mine = []
    for n in range(5):
        clock.advance(seconds=1)
        mine.append(new_skill(client, owner, name=f"Skill {n}"))
    new_skill(client, other, name="Not mine")
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/v1/users/{owner.id}/skills{query}", headers=viewer.headers).get_json()
        seen += page["data"]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert [skill["id"] for skill in seen] == [skill["id"] for skill in reversed(mine)]
    empty = client.get(f"/api/v1/users/{viewer.id}/skills", headers=viewer.headers).get_json()
    assert empty["data"] == [] and empty["meta"] == {"next_cursor": None, "count": 0}


def test_requires_authentication(client, make_user):
    skill = new_skill(client, make_user())
    assert client.get(f"{URL}/{skill['id']}").status_code == 401
    assert client.get(URL).status_code == 401
    assert client.delete(f"{URL}/{skill['id']}").status_code == 401
