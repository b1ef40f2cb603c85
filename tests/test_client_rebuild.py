"""A reinstalled client rebuilds its state from REST alone, after a fresh login on a new device."""

API = "/api/v1"
HOME = {"lat": 52.52, "lng": 13.405}


def call(client, method, path, token=None, json=None, status=200):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.open(f"{API}{path}", method=method, json=json, headers=headers)
    assert response.status_code == status, (method, path, response.get_json())
    return response.get_json()


def register(client, name):
    body = call(client, "POST", "/auth/register", status=201, json={
        "email": f"{name}@example.com", "password": "password123", "display_name": name})
    return body["data"]["access_token"]


def test_a_fresh_login_finds_the_party_the_help_requests_and_the_sos(client):
    # The old device: Rita rides with Max, asks for help, offers help to Nora, and raises an SOS.
    rita, max_, nora = (register(client, name) for name in ("rita", "max", "nora"))
    party = call(client, "POST", "/parties", rita, {"name": "Sunday ride"}, status=201)["data"]
    call(client, "POST", "/parties/join", max_, {"invite_code": party["invite_code"]})
    asked = call(client, "POST", "/help-requests", rita, status=201, json={
        "title": "Flat tyre", "description": "Need a pump", "category": "repairs", "location": HOME})["data"]
    call(client, "POST", f"/help-requests/{asked['id']}/offers", max_, {"message": "On my way"}, status=201)
    noras = call(client, "POST", "/help-requests", nora, status=201, json={
        "title": "Groceries", "description": "Milk and bread", "category": "groceries", "location": HOME})["data"]
    offered = call(client, "POST", f"/help-requests/{noras['id']}/offers", rita, {"message": "I can"},
                   status=201)["data"]
    sos = call(client, "POST", "/emergencies", rita, {"type": "breakdown", "location": HOME},
               status=201)["data"]["emergency"]

    # The new device knows only the email and password.
    login = call(client, "POST", "/auth/login", json={"email": "rita@example.com", "password": "password123"})
    token = login["data"]["access_token"]

    (mine,) = call(client, "GET", "/parties?active=true", token)["data"]
    assert mine["id"] == party["id"] and mine["invite_code"] == party["invite_code"]
    state = call(client, "GET", f"/parties/{mine['id']}", token)["data"]
    assert [member["display_name"] for member in state["members"]] == ["rita", "max"]

    (as_requester,) = call(client, "GET", "/help-requests/mine?role=requester", token)["data"]
    assert as_requester["id"] == asked["id"] and as_requester["status"] == "open"
    assert [offer["message"] for offer in as_requester["offers"]] == ["On my way"]

    (as_helper,) = call(client, "GET", "/help-requests/mine?role=helper", token)["data"]
    assert as_helper["id"] == noras["id"]
    assert [(offer["id"], offer["status"]) for offer in as_helper["offers"]] == [(offered["id"], "pending")]

    (emergency,) = call(client, "GET", "/emergencies/mine", token)["data"]
    assert emergency["id"] == sos["id"] and emergency["status"] == "active"

    # Max's fresh login rebuilds his side too: the same party, no requests of his own, one as helper.
    token = call(client, "POST", "/auth/login", json={"email": "max@example.com", "password": "password123"})[
        "data"]["access_token"]
    assert [p["id"] for p in call(client, "GET", "/parties?active=true", token)["data"]] == [party["id"]]
    assert call(client, "GET", "/help-requests/mine", token)["data"] == []
    assert [r["id"] for r in call(client, "GET", "/help-requests/mine?role=helper", token)["data"]] == [asked["id"]]
    assert call(client, "GET", "/emergencies/mine", token)["data"] == []
