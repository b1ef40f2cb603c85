"""Configuration: embedded default, environment overrides, production refusals, bootstrap admin."""
import pytest

import config
from allynet import create_app


def test_embedded_default_needs_no_variables():
    values = config.load("development", environ={})
    assert values["MONGO_URI"] is None and values["REDIS_URL"] is None
    assert values["RATELIMIT_STORAGE_URI"] == "memory://"
    assert values["MAX_CONTENT_LENGTH"] == 64 * 1024


def test_environment_overrides_and_redis_storage():
    values = config.load("development", environ={
        "MONGO_URI": "mongodb://db:27017", "REDIS_URL": "redis://cache:6379/0",
        "JWT_ACCESS_TOKEN_EXPIRES": "60", "RATELIMIT_ENABLED": "0", "MAX_CONTENT_LENGTH": "1000"})
    assert values["MONGO_URI"] == "mongodb://db:27017"
    assert values["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/0"
    assert values["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds() == 60
    assert values["RATELIMIT_ENABLED"] is False
    assert values["MAX_CONTENT_LENGTH"] == 1000


def test_position_flush_interval_follows_the_store_unless_set():
    assert config.load("development", environ={})["PARTY_POSITION_FLUSH_SECONDS"] == 30.0
    with_mongo = config.load("development", environ={"MONGO_URI": "mongodb://db:27017"})
    assert with_mongo["PARTY_POSITION_FLUSH_SECONDS"] == 2.0
    chosen = config.load("development", environ={"PARTY_POSITION_FLUSH_SECONDS": "5"})
    assert chosen["PARTY_POSITION_FLUSH_SECONDS"] == 5.0


def test_bad_environment_value_is_a_clear_error():
    with pytest.raises(config.ConfigError, match="MAX_CONTENT_LENGTH"):
        config.load("development", environ={"MAX_CONTENT_LENGTH": "lots"})


@pytest.mark.parametrize("environ, reason", [
    ({"REDIS_URL": "redis://x", "JWT_SECRET_KEY": "s"}, "mongomock"),
    ({"MONGO_URI": "mongodb://x", "JWT_SECRET_KEY": "s"}, "in-memory rate limits"),
    ({"MONGO_URI": "mongodb://x", "REDIS_URL": "redis://x"}, "JWT secret"),
    ({"MONGO_URI": "mongodb://x", "REDIS_URL": "redis://x", "JWT_SECRET_KEY": "s",
      "RATELIMIT_ENABLED": "0"}, "rate limiting on"),
])
def test_production_refuses_unsafe_setups(environ, reason):
    with pytest.raises(config.ConfigError, match=reason) as info:
        config.load("production", environ=environ)
    assert "\n" not in str(info.value)


PRODUCTION = {"MONGO_URI": "mongodb://x", "REDIS_URL": "redis://x", "JWT_SECRET_KEY": "s" * 40,
              "PAYMENTS_PROVIDER": "stripe", "STRIPE_API_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}


def test_production_accepts_a_complete_setup():
    values = config.load("production", environ=PRODUCTION)
    assert values["RATELIMIT_STORAGE_URI"] == "redis://x"
    assert values["PAYMENTS_PROVIDER"] == "stripe"


@pytest.mark.parametrize("change, reason", [
    ({"PAYMENTS_PROVIDER": None}, "offline payment provider"),
    ({"PAYMENTS_PROVIDER": "offline"}, "offline payment provider"),
    ({"STRIPE_API_KEY": None}, "needs STRIPE_API_KEY"),
    ({"STRIPE_WEBHOOK_SECRET": ""}, "needs STRIPE_WEBHOOK_SECRET"),
    ({"STRIPE_API_KEY": None, "STRIPE_WEBHOOK_SECRET": None}, "STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET"),
])
def test_production_refuses_test_mode_payments_and_stripe_without_keys(change, reason):
    environ = {key: value for key, value in {**PRODUCTION, **change}.items() if value is not None}

    with pytest.raises(config.ConfigError, match=reason) as info:
        config.load("production", environ=environ)
    assert "\n" not in str(info.value)


def test_an_unknown_payments_provider_is_a_clear_error():
    with pytest.raises(config.ConfigError, match="PAYMENTS_PROVIDER='paypal' must be one of offline, stripe"):
        config.load("development", environ={"PAYMENTS_PROVIDER": "paypal"})


def test_generated_secret_is_logged(caplog):
    app = create_app("development", BACKGROUND_TASKS=False)
    assert len(app.config["JWT_SECRET_KEY"]) >= 32
    assert any("JWT_SECRET_KEY is not set" in r.getMessage() for r in caplog.records)


def test_bootstrap_admin_creates_then_promotes_and_repasswords(app_factory, db, make_user):
    existing = make_user(email="boss@example.com", password="old password")
    app = app_factory(ALLYNET_BOOTSTRAP_ADMIN="Boss@example.com:new:pass:word")
    client = app.test_client()
    login = client.post("/api/v1/auth/login", json={"email": "boss@example.com", "password": "new:pass:word"})
    assert login.status_code == 200
    user = login.get_json()["data"]["user"]
    assert user["id"] == existing.id and user["role"] == "admin" and user["verified"] is True
    old = client.post("/api/v1/auth/login", json={"email": "boss@example.com", "password": "old password"})
    assert old.status_code == 401
    fresh = app_factory(ALLYNET_BOOTSTRAP_ADMIN="root@example.com:rootpassword")
    assert fresh.test_client().post("/api/v1/auth/login", json={
        "email": "root@example.com", "password": "rootpassword"}).get_json()["data"]["user"]["role"] == "admin"


@pytest.mark.parametrize("spec", ["no-colon", "notanemail:password1", "a@b.c:short"])
def test_bootstrap_admin_rejects_malformed_spec(app_factory, spec):
    with pytest.raises(config.ConfigError):
        app_factory(ALLYNET_BOOTSTRAP_ADMIN=spec)


def test_cli_create_admin(app, db):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "ops@example.com", "--password", "s3cret-pass"])
    assert result.exit_code == 0, result.output
    assert db.users.find_one({"email": "ops@example.com"})["role"] == "admin"


def test_indexes_are_created_at_start(db):
    users = db.users.index_information()
    assert users["email_unique"]["unique"] is True
    assert ("location", "2dsphere") in users["location_2dsphere"]["key"]
    assert db.revoked_tokens.index_information()["expires_ttl"]["expireAfterSeconds"] == 0


def test_every_declared_location_index_is_2dsphere():
    from allynet.db import INDEXES

    geo = [(name, keys) for name, keys, _ in INDEXES if any("location" in f or f == "waypoints" for f, _ in keys)]
    assert geo and all(kind == "2dsphere" for _, keys in geo for _, kind in keys)
