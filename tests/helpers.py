"""Small helpers for tests (import as `from tests.helpers import ...`)."""


def events_named(sio_client, name):
    """Payloads of every `name` event a Socket.IO test client received (drains its queue)."""
    return [event["args"][0] for event in sio_client.get_received() if event["name"] == name]


def error_code(response):
    """The contract error code of a Flask test response."""
    return response.get_json()["error"]["code"]
