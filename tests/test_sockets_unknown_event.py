"""An event the server has no handler for is answered through its ack: `unknown_event`."""
import pytest

from allynet import sockets
from tests.scaleout_support import SioClient
from tests.scaleout_support import cluster, quiet_werkzeug, redis_prefix  # noqa: F401  (fixtures)

PARTY_ID = "5f0c9a1e2b3c4d5e6f708192"


def test_unknown_event_with_an_ack_gets_unknown_event(make_user, socket_client):
    sio = socket_client(make_user())

    ack = sio.emit("party:teleport", {"party_id": PARTY_ID}, callback=True)

    assert ack["ok"] is False
    assert ack["error"]["code"] == "unknown_event"
    assert "party:teleport" in ack["error"]["message"]
    assert sio.is_connected()


def test_unknown_event_without_payload_or_with_several_arguments_is_answered(make_user, socket_client):
    sio = socket_client(make_user())

    assert sio.emit("nothing:here", callback=True)["error"]["code"] == "unknown_event"
    assert sio.emit("nothing:here", 1, "two", [3], callback=True)["error"]["code"] == "unknown_event"
    # `send` is the reserved event `message`, for which the server has no handler either.
    assert sio.send("hello", callback=True)["error"]["code"] == "unknown_event"


def test_a_very_long_unknown_event_name_is_cut_in_the_message(make_user, socket_client):
    sio = socket_client(make_user())

    ack = sio.emit("x" * 10000, {}, callback=True)

    assert ack["error"]["code"] == "unknown_event"
    assert len(ack["error"]["message"]) < 200


def test_unknown_event_without_an_ack_changes_nothing_and_known_events_still_work(make_user, socket_client):
    ann = make_user()
    sio = socket_client(ann)

    sio.emit("no:such:event", {"anything": True})  # nothing to answer: no ack asked for
    created = sio.emit("party:create", {"name": "Evening ride"}, callback=True)

    assert created["ok"] is True
    assert sio.is_connected()
    # The bare fast path still answers party:update itself, not the catch-all.
    ack = sio.emit("party:update", {"party_id": created["party"]["id"], "location": {"lat": 1.0, "lng": 2.0}},
                   callback=True)
    assert ack["ok"] is True
    bad = sio.emit("party:update", {"party_id": PARTY_ID, "location": {"lat": 1.0, "lng": 2.0}}, callback=True)
    assert bad["ok"] is False and bad["error"]["code"] != "unknown_event"


def test_the_catch_all_does_not_take_connect_or_disconnect(app, make_user, socket_client):
    ann = make_user()
    sio = socket_client(ann)
    connections = app.extensions[sockets.CONNECTIONS_KEY]
    assert [str(user_id) for user_id in connections.values()] == [ann.id]  # the connect handler ran

    sio.disconnect()

    assert connections == {}  # the disconnect handler ran and forgot the socket


def test_an_unauthenticated_connection_is_still_refused(socket_client):
    sio = socket_client(token="not-a-token")

    assert not sio.is_connected()


# ---- the real server: a python-socketio client over a websocket ------------------------------

@pytest.mark.parametrize("async_handlers", [False, True])
def test_unknown_event_ack_arrives_over_a_real_connection(cluster, make_user, async_handlers):
    server = cluster(1, queue=False, SOCKETIO_ASYNC_HANDLERS=async_handlers)[0]
    ann = make_user()
    client = cluster.connect(server, ann)

    ack = client.call("party:teleport", {"party_id": PARTY_ID})
    created = client.call("party:create", {"name": "Morning ride"})
    update = client.call("party:update", {"party_id": created["party"]["id"], "location": {"lat": 1, "lng": 2}})

    assert ack["ok"] is False and ack["error"]["code"] == "unknown_event"
    assert created["ok"] is True and update["ok"] is True


def test_unknown_event_through_sio_client_helper_is_a_dict(cluster, make_user):
    server = cluster(1, queue=False)[0]
    client = SioClient(server.url, make_user()["access_token"])
    try:
        ack = client.call("what", None)
    finally:
        client.close()

    assert ack == {"ok": False, "error": {"code": "unknown_event", "message": "No such event: what"}}
