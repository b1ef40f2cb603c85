"""The AsyncAPI document matches the server both ways: every handler is documented and every
documented client event has a handler; every event the code emits is documented and every
documented server event is emitted somewhere."""
import ast
import pathlib

import pytest

import allynet

API = "/api/v1"
PACKAGE = pathlib.Path(allynet.__file__).parent
# Names the emit helpers take the event in: realtime.emit_to_room(room, event, data) and friends.
EMITTERS = {"emit_to_room": 1, "emit_to_user": 1, "emit_to_rooms": 1, "relay_to_room": 1, "emit": 0}
NOT_EVENTS = {"connect", "disconnect", "*"}


@pytest.fixture(scope="module")
def document():
    from allynet import create_app

    app = create_app("testing")
    response = app.test_client().get(f"{API}/asyncapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    handlers = set(app.extensions["socketio"].server.handlers["/"]) - NOT_EVENTS
    return response.get_json(), handlers


def _documented(doc, action):
    messages = doc["components"]["messages"]
    names = set()
    for operation in doc["operations"].values():
        if operation["action"] == action:
            for ref in operation["messages"]:
                key = ref["$ref"].rsplit("/", 1)[-1]
                names.add(messages[key]["name"])
    return names


def _emitted_events():
    """Event names passed as literals (or module constants) to the emit helpers anywhere in allynet/."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                     for target in node.targets if isinstance(target, ast.Name)
                     and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name not in EMITTERS or len(node.args) <= EMITTERS[name]:
                continue
            arg = node.args[EMITTERS[name]]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.setdefault(arg.value, path.name)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                found.setdefault(constants[arg.id], path.name)
    from allynet.transport import wire

    found.setdefault(wire.BATCH_EVENT, "wire.py")  # encoded by hand, not through a helper
    return found


def test_every_handler_is_documented_and_every_documented_client_event_has_one(document):
    doc, handlers = document
    documented = _documented(doc, "receive")
    assert handlers - documented == set(), "handlers missing from the AsyncAPI document"
    assert documented - handlers == set(), "documented client events without a handler"


def test_every_emitted_event_is_documented_and_every_documented_one_is_emitted(document):
    doc, _ = document
    emitted = _emitted_events()
    documented = _documented(doc, "send")
    assert set(emitted) - documented == set(), {e: emitted[e] for e in set(emitted) - documented}
    assert documented - set(emitted) == set(), "documented server events nothing emits"


def test_the_document_is_asyncapi_3_and_every_reference_resolves(document):
    doc, _ = document
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["socketio"]["address"] == "/"

    def resolve(ref):
        node = doc
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    for key, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), key
        if operation["action"] == "receive":  # every client event is acknowledged
            assert operation["reply"]["messages"], key


def test_client_payloads_are_the_schemas_the_server_validates_with(document):
    doc, _ = document
    messages = doc["components"]["messages"]
    join = messages["emergency_join"]["payload"]["schema"]
    assert join["required"] == ["emergency_id"] and join["additionalProperties"] is False
    text = messages["emergency_message"]["payload"]["schema"]["properties"]["text"]
    assert text["type"] == "string" and text["maxLength"] == 1000
    update = messages["party_update"]["payload"]
    assert set(update["required"]) == {"party_id", "location"}
    assert "client_ts" in update["properties"]
