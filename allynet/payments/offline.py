"""The offline provider: no network, no keys, ``livemode`` false, Stripe's object shapes and states.

Intents are confirmed with the provider's usual test payment methods: ``pm_card_visa`` succeeds,
``pm_card_chargeDeclined`` declines (back to ``requires_payment_method`` with
``last_payment_error.code = "card_declined"``), ``pm_card_authenticationRequired`` asks for action
(``requires_action``); confirming an intent in ``requires_action`` again stands for the customer
passing the bank's check, and it goes on as with ``pm_card_visa``.

Every change is one compare-and-set on the object's state (offline_store.swap), so two concurrent
captures (or refunds) of one intent have one effect; a call repeated with the idempotency key of a
call that already succeeded answers that call's object, as the real provider does.
Connected accounts: onboarding completes when the account link is made (there is no one to fill
the provider's form in test mode), so the account is then ``charges_enabled`` and ``payouts_enabled``.
"""
import secrets
import time

from allynet import clock
from allynet.payments import offline_store
from allynet.payments.offline_billing import OfflineBilling
from allynet.payments.provider import PaymentProvider, ProviderError

TEST_PAYMENT_METHODS = ("pm_card_visa", "pm_card_chargeDeclined", "pm_card_authenticationRequired")
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action", "processing",
              "requires_capture")
DECLINE = {"code": "card_declined", "decline_code": "generic_decline", "type": "card_error",
           "message": "Your card was declined."}
ACCOUNT_LINK_TTL_S = 300


def _missing(kind, obj_id):
    return ProviderError(f"No such {kind}: '{obj_id}'", code="resource_missing", status=404)


def _unexpected(intent, action):
    return ProviderError(f"This PaymentIntent's status is {intent['status']}; it cannot be {action}.",
                         code="payment_intent_unexpected_state", status=409)


def new_intent(*, amount, currency, capture_method, metadata, customer=None, destination=None,
               application_fee_amount=None):
    """A new PaymentIntent awaiting its payment method (not stored)."""
    intent_id = offline_store.new_id("pi")
    return {
        "id": intent_id, "object": "payment_intent", "status": "requires_payment_method",
        "amount": int(amount), "amount_capturable": 0, "amount_received": 0,
        "currency": currency.lower(), "capture_method": capture_method,
        "client_secret": f"{intent_id}_secret_{secrets.token_urlsafe(12)}",
        "last_payment_error": None, "next_action": None, "metadata": dict(metadata or {}),
        "livemode": False, "latest_charge": None, "customer": customer, "payment_method": None,
        "transfer_data": {"destination": destination} if destination else None,
        "application_fee_amount": application_fee_amount if destination else None,
        "created": int(time.time()),
    }


def authorize(intent):
    """Authorize `intent` in place (a manual-capture one awaits capture, else it succeeds); returns its
    new charge (not stored)."""
    intent["last_payment_error"] = None
    charge = {"id": offline_store.new_id("ch"), "object": "charge", "amount": intent["amount"],
              "amount_captured": 0, "amount_refunded": 0, "refunded": False, "captured": False,
              "currency": intent["currency"], "payment_intent": intent["id"], "livemode": False,
              "refunds": {"object": "list", "data": []}}
    intent["latest_charge"] = charge["id"]
    if intent["capture_method"] == "manual":
        intent.update(status="requires_capture", amount_capturable=intent["amount"])
    else:
        charge.update(amount_captured=intent["amount"], captured=True)
        intent.update(status="succeeded", amount_received=intent["amount"])
    return charge


class OfflineProvider(OfflineBilling, PaymentProvider):
    name = "offline"
    livemode = False

    # -- helpers ---------------------------------------------------------------------------
    def _load(self, kind, obj_id):
        obj = offline_store.load(obj_id) if isinstance(obj_id, str) else None
        if obj is None or obj.get("object") != kind:
            raise _missing(kind, obj_id)
        return obj

    def _replayed(self, idempotency_key):
        """The object a successful earlier call with this key produced, or None."""
        obj_id = offline_store.recalled(idempotency_key)
        return None if obj_id is None else offline_store.load(obj_id)

    def _change(self, kind, obj_id, *, idempotency_key, allowed, action, change):
        """Apply `change(obj) -> obj` when the object is in one of `allowed` states, atomically."""
        replay = self._replayed(idempotency_key)
        if replay is not None:
            return replay
        for _ in range(5):
            obj = self._load(kind, obj_id)
            if obj["status"] not in allowed:
                replay = self._replayed(idempotency_key)  # a concurrent call with this key won
                if replay is not None:
                    return replay
                raise _unexpected(obj, action)
            new = change(dict(obj))
            if offline_store.swap(new, expected=obj):
                offline_store.remember(idempotency_key, obj_id)
                return new
        raise ProviderError("The object changed while we changed it; retry.", code="lock_timeout", status=409)

    # -- payment intents ---------------------------------------------------------------------
    def create_intent(self, *, amount, currency, capture_method, metadata, idempotency_key,
                      customer=None, destination=None, application_fee_amount=None):
        """A PaymentIntent awaiting its payment method (one per idempotency key)."""
        replay = self._replayed(idempotency_key)
        if replay is not None:
            return replay
        intent = new_intent(amount=amount, currency=currency, capture_method=capture_method, metadata=metadata,
                            customer=customer, destination=destination,
                            application_fee_amount=application_fee_amount)
        intent_id = intent["id"]
        offline_store.save(intent)
        first = offline_store.remember(idempotency_key, intent_id)
        return intent if first is None else offline_store.load(first)

    def retrieve_intent(self, intent_id):
        """The intent as stored now."""
        return self._load("payment_intent", intent_id)

    def confirm_intent(self, intent_id, *, payment_method, idempotency_key):
        """Confirm with one of TEST_PAYMENT_METHODS (ProviderError 400 for any other)."""
        if payment_method not in TEST_PAYMENT_METHODS:
            raise ProviderError(f"No such PaymentMethod: '{payment_method}'", code="resource_missing", status=400)

        def confirm(intent):
            passes_check = intent["status"] == "requires_action" and payment_method != "pm_card_chargeDeclined"
            intent["payment_method"] = payment_method
            intent["next_action"] = None
            if payment_method == "pm_card_chargeDeclined":
                intent.update(status="requires_payment_method", last_payment_error=dict(DECLINE))
            elif payment_method == "pm_card_authenticationRequired" and not passes_check:
                intent.update(status="requires_action", last_payment_error=None,
                              next_action={"type": "use_stripe_sdk"})
            else:
                self._authorize(intent)
            return intent

        return self._change("payment_intent", intent_id, idempotency_key=idempotency_key, allowed=CONFIRMABLE,
                            action="confirmed", change=confirm)

    def _authorize(self, intent):
        offline_store.save(authorize(intent))

    def capture_intent(self, intent_id, *, idempotency_key, amount_to_capture=None):
        """Capture all of an authorized intent, or `amount_to_capture` of it (the rest is released)."""
        def capture(intent):
            amount = intent["amount_capturable"] if amount_to_capture is None else int(amount_to_capture)
            if not 0 < amount <= intent["amount_capturable"]:
                raise ProviderError("amount_to_capture is more than the amount capturable.",
                                    code="amount_too_large", status=400)
            intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
            charge = offline_store.load(intent["latest_charge"])
            charge.update(amount_captured=amount, captured=True)
            offline_store.save(charge)
            return intent

        return self._change("payment_intent", intent_id, idempotency_key=idempotency_key,
                            allowed=("requires_capture",), action="captured", change=capture)

    def cancel_intent(self, intent_id, *, idempotency_key):
        """Cancel an intent not yet succeeded (an authorization is released)."""
        def cancel(intent):
            intent.update(status="canceled", amount_capturable=0, next_action=None,
                          cancellation_reason="requested_by_customer")
            return intent

        return self._change("payment_intent", intent_id, idempotency_key=idempotency_key, allowed=CANCELABLE,
                            action="canceled", change=cancel)

    def refund(self, intent_id, *, idempotency_key, amount=None, metadata=None):
        """Refund a succeeded intent's charge, all that is left of it or `amount`."""
        replay = self._replayed(idempotency_key)
        if replay is not None:
            return replay
        intent = self._load("payment_intent", intent_id)
        if intent["status"] != "succeeded":
            raise _unexpected(intent, "refunded")
        for _ in range(5):
            charge = self._load("charge", intent["latest_charge"])
            left = charge["amount_captured"] - charge["amount_refunded"]
            value = left if amount is None else int(amount)
            if not 0 < value <= left:
                raise ProviderError(f"Refund amount ({value}) is greater than unrefunded amount on charge ({left})",
                                    code="amount_too_large", status=400)
            refund = {"id": offline_store.new_id("re"), "object": "refund", "amount": value,
                      "currency": intent["currency"], "payment_intent": intent_id, "charge": charge["id"],
                      "status": "succeeded", "metadata": dict(metadata or {}), "created": int(time.time())}
            new = dict(charge, amount_refunded=charge["amount_refunded"] + value,
                       refunds={"object": "list", "data": charge["refunds"]["data"] + [refund]})
            new["refunded"] = new["amount_refunded"] == new["amount_captured"]
            if offline_store.swap(new, expected=charge):
                offline_store.save(refund)
                first = offline_store.remember(idempotency_key, refund["id"])
                return refund if first is None else offline_store.load(first)
        raise ProviderError("The charge changed while we refunded it; retry.", code="lock_timeout", status=409)

    def retrieve_charge(self, charge_id):
        """The charge (offline only: its refunds are listed on it)."""
        return self._load("charge", charge_id)

    # -- Connect ---------------------------------------------------------------------------
    def create_connected_account(self, *, email, metadata, idempotency_key):
        """An Express account, not yet onboarded."""
        replay = self._replayed(idempotency_key)
        if replay is not None:
            return replay
        account = {"id": offline_store.new_id("acct"), "object": "account", "type": "express", "email": email,
                   "charges_enabled": False, "payouts_enabled": False, "details_submitted": False,
                   "metadata": dict(metadata or {}), "livemode": False, "status": "pending"}
        offline_store.save(account)
        first = offline_store.remember(idempotency_key, account["id"])
        return account if first is None else offline_store.load(first)

    def retrieve_account(self, account_id):
        """The account as stored now."""
        return self._load("account", account_id)

    def create_account_link(self, account_id, *, refresh_url, return_url):
        """An onboarding link; offline, the account counts as onboarded from now on."""
        account = self._load("account", account_id)
        offline_store.save(dict(account, charges_enabled=True, payouts_enabled=True, details_submitted=True,
                                status="enabled"))
        expires_at = int(clock.timestamp()) + ACCOUNT_LINK_TTL_S
        return {"object": "account_link", "url": f"{return_url}?account={account_id}&offline=1",
                "created": int(time.time()), "expires_at": expires_at}
