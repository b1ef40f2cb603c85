"""Help request offers and life cycle: every transition, every refused one, who hears what, trust."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from bson import ObjectId

from allynet import trust
from tests.helpers import error_code

URL = "/api/v1/help-requests"
BODY = {"title": "Fix my fence", "description": "Two boards came loose", "category": "repairs",
        "location": {"lat": 10.0, "lng": 20.0}, "budget": {"amount": 40, "currency": "GBP"}}
EVENT_NAMES = ("help_request.offer", "help_request.accepted", "help_request.declined",
               "help_request.status_changed")


def received(sio_client):
    """{event name: [payloads]} of the help request events a socket got (drains its queue)."""
    events = {name: [] for name in EVENT_NAMES}
    for event in sio_client.get_received():
        if event["name"] in events:
            events[event["name"]].append(event["args"][0])
    return events


def nothing(sio_client):
    return all(not payloads for payloads in received(sio_client).values())


@pytest.fixture
def people(make_user, socket_client):
    """owner, two offerers and a bystander, each with a connected socket."""
    users = {name: make_user(display_name=name) for name in ("owner", "alice", "bob", "bystander")}
    sockets = {name: socket_client(user) for name, user in users.items()}
    for sio_client in sockets.values():
        sio_client.get_received()  # connection chatter
    return users, sockets


def create(client, owner):
    response = client.post(URL, headers=owner.headers, json=BODY)
    assert response.status_code == 201
    return response.get_json()["data"]


def offer(client, user, request_id, **extra):
    return client.post(f"{URL}/{request_id}/offers", headers=user.headers, json={"message": "I can help", **extra})


def action(client, user, request_id, name, payload=None):
    return client.post(f"{URL}/{request_id}/{name}", headers=user.headers, json=payload)


def get(client, user, request_id):
    return client.get(f"{URL}/{request_id}", headers=user.headers).get_json()["data"]


def test_offer_is_201_and_notifies_only_the_owner(client, people):
    users, sockets = people
    request = create(client, users["owner"])
    response = offer(client, users["alice"], request["id"], price={"amount": 35, "currency": "gbp"})
    assert response.status_code == 201
    made = response.get_json()["data"]
    assert made["user_id"] == users["alice"].id and made["help_request_id"] == request["id"]
    assert made["status"] == "pending" and made["message"] == "I can help"
    assert made["price"] == {"amount": 35.0, "currency": "GBP"}
    events = received(sockets["owner"])
    assert events["help_request.offer"] == [{"help_request_id": request["id"], "offer": made}]
    assert nothing(sockets["alice"]) and nothing(sockets["bob"]) and nothing(sockets["bystander"])


def test_offers_are_visible_to_the_owner_and_each_to_its_author(client, people):
    users, _ = people
    request = create(client, users["owner"])
    alice_offer = offer(client, users["alice"], request["id"]).get_json()["data"]
    bob_offer = offer(client, users["bob"], request["id"]).get_json()["data"]
    assert [o["id"] for o in get(client, users["owner"], request["id"])["offers"]] == [alice_offer["id"],
                                                                                     bob_offer["id"]]
    assert get(client, users["alice"], request["id"])["offers"] == [alice_offer]
    assert get(client, users["bystander"], request["id"])["offers"] == []
    assert get(client, users["bystander"], request["id"])["offers_count"] == 2


def test_owner_cannot_offer_on_own_request(client, people):
    users, sockets = people
    request = create(client, users["owner"])
    response = offer(client, users["owner"], request["id"])
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert get(client, users["owner"], request["id"])["offers"] == []
    assert nothing(sockets["owner"])


def test_second_offer_from_the_same_user_is_409(client, people):
    users, sockets = people
    request = create(client, users["owner"])
    first = offer(client, users["alice"], request["id"]).get_json()["data"]
    received(sockets["owner"])
    response = offer(client, users["alice"], request["id"])
    assert response.status_code == 409 and error_code(response) == "conflict"
    assert response.get_json()["error"]["details"] == {"offer_id": first["id"]}
    assert get(client, users["owner"], request["id"])["offers_count"] == 1
    assert nothing(sockets["owner"])


@pytest.mark.parametrize("payload, field", [
    ({}, "message"), ({"message": ""}, "message"), ({"message": "x" * 1001}, "message"),
    ({"message": "hi", "price": {"amount": -1, "currency": "EUR"}}, "price"),
    ({"message": "hi", "price": {"amount": 1, "currency": "ABC"}}, "price"),
    ({"message": "hi", "status": "accepted"}, "status"),
])
def test_bad_offers_are_400_and_change_nothing(client, people, payload, field):
    users, sockets = people
    request = create(client, users["owner"])
    response = client.post(f"{URL}/{request['id']}/offers", headers=users["alice"].headers, json=payload)
    assert response.status_code == 400 and field in response.get_json()["error"]["details"]
    assert get(client, users["owner"], request["id"])["offers_count"] == 0
    assert nothing(sockets["owner"])


def test_accept_assigns_declines_the_rest_and_notifies_each_party(client, people):
    users, sockets = people
    request = create(client, users["owner"])
    alice_offer = offer(client, users["alice"], request["id"]).get_json()["data"]
    bob_offer = offer(client, users["bob"], request["id"]).get_json()["data"]
    received(sockets["owner"])
    response = action(client, users["owner"], request["id"], "accept", {"offer_id": alice_offer["id"]})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "assigned" and data["helper_id"] == users["alice"].id
    assert data["accepted_offer_id"] == alice_offer["id"]
    assert {o["id"]: o["status"] for o in data["offers"]} == {alice_offer["id"]: "accepted",
                                                              bob_offer["id"]: "declined"}
    status = {"help_request_id": request["id"], "status": "assigned", "helper_id": users["alice"].id}

    owner_events = received(sockets["owner"])
    assert owner_events["help_request.status_changed"] == [status]
    assert not owner_events["help_request.accepted"] and not owner_events["help_request.declined"]

    alice_events = received(sockets["alice"])
    assert len(alice_events["help_request.accepted"]) == 1
    accepted = alice_events["help_request.accepted"][0]
    assert accepted["help_request_id"] == request["id"] and accepted["offer_id"] == alice_offer["id"]
    assert accepted["help_request"]["status"] == "assigned"
    assert [o["id"] for o in accepted["help_request"]["offers"]] == [alice_offer["id"]]  # not Bob's
    assert alice_events["help_request.status_changed"] == [status]
    assert not alice_events["help_request.declined"]

    bob_events = received(sockets["bob"])
    assert bob_events["help_request.declined"] == [{"help_request_id": request["id"],
                                                    "offer_id": bob_offer["id"]}]
    assert bob_events["help_request.status_changed"] == [status]
    assert not bob_events["help_request.accepted"]
    assert nothing(sockets["bystander"])
    assert get(client, users["bob"], request["id"])["offers"][0]["status"] == "declined"


def test_complete_raises_the_helpers_trust_and_notifies_owner_and_helper(client, db, people):
    users, sockets = people
    request = create(client, users["owner"])
    alice_offer = offer(client, users["alice"], request["id"]).get_json()["data"]
    offer(client, users["bob"], request["id"])
    action(client, users["owner"], request["id"], "accept", {"offer_id": alice_offer["id"]})
    for sio_client in sockets.values():
        sio_client.get_received()
    response = action(client, users["owner"], request["id"], "complete")
    assert response.status_code == 200 and response.get_json()["data"]["status"] == "completed"
    status = {"help_request_id": request["id"], "status": "completed", "helper_id": users["alice"].id}
    assert received(sockets["owner"])["help_request.status_changed"] == [status]
    assert received(sockets["alice"])["help_request.status_changed"] == [status]
    assert nothing(sockets["bob"]) and nothing(sockets["bystander"])
    expected = trust.BASE_SCORE + trust.TRUST_DELTAS["help_completed"]
    assert db.users.find_one({"_id": users["alice"]["_id"]})["trust_score"] == expected
    assert db.users.find_one({"_id": users["owner"]["_id"]})["trust_score"] == trust.BASE_SCORE
    public = client.get(f"/api/v1/users/{users['alice'].id}", headers=users["bob"].headers)
    assert public.get_json()["data"]["trust_score"] == expected


def test_cancel_while_open_tells_owner_and_offerers(client, people):
    users, sockets = people
    request = create(client, users["owner"])
    offer(client, users["alice"], request["id"])
    received(sockets["owner"])
    response = action(client, users["owner"], request["id"], "cancel")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "cancelled" and data["offers"][0]["status"] == "declined"
    status = {"help_request_id": request["id"], "status": "cancelled", "helper_id": None}
    assert received(sockets["owner"])["help_request.status_changed"] == [status]
    assert received(sockets["alice"])["help_request.status_changed"] == [status]
    assert nothing(sockets["bob"]) and nothing(sockets["bystander"])


def test_cancel_while_assigned_tells_owner_and_helper_only(client, db, people):
    users, sockets = people
    request = create(client, users["owner"])
    alice_offer = offer(client, users["alice"], request["id"]).get_json()["data"]
    offer(client, users["bob"], request["id"])
    action(client, users["owner"], request["id"], "accept", {"offer_id": alice_offer["id"]})
    for sio_client in sockets.values():
        sio_client.get_received()
    response = action(client, users["owner"], request["id"], "cancel")
    assert response.status_code == 200 and response.get_json()["data"]["status"] == "cancelled"
    status = {"help_request_id": request["id"], "status": "cancelled", "helper_id": users["alice"].id}
    assert received(sockets["owner"])["help_request.status_changed"] == [status]
    assert received(sockets["alice"])["help_request.status_changed"] == [status]
    assert nothing(sockets["bob"]) and nothing(sockets["bystander"])
    assert db.users.find_one({"_id": users["alice"]["_id"]})["trust_score"] == trust.BASE_SCORE


def test_every_transition_is_recorded_in_the_timeline(client, db, people):
    users, _ = people
    request = create(client, users["owner"])
    alice_offer = offer(client, users["alice"], request["id"]).get_json()["data"]
    action(client, users["owner"], request["id"], "accept", {"offer_id": alice_offer["id"]})
    action(client, users["owner"], request["id"], "complete")
    stored = db.help_requests.find_one({"_id": ObjectId(request["id"])})
    assert [step["status"] for step in stored["timeline"]] == ["open", "assigned", "completed"]
    assert all(step["by"] == users["owner"]["_id"] for step in stored["timeline"])


def _to_state(client, users, state):
    """A request of users['owner'] driven into `state` (alice's offer accepted when assigned/completed)."""
    request = create(client, users["owner"])
    alice_offer = offer(client, users["alice"], request["id"]).get_json()["data"]
    if state in ("assigned", "completed"):
        action(client, users["owner"], request["id"], "accept", {"offer_id": alice_offer["id"]})
    if state == "completed":
        action(client, users["owner"], request["id"], "complete")
    if state == "cancelled":
        action(client, users["owner"], request["id"], "cancel")
    return request, alice_offer


@pytest.mark.parametrize("state, name", [
    ("open", "complete"),
    ("assigned", "accept"),
    ("completed", "accept"), ("completed", "complete"), ("completed", "cancel"),
    ("cancelled", "accept"), ("cancelled", "complete"), ("cancelled", "cancel"),
])
def test_invalid_transitions_are_409_and_change_nothing(client, db, people, state, name):
    users, sockets = people
    request, alice_offer = _to_state(client, users, state)
    before = db.help_requests.find_one({"_id": ObjectId(request["id"])})
    for sio_client in sockets.values():
        sio_client.get_received()
    payload = {"offer_id": alice_offer["id"]} if name == "accept" else None
    response = action(client, users["owner"], request["id"], name, payload)
    assert response.status_code == 409 and error_code(response) == "invalid_transition"
    assert response.get_json()["error"]["details"] == {"status": state}
    assert db.help_requests.find_one({"_id": ObjectId(request["id"])}) == before
    assert all(nothing(sio_client) for sio_client in sockets.values())


@pytest.mark.parametrize("state", ["assigned", "completed", "cancelled"])
def test_offers_on_a_request_that_is_not_open_are_409(client, people, state):
    users, _ = people
    request, _ = _to_state(client, users, state)
    response = offer(client, users["bob"], request["id"])
    assert response.status_code == 409 and error_code(response) == "conflict"
    assert get(client, users["owner"], request["id"])["offers_count"] == 1


@pytest.mark.parametrize("name", ["accept", "complete", "cancel"])
def test_only_the_owner_acts(client, db, people, name):
    users, sockets = people
    request, alice_offer = _to_state(client, users, "open" if name == "accept" else "assigned")
    before = db.help_requests.find_one({"_id": ObjectId(request["id"])})
    for sio_client in sockets.values():
        sio_client.get_received()
    for actor in ("alice", "bystander"):
        payload = {"offer_id": alice_offer["id"]} if name == "accept" else None
        response = action(client, users[actor], request["id"], name, payload)
        assert response.status_code == 403 and error_code(response) == "forbidden"
    assert db.help_requests.find_one({"_id": ObjectId(request["id"])}) == before
    assert all(nothing(sio_client) for sio_client in sockets.values())


def test_accepting_an_offer_of_another_request_is_404(client, db, people):
    users, sockets = people
    mine = create(client, users["owner"])
    offer(client, users["alice"], mine["id"])
    other = create(client, users["bob"])
    foreign = offer(client, users["alice"], other["id"]).get_json()["data"]
    before = db.help_requests.find_one({"_id": ObjectId(mine["id"])})
    for sio_client in sockets.values():
        sio_client.get_received()
    for offer_id in (foreign["id"], str(ObjectId())):
        response = action(client, users["owner"], mine["id"], "accept", {"offer_id": offer_id})
        assert response.status_code == 404 and error_code(response) == "not_found"
    assert db.help_requests.find_one({"_id": ObjectId(mine["id"])}) == before
    assert get(client, users["bob"], other["id"])["status"] == "open"
    assert all(nothing(sio_client) for sio_client in sockets.values())


@pytest.mark.parametrize("payload", [{}, {"offer_id": "nothex"}, {"offer_id": 5}, {"offer_id": None},
                                     {"offer_id": str(ObjectId()), "helper_id": str(ObjectId())}])
def test_bad_accept_bodies_are_400(client, people, payload):
    users, _ = people
    request = create(client, users["owner"])
    response = action(client, users["owner"], request["id"], "accept", payload)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert get(client, users["owner"], request["id"])["status"] == "open"


def test_unknown_request_is_404_for_every_action(client, people):
    users, _ = people
    missing = str(ObjectId())
    assert offer(client, users["alice"], missing).status_code == 404
    for name, payload in (("accept", {"offer_id": str(ObjectId())}), ("complete", None), ("cancel", None)):
        response = action(client, users["owner"], missing, name, payload)
        assert response.status_code == 404 and error_code(response) == "not_found"


def test_racing_complete_and_cancel_one_wins(app, people):
    users, _ = people
    client = app.test_client()
    request, _ = _to_state(client, users, "assigned")

    def run(name):
        return action(app.test_client(), users["owner"], request["id"], name).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = sorted(pool.map(run, ["complete", "cancel", "complete", "cancel"]))
    assert codes == [200, 409, 409, 409]
    final = get(client, users["owner"], request["id"])["status"]
    assert final in ("completed", "cancelled")


def test_concurrent_offers_from_one_user_store_one(app, people):
    users, _ = people
    request = create(app.test_client(), users["owner"])

    def run(_):
        return offer(app.test_client(), users["alice"], request["id"]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(run, range(8)))
    assert codes == [201] + [409] * 7
    assert get(app.test_client(), users["owner"], request["id"])["offers_count"] == 1
