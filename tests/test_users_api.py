"""Profiles, locations, public views and admin changes through the HTTP API."""
import pytest

from tests.helpers import error_code

PROFILE = "/api/v1/profile"


def test_profile_update_whitelisted_fields(client, make_user):
    user = make_user()
    body = {"display_name": " New Name ", "vehicle_type": "bicycle", "is_helper": True,
            "emergency_radius_m": 3000, "preferences": {"units": "imperial", "notifications": False}}
    response = client.patch(PROFILE, headers=user.headers, json=body)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["display_name"] == "New Name"
    assert data["vehicle_type"] == "bicycle" and data["is_helper"] is True
    assert data["emergency_radius_m"] == 3000
    assert data["preferences"] == {"units": "imperial", "notifications": False}
    again = client.put(PROFILE, headers=user.headers, json={"preferences": {"language": "fr"}})
    assert again.get_json()["data"]["preferences"] == {"units": "imperial", "notifications": False,
                                                       "language": "fr"}


@pytest.mark.parametrize("field, value", [
    ("role", "admin"), ("verified", True), ("trust_score", 100), ("email", "x@example.com"),
    ("password_hash", "$2b$..."), ("location", {"lat": 1, "lng": 2}), ("nonsense", 1),
])
def test_profile_rejects_protected_and_unknown_fields(client, db, make_user, field, value):
    user = make_user()
    before = db.users.find_one({"_id": user["_id"]})
    response = client.put(PROFILE, headers=user.headers, json={"display_name": "X", field: value})
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.users.find_one({"_id": user["_id"]}) == before


@pytest.mark.parametrize("body", [
    {}, {"emergency_radius_m": 50}, {"emergency_radius_m": 50000}, {"display_name": ""},
    {"display_name": "x" * 51}, {"is_helper": "maybe"}, {"preferences": {"units": "parsecs"}},
    {"preferences": {"theme": "dark"}}, {"emergency_radius_m": "NaN"},
])
def test_profile_rejects_bad_values(client, make_user, body):
    response = client.patch(PROFILE, headers=make_user().headers, json=body)
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_set_location_stores_geojson_and_returns_lat_lng(client, db, make_user):
    user = make_user()
    response = client.put(f"{PROFILE}/location", headers=user.headers,
                          json={"lat": 45.76, "lng": 4.84, "accuracy_m": 12})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["location"] == {"lat": 45.76, "lng": 4.84}
    assert data["location_updated_at"].endswith("Z")
    stored = db.users.find_one({"_id": user["_id"]})
    assert stored["location"] == {"type": "Point", "coordinates": [4.84, 45.76]}
    assert stored["location_accuracy_m"] == 12


@pytest.mark.parametrize("body", [
    {"lat": 91, "lng": 0}, {"lat": 0, "lng": 181}, {"lat": -91, "lng": 0}, {"lat": 0},
    {"lat": "NaN", "lng": 0}, {"lat": True, "lng": 0}, {"lat": 1, "lng": 2, "accuracy_m": -1},
    {"lat": 1, "lng": 2, "alt": 3}, {"lat": "north", "lng": 1},
])
def test_set_location_rejects_bad_coordinates(client, db, make_user, body):
    user = make_user(location=(10, 10))
    response = client.put(f"{PROFILE}/location", headers=user.headers, json=body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert db.users.find_one({"_id": user["_id"]})["location"]["coordinates"] == [10, 10]


def test_public_view_hides_private_fields(client, make_user):
    viewer = make_user()
    target = make_user(location=(1, 2), is_helper=True, verified=True)
    response = client.get(f"/api/v1/users/{target.id}", headers=viewer.headers)
    assert response.status_code == 200
    assert set(response.get_json()["data"]) == {"id", "display_name", "vehicle_type", "is_helper",
                                                 "verified", "trust_score"}


@pytest.mark.parametrize("user_id", ["123", "zzzzzzzzzzzzzzzzzzzzzzzz", "0123456789abcdef01234567"])
def test_unknown_or_malformed_user_id_is_404(client, make_user, user_id):
    response = client.get(f"/api/v1/users/{user_id}", headers=make_user().headers)
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_admin_changes_role_and_verification_with_audit(client, db, make_user):
    admin = make_user(role="admin")
    target = make_user()
    response = client.patch(f"/api/v1/users/{target.id}", headers=admin.headers,
                            json={"role": "moderator", "verified": True})
    assert response.status_code == 200
    assert response.get_json()["data"]["role"] == "moderator"
    assert response.get_json()["data"]["verified"] is True
    entry = db.audit_log.find_one({"target_id": target["_id"]})
    assert entry["actor_id"] == admin["_id"] and entry["action"] == "user.update"
    assert entry["before"] == {"role": "user", "verified": False}
    assert entry["after"] == {"role": "moderator", "verified": True}


@pytest.mark.parametrize("role", ["user", "moderator"])
def test_non_admins_cannot_change_users(client, db, make_user, role):
    caller = make_user(role=role)
    target = make_user()
    response = client.patch(f"/api/v1/users/{target.id}", headers=caller.headers, json={"role": "admin"})
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert db.users.find_one({"_id": target["_id"]})["role"] == "user"


def test_demoted_admin_loses_rights_before_token_expiry(client, db, make_user):
    admin = make_user(role="admin")
    target = make_user()
    db.users.update_one({"_id": admin["_id"]}, {"$set": {"role": "user"}})
    response = client.patch(f"/api/v1/users/{target.id}", headers=admin.headers, json={"verified": True})
    assert response.status_code == 403


@pytest.mark.parametrize("body", [{}, {"role": "superuser"}, {"verified": "yes"}, {"is_helper": "yes"}])
def test_admin_update_validates(client, make_user, body):
    admin = make_user(role="admin")
    target = make_user()
    response = client.patch(f"/api/v1/users/{target.id}", headers=admin.headers, json=body)
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_admin_update_of_unknown_user_is_404(client, make_user):
    admin = make_user(role="admin")
    response = client.patch("/api/v1/users/0123456789abcdef01234567", headers=admin.headers,
                            json={"verified": True})
    assert response.status_code == 404
