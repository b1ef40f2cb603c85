"""Injection and bad input on every Socket.IO client event.

Events are discovered from `sockets.HANDLERS` (with the schema each was registered with),
so an event added later is walked too. Each field of a valid payload gets each bad value
as raw JSON (lone surrogates, NUL, NaN/Infinity/1e400, integers beyond 64 bits,
`{"$gt": ""}`, dotted keys, deep nesting, huge strings and arrays): the ack is an error,
the connection stays up, nothing is stored and no other member receives anything.
"""
import json

import pytest

from allynet import create_app, sockets
from allynet.parties.schemas import UPDATE_FIELDS
from tests.helpers import emit_raw
from tests.inputgate_cases import DEEP, GATE_VALUES, OTHER_VALUES, snapshot

API = "/api/v1"
HERE = {"lat": 48.137, "lng": 11.575}
# Too deep for the stdlib's recursion, with a NaN so that orjson hands it over: the
# decoder's own refusal (jsonutil.loads), acked like any other.
DEEP_FOR_THE_STDLIB = "[" * 1500 + "NaN" + "]" * 1500
# orjson (the socket decoder) reads integers below -2**63 or above 2**64-1 as doubles: plain
# finite numbers then, accepted where any number is (party:update's client_ts, echoed only).
SOCKET_GATE_VALUES = {label: value for label, value in GATE_VALUES.items() if label != "-2**63-1"}
BROADCASTS = ("party:update", "party:updates", "party:message", "party:alert", "party:presence",
              "emergency:message")


def _discover():
    create_app("testing")  # imports every feature's events.py
    return {name: handler for name, handler in sockets.HANDLERS}


EVENTS = _discover()


def field_names(event):
    schema = EVENTS[event].schema
    if schema is None:
        return sorted(UPDATE_FIELDS) if event == "party:update" else []
    return sorted(field.data_key or name for name, field in schema.load_fields.items())


@pytest.fixture
def world(client, make_user, socket_client):
    """`rider` leads a party with `buddy` and has an open SOS; both are connected."""
    rider, buddy = make_user(location=(HERE["lat"], HERE["lng"])), make_user()
    party = client.post(f"{API}/parties", json={"name": "Ride"}, headers=rider.headers).get_json()["data"]
    client.post(f"{API}/parties/join", json={"invite_code": party["invite_code"]}, headers=buddy.headers)
    created = client.post(f"{API}/emergencies", json={"type": "medical", "location": HERE},
                          headers=rider.headers).get_json()["data"]
    emergency_id = created.get("emergency", created)["id"]
    rider_sio, buddy_sio = socket_client(rider), socket_client(buddy)
    rider_sio.emit("emergency:join", {"emergency_id": emergency_id}, callback=True)
    rider_sio.get_received()
    buddy_sio.get_received()
    valid = {
        "party:create": {"name": "Another ride"},
        "party:join": {"party_id": party["id"]},
        "party:leave": {"party_id": party["id"]},
        "party:update": {"party_id": party["id"], "location": HERE},
        "party:message": {"party_id": party["id"], "text": "hello"},
        "party:alert": {"party_id": party["id"], "type": "hazard", "location": HERE},
        "party:batch": {"enabled": True},
        "emergency:join": {"emergency_id": emergency_id},
        "emergency:message": {"emergency_id": emergency_id, "text": "hello"},
    }

    class World:
        pass

    world = World()
    world.rider, world.buddy, world.valid = rider_sio, buddy_sio, valid
    return world


def payload_with(base, field, raw_value):
    """`base` as JSON text with `field` set to `raw_value` (raw JSON text)."""
    items = [f"{json.dumps(key)}:{json.dumps(value)}" for key, value in base.items() if key != field]
    return "{" + ",".join(items + [f"{json.dumps(field)}:{raw_value}"]) + "}"


def assert_refused(ack, context, codes=("validation_error",), field=None):
    assert ack is not None and ack["ok"] is False, (context, ack)
    assert ack["error"]["code"] in codes, (context, ack)
    if field is not None and ack["error"]["code"] == "validation_error":
        assert field in ack["error"]["details"], (context, ack)


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_bad_values_in_every_payload_field_are_acked_as_errors_and_change_nothing(db, world, event):
    base = world.valid.get(event, {})
    before = snapshot(db)
    for field in field_names(event) + ["zz_extra"]:
        for label, value in SOCKET_GATE_VALUES.items():
            ack = emit_raw(world.rider, event, payload_with(base, field, value))
            assert_refused(ack, (event, field, label), field=field)
        for label, value in OTHER_VALUES.items():
            assert_refused(emit_raw(world.rider, event, payload_with(base, field, value)), (event, field, label),
                           codes=("validation_error", "bad_request"))
        for label, value in (("1000 deep", DEEP), ("deeper than the stdlib reads", DEEP_FOR_THE_STDLIB)):
            assert_refused(emit_raw(world.rider, event, payload_with(base, field, value)), (event, field, label),
                           codes=("validation_error", "bad_request"))
    for label, value in {**SOCKET_GATE_VALUES, "deep": DEEP, "too deep": DEEP_FOR_THE_STDLIB}.items():  # the whole payload
        assert_refused(emit_raw(world.rider, event, value), (event, "payload", label),
                       codes=("validation_error", "bad_request"))
    assert world.rider.is_connected()
    assert snapshot(db) == before
    received = [e["name"] for e in world.buddy.get_received()]
    assert not [name for name in received if name in BROADCASTS], received
    if event in world.valid:  # the connection still works: the valid payload is accepted
        assert emit_raw(world.rider, event, json.dumps(world.valid[event]))["ok"] is True


def test_the_walk_covers_the_events_it_should():
    assert {"party:create", "party:update", "party:message", "party:alert", "emergency:message",
            "emergency:join"} <= set(EVENTS)
    assert field_names("party:update") and field_names("party:alert")
