"""Parties over REST: create, join, leave, end, visibility, history pages."""
import pytest

from allynet.parties.schemas import INVITE_ALPHABET
from tests.helpers import error_code, events_named

API = "/api/v1"


def create_party(client, user, name="Sunday ride"):
    response = client.post(f"{API}/parties", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def join(client, user, code, party_id=None):
    path = f"{API}/parties/{party_id}/join" if party_id else f"{API}/parties/join"
    return client.post(path, json={"invite_code": code}, headers=user.headers)


def member_ids(party):
    return [member["user_id"] for member in party["members"]]


def test_create_gives_invite_code_and_creator_leads(client, make_user):
    alice = make_user()
    party = create_party(client, alice)
    assert len(party["invite_code"]) == 8
    assert set(party["invite_code"]) <= set(INVITE_ALPHABET)
    assert party["leader_id"] == alice.id
    assert party["is_active"] is True
    assert member_ids(party) == [alice.id]
    assert "_id" not in party and party["id"]


def test_join_by_code_both_paths_and_get(client, make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    party = create_party(client, alice)
    response = join(client, bob, party["invite_code"].lower())  # typed in lower case
    assert response.status_code == 200
    assert member_ids(response.get_json()["data"]) == [alice.id, bob.id]
    response = join(client, carol, party["invite_code"], party_id=party["id"])
    assert response.status_code == 200
    got = client.get(f"{API}/parties/{party['id']}", headers=carol.headers).get_json()["data"]
    assert member_ids(got) == [alice.id, bob.id, carol.id]
    for member in got["members"]:
        assert set(member) >= {"last_location", "last_speed_kmh", "status", "online"}
        assert member["online"] is False


def test_join_twice_is_a_no_op(client, make_user):
    alice, bob = make_user(), make_user()
    party = create_party(client, alice)
    join(client, bob, party["invite_code"])
    response = join(client, bob, party["invite_code"])
    assert response.status_code == 200
    assert member_ids(response.get_json()["data"]) == [alice.id, bob.id]


def test_wrong_code_or_id_or_ended_party_is_404(client, make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    party = create_party(client, alice)
    other = create_party(client, carol)
    assert error_code(join(client, bob, "ABCDEFGH")) == "not_found"
    # A real code but for another party id.
    assert join(client, bob, party["invite_code"], party_id=other["id"]).status_code == 404
    client.post(f"{API}/parties/{party['id']}/end", headers=alice.headers)
    assert join(client, bob, party["invite_code"]).status_code == 404


@pytest.mark.parametrize("body", [{}, {"invite_code": "SHORT"}, {"invite_code": "ABCDEFG0"},
                                  {"invite_code": 12345678}, {"invite_code": "ABCDEFGH", "x": 1}])
def test_bad_join_bodies_are_400(client, make_user, body):
    response = client.post(f"{API}/parties/join", json=body, headers=make_user().headers)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101},
                                  {"name": "ok", "leader_id": "abc"}])
def test_bad_create_bodies_are_400(client, make_user, body):
    response = client.post(f"{API}/parties", json=body, headers=make_user().headers)
    assert response.status_code == 400


def test_requires_auth(client):
    assert client.post(f"{API}/parties", json={"name": "x"}).status_code == 401


def test_outsiders_get_404_and_403_on_actions(client, make_user):
    alice, eve = make_user(), make_user()
    party = create_party(client, alice)
    assert client.get(f"{API}/parties/{party['id']}", headers=eve.headers).status_code == 404
    assert client.get(f"{API}/parties/{party['id']}/history", headers=eve.headers).status_code == 404
    assert error_code(client.post(f"{API}/parties/{party['id']}/leave", headers=eve.headers)) == "forbidden"
    assert error_code(client.post(f"{API}/parties/{party['id']}/end", headers=eve.headers)) == "forbidden"
    assert client.get(f"{API}/parties/not-an-id", headers=eve.headers).status_code == 404
    assert client.get(f"{API}/parties/{'0' * 24}", headers=alice.headers).status_code == 404


def test_only_leader_ends(client, make_user):
    alice, bob = make_user(), make_user()
    party = create_party(client, alice)
    join(client, bob, party["invite_code"])
    response = client.post(f"{API}/parties/{party['id']}/end", headers=bob.headers)
    assert response.status_code == 403 and error_code(response) == "forbidden"
    response = client.post(f"{API}/parties/{party['id']}/end", headers=alice.headers)
    assert response.status_code == 200
    assert response.get_json()["data"]["is_active"] is False
    # Ending again: the party no longer exists as an active one.
    assert client.post(f"{API}/parties/{party['id']}/end", headers=alice.headers).status_code == 404
    # Those who were in it at the end still see it, ended.
    got = client.get(f"{API}/parties/{party['id']}", headers=bob.headers)
    assert got.status_code == 200 and got.get_json()["data"]["is_active"] is False


def test_leader_leaving_hands_over_to_longest_standing(client, make_user, clock):
    alice, bob, carol = make_user(), make_user(), make_user()
    party = create_party(client, alice)
    clock.advance(seconds=1)
    join(client, bob, party["invite_code"])
    clock.advance(seconds=1)
    join(client, carol, party["invite_code"])
    response = client.post(f"{API}/parties/{party['id']}/leave", headers=alice.headers)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["leader_id"] == bob.id
    assert member_ids(data) == [bob.id, carol.id]
    # Alice is out: no longer sees it.
    assert client.get(f"{API}/parties/{party['id']}", headers=alice.headers).status_code == 404
    # Bob now leads and can end it; Carol cannot.
    assert client.post(f"{API}/parties/{party['id']}/end", headers=carol.headers).status_code == 403


def test_last_member_leaving_ends_the_party(client, make_user):
    alice, bob = make_user(), make_user()
    party = create_party(client, alice)
    join(client, bob, party["invite_code"])
    client.post(f"{API}/parties/{party['id']}/leave", headers=alice.headers)
    response = client.post(f"{API}/parties/{party['id']}/leave", headers=bob.headers)
    assert response.status_code == 200
    assert response.get_json()["data"]["is_active"] is False
    # The code is free again and the old party cannot be joined.
    assert join(client, alice, party["invite_code"]).status_code == 404


def test_one_active_party_per_user(client, make_user, db):
    alice, bob, carol = make_user(), make_user(), make_user()
    first = create_party(client, alice, "first")
    second = create_party(client, carol, "second")
    join(client, bob, first["invite_code"])
    join(client, bob, second["invite_code"])
    got_first = client.get(f"{API}/parties/{first['id']}", headers=alice.headers).get_json()["data"]
    assert member_ids(got_first) == [alice.id]
    got_second = client.get(f"{API}/parties/{second['id']}", headers=bob.headers).get_json()["data"]
    assert member_ids(got_second) == [carol.id, bob.id]
    assert db.party_members.count_documents({"user_id": bob["_id"], "active": True}) == 1
    # Creating a party also leaves the current one.
    third = create_party(client, bob, "third")
    assert member_ids(client.get(f"{API}/parties/{second['id']}", headers=carol.headers)
                      .get_json()["data"]) == [carol.id]
    assert member_ids(third) == [bob.id]


def test_switching_party_sends_presence_to_both(client, make_user, socket_client):
    alice, bob, carol = make_user(), make_user(), make_user()
    first = create_party(client, alice, "first")
    second = create_party(client, carol, "second")
    join(client, bob, first["invite_code"])
    alice_sio, bob_sio, carol_sio = socket_client(alice), socket_client(bob), socket_client(carol)
    for sio in (alice_sio, bob_sio, carol_sio):
        sio.get_received()
    join(client, bob, second["invite_code"])
    assert events_named(alice_sio, "party:presence")[-1] == {"party_id": first["id"], "online": [alice.id]}
    assert events_named(carol_sio, "party:presence")[-1] == {"party_id": second["id"],
                                                             "online": sorted([bob.id, carol.id])}
    presence_to_bob = events_named(bob_sio, "party:presence")
    assert all(event["party_id"] == second["id"] for event in presence_to_bob)


def test_invite_codes_unique_among_active_parties(app, db, monkeypatch, make_user, client):
    from allynet.parties import service

    codes = iter(["AAAAAAAA", "AAAAAAAA", "BBBBBBBB"])
    monkeypatch.setattr(service, "new_invite_code", lambda: next(codes))
    first = create_party(client, make_user())
    second = create_party(client, make_user())
    assert (first["invite_code"], second["invite_code"]) == ("AAAAAAAA", "BBBBBBBB")


def test_get_shows_positions_status_and_online(client, make_user, socket_client, clock):
    alice, bob = make_user(), make_user()
    party = create_party(client, alice)
    join(client, bob, party["invite_code"])
    bob_sio = socket_client(bob)
    ack = bob_sio.emit("party:update", {"party_id": party["id"], "location": {"lat": 48.1, "lng": 11.5},
                                        "speed_kmh": 42, "heading": 90, "status": "riding"}, callback=True)
    assert ack["ok"] is True
    got = client.get(f"{API}/parties/{party['id']}", headers=alice.headers).get_json()["data"]
    by_id = {member["user_id"]: member for member in got["members"]}
    assert by_id[bob.id]["last_location"] == {"lat": 48.1, "lng": 11.5}
    assert by_id[bob.id]["last_speed_kmh"] == 42
    assert by_id[bob.id]["status"] == "riding"
    assert by_id[bob.id]["online"] is True
    assert by_id[alice.id]["online"] is False
    assert by_id[alice.id]["last_location"] is None


# ---- history ---------------------------------------------------------------

def test_history_merges_trail_messages_alerts_oldest_first_and_pages(client, make_user, socket_client, clock):
    alice, bob = make_user(), make_user()
    party = create_party(client, alice)
    join(client, bob, party["invite_code"])
    sio = socket_client(bob)
    expected = []
    for step in range(6):
        clock.advance(seconds=10)
        sio.emit("party:update", {"party_id": party["id"], "location": {"lat": 48 + step / 1000, "lng": 11.0}},
                 callback=True)
        expected.append("trail")
        sio.emit("party:message", {"party_id": party["id"], "text": f"msg {step}"}, callback=True)
        expected.append("message")
    clock.advance(seconds=1)
    sio.emit("party:alert", {"party_id": party["id"], "type": "hazard", "location": {"lat": 48, "lng": 11}},
             callback=True)
    expected.append("alert")
    kinds, texts, cursor, pages = [], [], None, 0
    while True:
        url = f"{API}/parties/{party['id']}/history?limit=5" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=alice.headers).get_json()
        pages += 1
        kinds += [item["kind"] for item in body["data"]]
        texts += [item["text"] for item in body["data"] if item["kind"] == "message"]
        assert body["meta"]["count"] == len(body["data"])
        cursor = body["meta"]["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert kinds == expected
    assert texts == [f"msg {step}" for step in range(6)]


def test_history_same_timestamp_entries_page_without_loss(client, make_user, socket_client, clock):
    alice = make_user()
    party = create_party(client, alice)
    sio = socket_client(alice)
    for index in range(7):  # frozen clock: all share one timestamp
        sio.emit("party:message", {"party_id": party["id"], "text": str(index)}, callback=True)
    seen, cursor = [], None
    while True:
        url = f"{API}/parties/{party['id']}/history?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=alice.headers).get_json()
        seen += [item["text"] for item in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == [str(index) for index in range(7)]


def test_former_member_sees_history_only_until_they_left(client, make_user, socket_client, clock):
    alice, bob = make_user(), make_user()
    party = create_party(client, alice)
    join(client, bob, party["invite_code"])
    sio = socket_client(alice)
    sio.emit("party:message", {"party_id": party["id"], "text": "before"}, callback=True)
    clock.advance(seconds=5)
    client.post(f"{API}/parties/{party['id']}/leave", headers=bob.headers)
    clock.advance(seconds=5)
    sio.emit("party:message", {"party_id": party["id"], "text": "after"}, callback=True)
    body = client.get(f"{API}/parties/{party['id']}/history", headers=bob.headers).get_json()
    assert [item["text"] for item in body["data"]] == ["before"]
    body = client.get(f"{API}/parties/{party['id']}/history", headers=alice.headers).get_json()
    assert [item["text"] for item in body["data"]] == ["before", "after"]


@pytest.mark.parametrize("query", ["cursor=garbage", "limit=0", "limit=501", "limit=x", "bogus=1"])
def test_history_bad_query_is_400(client, make_user, query):
    alice = make_user()
    party = create_party(client, alice)
    response = client.get(f"{API}/parties/{party['id']}/history?{query}", headers=alice.headers)
    assert response.status_code == 400


def test_trail_points_expire_by_ttl_index(db, app):
    info = db.trail_points.index_information()["ts_ttl"]
    assert info["expireAfterSeconds"] == int(app.config["TRAIL_RETENTION_DAYS"] * 86400)


def test_code_of_an_ended_party_can_be_reused(client, make_user, monkeypatch):
    from allynet.parties import service

    monkeypatch.setattr(service, "new_invite_code", lambda: "CCCCCCCC")
    alice, bob, carol = make_user(), make_user(), make_user()
    old = create_party(client, alice)
    client.post(f"{API}/parties/{old['id']}/end", headers=alice.headers)
    new = create_party(client, bob)
    assert new["invite_code"] == old["invite_code"] == "CCCCCCCC"
    response = join(client, carol, "CCCCCCCC")
    assert response.get_json()["data"]["id"] == new["id"]
