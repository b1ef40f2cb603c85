"""Socket.IO connections: token checks, the user room, and acknowledged events."""
from datetime import timedelta

from flask_jwt_extended import create_access_token
from marshmallow import Schema, fields

from allynet import realtime
from allynet.errors import Forbidden
from allynet.sockets import HANDLERS, socket_event
from tests.helpers import events_named


def test_connect_with_token_in_auth_joins_user_room(app, make_user, socket_client):
    user = make_user()
    other = make_user()
    sio = socket_client(user)
    bystander = socket_client(other)
    assert sio.is_connected()
    with app.app_context():
        realtime.emit_to_user(user["_id"], "ping", {"n": 1})
    assert events_named(sio, "ping") == [{"n": 1}]
    assert events_named(bystander, "ping") == []


def test_connect_with_token_in_query_string(app, make_user):
    user = make_user()
    sio = app.extensions["socketio"].test_client(app, query_string=f"token={user['access_token']}")
    assert sio.is_connected()
    sio.disconnect()


def test_connect_refuses_missing_bad_refresh_expired_and_revoked(app, client, make_user, socket_client):
    user = make_user()
    with app.app_context():
        expired = create_access_token(identity=user.id, expires_delta=timedelta(seconds=-5))
    assert not socket_client().is_connected()
    assert not socket_client(token="garbage").is_connected()
    assert not socket_client(token=user["refresh_token"]).is_connected()
    assert not socket_client(token=expired).is_connected()
    client.post("/api/v1/auth/logout", headers=user.headers)
    assert not socket_client(user).is_connected()


def test_connect_refuses_token_of_deleted_user(db, make_user, socket_client):
    user = make_user()
    db.users.delete_one({"_id": user["_id"]})
    assert not socket_client(user).is_connected()


class EchoSchema(Schema):
    text = fields.String(required=True)


def _install_test_events():
    if any(name == "test:echo" for name, _ in HANDLERS):
        return

    @socket_event("test:echo", EchoSchema())
    def echo(*, user_id, sid, data):
        if data["text"] == "forbidden":
            raise Forbidden("not yours")
        if data["text"] == "crash":
            raise RuntimeError("boom")
        return {"echo": data["text"], "user_id": str(user_id)}


def test_acks_carry_results_and_errors_without_breaking_the_connection(app_factory, make_user):
    _install_test_events()
    app = app_factory()
    user = make_user()
    sio = app.extensions["socketio"].test_client(app, auth={"token": user["access_token"]})
    assert sio.emit("test:echo", {"text": "hi"}, callback=True) == {"ok": True, "echo": "hi", "user_id": user.id}
    bad = sio.emit("test:echo", {"text": 5}, callback=True)
    assert bad["ok"] is False and bad["error"]["code"] == "validation_error"
    unknown = sio.emit("test:echo", {"text": "a", "extra": 1}, callback=True)
    assert unknown["error"]["code"] == "validation_error"
    assert sio.emit("test:echo", "not an object", callback=True)["error"]["code"] == "bad_request"
    assert sio.emit("test:echo", None, callback=True)["error"]["code"] == "bad_request"
    assert sio.emit("test:echo", {"text": "forbidden"}, callback=True)["error"]["code"] == "forbidden"
    crash = sio.emit("test:echo", {"text": "crash"}, callback=True)
    assert crash == {"ok": False, "error": {"code": "internal_error", "message": "Internal error"}}
    assert sio.is_connected()
    assert sio.emit("test:echo", {"text": "still here"}, callback=True)["ok"] is True
    sio.disconnect()
