"""Helpers for the payment tests: a requester, a helper and a stranger; a priced help request accepted."""
import pytest

API = "/api/v1"
HELP = {"title": "Fix my fence", "description": "Two boards came loose", "category": "repairs",
        "location": {"lat": 10.0, "lng": 20.0}, "budget": {"amount": 40, "currency": "EUR"}}


@pytest.fixture
def people(make_user, socket_client):
    """requester, helper (offers 35.50 EUR) and a stranger; the helper's socket, drained."""
    users = {name: make_user(display_name=name) for name in ("requester", "helper", "stranger")}
    helper_socket = socket_client(users["helper"])
    helper_socket.get_received()
    return users, helper_socket


def post(client, user, path, body=None, headers=None):
    return client.post(f"{API}{path}", headers={**user.headers, **(headers or {})}, json=body)


def get(client, user, path):
    return client.get(f"{API}{path}", headers=user.headers)


def priced_request(client, users, price=35.5, currency="EUR", budget=None):
    body = dict(HELP, budget=budget or HELP["budget"])
    request_id = post(client, users["requester"], "/help-requests", body).get_json()["data"]["id"]
    offer = post(client, users["helper"], f"/help-requests/{request_id}/offers",
                 {"message": "I can", "price": {"amount": price, "currency": currency}})
    assert offer.status_code == 201
    return request_id, offer.get_json()["data"]["id"]


def accepted(client, users, **kwargs):
    """(help request as the requester sees it after accepting, payment id)."""
    request_id, offer_id = priced_request(client, users, **kwargs)
    response = post(client, users["requester"], f"/help-requests/{request_id}/accept", {"offer_id": offer_id})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    return data, data["payment"]["id"]


def confirm(client, user, payment_id, method="pm_card_visa", headers=None):
    return post(client, user, f"/payments/{payment_id}/confirm", {"payment_method": method}, headers)
