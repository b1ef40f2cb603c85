"""Newest-first lists page through one helper; cursors handed out in the earlier forms go on working.

The SOS, report and audit-log lists used to hand out (time with `Z`, id); the
skills lists (then ordered by id alone) handed out (id). A client holding one
of those gets the same next page as with the cursor the list hands out now.
"""
from allynet.pagination import encode_cursor
from tests.emergencies_helpers import CENTER, act, sos
from tests.helpers import error_code

HERE = {"lat": 48.1371, "lng": 11.5754}


def page(client, user, url, cursor=None, limit=1):
    """One page of `url` as `user` sees it: (ids, next_cursor)."""
    separator = "&" if "?" in url else "?"
    query = f"{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    response = client.get(url + query, headers=user.headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return [item["id"] for item in body["data"]], body["meta"]["next_cursor"]


def earlier_time_cursor(item, time_field="created_at"):
    """The cursor the SOS, report and audit-log lists handed out: the item's time as sent, and its id."""
    return encode_cursor([item[time_field], item["id"]])


def assert_earlier_cursor_continues(client, user, url, time_field="created_at"):
    response = client.get(f"{url}{'&' if '?' in url else '?'}limit=1", headers=user.headers).get_json()
    first = response["data"][0]
    current = page(client, user, url, response["meta"]["next_cursor"], limit=10)
    earlier = page(client, user, url, earlier_time_cursor(first, time_field), limit=10)
    assert earlier == current and len(current[0]) == 2 and first["id"] not in current[0]


def test_my_emergencies_go_on_from_an_earlier_cursor(client, make_user, clock):
    owner = make_user(location=CENTER)
    for kind in ("fire", "crime", "other"):
        act(client, owner, sos(client, owner, type=kind).get_json()["data"]["emergency"]["id"], "cancel")
        clock.advance(seconds=5)
    assert_earlier_cursor_continues(client, owner, "/api/v1/emergencies/mine")


def test_reports_go_on_from_an_earlier_cursor(client, make_user, clock):
    reporter, reader = make_user(), make_user()
    for kind in ("police", "hazard", "traffic"):
        response = client.post("/api/v1/reports", headers=reporter.headers, json={"type": kind, "location": HERE})
        assert response.status_code == 201, response.get_json()
        clock.advance(seconds=1)
    assert_earlier_cursor_continues(client, reader, "/api/v1/reports")


def test_the_audit_log_goes_on_from_an_earlier_cursor(client, make_user, clock):
    admin = make_user(role="admin")
    for _ in range(3):
        target = make_user()
        response = client.patch(f"/api/v1/users/{target.id}", headers=admin.headers, json={"role": "moderator"})
        assert response.status_code == 200, response.get_json()
        clock.advance(seconds=1)
    assert_earlier_cursor_continues(client, admin, "/api/v1/audit-log?target_type=user", time_field="at")


def publish_skills(client, owner, clock, count=3, seconds_apart=1):
    skills = []
    for n in range(count):
        response = client.post("/api/v1/skills", headers=owner.headers,
                               json={"name": f"Skill {n}", "category": "repairs", "location": HERE})
        assert response.status_code == 201, response.get_json()
        skills.append(response.get_json()["data"]["id"])
        clock.advance(seconds=seconds_apart)
    return skills[::-1]  # newest first


def test_skills_go_on_from_an_earlier_id_cursor(client, make_user, clock):
    owner, viewer = make_user(), make_user()
    newest_first = publish_skills(client, owner, clock)
    for url in (f"/api/v1/users/{owner.id}/skills", "/api/v1/skills?category=repairs"):
        first, current_cursor = page(client, viewer, url)
        assert first == newest_first[:1] and current_cursor
        earlier = page(client, viewer, url, encode_cursor([newest_first[0]]), limit=10)
        assert earlier == page(client, viewer, url, current_cursor, limit=10) == (newest_first[1:], None)


def test_an_id_cursor_of_a_deleted_skill_is_400(client, make_user, clock):
    owner = make_user()
    newest_first = publish_skills(client, owner, clock)
    assert client.delete(f"/api/v1/skills/{newest_first[0]}", headers=owner.headers).status_code in (200, 204)
    for cursor in (encode_cursor([newest_first[0]]), encode_cursor(["not an id"])):
        response = client.get(f"/api/v1/users/{owner.id}/skills?cursor={cursor}", headers=owner.headers)
        assert response.status_code == 400 and error_code(response) == "validation_error"
        assert "cursor" in response.get_json()["error"]["details"]


def test_skills_published_in_the_same_instant_are_neither_skipped_nor_repeated(client, make_user, clock):
    owner = make_user()
    published = publish_skills(client, owner, clock, seconds_apart=0)
    seen, cursor = [], None
    while True:
        ids, cursor = page(client, owner, f"/api/v1/users/{owner.id}/skills", cursor, limit=2)
        seen += ids
        if cursor is None:
            break
    assert sorted(seen) == sorted(published) and len(seen) == 3
