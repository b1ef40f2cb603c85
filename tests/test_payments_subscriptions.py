"""Organization plans on payments, through the real server: the pro subscription started by its owner
or an org admin, moved by the offline provider's events (pro -> past_due -> free), the free plan's
limits binding again, late, repeated and concurrent events, the grace applied on read and by the sweep."""
import calendar
from datetime import timedelta

import pytest
import requests
from bson import ObjectId

from allynet import background
from allynet.payments import provider as payments_provider
from allynet.payments import subscriptions
from allynet.payments.offline import OfflineProvider
from tests.helpers import all_at_once
from tests.scaleout_support import quiet_werkzeug, served  # noqa: F401 (fixtures)
from tests.test_organizations_api import INSIDE, ORG, helper_at

API = "/api/v1"
DAY = 86400


@pytest.fixture
def app(app_factory):
    return app_factory(ORG_FREE_MEMBERS=3, RATELIMIT_ENABLED=False)


def call(server, method, path, user=None, body=None, **params):
    headers = {"Authorization": f"Bearer {user['access_token']}"} if user else {}
    response = requests.request(method, f"{server.url}{API}{path}", json=body, headers=headers, params=params,
                                timeout=10)
    return response.status_code, response.json()


def feed(server, admin, event_type, subscription_id, status=200, **fields):
    """POST /payments/offline/events as the platform admin; `id`/`created` on the event, the rest on data.object."""
    event = {"type": event_type, "data": {"object": {"subscription": subscription_id}}}
    for key in ("id", "created"):
        if key in fields:
            event[key] = fields.pop(key)
    if "invoice" in fields:
        fields["id"] = fields.pop("invoice")
    event["data"]["object"].update(fields)
    code, body = call(server, "POST", "/payments/offline/events", admin, event)
    assert code == status, body
    return body["data"] if code == 200 else body


def org_state(server, member, org_id):
    code, body = call(server, "GET", f"/organizations/{org_id}", member)
    assert code == 200, body
    return {key: body["data"].get(key) for key in ("plan", "subscription_status", "plan_grace_until")}


def join(server, owner, org_id, user, status=200):
    code, body = call(server, "POST", f"/organizations/{org_id}/invitations", owner)
    if code != 201:
        return code, body
    return call(server, "POST", "/organizations/join", user, {"code": body["data"]["code"]})


def new_org(server, owner, staff=None):
    code, body = call(server, "POST", "/organizations", owner, ORG)
    assert code == 201, body
    if staff is not None:
        assert call(server, "PATCH", f"/organizations/{body['data']['id']}", staff, {"verified": True})[0] == 200
    return body["data"]["id"]


def subscribe(server, user, org_id):
    code, body = call(server, "POST", f"/organizations/{org_id}/subscription", user)
    assert code == 201, body
    return body["data"]


def sos_reaches(server, requester):
    """How many helpers an SOS inside the area alerts (then cancelled)."""
    code, body = call(server, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})
    assert code == 201, body
    assert call(server, "POST", f"/emergencies/{body['data']['emergency']['id']}/cancel", requester)[0] == 200
    return body["data"]["notified_helpers"]


def test_pro_then_past_due_then_free_and_the_limits_follow(served, app, make_user, db, clock):
    owner, org_admin, member, stranger = make_user(), make_user(), make_user(), make_user()
    staff = make_user(role="admin")
    helper = helper_at(make_user, db, 48.861, 2.352)
    org_id = new_org(served, owner, staff)
    for user in (org_admin, member):
        assert join(served, owner, org_id, user)[0] == 200
    assert call(served, "PATCH", f"/organizations/{org_id}/members/{org_admin.id}", owner, {"role": "admin"})[0] == 200

    # Who may start the plan: the owner and org admins; nobody else, not even a platform admin.
    for user, status in ((None, 401), (member, 403), (stranger, 403), (staff, 403)):
        code, body = call(served, "POST", f"/organizations/{org_id}/subscription", user)
        assert code == status, body
    subscription = subscribe(served, org_admin, org_id)
    assert subscription["status"] == "incomplete" and subscription["organization_id"] == org_id
    assert subscription["id"].startswith("sub_") and subscription["client_secret"]
    # Asked again while the first payment is pending: the same subscription.
    assert subscribe(served, owner, org_id) == subscription
    assert org_state(served, member, org_id) == {"plan": "free", "subscription_status": "incomplete",
                                                 "plan_grace_until": None}
    # Only the platform admin feeds the offline provider's events.
    event = {"type": "invoice.paid", "data": {"object": {"subscription": subscription["id"]}}}
    for user, status in ((None, 401), (owner, 403), (member, 403)):
        assert call(served, "POST", "/payments/offline/events", user, event)[0] == status

    paid = feed(served, staff, "invoice.paid", subscription["id"])
    assert paid["duplicate"] is False and paid["handled"] is True
    assert org_state(served, member, org_id) == {"plan": "pro", "subscription_status": "active",
                                                 "plan_grace_until": None}
    # The public view has the plan, not the billing state.
    code, public = call(served, "GET", f"/organizations/{org_id}", stranger)
    assert public["data"]["plan"] == "pro" and "subscription_status" not in public["data"]
    code, body = call(served, "POST", f"/organizations/{org_id}/subscription", owner)
    assert code == 409 and body["error"]["code"] == "conflict"

    # Pro: past the free plan's 3 members, two dispatchers, a vouched helper alerted by an SOS.
    second = make_user()
    for user in (helper, second):
        assert join(served, owner, org_id, user)[0] == 200
    for user in (member, second):
        assert call(served, "PATCH", f"/organizations/{org_id}/members/{user.id}", owner,
                    {"role": "dispatcher"})[0] == 200
    assert call(served, "POST", f"/organizations/{org_id}/members/{helper.id}/vouch", owner)[0] == 200
    requester = make_user()
    assert sos_reaches(served, requester) == 1

    # The renewal fails: past_due, still pro for ORG_GRACE_DAYS.
    feed(served, staff, "invoice.payment_failed", subscription["id"])
    state = org_state(served, member, org_id)
    assert state["plan"] == "pro" and state["subscription_status"] == "past_due"
    assert state["plan_grace_until"] == (clock.current + timedelta(days=7)).isoformat(timespec="milliseconds") + "Z"
    assert call(served, "GET", f"/organizations/{org_id}/emergencies", member)[0] == 200
    assert sos_reaches(served, requester) == 1

    # The grace runs out: the next read finds the organization free; nothing is deleted.
    clock.advance(days=7, seconds=1)
    assert org_state(served, member, org_id) == {"plan": "free", "subscription_status": "canceled",
                                                 "plan_grace_until": None}
    code, body = call(served, "GET", f"/organizations/{org_id}", owner)
    assert body["data"]["member_count"] == 5 and sum(m["role"] == "dispatcher" for m in body["data"]["members"]) == 2
    assert [m["vouched"] for m in body["data"]["members"] if m["user_id"] == helper.id] == [True]
    code, body = call(served, "POST", f"/organizations/{org_id}/invitations", owner)
    assert code == 403 and body["error"] == {"code": "plan_limit", "message": "The free plan has at most 3 members",
                                             "details": {"plan": "free", "members": 3}}
    code, body = call(served, "GET", f"/organizations/{org_id}/emergencies", member)
    assert code == 403 and body["error"]["code"] == "plan_limit"
    assert call(served, "POST", f"/organizations/{org_id}/members/{helper.id}/vouch", owner)[1]["error"][
        "code"] == "plan_limit"
    assert sos_reaches(served, requester) == 0  # the vouch no longer counts
    code, body = call(served, "PATCH", f"/organizations/{org_id}/members/{helper.id}", owner, {"role": "dispatcher"})
    assert code == 403 and body["error"]["details"] == {"plan": "free", "dispatchers": 1}
    # ...but the organization may still take the extra dispatcher's role away.
    assert call(served, "PATCH", f"/organizations/{org_id}/members/{second.id}", owner, {"role": "member"})[0] == 200

    # The organization's payments: the invoice paid, the renewal that failed (owner and org admins only).
    for user, status in ((None, 401), (member, 403), (stranger, 403), (staff, 403)):
        assert call(served, "GET", f"/organizations/{org_id}/payments", user)[0] == status
    code, body = call(served, "GET", f"/organizations/{org_id}/payments", org_admin)
    assert code == 200 and [(p["kind"], p["status"], p["amount"], p["currency"]) for p in body["data"]] == [
        ("subscription", "requires_payment_method", 2900, "EUR"), ("subscription", "succeeded", 2900, "EUR")]
    assert body["data"][0]["last_error"]["code"] == "invoice_payment_failed"
    assert {p["payer_id"] for p in body["data"]} == {org_admin.id} and not any(
        "client_secret" in p for p in body["data"])

    # The sweep cancels the subscription at the provider; the organization may subscribe again.
    with app.app_context():
        assert subscriptions.sweep(db=db, provider=payments_provider.get_provider(app)) == (0, 1)
        assert payments_provider.get_provider(app).retrieve_subscription(subscription["id"])["status"] == "canceled"
    renewed = subscribe(served, owner, org_id)
    assert renewed["id"] != subscription["id"] and renewed["status"] == "incomplete"
    feed(served, staff, "invoice.paid", subscription["id"])  # the old subscription moves nothing
    assert org_state(served, member, org_id)["plan"] == "free"
    feed(served, staff, "invoice.paid", renewed["id"])
    assert org_state(served, member, org_id) == {"plan": "pro", "subscription_status": "active",
                                                 "plan_grace_until": None}
    db.users.update_one({"_id": helper["_id"]}, {"$set": {"location_updated_at": clock.current}})  # on duty now
    assert sos_reaches(served, requester) == 1  # the vouch counts again


def test_the_sweep_downgrades_an_organization_nobody_reads(served, app, make_user, db, clock):
    owner, staff, requester = make_user(), make_user(role="admin"), make_user()
    helper = helper_at(make_user, db, 48.861, 2.352)
    org_id = new_org(served, owner, staff)
    assert join(served, owner, org_id, helper)[0] == 200
    subscription = subscribe(served, owner, org_id)
    feed(served, staff, "invoice.paid", subscription["id"])
    assert call(served, "POST", f"/organizations/{org_id}/members/{helper.id}/vouch", owner)[0] == 200
    feed(served, staff, "invoice.payment_failed", subscription["id"])
    clock.advance(days=8)
    # Before any sweep, an SOS already leaves out the dispatch room of an organization past its grace.
    code, body = call(served, "POST", "/emergencies", requester, {"type": "medical", "location": INSIDE})
    assert body["data"]["emergency"].get("dispatch_organization_ids") in (None, [])
    assert db.emergencies.find_one({"_id": ObjectId(body["data"]["emergency"]["id"])}).get(
        "dispatch_organization_ids") in (None, [])
    assert call(served, "POST", f"/emergencies/{body['data']['emergency']['id']}/cancel", requester)[0] == 200

    loops = {name: fn for name, fn, _ in background.LOOPS}
    with app.app_context():
        loops["subscription_grace_sweep"](app)
        stored = db.organizations.find_one({"_id": ObjectId(org_id)})
        assert (stored["plan"], stored["subscription_status"], stored["plan_grace_until"]) == ("free", "canceled", None)
        assert "subscription_cancel_pending" not in stored
        assert db.users.find_one({"_id": helper["_id"]}).get("vouched_by") == []
        provider = payments_provider.get_provider(app)
        assert provider.retrieve_subscription(subscription["id"])["status"] == "canceled"
        assert subscriptions.sweep(db=db, provider=provider) == (0, 0)  # nothing left: a second run does nothing
    assert sos_reaches(served, requester) == 0
    entries = list(db.audit_log.find({"action": "organization.plan", "target_id": ObjectId(org_id)}).sort("at", 1))
    assert [(e["after"]["plan"], e["after"]["subscription_status"], e["reason"]) for e in entries] == [
        ("free", "incomplete", "subscription started"), ("pro", "active", "invoice.paid"),
        ("pro", "past_due", "invoice.payment_failed"), ("free", "canceled", "grace over")]


def test_late_and_repeated_events_never_move_the_plan_back(served, make_user, db, clock):
    owner, staff = make_user(), make_user(role="admin")
    org_id = new_org(served, owner)
    sub = subscribe(served, owner, org_id)["id"]
    start = calendar.timegm(clock.current.timetuple())
    first, second, third = start + 30 * DAY, start + 60 * DAY, start + 90 * DAY

    def deliver(event_id, event_type, created, period_end, invoice):
        return feed(served, staff, event_type, sub, id=event_id, created=created, period_end=period_end,
                    invoice=invoice)

    def state():
        return org_state(served, owner, org_id)

    deliver("evt_paid_1", "invoice.paid", start + 1, first, "in_first")
    # The same event again: acknowledged, no effect.
    assert deliver("evt_paid_1", "invoice.paid", start + 1, first, "in_first")["duplicate"] is True
    # A failure of the period already paid (delivered late) changes nothing.
    deliver("evt_failed_1", "invoice.payment_failed", start, first, "in_first")
    assert state() == {"plan": "pro", "subscription_status": "active", "plan_grace_until": None}

    # The second period: its invoice.paid arrives before the failure that preceded it.
    deliver("evt_paid_2", "invoice.paid", second + 10, second, "in_second")
    deliver("evt_failed_2", "invoice.payment_failed", second + 5, second, "in_second")
    assert state() == {"plan": "pro", "subscription_status": "active", "plan_grace_until": None}

    # The third period fails; a late payment of an older period does not end that.
    deliver("evt_failed_3", "invoice.payment_failed", third + 5, third, "in_third")
    grace = state()["plan_grace_until"]
    assert state()["subscription_status"] == "past_due" and grace is not None
    clock.advance(days=2)
    deliver("evt_failed_3b", "invoice.payment_failed", third + 9, third, "in_third")
    assert state()["plan_grace_until"] == grace  # a retry's failure does not extend the grace
    deliver("evt_paid_2_late", "invoice.paid", second + 11, second, "in_second")
    assert state()["subscription_status"] == "past_due"
    deliver("evt_paid_3", "invoice.paid", third + 20, third, "in_third")
    assert state() == {"plan": "pro", "subscription_status": "active", "plan_grace_until": None}

    # Deleted is final: nothing of this subscription moves the plan afterwards.
    feed(served, staff, "customer.subscription.deleted", sub, id="evt_deleted")
    deliver("evt_paid_4", "invoice.paid", third + 40, third + 30 * DAY, "in_fourth")
    assert state() == {"plan": "free", "subscription_status": "canceled", "plan_grace_until": None}
    assert feed(served, staff, "customer.subscription.deleted", sub, id="evt_deleted")["duplicate"] is True

    # One payment record per invoice; its history keeps every attempt, and a late failure after the
    # payment adds nothing.
    code, body = call(served, "GET", f"/organizations/{org_id}/payments", owner)
    history = {p["id"]: [h["status"] for h in p["history"]] for p in body["data"]}
    by_invoice = {p["provider_invoice_id"]: p for p in db.payments.find({"organization_id": ObjectId(org_id)})}
    assert {invoice: history[str(p["_id"])] for invoice, p in by_invoice.items()} == {
        "in_first": ["succeeded"], "in_second": ["succeeded"],
        "in_third": ["requires_payment_method", "requires_payment_method", "succeeded"], "in_fourth": ["succeeded"]}
    assert sum(p["amount"] for p in body["data"] if p["status"] == "succeeded") == 4 * 2900


def test_two_concurrent_deliveries_of_one_event_have_one_effect(served, make_user, db):
    owner, staff = make_user(), make_user(role="admin")
    org_id = new_org(served, owner)
    # Two concurrent starts: one subscription.
    first, second = all_at_once([lambda: subscribe(served, owner, org_id)] * 2)
    assert first["id"] == second["id"]
    results = all_at_once([lambda: feed(served, staff, "invoice.paid", first["id"], id="evt_race")] * 2)
    assert sorted(result["duplicate"] for result in results) == [False, True]
    assert org_state(served, owner, org_id)["plan"] == "pro"
    records = list(db.payments.find({"organization_id": ObjectId(org_id)}))
    assert len(records) == 1 and [h["status"] for h in records[0]["history"]] == ["succeeded"]
    assert db.audit_log.count_documents({"action": "organization.plan", "target_id": ObjectId(org_id),
                                         "reason": "invoice.paid"}) == 1


def test_the_offline_feed_refuses_what_it_cannot_take(served, app, make_user, db):
    owner, staff = make_user(), make_user(role="admin")
    org_id = new_org(served, owner)
    sub = subscribe(served, owner, org_id)["id"]
    for event, status, code in (
            ({"type": "invoice.paid", "data": {"object": {"subscription": "sub_offline_nosuch"}}}, 404, "not_found"),
            ({"type": "invoice.voided", "data": {"object": {"subscription": sub}}}, 400, "validation_error"),
            ({"type": "invoice.paid", "data": {"object": {}}}, 400, "validation_error"),
            ({"type": "invoice.paid", "data": {"object": {"subscription": sub, "amount_paid": -1}}}, 400,
             "validation_error"),
            ({"type": "invoice.paid", "data": {"object": {"subscription": sub, "metadata": {}}}}, 400,
             "validation_error")):
        response = call(served, "POST", "/payments/offline/events", staff, event)
        assert response[0] == status and response[1]["error"]["code"] == code, (event, response)
    assert org_state(served, owner, org_id)["plan"] == "free" and db.payments.count_documents({}) == 0
    # Under another provider the feed does not exist.
    app.extensions[payments_provider.EXTENSION_KEY] = type("Hosted", (OfflineProvider,), {"name": "stripe"})(app.config)
    event = {"type": "invoice.paid", "data": {"object": {"subscription": sub}}}
    assert call(served, "POST", "/payments/offline/events", staff, event)[0] == 404


def test_the_demo_city_has_a_pro_organization_on_an_active_subscription(app, db, make_user):
    from allynet import seeding
    from allynet.auth import service as auth_service

    seeding.seed(db=db, config=app.config, plan=seeding.SeedPlan(users=200, fast_hashes=True))
    rescue = db.organizations.find_one({"name": "City Volunteer Rescue"})
    owner = db.users.find_one({"_id": rescue["created_by"]})
    with app.app_context():
        headers = {"Authorization": f"Bearer {auth_service.issue_tokens(owner)['access_token']}"}
    client, org_id = app.test_client(), str(rescue["_id"])
    org = client.get(f"{API}/organizations/{org_id}", headers=headers).get_json()["data"]
    assert (org["plan"], org["subscription_status"], org["plan_grace_until"]) == ("pro", "active", None)
    payments = client.get(f"{API}/organizations/{org_id}/payments", headers=headers).get_json()["data"]
    assert [(p["kind"], p["status"], p["amount"], p["currency"]) for p in payments] == [
        ("subscription", "succeeded", 2900, "EUR")]
    # Its subscription is the offline provider's: the next renewal can be fed like any other.
    staff = make_user(role="admin")
    event = {"type": "invoice.payment_failed", "data": {"object": {"subscription": rescue["subscription_id"]}}}
    assert client.post(f"{API}/payments/offline/events", json=event, headers=staff.headers).status_code == 200
    org = client.get(f"{API}/organizations/{org_id}", headers=headers).get_json()["data"]
    assert (org["plan"], org["subscription_status"]) == ("pro", "past_due")


def test_a_subscription_paid_at_the_provider_is_never_started_twice(served, app, make_user, db):
    owner = make_user()
    org_id = new_org(served, owner)
    first = subscribe(served, owner, org_id)
    # Paid at the provider; its invoice.paid has not arrived yet.
    with app.app_context():
        provider = payments_provider.get_provider(app)
        provider.apply_event(provider.subscription_event(event_type="invoice.paid", subscription_id=first["id"]))
    again = subscribe(served, owner, org_id)
    assert (again["id"], again["status"]) == (first["id"], "active") and "client_secret" not in again
    assert db.offline_provider.count_documents({"obj.object": "subscription"}) == 1


def test_the_sweep_cancels_the_lapsed_subscription_not_one_started_since(served, app, make_user, db, clock):
    owner, staff = make_user(), make_user(role="admin")
    org_id = new_org(served, owner)
    lapsed = subscribe(served, owner, org_id)["id"]
    feed(served, staff, "invoice.paid", lapsed)
    feed(served, staff, "invoice.payment_failed", lapsed)
    clock.advance(days=8)
    assert org_state(served, owner, org_id)["plan"] == "free"  # applied on read; not yet canceled at the provider
    renewed = subscribe(served, owner, org_id)["id"]
    with app.app_context():
        provider = payments_provider.get_provider(app)
        assert subscriptions.sweep(db=db, provider=provider) == (0, 1)
        assert provider.retrieve_subscription(lapsed)["status"] == "canceled"
        assert provider.retrieve_subscription(renewed)["status"] == "incomplete"
    feed(served, staff, "invoice.paid", renewed)
    assert org_state(served, owner, org_id) == {"plan": "pro", "subscription_status": "active",
                                                "plan_grace_until": None}


def test_a_forged_cursor_is_400_before_anything_else(served, make_user):
    owner, stranger = make_user(), make_user()
    org_id = new_org(served, owner)
    for user in (owner, stranger):
        code, body = call(served, "GET", f"/organizations/{org_id}/payments", user, cursor="forged")
        assert code == 400 and body["error"]["code"] == "validation_error"
