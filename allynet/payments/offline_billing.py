"""The offline provider's customers and subscriptions (mixed into OfflineProvider).

Stripe's shapes and states: a subscription starts ``incomplete``, its first invoice open and that
invoice's payment intent expanded (the client secret that would confirm it). Nothing bills by
itself offline: a platform admin feeds the provider's events (POST /payments/offline/events);
``subscription_event`` completes each from the stored subscription as the real provider would send
it (the invoice of the next unpaid period, its amount, the subscription's metadata), and once it is
processed ``apply_event`` moves the stored subscription as the event says, so a re-read answers what
the events said.
"""
import calendar
import secrets

from allynet import clock
from allynet.payments import offline_store
from allynet.payments.provider import ProviderError

PERIOD_SECONDS = 30 * 86400


def epoch(moment):
    """A naive UTC datetime as the provider's integer epoch seconds."""
    return calendar.timegm(moment.timetuple())


def created_once(idempotency_key, obj):
    """Save `obj` and tie it to `idempotency_key`; a retry with the key gets the first object."""
    offline_store.save(obj)
    first_id = offline_store.remember(idempotency_key, obj["id"])
    return obj if first_id is None else offline_store.load(first_id)


def open_intent():
    """The payment intent of an open invoice: awaiting a payment method, with its client secret."""
    intent_id = offline_store.new_id("pi")
    return {"id": intent_id, "status": "requires_payment_method",
            "client_secret": f"{intent_id}_secret_{secrets.token_urlsafe(12)}"}


def missing(kind, obj_id):
    """The provider's error for an unknown object."""
    return ProviderError(f"No such {kind}: {obj_id!r}", code="resource_missing", status=404)


class OfflineBilling:
    """create_customer, create_subscription, retrieve_subscription, cancel_subscription offline."""

    def _price(self, price):
        if price != self.config["ORG_PRO_PRICE"]:
            raise ProviderError(f"No such price: {price!r}", code="resource_missing", status=400)
        return int(self.config["ORG_PRO_AMOUNT"]), self.config["ORG_PRO_CURRENCY"].lower()

    def create_customer(self, *, email, metadata, idempotency_key):
        """A Customer (who pays a subscription)."""
        customer = {"id": offline_store.new_id("cus"), "object": "customer", "email": email,
                    "metadata": dict(metadata), "livemode": False, "created": epoch(clock.now())}
        return created_once(f"customer:{idempotency_key}", customer)

    def create_subscription(self, *, customer_id, price, metadata, idempotency_key):
        """An ``incomplete`` Subscription to `price`, its first invoice open with its payment intent."""
        amount, currency = self._price(price)
        now = epoch(clock.now())
        subscription = {
            "id": offline_store.new_id("sub"), "object": "subscription", "status": "incomplete",
            "customer": customer_id, "metadata": dict(metadata), "livemode": False, "created": now,
            "current_period_start": now, "current_period_end": now + PERIOD_SECONDS,
            "items": {"data": [{"price": {"id": price, "unit_amount": amount, "currency": currency}}]},
            "latest_invoice": {
                "id": offline_store.new_id("in"), "object": "invoice", "status": "open", "amount_due": amount,
                "currency": currency, "period_start": now, "period_end": now + PERIOD_SECONDS,
                "payment_intent": open_intent()},
            "canceled_at": None,
        }
        return created_once(f"subscription:{idempotency_key}", subscription)

    def retrieve_subscription(self, subscription_id):
        """The Subscription as the offline provider holds it now."""
        subscription = offline_store.load(subscription_id) if subscription_id.startswith("sub_") else None
        if subscription is None or subscription.get("object") != "subscription":
            raise missing("subscription", subscription_id)
        return subscription

    def cancel_subscription(self, subscription_id, *, idempotency_key):
        """Cancel a Subscription now (canceling a canceled one answers it as it is)."""
        subscription = self.retrieve_subscription(subscription_id)
        if subscription["status"] != "canceled":
            subscription.update(status="canceled", canceled_at=epoch(clock.now()))
            offline_store.save(subscription)
        return subscription

    # -- the offline event feed ----------------------------------------------------------------
    def subscription_event(self, *, event_type, subscription_id, event_id=None, created=None, invoice=None):
        """The provider-shaped event `event_type` of this subscription, completed as the provider would
        send it (nothing changes yet: ``apply_event`` does); `invoice` overrides fields of the invoice
        (id, amount_paid, period_end...) of invoice events."""
        subscription = self.retrieve_subscription(subscription_id)
        now = epoch(clock.now())
        if event_type == "customer.subscription.deleted":
            obj = dict(subscription, status="canceled", canceled_at=subscription.get("canceled_at") or now)
        else:
            open_invoice, paid = subscription["latest_invoice"], event_type == "invoice.paid"
            obj = {
                "id": open_invoice["id"], "object": "invoice", "subscription": subscription["id"],
                "customer": subscription["customer"], "status": "paid" if paid else "open",
                "amount_due": open_invoice["amount_due"], "amount_paid": open_invoice["amount_due"] if paid else 0,
                "currency": open_invoice["currency"], "period_start": open_invoice["period_start"],
                "period_end": open_invoice["period_end"], "payment_intent": open_invoice["payment_intent"]["id"],
                "subscription_details": {"metadata": dict(subscription["metadata"])}, "livemode": False,
                "created": now, **(invoice or {}),
            }
        return {"id": event_id or offline_store.new_id("evt"), "object": "event", "type": event_type,
                "created": now if created is None else created, "livemode": False, "data": {"object": obj}}

    def apply_event(self, event):
        """Move the stored subscription as a (processed) fed event says: paid -> active with the next
        period's invoice open, failed -> past_due, deleted -> canceled; nothing moves a canceled one."""
        obj = event["data"]["object"]
        subscription = self.retrieve_subscription(obj["subscription"] if obj["object"] == "invoice" else obj["id"])
        if subscription["status"] == "canceled":
            return subscription
        open_invoice = subscription["latest_invoice"]
        if event["type"] == "customer.subscription.deleted":
            subscription.update(status="canceled", canceled_at=obj["canceled_at"])
        elif event["type"] == "invoice.paid" and obj["period_end"] >= open_invoice["period_end"]:
            subscription.update(status="active", current_period_start=obj["period_start"],
                                current_period_end=obj["period_end"])
            subscription["latest_invoice"] = dict(
                open_invoice, id=offline_store.new_id("in"), period_start=obj["period_end"],
                period_end=obj["period_end"] + PERIOD_SECONDS, payment_intent=open_intent())
        elif event["type"] == "invoice.payment_failed" and subscription["status"] == "active":
            subscription["status"] = "past_due"
        return offline_store.save(subscription)
