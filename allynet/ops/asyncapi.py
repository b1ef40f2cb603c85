"""The AsyncAPI 3.0 document of the Socket.IO API, served beside the OpenAPI one.

Client events come from the registered handlers (`sockets.HANDLERS`): their payload schema is
the marshmallow schema the handler validates with, converted the way the OpenAPI document
converts its bodies (so the two never disagree). Server events are the catalogue below, one
entry per event a service emits; tests/test_asyncapi.py checks both directions against the
handlers and the code that emits.
"""
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

OPENAPI_FORMAT = "application/vnd.oai.openapi;version=3.0.0"

# ---- small JSON Schema builders ----------------------------------------------------------------

ID = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
TS = {"type": "string", "format": "date-time"}
LATLNG = {"type": "object", "required": ["lat", "lng"], "additionalProperties": False,
          "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                         "lng": {"type": "number", "minimum": -180, "maximum": 180}}}


def _obj(required=(), optional=None, **properties):
    """An object schema: `properties`, of which `required` must be present."""
    schema = {"type": "object", "properties": dict(properties, **(optional or {}))}
    if required:
        schema["required"] = list(required)
    return schema


def _nullable(schema):
    return {"oneOf": [schema, {"type": "null"}]}


# The relayed position: what `party:update` carries to the other members (and `party:updates` items).
PARTY_POSITION = _obj(
    ("party_id", "user_id", "location", "ts"), party_id=ID, user_id=ID, location=LATLNG,
    speed_kmh=_nullable({"type": "number"}), heading=_nullable({"type": "number"}),
    status={"type": "string", "enum": ["riding", "stopped", "paused", "sos"]}, ts=TS,
    client_ts={"type": "number", "description": "Echoed from the sender when it sent one."})

EMERGENCY_SUMMARY = _obj(
    ("id", "emergency_id", "user_id", "type", "location", "status", "created_at"),
    id=ID, emergency_id=ID, user_id=ID, type={"type": "string"}, description=_nullable({"type": "string"}),
    location=LATLNG, status={"type": "string"}, created_at=TS, wave={"type": "integer", "minimum": 1},
    party_member={"type": "boolean"}, distance_m=_nullable({"type": "number"}),
    assigned_by={**ID, "description": "Set when an organization's dispatcher assigned you."},
    organization_id={**ID, "description": "The assigning organization (with assigned_by)."})

# Client events without a marshmallow schema (hand-written hot-path loaders).
CLIENT_PAYLOADS = {
    "party:update": _obj(
        ("party_id", "location"), party_id=ID, location=LATLNG,
        speed_kmh={"type": "number", "minimum": 0}, heading={"type": "number", "minimum": 0, "maximum": 360},
        status={"type": "string", "enum": ["riding", "stopped", "paused", "sos"]},
        client_ts={"type": "number", "description": "Any finite number; echoed in the ack and to the room."}),
}

# Server events: name -> (who receives it, description, payload schema).
SERVER_EVENTS = {
    "emergency.created": ("user:<helper>, and org:<id> of the dispatching organizations whose service area "
                          "covers it", "An SOS near you (or in your party, or assigned to you by an "
                                       "organization's dispatcher: assigned_by): decide and go.", EMERGENCY_SUMMARY),
    "helper.joined": ("emergency:<id> and the owner", "A helper responded.",
                      _obj(("emergency_id", "helper_id"), emergency_id=ID, helper_id=ID,
                           eta_minutes=_nullable({"type": "integer"}))),
    "emergency.status_changed": ("emergency:<id>, the owner, alerted helpers and org:<id> of the dispatching "
                                 "organizations whose service area covers it", "The SOS changed status.",
                                 _obj(("emergency_id", "status"), emergency_id=ID, status={"type": "string"})),
    "emergency.resolved": ("emergency:<id> and the owner", "The SOS is resolved; the room is then emptied.",
                           _obj(("emergency_id", "status", "resolved_at"), emergency_id=ID,
                                status={"type": "string", "enum": ["resolved"]}, resolved_at=TS,
                                resolved_by=_nullable(ID))),
    "emergency:message": ("emergency:<id> (owner, responders, staff who joined)", "A message in the SOS room.",
                          _obj(("id", "emergency_id", "user_id", "text", "ts"), id=ID, emergency_id=ID,
                               user_id=ID, text={"type": "string"}, ts=TS)),
    "party:update": ("party:<id>, not the sender", "A member's position.", PARTY_POSITION),
    "party:updates": ("party:<id>, connections that sent party:batch {enabled: true}",
                      "The positions of one tick, batched.",
                      _obj(("party_id", "updates"), party_id=ID,
                           updates={"type": "array", "items": PARTY_POSITION})),
    "party:message": ("party:<id>", "A chat message.",
                      _obj(("id", "party_id", "user_id", "text", "ts"), id=ID, party_id=ID, user_id=ID,
                           text={"type": "string"}, ts=TS)),
    "party:alert": ("party:<id>", "A member's alert, a system alert (member_left_behind, member_stopped with "
                                  "distance_m / stopped_since), a nearby report or official alert "
                                  "(source report|official), or weather on the road (type weather, source weather, "
                                  "condition ice|heavy_rain|strong_wind|low_visibility, weather: the current "
                                  "conditions), once per condition episode.",
                    _obj(("type",), id=ID, party_id=ID, type={"type": "string"}, user_id=_nullable(ID),
                         location=_nullable(LATLNG), description=_nullable({"type": "string"}), ts=TS,
                         source={"type": "string"}, distance_m={"type": "number"}, stopped_since=TS,
                         condition={"type": "string", "enum": ["ice", "heavy_rain", "strong_wind", "low_visibility"]},
                         weather={"type": "object", "description": "With type weather: current conditions "
                                  "{time, temperature_c, precipitation_mm, wind_kmh, gusts_kmh, visibility_m, code, "
                                  "label}, as GET /weather answers them."})),
    "party:presence": ("party:<id>", "Who is online in the party.",
                       _obj(("party_id", "online"), party_id=ID, online={"type": "array", "items": ID})),
    "party:leader": ("party:<id>", "Leadership passed on.", _obj(("party_id", "leader_id"), party_id=ID,
                                                                 leader_id=ID)),
    "party:ended": ("party:<id>", "The party ended; the room is then closed.",
                    _obj(("party_id", "ended_at"), party_id=ID, ended_at=TS)),
    "session:ended": ("the one connection being ended", "The connection's session ended (logout, token_revoked, "
                      "role_changed, token_expired, suspended, frame_too_large); the server disconnects it next.",
                      _obj(("reason",), reason={"type": "string", "enum": ["logout", "token_revoked", "role_changed",
                                                                            "token_expired", "suspended",
                                                                            "frame_too_large"]},
                           max_bytes={"type": "integer", "description": "With frame_too_large: the limit."})),
    "help_request.offer": ("user:<requester>", "A new offer on your request.",
                           _obj(("help_request_id", "offer"), help_request_id=ID, offer={"type": "object"})),
    "help_request.accepted": ("user:<helper>", "Your offer was accepted.",
                              _obj(("help_request_id", "offer_id", "help_request"), help_request_id=ID,
                                   offer_id=ID, help_request={"type": "object"})),
    "help_request.declined": ("user:<helper>", "Another offer was accepted.",
                              _obj(("help_request_id", "offer_id"), help_request_id=ID, offer_id=ID)),
    "help_request.payment_secured": ("user:<helper>", "The requester's payment for your accepted offer is held "
                                     "by the provider (captured when the request is completed).",
                                     _obj(("help_request_id", "payment_id", "amount", "currency", "payee_amount"),
                                          help_request_id=ID, payment_id=ID,
                                          amount={"type": "integer", "description": "minor units"},
                                          currency={"type": "string"},
                                          payee_amount={"type": "integer", "description": "your share, minor units"},
                                          payout={"type": "string",
                                                  "enum": ["connected_account", "awaiting_onboarding"]})),
    "help_request.status_changed": ("user:<requester> and every offer maker", "The request changed status.",
                                    _obj(("help_request_id", "status"), help_request_id=ID,
                                         status={"type": "string"}, helper_id=_nullable(ID))),
}

ACK = {"oneOf": [
    {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean", "enum": [True]}},
     "description": "Success; the event's own fields beside ok."},
    {"type": "object", "required": ["ok", "error"], "additionalProperties": False,
     "properties": {"ok": {"type": "boolean", "enum": [False]},
                    "error": {"type": "object", "required": ["code", "message"],
                              "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                             "details": {"type": "object"}}}}},
]}


def message_id(event):
    """The component key of an event (AsyncAPI keys allow no ':')."""
    return event.replace(":", "_").replace(".", "_")


def client_events():
    """{event name: (handler summary, marshmallow schema or None)} of the registered handlers."""
    from allynet import sockets

    return {name: (getattr(handler, "summary", ""), getattr(handler, "schema", None))
            for name, handler in sockets.HANDLERS}


def build_asyncapi():
    """The AsyncAPI 3.0 document of every client and server Socket.IO event."""
    plugin = MarshmallowPlugin(schema_name_resolver=lambda schema: None)  # nested schemas inline
    APISpec(title="AllyNet", version="1", openapi_version="3.0.3", plugins=[plugin])
    messages, channel_messages, operations = {}, {}, {}
    for name, (summary, schema) in sorted(client_events().items()):
        key = message_id(name)
        if schema is not None:
            payload = {"schemaFormat": OPENAPI_FORMAT, "schema": plugin.converter.schema2jsonschema(schema)}
        else:
            payload = CLIENT_PAYLOADS.get(name, {"type": "object"})
        messages[key] = {"name": name, "title": name, "summary": summary, "payload": payload}
        messages[f"{key}_ack"] = {"name": f"{name} ack", "payload": ACK}
        channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
        channel_messages[f"{key}_ack"] = {"$ref": f"#/components/messages/{key}_ack"}
        operations[f"client_{key}"] = {
            "action": "receive", "title": f"Client emits {name}", "summary": summary,
            "channel": {"$ref": "#/channels/socketio"},
            "messages": [{"$ref": f"#/channels/socketio/messages/{key}"}],
            "reply": {"channel": {"$ref": "#/channels/socketio"},
                      "messages": [{"$ref": f"#/channels/socketio/messages/{key}_ack"}]},
        }
    for name, (audience, description, payload) in sorted(SERVER_EVENTS.items()):
        key = f"server_{message_id(name)}"
        messages[key] = {"name": name, "title": name, "summary": description,
                         "description": f"Sent to {audience}.", "payload": payload}
        channel_messages[key] = {"$ref": f"#/components/messages/{key}"}
        operations[key] = {"action": "send", "title": f"Server emits {name}", "summary": description,
                           "channel": {"$ref": "#/channels/socketio"},
                           "messages": [{"$ref": f"#/channels/socketio/messages/{key}"}]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "AllyNet Socket.IO API", "version": "1.1.0",
                 "description": "Socket.IO v5 on the default namespace. Connect with auth {token: <access "
                                "token>}. Every client event takes an acknowledgement. Rooms and who "
                                "receives what: docs/API.md in the repository."},
        "defaultContentType": "application/json",
        "servers": {"allynet": {"host": "localhost:5000", "protocol": "ws", "pathname": "/socket.io/",
                                "description": "Socket.IO (Engine.IO 4) over websocket or long-polling"}},
        "channels": {"socketio": {"address": "/", "title": "Default namespace", "messages": channel_messages}},
        "operations": operations,
        "components": {"messages": messages},
    }
