"""The last admin cannot lose admin rights: 409 `last_admin`, also when two admins race."""
import threading

import pytest

from allynet.users import service
from tests.helpers import error_code


def demote(client, actor, target, role="user"):
    return client.patch(f"/api/v1/users/{target.id}", headers=actor.headers, json={"role": role})


def roles(db, *users):
    return [db.users.find_one({"_id": user["_id"]})["role"] for user in users]


def test_the_only_admin_cannot_demote_itself(client, db, make_user):
    admin = make_user(role="admin")
    for role in ("user", "moderator"):
        response = demote(client, admin, admin, role)
        assert response.status_code == 409
        assert error_code(response) == "last_admin"
    assert roles(db, admin) == ["admin"]
    assert db.audit_log.count_documents({"action": "user.update"}) == 0
    # Its other changes still go through.
    verified = client.patch(f"/api/v1/users/{admin.id}", headers=admin.headers, json={"verified": True})
    assert verified.status_code == 200 and verified.get_json()["data"]["role"] == "admin"


def test_with_two_admins_one_may_go_then_the_other_is_the_last(client, db, make_user):
    first, second = make_user(role="admin"), make_user(role="admin")
    assert demote(client, first, first).status_code == 200  # another admin remains
    assert roles(db, first, second) == ["user", "admin"]
    assert demote(client, first, second).status_code == 403  # no longer an admin
    last = demote(client, second, second)
    assert last.status_code == 409 and error_code(last) == "last_admin"
    assert roles(db, first, second) == ["user", "admin"]


def test_demoting_another_admin_while_one_remains(client, db, make_user):
    admin, other = make_user(role="admin"), make_user(role="admin")
    assert demote(client, admin, other).status_code == 200
    assert roles(db, admin, other) == ["admin", "user"]
    assert error_code(demote(client, admin, admin)) == "last_admin"


@pytest.mark.parametrize("caller_role", ["user", "moderator"])
def test_non_admins_still_get_403(client, db, make_user, caller_role):
    admin, caller = make_user(role="admin"), make_user(role=caller_role)
    assert demote(client, caller, admin).status_code == 403
    assert client.patch(f"/api/v1/users/{admin.id}", json={"role": "user"}).status_code == 401
    assert roles(db, admin) == ["admin"]


def race(app, monkeypatch, first, second):
    """Both admins demote the other at once: both requests pass their role check before either
    writes, and both write before either counts admins (the worst interleaving)."""
    counted, apply = service._an_admin_remains, service.ensure_not_last_admin
    both_checked, both_written = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)

    def apply_after_both_checks(**kwargs):
        both_checked.wait()
        return apply(**kwargs)

    def count_after_both_writes(db):
        both_written.wait()
        return counted(db)

    monkeypatch.setattr(service, "ensure_not_last_admin", apply_after_both_checks)
    monkeypatch.setattr(service, "_an_admin_remains", count_after_both_writes)
    responses = {}

    def request(actor, target):
        responses[actor.id] = demote(app.test_client(), actor, target)

    threads = [threading.Thread(target=request, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    return responses[first.id], responses[second.id]


def test_two_admins_demoting_each_other_at_once_leave_an_admin(app, db, make_user, monkeypatch):
    first, second = make_user(role="admin"), make_user(role="admin")
    one, two = race(app, monkeypatch, first, second)
    # Both wrote, then counted: whoever counts first finds none left and undoes its write; the
    # other then finds that admin again (200) or counted before the undo (409 too). Never both 200.
    assert sorted([one.status_code, two.status_code]) in ([200, 409], [409, 409])
    refused = [response for response in (one, two) if response.status_code == 409]
    assert all(error_code(response) == "last_admin" for response in refused)
    # Each admin is demoted exactly when the other's request succeeded.
    expected = ["user" if two.status_code == 200 else "admin", "user" if one.status_code == 200 else "admin"]
    assert roles(db, first, second) == expected
    assert "admin" in expected


def test_a_third_admin_lets_both_demotions_through(app, db, make_user, monkeypatch):
    first, second, third = make_user(role="admin"), make_user(role="admin"), make_user(role="admin")
    one, two = race(app, monkeypatch, first, second)
    assert [one.status_code, two.status_code] == [200, 200]
    assert roles(db, first, second, third) == ["user", "user", "admin"]


def test_service_rule_for_other_ways_of_losing_admin_rights(app, db, make_user):
    admin = make_user(role="admin")
    with pytest.raises(service.Conflict) as refused:
        service.ensure_not_last_admin(db=db, user_id=admin["_id"], changes={"role": "user", "note": "x"})
    assert refused.value.code == "last_admin"
    stored = db.users.find_one({"_id": admin["_id"]})
    assert stored["role"] == "admin" and "note" not in stored  # the whole change undone
    user = make_user()
    before = service.ensure_not_last_admin(db=db, user_id=user["_id"], changes={"role": "moderator"})
    assert before["role"] == "user" and roles(db, user) == ["moderator"]
