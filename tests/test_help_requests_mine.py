"""GET /help-requests/mine: the caller's requests as requester or as helper, newest first, paginated."""
import pytest

from tests.helpers import error_code

URL = "/api/v1/help-requests"
MINE = f"{URL}/mine"


def post(client, user, title):
    response = client.post(URL, headers=user.headers, json={
        "title": title, "description": "details", "category": "transport", "location": {"lat": 1, "lng": 1}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def offer(client, user, request):
    response = client.post(f"{URL}/{request['id']}/offers", headers=user.headers, json={"message": "I can"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def mine(client, user, query=""):
    response = client.get(f"{MINE}?{query}", headers=user.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def titles(body):
    return [item["title"] for item in body["data"]]


@pytest.fixture
def market(client, make_user, clock):
    """Alice posted `lift` and `groceries`; Bob and Carol offered on `lift`, Alice accepted Bob; Bob posted `bike`."""
    users = {name: make_user(display_name=name) for name in ("alice", "bob", "carol", "eve")}
    lift = post(client, users["alice"], "lift")
    clock.advance(seconds=1)
    groceries = post(client, users["alice"], "groceries")
    clock.advance(seconds=1)
    bike = post(client, users["bob"], "bike")
    bob_offer = offer(client, users["bob"], lift)
    carol_offer = offer(client, users["carol"], lift)
    response = client.post(f"{URL}/{lift['id']}/accept", headers=users["alice"].headers,
                           json={"offer_id": bob_offer["id"]})
    assert response.status_code == 200
    return {"users": users, "lift": lift, "groceries": groceries, "bike": bike,
            "bob_offer": bob_offer, "carol_offer": carol_offer}


def test_requester_sees_what_they_posted_newest_first_with_all_offers(client, market):
    alice = market["users"]["alice"]
    body = mine(client, alice)  # role defaults to requester
    assert titles(body) == ["groceries", "lift"]
    assert body["meta"] == {"next_cursor": None, "count": 2}
    lift = body["data"][1]
    assert lift["status"] == "assigned" and lift["helper_id"] == market["users"]["bob"].id
    assert {o["id"]: o["status"] for o in lift["offers"]} == {market["bob_offer"]["id"]: "accepted",
                                                              market["carol_offer"]["id"]: "declined"}
    assert mine(client, alice, "role=requester") == body
    assert mine(client, alice, "role=helper")["data"] == []


def test_assigned_helper_sees_the_request_and_only_their_own_offer(client, market):
    bob = market["users"]["bob"]
    body = mine(client, bob, "role=helper")
    assert titles(body) == ["lift"]
    assert [(o["id"], o["status"]) for o in body["data"][0]["offers"]] == [(market["bob_offer"]["id"], "accepted")]
    assert titles(mine(client, bob, "role=requester")) == ["bike"]


def test_declined_offerer_still_finds_the_request_but_not_the_others_offers(client, market):
    carol = market["users"]["carol"]
    body = mine(client, carol, "role=helper")
    assert titles(body) == ["lift"]
    assert [(o["user_id"], o["status"]) for o in body["data"][0]["offers"]] == [(carol.id, "declined")]
    assert mine(client, carol)["data"] == []


def test_stranger_and_staff_see_nothing_of_others(client, market, make_user):
    for user in (market["users"]["eve"], make_user(role="admin")):
        assert mine(client, user)["data"] == []
        assert mine(client, user, "role=helper")["data"] == []


def test_cancelled_and_completed_requests_stay_listed(client, market):
    alice, bob = market["users"]["alice"], market["users"]["bob"]
    assert client.post(f"{URL}/{market['lift']['id']}/complete", headers=alice.headers).status_code == 200
    assert client.post(f"{URL}/{market['groceries']['id']}/cancel", headers=alice.headers).status_code == 200
    assert [item["status"] for item in mine(client, alice)["data"]] == ["cancelled", "completed"]
    assert [item["status"] for item in mine(client, bob, "role=helper")["data"]] == ["completed"]


def test_pages_without_loss_when_times_tie(client, make_user, clock):
    alice, bob = make_user(), make_user()
    for index in range(7):  # frozen clock: all share one created_at
        request = post(client, alice, f"request {index}")
        offer(client, bob, request)
    for user, role in ((alice, "requester"), (bob, "helper")):
        seen, cursor, pages = [], None, 0
        while True:
            body = mine(client, user, f"role={role}&limit=3" + (f"&cursor={cursor}" if cursor else ""))
            pages += 1
            assert body["meta"]["count"] == len(body["data"]) <= 3
            seen += titles(body)
            cursor = body["meta"]["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == [f"request {index}" for index in reversed(range(7))]


def test_mine_is_not_taken_for_an_id(client, market):
    alice = market["users"]["alice"]
    response = client.get(f"{URL}/{market['lift']['id']}", headers=alice.headers)
    assert response.status_code == 200 and response.get_json()["data"]["title"] == "lift"
    assert client.get(MINE, headers=alice.headers).get_json()["meta"]["count"] == 2
    # Other methods on /mine are not the id routes either.
    assert client.patch(MINE, headers=alice.headers, json={"title": "xxx"}).status_code == 405


def test_requires_login(client):
    response = client.get(MINE)
    assert response.status_code == 401 and error_code(response) == "unauthorized"


@pytest.mark.parametrize("query, field", [
    ("role=owner", "role"), ("role=", "role"), ("role=HELPER", "role"),
    ("cursor=garbage", "cursor"), ("cursor=WyJ4IiwieSJd", "cursor"),  # ["x","y"]: decodes, means nothing
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("bogus=1", "bogus"),
])
def test_bad_query_is_400(client, make_user, query, field):
    response = client.get(f"{MINE}?{query}", headers=make_user().headers)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]


def test_openapi_documents_the_query(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    params = {p["name"]: p["schema"] for p in spec["paths"][MINE]["get"]["parameters"]}
    assert params["role"]["enum"] == ["requester", "helper"] and params["role"]["default"] == "requester"
    assert {"cursor", "limit"} <= set(params)
