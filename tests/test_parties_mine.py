"""GET /parties (your parties) and `left_party_id`: one active party per user, switching leaves the old one."""
import pytest

from tests.helpers import error_code

API = "/api/v1"


def create(client, user, name="ride"):
    response = client.post(f"{API}/parties", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def join(client, user, party):
    response = client.post(f"{API}/parties/join", json={"invite_code": party["invite_code"]}, headers=user.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def parties(client, user, query=""):
    response = client.get(f"{API}/parties?{query}", headers=user.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def ids(body):
    return [item["id"] for item in body["data"]]


# ---- GET /parties ----------------------------------------------------------------

def test_leader_and_member_find_their_active_party(client, make_user, clock):
    alice, bob = make_user(), make_user()
    party = create(client, alice)
    clock.advance(seconds=1)
    join(client, bob, party)
    for user in (alice, bob):
        body = parties(client, user, "active=true")
        assert body["meta"] == {"next_cursor": None, "count": 1}
        (item,) = body["data"]
        assert item["id"] == party["id"] and item["name"] == "ride" and item["is_active"] is True
        assert item["invite_code"] == party["invite_code"]
        assert item["leader_id"] == alice.id and item["member_count"] == 2
        assert item["membership"]["active"] is True and item["membership"]["left_at"] is None
        assert parties(client, user, "active=false")["data"] == []
    assert parties(client, bob)["data"][0]["membership"]["joined_at"] > party["created_at"]


def test_stranger_staff_and_nobody_see_nothing(client, make_user):
    alice = make_user()
    create(client, alice)
    for user in (make_user(), make_user(role="moderator"), make_user(role="admin")):
        assert parties(client, user)["data"] == []
        assert parties(client, user, "active=true")["data"] == []
    response = client.get(f"{API}/parties")
    assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_active_filters_on_your_membership_newest_first(client, make_user, clock):
    alice, bob = make_user(), make_user()
    ended = create(client, alice, "ended")
    join(client, bob, ended)
    clock.advance(seconds=1)
    client.post(f"{API}/parties/{ended['id']}/end", headers=alice.headers)
    left = create(client, bob, "left")  # Bob leads; Alice joins, then goes
    clock.advance(seconds=1)
    join(client, alice, left)
    clock.advance(seconds=1)
    client.post(f"{API}/parties/{left['id']}/leave", headers=alice.headers)
    clock.advance(seconds=1)
    now = create(client, alice, "now")
    assert ids(parties(client, alice)) == [now["id"], left["id"], ended["id"]]
    assert ids(parties(client, alice, "active=true")) == [now["id"]]
    body = parties(client, alice, "active=false")
    assert ids(body) == [left["id"], ended["id"]]
    gone, over = body["data"]
    # Left while it goes on: no code, no leader or head count (GET /parties/<id> is 404 for Alice).
    assert gone["is_active"] is True and gone["membership"]["left_reason"] == "left"
    assert gone["membership"]["left_at"] is not None
    assert not {"invite_code", "leader_id", "member_count"} & set(gone)
    assert client.get(f"{API}/parties/{left['id']}", headers=alice.headers).status_code == 404
    # Was there when it ended: she may still read it, but its code may be someone else's now.
    assert over["is_active"] is False and over["ended_at"] is not None
    assert over["membership"]["left_reason"] == "ended"
    assert over["leader_id"] == alice.id and "invite_code" not in over
    # Bob still rides in `left`, which he leads.
    assert ids(parties(client, bob, "active=true")) == [left["id"]]
    assert parties(client, bob, "active=true")["data"][0]["leader_id"] == bob.id


def test_pages_without_loss_when_times_tie(client, make_user, clock):
    alice = make_user()
    made = [create(client, alice, f"p{index}")["id"] for index in range(7)]  # frozen clock: one joined_at
    seen, cursor, pages = [], None, 0
    while True:
        body = parties(client, alice, "limit=3" + (f"&cursor={cursor}" if cursor else ""))
        pages += 1
        assert body["meta"]["count"] == len(body["data"]) <= 3
        seen += ids(body)
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))
    # The same pages under a filter.
    first = parties(client, alice, "active=false&limit=5")
    rest = parties(client, alice, f"active=false&limit=5&cursor={first['meta']['next_cursor']}")
    assert ids(first) + ids(rest) == list(reversed(made[:-1]))


@pytest.mark.parametrize("query, field", [
    ("active=yes", "active"), ("active=1", "active"), ("active=", "active"), ("active=TRUE", "active"),
    ("cursor=garbage", "cursor"), ("cursor=WyJ4IiwieSJd", "cursor"),  # ["x","y"]: decodes, means nothing
    ("limit=0", "limit"), ("limit=101", "limit"), ("bogus=1", "bogus"),
])
def test_bad_query_is_400(client, make_user, query, field):
    alice = make_user()
    create(client, alice)
    response = client.get(f"{API}/parties?{query}", headers=alice.headers)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert field in response.get_json()["error"]["details"]


# ---- left_party_id: switching parties --------------------------------------------

def test_create_and_join_say_which_party_was_left(client, make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    first = create(client, alice, "first")
    assert first["left_party_id"] is None
    assert join(client, bob, first)["left_party_id"] is None
    assert join(client, bob, first)["left_party_id"] is None  # joining again is a no-op
    second = create(client, carol, "second")
    response = client.post(f"{API}/parties/{second['id']}/join", json={"invite_code": second["invite_code"]},
                           headers=bob.headers)
    assert response.status_code == 200 and response.get_json()["data"]["left_party_id"] == first["id"]
    third = create(client, bob, "third")
    assert third["left_party_id"] == second["id"]
    assert ids(parties(client, bob, "active=true")) == [third["id"]]
    # GET /parties/<id> is the party itself: no left_party_id there.
    assert "left_party_id" not in client.get(f"{API}/parties/{third['id']}", headers=bob.headers).get_json()["data"]


def test_a_leader_switching_hands_over_like_a_leave(client, make_user, socket_client, clock):
    alice, bob, carol = make_user(), make_user(), make_user()
    first = create(client, alice, "first")
    clock.advance(seconds=1)
    join(client, bob, first)
    clock.advance(seconds=1)
    join(client, carol, first)
    bob_sio = socket_client(bob)
    bob_sio.get_received()
    second = create(client, alice, "second")
    assert second["left_party_id"] == first["id"]
    received = bob_sio.get_received()
    assert [e["args"][0] for e in received if e["name"] == "party:leader"] == [
        {"party_id": first["id"], "leader_id": bob.id}]
    presence = [e["args"][0] for e in received if e["name"] == "party:presence"]
    assert presence[-1] == {"party_id": first["id"], "online": [bob.id]}
    state = client.get(f"{API}/parties/{first['id']}", headers=bob.headers).get_json()["data"]
    assert state["leader_id"] == bob.id and [m["user_id"] for m in state["members"]] == [bob.id, carol.id]


def test_the_last_one_switching_out_ends_the_old_party(client, make_user):
    alice, bob = make_user(), make_user()
    first = create(client, alice, "first")
    second = create(client, bob, "second")
    assert join(client, alice, second)["left_party_id"] == first["id"]
    old = client.get(f"{API}/parties/{first['id']}", headers=alice.headers)
    assert old.status_code == 200 and old.get_json()["data"]["is_active"] is False
    response = client.post(f"{API}/parties/join", json={"invite_code": first["invite_code"]}, headers=bob.headers)
    assert response.status_code == 404


def test_socket_acks_say_which_party_was_left(client, make_user, socket_client):
    alice, bob = make_user(), make_user()
    alice_sio, bob_sio = socket_client(alice), socket_client(bob)
    ack = alice_sio.emit("party:create", {"name": "first"}, callback=True)
    assert ack["ok"] is True and ack["left_party_id"] is None
    first = ack["party"]
    ack = bob_sio.emit("party:join", {"invite_code": first["invite_code"]}, callback=True)
    assert ack["ok"] is True and ack["left_party_id"] is None
    ack = bob_sio.emit("party:create", {"name": "second"}, callback=True)
    assert ack["ok"] is True and ack["left_party_id"] == first["id"]
    second = ack["party"]
    ack = alice_sio.emit("party:join", {"invite_code": second["invite_code"], "party_id": second["id"]},
                         callback=True)
    assert ack["ok"] is True and ack["left_party_id"] == first["id"]
    # Rejoining the room of the party you are in leaves nothing.
    ack = alice_sio.emit("party:join", {"party_id": second["id"]}, callback=True)
    assert ack["ok"] is True and ack["left_party_id"] is None
    # A refused join leaves nothing either, and says nothing about it.
    ack = alice_sio.emit("party:join", {"invite_code": "ZZZZZZZZ"}, callback=True)
    assert ack["ok"] is False and "left_party_id" not in ack
    assert ids(parties(client, alice, "active=true")) == [second["id"]]


def test_openapi_documents_the_list_query_and_left_party_id(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    params = {p["name"]: p["schema"] for p in spec["paths"][f"{API}/parties"]["get"]["parameters"]}
    assert params["active"]["type"] == "boolean" and set(params) == {"active", "cursor", "limit"}
    schemas = spec["components"]["schemas"]
    assert {"membership", "invite_code", "leader_id"} <= set(schemas["PartySummary"]["properties"])
    for path in (f"{API}/parties", f"{API}/parties/join", f"{API}/parties/{{party_id}}/join"):
        responses = spec["paths"][path]["post"]["responses"]
        (success,) = [responses[code] for code in ("200", "201") if code in responses]
        assert success["content"]["application/json"]["schema"]["properties"]["data"]["$ref"].endswith(
            "/PartyJoinResult")
    assert "left_party_id" in schemas["PartyJoinResult"]["properties"]
