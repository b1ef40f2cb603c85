"""Organization subscriptions: the pro plan on the provider, moved by the provider's events.

``start`` creates the provider's Customer and Subscription (``ORG_PRO_PRICE``) for an organization;
the first payment is confirmed with the subscription's client secret (the offline provider's events
come from POST /payments/offline/events instead). The handlers below take the provider's events:
``invoice.paid`` (pro, active, a ``subscription`` payment record per invoice),
``invoice.payment_failed`` (past_due, pro until now + ORG_GRACE_DAYS) and
``customer.subscription.deleted`` (free, final). The organizations service holds the plan's rules,
including those that make late and repeated events harmless; ``sweep`` applies the graces that ran
out and cancels those subscriptions at the provider.
"""
import logging
from datetime import datetime, timedelta, timezone

from bson import ObjectId
from flask import current_app

from allynet import clock
from allynet.errors import Conflict, NotFound
from allynet.organizations import service as organizations_service
from allynet.pagination import decode_time_cursor, newest_first_page
from allynet.payments import events, records
from allynet.payments.provider_calls import call_provider
from allynet.payments.provider import ProviderError

log = logging.getLogger(__name__)
# The provider's statuses of a subscription that will never be paid: a new one may start.
ENDED = ("canceled", "incomplete_expired")


def _view(subscription, organization_id):
    view = {"id": subscription["id"], "status": subscription["status"], "organization_id": str(organization_id)}
    invoice = subscription.get("latest_invoice")
    intent = invoice.get("payment_intent") if isinstance(invoice, dict) else None
    if subscription["status"] == "incomplete" and isinstance(intent, dict) and intent.get("client_secret"):
        view["client_secret"] = intent["client_secret"]
    return view


def start(*, db, provider, organization_id, actor_id):
    """Start the pro plan (owner or org admin): the subscription ``{id, status, organization_id,
    client_secret?}``. While its first payment is pending, asking again answers the same one."""
    org = organizations_service.require_manager(db=db, organization_id=organization_id, user_id=actor_id,
                                                action="start the pro plan")
    status = org.get("subscription_status")
    if status in ("active", "past_due"):
        raise Conflict("The organization is already on the pro plan", details={"subscription_status": status})
    if status == "incomplete":
        pending = call_provider(provider.retrieve_subscription, org["subscription_id"])
        if pending["status"] not in ENDED:  # pending, or paid with its event still on the way: never twice
            return _view(pending, organization_id)
    seq = org.get("subscription_seq", 0)
    metadata = {"organization_id": str(organization_id)}
    customer_id = org.get("billing_customer_id")
    if customer_id is None:
        customer_id = call_provider(provider.create_customer, email=(org.get("contact") or {}).get("email"),
                            metadata=metadata, idempotency_key=f"organization:{organization_id}:customer")["id"]
    subscription = call_provider(provider.create_subscription, customer_id=customer_id,
                         price=current_app.config["ORG_PRO_PRICE"], metadata=metadata,
                         idempotency_key=f"organization:{organization_id}:subscription:{seq}")
    started = organizations_service.subscription_started(
        db=db, organization_id=organization_id, actor_id=actor_id, subscription_id=subscription["id"],
        customer_id=customer_id, seq=seq)
    if started is None:  # a concurrent request started it (the same one: same idempotency key)
        org = organizations_service.get_or_raise(db=db, organization_id=organization_id)
        if org.get("subscription_id") != subscription["id"]:
            subscription = call_provider(provider.retrieve_subscription, org["subscription_id"])
    return _view(subscription, organization_id)


def list_payments(*, db, organization_id, user_id, cursor=None, limit=20):
    """The organization's payments, newest first (owner, org admins): (items, next_cursor)."""
    if cursor:
        decode_time_cursor(cursor)  # input first: a forged cursor is 400 whoever asks
    organizations_service.require_manager(db=db, organization_id=organization_id, user_id=user_id,
                                          action="see its payments")
    return newest_first_page(db[records.COLLECTION], query={"organization_id": organization_id}, limit=limit,
                             cursor=cursor)


# ---- the provider's events ----------------------------------------------------------------------

def _epoch_to_datetime(seconds):
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc).replace(tzinfo=None)


def _subscription_details(invoice):
    """Where the invoice names its subscription: ``subscription`` and ``subscription_details``, or
    (newer API versions) ``parent.subscription_details``."""
    parent = (invoice.get("parent") or {}).get("subscription_details") or {}
    subscription = invoice.get("subscription") or parent.get("subscription")
    if isinstance(subscription, dict):
        subscription = subscription.get("id")
    metadata = (invoice.get("subscription_details") or {}).get("metadata") or parent.get("metadata") or {}
    return subscription, metadata


def _period_end(invoice, event):
    """The end of the service period the invoice bills: its lines' periods when present, else its own
    (else when it was made)."""
    ends = [line["period"]["end"] for line in (invoice.get("lines") or {}).get("data") or () if line.get("period")]
    return _epoch_to_datetime(max(ends) if ends else invoice.get("period_end") or invoice.get("created")
                              or event["created"])


def _organization(db, subscription_id, metadata):
    """The organization of the subscription: whose current one it is, else the one its metadata names."""
    if subscription_id:
        org = organizations_service.find_by_subscription(db=db, subscription_id=subscription_id)
        if org is not None:
            return org
    org_id = metadata.get("organization_id")
    if not (isinstance(org_id, str) and ObjectId.is_valid(org_id)):
        return None
    try:
        return organizations_service.get_or_raise(db=db, organization_id=ObjectId(org_id))
    except NotFound:
        return None


def _payer(org):
    starter = org.get("subscription_started_by")
    if starter is not None:
        return starter
    return next((m["user_id"] for m in org.get("members") or () if m["role"] == organizations_service.OWNER), None)


def _record_invoice(db, provider, org, invoice, *, paid, cause):
    """The invoice's payment record (one per invoice): succeeded once paid; a failure before that
    leaves it requires_payment_method with the reason, and each further failure is in its history."""
    amount = invoice.get("amount_paid") if paid else invoice.get("amount_due")
    status = "succeeded" if paid else "requires_payment_method"
    last_error = None if paid else {"code": "invoice_payment_failed",
                                    "message": "The subscription's payment failed; the provider retries it"}
    record, created = records.create(
        db=db, origin=f"invoice:{invoice['id']}", kind="subscription", payer_id=_payer(org), payee_id=None,
        amount=int(amount or 0), currency=str(invoice.get("currency") or "").upper(), fee_amount=int(amount or 0),
        status=status, cause=cause, livemode=bool(invoice.get("livemode")), provider=provider.name,
        refs={"organization_id": org["_id"]},
        extra={"provider_invoice_id": invoice["id"], "provider_subscription_id": _subscription_details(invoice)[0],
               "last_error": last_error})
    if not created:
        fields = {"last_error": last_error}
        if paid:
            fields["amount"] = fields["fee_amount"] = int(amount or record["amount"])
        records.advance(db=db, payment_id=record["_id"], status=status, cause=cause, fields=fields)


@events.handles("invoice.paid", "invoice.payment_failed")
def on_invoice(db, provider, event):
    """An invoice of an organization's subscription was paid, or its payment failed."""
    invoice = event["data"]["object"]
    subscription_id, metadata = _subscription_details(invoice)
    org = _organization(db, subscription_id, metadata)
    if org is None:
        log.warning("%s %s: no organization for subscription %s", event["type"], event["id"], subscription_id)
        return
    paid = event["type"] == "invoice.paid"
    _record_invoice(db, provider, org, invoice, paid=paid, cause=event["type"])
    if paid:
        organizations_service.subscription_paid(db=db, organization_id=org["_id"], subscription_id=subscription_id,
                                                period_end=_period_end(invoice, event))
    else:
        grace_until = clock.now() + timedelta(days=float(current_app.config["ORG_GRACE_DAYS"]))
        organizations_service.subscription_payment_failed(
            db=db, organization_id=org["_id"], subscription_id=subscription_id, period_end=_period_end(invoice, event),
            grace_until=grace_until)


@events.handles("customer.subscription.deleted")
def on_subscription_deleted(db, provider, event):
    """The provider deleted the subscription (canceled, or its retries ran out): free, final."""
    subscription = event["data"]["object"]
    org = organizations_service.find_by_subscription(db=db, subscription_id=subscription["id"])
    if org is not None:
        organizations_service.subscription_canceled(db=db, organization_id=org["_id"],
                                                    subscription_id=subscription["id"])


def feed_offline_event(*, db, provider, data):
    """POST /payments/offline/events (offline provider only): the event completed as the provider
    would send it, through the handler the webhook uses. ``{event_id, type, received, duplicate,
    handled}``."""
    if provider.name != "offline":
        raise NotFound("Not found")
    obj = data["data"]["object"]
    invoice = {key: value for key, value in obj.items() if key != "subscription"}
    event = call_provider(provider.subscription_event, event_type=data["type"], subscription_id=obj["subscription"],
                  event_id=data.get("id"), created=data.get("created"), invoice=invoice)
    result = events.handle(db=db, provider=provider, event=event, source="offline")
    if not result["duplicate"]:
        provider.apply_event(event)
    return dict(result, event_id=event["id"], type=event["type"])


# ---- the sweep ----------------------------------------------------------------------------------

def sweep(*, db, provider):
    """Apply the graces that ran out, and cancel those subscriptions at the provider (retried by the
    next sweep when the provider fails). Returns (organizations downgraded, subscriptions canceled)."""
    expired = organizations_service.expire_graces(db=db)
    canceled = 0
    for organization_id, subscription_id in organizations_service.subscriptions_to_cancel(db=db):
        try:
            provider.cancel_subscription(subscription_id, idempotency_key=f"subscription:{subscription_id}:cancel")
        except ProviderError as exc:
            if exc.code != "resource_missing":
                log.warning("canceling subscription %s failed (%s); the next sweep retries", subscription_id, exc)
                continue
        organizations_service.subscription_cancel_sent(db=db, organization_id=organization_id,
                                                       subscription_id=subscription_id)
        canceled += 1
    return len(expired), canceled
