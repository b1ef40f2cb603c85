"""Auth through the HTTP API: register, login, refresh rotation, logout, token errors."""
from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token, create_refresh_token

from tests.helpers import error_code

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
PROFILE = "/api/v1/profile"


def register(client, email="rider@example.com", password="correct horse", **extra):
    body = {"email": email, "password": password, "display_name": "Rider", **extra}
    return client.post(REGISTER, json=body)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_register_returns_user_and_tokens(client, db):
    response = register(client, email="Rider@Example.COM", vehicle_type="motorcycle")
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["user"]["email"] == "rider@example.com"
    assert data["user"]["vehicle_type"] == "motorcycle"
    assert data["user"]["role"] == "user"
    assert "password_hash" not in data["user"] and "password" not in data["user"]
    assert len(data["user"]["id"]) == 24
    stored = db.users.find_one({"email": "rider@example.com"})
    assert stored["password_hash"].startswith("$2")  # bcrypt only
    assert "correct horse" not in str(stored)
    profile = client.get(PROFILE, headers=bearer(data["access_token"]))
    assert profile.status_code == 200
    assert profile.get_json()["data"]["id"] == data["user"]["id"]


def test_email_is_unique_case_insensitively(client, db):
    assert register(client, email="a@example.com").status_code == 201
    again = register(client, email="  A@EXAMPLE.com ")
    assert again.status_code == 409
    assert error_code(again) == "conflict"
    assert db.users.count_documents({}) == 1


@pytest.mark.parametrize("body, field", [
    ({"email": "not-an-email", "password": "long enough", "display_name": "x"}, "email"),
    ({"email": "a@example.com", "password": "short", "display_name": "x"}, "password"),
    ({"email": "a@example.com", "password": "é" * 40, "display_name": "x"}, "password"),
    ({"email": "a@example.com", "password": "long enough"}, "display_name"),
    ({"email": "a@example.com", "password": "long enough", "display_name": "x", "role": "admin"}, "role"),
    ({"email": "a@example.com", "password": "long enough", "display_name": "x", "vehicle_type": "tank"},
     "vehicle_type"),
    ({"email": "a@example.com", "password": 12345678, "display_name": "x"}, "password"),
])
def test_register_rejects_bad_input(client, db, body, field):
    response = client.post(REGISTER, json=body)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]
    assert db.users.count_documents({}) == 0


def test_login_and_same_401_for_wrong_email_or_password(client):
    register(client, email="a@example.com", password="right password")
    good = client.post(LOGIN, json={"email": "A@example.com", "password": "right password"})
    assert good.status_code == 200
    assert set(good.get_json()["data"]) == {"user", "access_token", "refresh_token"}
    wrong_password = client.post(LOGIN, json={"email": "a@example.com", "password": "wrong password"})
    wrong_email = client.post(LOGIN, json={"email": "b@example.com", "password": "right password"})
    assert wrong_password.status_code == wrong_email.status_code == 401
    assert wrong_password.get_json() == wrong_email.get_json()


def test_refresh_rotates_and_reuse_revokes_the_whole_login(client):
    tokens = register(client).get_json()["data"]
    rotated = client.post(REFRESH, headers=bearer(tokens["refresh_token"]))
    assert rotated.status_code == 200
    new = rotated.get_json()["data"]
    assert set(new) == {"access_token", "refresh_token"}
    assert new["refresh_token"] != tokens["refresh_token"]
    reused = client.post(REFRESH, headers=bearer(tokens["refresh_token"]))
    assert reused.status_code == 401
    assert error_code(reused) == "token_revoked"
    # Reuse means the token leaked: every token of that login is revoked, the rotated pair too.
    for response in (client.post(REFRESH, headers=bearer(new["refresh_token"])),
                     client.get(PROFILE, headers=bearer(new["access_token"]))):
        assert response.status_code == 401 and error_code(response) == "token_revoked"


def test_logout_revokes_access_and_refresh(client, db):
    tokens = register(client).get_json()["data"]
    response = client.post(LOGOUT, headers=bearer(tokens["access_token"]),
                           json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200
    assert error_code(client.get(PROFILE, headers=bearer(tokens["access_token"]))) == "token_revoked"
    assert error_code(client.post(REFRESH, headers=bearer(tokens["refresh_token"]))) == "token_revoked"
    revoked = list(db.revoked_tokens.find())
    assert {doc["type"] for doc in revoked} == {"access", "refresh", "family"}  # family: the whole login
    assert all(doc["expires_at"] is not None for doc in revoked)  # TTL at the token's own expiry


def test_revocation_survives_a_new_app_on_the_same_store(app_factory):
    first = app_factory()
    client = first.test_client()
    tokens = register(client).get_json()["data"]
    client.post(LOGOUT, headers=bearer(tokens["access_token"]))
    restarted = app_factory()  # a new process on the same database
    response = restarted.test_client().get(PROFILE, headers=bearer(tokens["access_token"]))
    assert error_code(response) == "token_revoked"


def test_logout_rejects_someone_elses_refresh_token(client):
    mine = register(client, email="a@example.com").get_json()["data"]
    theirs = register(client, email="b@example.com").get_json()["data"]
    response = client.post(LOGOUT, headers=bearer(mine["access_token"]),
                           json={"refresh_token": theirs["refresh_token"]})
    assert response.status_code == 400
    assert client.post(REFRESH, headers=bearer(theirs["refresh_token"])).status_code == 200


def test_logout_accepts_no_body(client):
    tokens = register(client).get_json()["data"]
    assert client.post(LOGOUT, headers=bearer(tokens["access_token"])).status_code == 200


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer not.a.jwt", "Token abc", "Bearer " + "x" * 50,
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
])
def test_bad_tokens_are_401_never_422(client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get(PROFILE, headers=headers)
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"


def test_wrong_type_tokens_are_401(app, client, make_user):
    user = make_user()
    assert client.get(PROFILE, headers=bearer(user["refresh_token"])).status_code == 401
    assert client.post(REFRESH, headers=bearer(user["access_token"])).status_code == 401


def test_expired_token_is_token_expired(app, client, make_user):
    user = make_user()
    with app.app_context():
        expired = create_access_token(identity=user.id, expires_delta=timedelta(seconds=-60))
    response = client.get(PROFILE, headers=bearer(expired))
    assert response.status_code == 401
    assert error_code(response) == "token_expired"


def test_token_signed_with_another_key_is_401(app_factory, make_user):
    other = app_factory(JWT_SECRET_KEY="another-secret-key-that-is-long-enough-too")
    user = make_user()
    with other.app_context():
        forged = create_access_token(identity=user.id, additional_claims={"role": "admin"})
    ours = user  # the fixture's app is the first one built
    response = other.test_client().get(PROFILE, headers=bearer(ours["access_token"]))
    assert response.status_code == 401
    assert forged != ours["access_token"]


def test_tokens_carry_sub_role_and_email(app, make_user):
    from flask_jwt_extended import decode_token

    user = make_user(role="moderator")
    with app.app_context():
        claims = decode_token(user["access_token"])
        refresh = decode_token(user["refresh_token"])
    assert claims["sub"] == user.id and isinstance(claims["sub"], str)
    assert claims["role"] == "moderator" and claims["email"] == user["email"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert refresh["exp"] - refresh["iat"] == 30 * 24 * 3600


def test_login_is_rate_limited_per_email_with_retry_after(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT_EMAIL="3/minute")
    client = app.test_client()
    register(client, email="a@example.com")
    codes = [client.post(LOGIN, json={"email": "a@example.com", "password": "nope nope"}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    limited = client.post(LOGIN, json={"email": "a@example.com", "password": "correct horse"})
    assert limited.status_code == 429
    assert error_code(limited) == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    # Another email from the same address is not blocked by this limit.
    register(client, email="b@example.com")
    assert client.post(LOGIN, json={"email": "b@example.com", "password": "correct horse"}).status_code == 200


def test_register_is_rate_limited_per_ip(app_factory):
    app = app_factory(REGISTER_RATE_LIMIT="2/minute")
    client = app.test_client()
    assert register(client, email="a@example.com").status_code == 201
    assert register(client, email="b@example.com").status_code == 201
    third = register(client, email="c@example.com")
    assert third.status_code == 429 and "Retry-After" in third.headers


def test_rate_limits_can_be_switched_off(app_factory):
    app = app_factory(LOGIN_RATE_LIMIT_EMAIL="1/minute", RATELIMIT_ENABLED=False)
    client = app.test_client()
    register(client, email="a@example.com")
    codes = {client.post(LOGIN, json={"email": "a@example.com", "password": "nope nope"}).status_code
             for _ in range(3)}
    assert codes == {401}


def test_refresh_of_deleted_account_is_401(client, db):
    tokens = register(client).get_json()["data"]
    db.users.delete_many({})
    assert client.post(REFRESH, headers=bearer(tokens["refresh_token"])).status_code == 401


def test_create_refresh_token_for_unknown_subject_is_401(app, client):
    with app.app_context():
        token = create_refresh_token(identity="0123456789abcdef01234567")
    assert client.post(REFRESH, headers=bearer(token)).status_code == 401
