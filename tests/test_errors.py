"""Every error leaves the server in the contract's shape and with its code."""
import json

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from tests.helpers import error_code
from tests.scaleout_support import free_port

PROFILE = "/api/v1/profile"
REGISTER = "/api/v1/auth/register"


def assert_error_shape(response, status, code):
    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("data, content_type", [
    ("{not json", "application/json"),
    ("[1, 2]", "application/json"),
    ('"a string"', "application/json"),
    ("null", "application/json"),
    ("email=a@b.c", "application/x-www-form-urlencoded"),
    ("", "application/json"),
])
def test_non_json_or_non_object_bodies_are_bad_request(client, db, data, content_type):
    response = client.post(REGISTER, data=data, content_type=content_type)
    assert_error_shape(response, 400, "bad_request")
    assert db.users.count_documents({}) == 0


def test_too_deep_body_is_bad_request(client, make_user):
    deep = {"display_name": "x"}
    node = deep
    for _ in range(100):
        node["preferences"] = {}
        node = node["preferences"]
    response = client.patch(PROFILE, headers=make_user().headers, data=json.dumps(deep),
                            content_type="application/json")
    assert_error_shape(response, 400, "bad_request")


def test_pathologically_deep_json_is_bad_request_not_500(client, make_user):
    text = "[" * 100000 + "]" * 100000
    response = client.patch(PROFILE, headers=make_user().headers, data=text, content_type="application/json")
    assert response.status_code in (400, 413)
    assert response.get_json()["success"] is False


def test_too_large_body_is_413(app_factory):
    app = app_factory(MAX_CONTENT_LENGTH=1024)
    response = app.test_client().post(REGISTER, data=json.dumps({"display_name": "x" * 5000}),
                                      content_type="application/json")
    assert_error_shape(response, 413, "payload_too_large")


def test_unknown_route_is_404(client):
    assert_error_shape(client.get("/api/v1/nowhere"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client):
    response = client.delete(REGISTER)
    assert_error_shape(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_missing_token_is_unauthorized(client):
    assert_error_shape(client.get(PROFILE), 401, "unauthorized")


def test_validation_details_map_fields_to_messages(client):
    response = client.post(REGISTER, json={"email": "nope"})
    assert_error_shape(response, 400, "validation_error")
    details = response.get_json()["error"]["details"]
    assert set(details) == {"email", "password", "display_name"}
    assert all(isinstance(messages, list) for messages in details.values())


def test_unexpected_error_is_500_with_request_id_and_no_trace(app, client, make_user, monkeypatch, caplog):
    from allynet.users import service

    def boom(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "get_or_raise", boom)
    response = client.get(PROFILE, headers={**make_user().headers, "X-Request-ID": "req-123"})
    assert_error_shape(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert response.get_json()["error"]["details"]["request_id"] == "req-123"
    assert response.headers["X-Request-ID"] == "req-123"
    assert any("req-123" in record.getMessage() for record in caplog.records)


def test_mongo_outage_is_503(client, make_user, monkeypatch):
    from allynet.users import service

    user = make_user()

    def down(**kwargs):
        raise ServerSelectionTimeoutError("no servers")

    monkeypatch.setattr(service, "get_or_raise", down)
    response = client.get(PROFILE, headers=user.headers)
    assert_error_shape(response, 503, "service_unavailable")


def test_real_unreachable_mongo_answers_503_quickly(app_factory, make_user):
    """A pymongo client pointed at a closed port: 503 within the selection timeout, not a hang."""
    port = free_port()
    app = app_factory(MONGO_CLIENT=None, MONGO_URI=f"mongodb://127.0.0.1:{port}/",
                      MONGO_SERVER_SELECTION_TIMEOUT_MS=300)
    response = app.test_client().post(REGISTER, json={"email": "a@example.com", "password": "long enough",
                                                      "display_name": "A"})
    assert_error_shape(response, 503, "service_unavailable")
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["error"]["details"]["mongodb"] != "ok"


def test_health_and_ready(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["data"]["checks"] == {"mongodb": "ok", "indexes": "ok"}


def test_ready_reports_unreachable_redis(app_factory):
    port = free_port()
    app = app_factory()
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert error_code(response) == "service_unavailable"
    assert response.get_json()["error"]["details"]["redis"] != "ok"
    assert response.get_json()["error"]["details"]["mongodb"] == "ok"
