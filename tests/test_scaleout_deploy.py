"""Deployment settings of a scaled-out install: client addresses behind the balancer, config."""
import config as config_module


def login_from(client, address, email="someone@example.com"):
    return client.post("/api/v1/auth/login", json={"email": email, "password": "wrong-password"},
                       headers={"X-Forwarded-For": address}).status_code


def test_behind_a_proxy_each_client_keeps_its_own_ip_limit(app_factory):
    app = app_factory(PROXY_FIX_HOPS=1, LOGIN_RATE_LIMIT_IP="2/minute", LOGIN_RATE_LIMIT_EMAIL="1000/minute")
    client = app.test_client()
    assert [login_from(client, "203.0.113.7") for _ in range(3)] == [401, 401, 429]
    assert login_from(client, "203.0.113.8") == 401  # another rider behind the same balancer


def test_without_a_proxy_forwarded_headers_are_ignored(app_factory):
    # Direct exposure: a client must not dodge its limit by inventing X-Forwarded-For.
    app = app_factory(LOGIN_RATE_LIMIT_IP="2/minute", LOGIN_RATE_LIMIT_EMAIL="1000/minute")
    client = app.test_client()
    statuses = [login_from(client, f"198.51.100.{i}") for i in range(3)]
    assert statuses == [401, 401, 429]


def test_scale_out_settings_come_from_the_environment():
    values = config_module.load("development", environ={
        "REDIS_URL": "redis://cache:6379/2", "SOCKETIO_CHANNEL": "allynet-prod", "REDIS_KEY_PREFIX": "prod:",
        "RATELIMIT_KEY_PREFIX": "prod", "REDIS_SOCKET_TIMEOUT": "0.25", "PROXY_FIX_HOPS": "1"})
    assert values["SOCKETIO_CHANNEL"] == "allynet-prod"
    assert values["REDIS_KEY_PREFIX"] == "prod:" and values["RATELIMIT_KEY_PREFIX"] == "prod"
    assert values["PROXY_FIX_HOPS"] == 1
    # Rate limits live in the same Redis, with the same short timeouts as every other Redis call.
    assert values["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/2"
    assert values["RATELIMIT_STORAGE_OPTIONS"] == {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


def test_without_redis_the_limits_stay_in_memory():
    values = config_module.load("development", environ={})
    assert values["RATELIMIT_STORAGE_URI"] == "memory://"
    assert "RATELIMIT_STORAGE_OPTIONS" not in values
