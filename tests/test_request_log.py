"""The request log: one line per HTTP request and socket outcome, X-Request-ID, JSON lines, no secrets."""
import io
import json
import logging
import re
import subprocess
import sys

import pytest
from flask_jwt_extended import create_access_token

import config as config_module
from allynet import request_log
from tests.helpers import ROOT

API = "/api/v1"
EMERGENCY_ROUTE = "/api/v1/emergencies/<oid:emergency_id>"
UNKNOWN_ID = "0123456789abcdef01234567"
HEX32 = re.compile(r"[0-9a-f]{32}")


class Captured:
    """Formatted log lines of one handler (text or json) on a logger."""

    def __init__(self, stream):
        self.stream = stream

    @property
    def text(self):
        return self.stream.getvalue()

    def lines(self):
        return [line for line in self.text.splitlines() if line]

    def records(self):
        """JSON lines parsed (json format only)."""
        return [json.loads(line) for line in self.lines()]

    def http(self):
        return [entry for entry in self.records() if entry.get("kind") == "http"]

    def socket(self):
        return [entry for entry in self.records() if entry.get("kind") == "socket"]


@pytest.fixture
def capture_log():
    """Attach a handler with the app's formatter for `log_format` to `logger` (default: every logger)."""
    attached = []

    def attach(log_format="json", logger="", level=logging.INFO):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(request_log.formatter(log_format))
        target = logging.getLogger(logger)
        previous = target.level
        target.addHandler(handler)
        target.setLevel(level)
        attached.append((target, handler, previous))
        return Captured(stream)

    yield attach
    for target, handler, previous in attached:
        target.removeHandler(handler)
        target.setLevel(previous)


# ---- HTTP lines ------------------------------------------------------------

def test_a_request_line_has_the_fields(client, make_user, capture_log):
    user = make_user()
    log = capture_log(logger="allynet.access")
    response = client.get(f"{API}/emergencies/{UNKNOWN_ID}", headers=user.headers)
    assert response.status_code == 404
    (line,) = log.http()
    assert line["method"] == "GET" and line["route"] == EMERGENCY_ROUTE and line["status"] == 404
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert line["user_id"] == user.id
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["level"] == "INFO" and line["logger"] == "allynet.access" and line["ts"].endswith("Z")
    assert UNKNOWN_ID not in log.text  # the template, never the raw path


def test_text_format_carries_the_same_fields(client, make_user, capture_log):
    user = make_user()
    log = capture_log("text", logger="allynet.access")
    response = client.post(f"{API}/parties", headers=user.headers, json={"name": "ride"})
    assert response.status_code == 201
    (line,) = log.lines()
    assert "request method=POST route=/api/v1/parties status=201 duration_ms=" in line
    assert f"user_id={user.id} request_id={response.headers['X-Request-ID']}" in line


def test_unmatched_and_logged_out_requests(client, capture_log):
    log = capture_log(logger="allynet.access")
    # A token that no generated request id (hex) or log word can contain by chance.
    assert client.get(f"{API}/no-such-thing/{UNKNOWN_ID}?token=Qz-secret-Qz").status_code == 404
    assert client.get(f"{API}/profile").status_code == 401
    assert client.delete(f"{API}/parties").status_code == 405
    unmatched, logged_out, wrong_method = log.http()
    assert unmatched["route"] == "<unmatched>" and unmatched["status"] == 404 and unmatched["user_id"] is None
    assert logged_out["route"] == "/api/v1/profile" and logged_out["status"] == 401
    assert logged_out["user_id"] is None
    assert wrong_method["route"] == "<unmatched>" and wrong_method["status"] == 405
    assert "Qz-secret-Qz" not in log.text and "no-such-thing" not in log.text


def test_user_id_only_from_a_verified_token(app, client, make_user, capture_log):
    victim = make_user()
    with app.app_context():
        forged = create_access_token(identity=victim.id)
    forged = forged[:-4] + ("AAAA" if not forged.endswith("AAAA") else "BBBB")  # signature broken
    revoked = make_user()
    assert client.post(f"{API}/auth/logout", headers=revoked.headers).status_code == 200
    log = capture_log(logger="allynet.access")
    assert client.get(f"{API}/profile", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert client.get(f"{API}/profile", headers=revoked.headers).status_code == 401
    assert client.get(f"{API}/profile", headers={"Authorization": f"Bearer {victim['refresh_token']}"}
                      ).status_code == 401
    assert [line["user_id"] for line in log.http()] == [None, None, None]
    assert client.post(f"{API}/auth/refresh",
                       headers={"Authorization": f"Bearer {victim['refresh_token']}"}).status_code == 200
    assert log.http()[-1]["user_id"] == victim.id  # a verified refresh token names its user


def test_rate_limited_and_failing_requests_are_logged(app_factory, make_user, monkeypatch, capture_log):
    from allynet.users import service

    app = app_factory(REPORT_RATE_LIMIT="1/minute")
    client = app.test_client()
    user = make_user()
    log = capture_log(logger="allynet.access")
    body = {"type": "hazard", "location": {"lat": 48.1, "lng": 11.5}}
    assert client.post(f"{API}/reports", headers=user.headers, json=body).status_code == 201
    assert client.post(f"{API}/reports", headers=user.headers, json=body).status_code == 429

    def boom(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "get_or_raise", boom)
    assert client.get(f"{API}/profile", headers=user.headers).status_code == 500
    assert [(line["route"], line["status"]) for line in log.http()] == [
        ("/api/v1/reports", 201), ("/api/v1/reports", 429), ("/api/v1/profile", 500)]


# ---- X-Request-ID ----------------------------------------------------------

@pytest.mark.parametrize("supplied", ["abc.DEF_1-2", "r", "x" * 128, "0123456789abcdef0123456789abcdef"])
def test_a_well_formed_request_id_round_trips(client, capture_log, supplied):
    log = capture_log(logger="allynet.access")
    response = client.get("/healthz", headers={"X-Request-ID": supplied})
    assert response.headers["X-Request-ID"] == supplied
    assert log.http()[0]["request_id"] == supplied


@pytest.mark.parametrize("supplied", ["two words", "x" * 129, "caf\u00e9", "a/b", "id;rm", "<script>", "a\tb"])
def test_a_malformed_request_id_is_replaced(client, capture_log, supplied):
    log = capture_log(logger="allynet.access")
    response = client.get("/healthz", headers={"X-Request-ID": supplied})
    generated = response.headers["X-Request-ID"]
    assert HEX32.fullmatch(generated) and generated != supplied
    assert log.http()[0]["request_id"] == generated
    assert supplied not in log.text


def test_without_a_request_id_each_request_gets_its_own(client, capture_log):
    log = capture_log(logger="allynet.access")
    first, second = client.get("/healthz"), client.get("/healthz")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(HEX32.fullmatch(value) for value in ids) and ids[0] != ids[1]
    assert [line["request_id"] for line in log.http()] == ids


def test_internal_error_line_carries_the_request_id(client, make_user, monkeypatch, capture_log):
    from allynet.users import service

    def boom(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "get_or_raise", boom)
    log = capture_log(logger="allynet")
    response = client.get(f"{API}/profile", headers={**make_user().headers, "X-Request-ID": "trace-7"})
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "trace-7"
    (error,) = [entry for entry in log.records() if entry["level"] == "ERROR"]
    assert error["request_id"] == "trace-7" and error["message"].startswith("internal_error")
    assert "RuntimeError: secret internals" in error["exc_info"]  # in the log, never in the response
    assert log.http()[0]["request_id"] == "trace-7" and log.http()[0]["status"] == 500


# ---- LOG_FORMAT --------------------------------------------------------------

def test_log_format_json_writes_one_json_object_per_line():
    """A process that configures nothing else: LOG_FORMAT=json makes every stderr line parse."""
    script = (
        "import logging\n"
        "from allynet import create_app\n"
        "app = create_app('testing', LOG_FORMAT='json')\n"
        "client = app.test_client()\n"
        "assert client.get('/healthz', headers={'X-Request-ID': 'json-1'}).status_code == 200\n"
        "assert client.get('/nowhere').status_code == 404\n"
        "logging.getLogger('allynet.test').warning('multi\\nline %s', 'message')\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    entries = [json.loads(line) for line in completed.stderr.splitlines() if line.strip()]
    http = [entry for entry in entries if entry.get("kind") == "http"]
    assert [(entry["route"], entry["status"], entry["request_id"] == "json-1") for entry in http] == [
        ("/healthz", 200, True), ("<unmatched>", 404, False)]
    assert {"ts", "level", "logger", "message", "method", "duration_ms", "user_id"} <= set(http[0])
    assert any(entry["message"] == "multi\nline message" for entry in entries)


def test_log_format_text_is_the_default_and_others_are_refused():
    assert config_module.load("development", environ={})["LOG_FORMAT"] == "text"
    assert config_module.load("development", environ={"LOG_FORMAT": "json"})["LOG_FORMAT"] == "json"
    with pytest.raises(config_module.ConfigError, match="LOG_FORMAT"):
        config_module.load("development", environ={"LOG_FORMAT": "xml"})


# ---- sockets -------------------------------------------------------------------

def test_socket_connect_event_and_disconnect_lines(app, client, make_user, socket_client, clock, capture_log):
    rider = make_user()
    party = client.post(f"{API}/parties", headers=rider.headers, json={"name": "ride"}).get_json()["data"]
    log = capture_log(logger="allynet.access")
    sio = socket_client(rider)
    assert sio.emit("party:join", {"party_id": party["id"]}, callback=True)["ok"] is True
    lines = log.socket()
    assert [(line["event"], line["outcome"], line["user_id"]) for line in lines] == [
        ("connect", "ok", rider.id), ("party:join", "ok", rider.id)]
    sid = lines[0]["sid"]
    assert sid and lines[1]["sid"] == sid
    sio.disconnect()
    assert log.socket()[-1] == {**log.socket()[-1], "event": "disconnect", "sid": sid, "user_id": rider.id,
                                "outcome": "ok"}


def test_refused_socket_connections_are_logged_without_the_token(make_user, socket_client, capture_log):
    user = make_user()
    log = capture_log(logger="allynet.access")
    assert not socket_client(token="garbage.token.value").is_connected()
    assert not socket_client(token=user["refresh_token"]).is_connected()
    assert not socket_client().is_connected()
    assert [(line["event"], line["outcome"], line["user_id"]) for line in log.socket()] == [
        ("connect", "unauthorized", None)] * 3
    assert "garbage" not in log.text and user["refresh_token"] not in log.text


def test_party_update_logs_refusals_only(client, make_user, socket_client, clock, capture_log):
    rider, outsider = make_user(), make_user()
    party = client.post(f"{API}/parties", headers=rider.headers, json={"name": "ride"}).get_json()["data"]
    sio, other = socket_client(rider), socket_client(outsider)
    assert sio.emit("party:join", {"party_id": party["id"]}, callback=True)["ok"] is True
    log = capture_log(logger="allynet.access")
    for step in range(3):
        clock.advance(seconds=1)
        ack = sio.emit("party:update", {"party_id": party["id"], "location": {"lat": 48.1 + step / 1000,
                                                                              "lng": 11.5}}, callback=True)
        assert ack["ok"] is True
    assert log.socket() == []  # the hot path logs nothing per event
    refused = other.emit("party:update", {"party_id": party["id"], "location": {"lat": 48.1, "lng": 11.5}},
                         callback=True)
    bad = sio.emit("party:update", {"party_id": party["id"], "location": {"lat": 91, "lng": 11.5}}, callback=True)
    assert refused["ok"] is False and bad["ok"] is False
    assert [(line["event"], line["user_id"], line["outcome"]) for line in log.socket()] == [
        ("party:update", outsider.id, refused["error"]["code"]),
        ("party:update", rider.id, bad["error"]["code"])]


# ---- nothing secret, ever ---------------------------------------------------------

def test_a_realistic_session_logs_no_secret_and_no_location(app, client, socket_client, clock, capture_log):
    """Register, log in, refresh, connect with ?token=, ride and report: the whole log holds none of
    the password, the tokens, "Bearer" or the coordinates sent."""
    everything_text = capture_log("text", level=logging.DEBUG)
    everything_json = capture_log("json", level=logging.DEBUG)
    password = "Tr0ub4dor&3-horse-staple"
    lat, lng = 48.1374123, 11.5754987
    other_lat = 48.1399871
    register = client.post(f"{API}/auth/register", json={"email": "ride@example.com", "password": password,
                                                         "display_name": "Rider"})
    assert register.status_code == 201
    friend = client.post(f"{API}/auth/register", json={"email": "friend@example.com", "password": password,
                                                       "display_name": "Friend"}).get_json()["data"]
    login = client.post(f"{API}/auth/login", json={"email": "ride@example.com", "password": password})
    assert login.status_code == 200
    wrong = client.post(f"{API}/auth/login", json={"email": "ride@example.com", "password": password + "x"})
    assert wrong.status_code == 401
    tokens = login.get_json()["data"]
    refreshed = client.post(f"{API}/auth/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert refreshed.status_code == 200
    access = refreshed.get_json()["data"]["access_token"]
    headers = {"Authorization": f"Bearer {access}", "X-Request-ID": "session-1"}
    assert client.put(f"{API}/profile/location", headers=headers, json={"lat": lat, "lng": lng}).status_code == 200
    party = client.post(f"{API}/parties", headers=headers, json={"name": "ride"}).get_json()["data"]
    assert client.post(f"{API}/parties/join", json={"invite_code": party["invite_code"]},
                       headers={"Authorization": f"Bearer {friend['access_token']}"}).status_code == 200
    assert client.post(f"{API}/reports", headers=headers,
                       json={"type": "hazard", "location": {"lat": lat, "lng": lng}}).status_code == 201
    assert client.get(f"{API}/reports?near={lat},{lng}&format=geojson", headers=headers).status_code == 200
    assert client.get(f"{API}/alerts?lat={lat}&lng={lng}&token={access}", headers=headers).status_code == 400

    sio = socket_client(query_string=f"token={access}")
    assert sio.is_connected()
    assert not socket_client(query_string=f"token={tokens['refresh_token']}").is_connected()
    friend_sio = socket_client(token=friend["access_token"])
    assert sio.emit("party:join", {"party_id": party["id"]}, callback=True)["ok"] is True
    assert friend_sio.emit("party:join", {"party_id": party["id"]}, callback=True)["ok"] is True
    for step in range(3):
        clock.advance(seconds=1)
        assert sio.emit("party:update", {"party_id": party["id"], "location": {"lat": lat, "lng": lng},
                                         "speed_kmh": 31.5}, callback=True)["ok"] is True
    clock.advance(seconds=1)
    assert friend_sio.emit("party:update", {"party_id": party["id"], "location": {"lat": other_lat, "lng": lng},
                                            "status": "stopped"}, callback=True)["ok"] is True
    assert sio.emit("party:update", {"party_id": party["id"], "location": {"lat": lat, "lng": 999}},
                    callback=True)["ok"] is False
    assert sio.emit("party:alert", {"party_id": party["id"], "type": "hazard",
                                    "location": {"lat": lat, "lng": lng}}, callback=True)["ok"] is True
    assert sio.emit("party:message", {"party_id": party["id"], "text": password}, callback=True)["ok"] is True
    sio.disconnect()
    assert client.post(f"{API}/auth/logout", headers=headers,
                       json={"refresh_token": refreshed.get_json()["data"]["refresh_token"]}).status_code == 200

    text, as_json = everything_text.text, everything_json.text
    assert "route=/api/v1/auth/login" in text and "event=party:join" in text  # the log did capture
    assert any(entry.get("request_id") == "session-1" for entry in everything_json.records())
    secrets = [password, tokens["access_token"], tokens["refresh_token"], access,
               refreshed.get_json()["data"]["refresh_token"], friend["access_token"], "Bearer", "bearer",
               str(lat), str(lng), str(other_lat), "48.1374", "11.5754", "48.1399"]
    for secret in secrets:
        assert secret not in text and secret not in as_json, secret
    for token in (tokens["access_token"], access):
        assert token.split(".")[2] not in text  # not even the signature
