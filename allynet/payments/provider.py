"""The one provider interface; everything else in the app talks to the payments service, never to this.

Two implementations: ``offline`` (allynet/payments/offline.py: no network, no keys, ``livemode``
false, test payment methods) and ``stripe`` (allynet/payments/stripe_provider.py: the official
``stripe`` library). ``PAYMENTS_PROVIDER`` picks one at app creation; ``get_provider()`` returns the
app's instance.

Every object a provider returns is a plain dict in **Stripe's documented shape** (the offline
provider imitates it), so the service reads one shape:

- PaymentIntent: ``id, object="payment_intent", status, amount, amount_capturable, amount_received,
  currency`` (lower-case, as Stripe), ``capture_method, client_secret, last_payment_error``
  (``{code, message}`` or None), ``metadata, livemode, latest_charge``, ``transfer_data``
  (``{destination}`` or None), ``application_fee_amount``.
- Refund: ``id, object="refund", amount, currency, payment_intent, status, metadata``.
- Customer: ``id, object="customer", email, metadata``.
- Subscription: ``id, object="subscription", status, customer, metadata, current_period_end,
  latest_invoice`` (expanded: ``{id, status, payment_intent: {id, client_secret, status}}``),
  ``items: {data: [{price: {id}}]}``.
- Account (Connect Express): ``id, object="account", charges_enabled, payouts_enabled,
  details_submitted, metadata``; AccountLink: ``{object="account_link", url, expires_at}`` (epoch s).
- Event: ``id, object="event", type, created, livemode, data: {object: {...}}``.

Every call that creates or changes money takes ``idempotency_key``: derived by the caller from our
own record (``payment:<id>:capture``), so a retried request never charges twice.
"""
import importlib

from flask import current_app

EXTENSION_KEY = "allynet_payments_provider"

# PAYMENTS_PROVIDER -> "module:Class"
PROVIDERS = {
    "offline": "allynet.payments.offline:OfflineProvider",
    "stripe": "allynet.payments.stripe_provider:StripeProvider",
}


class ProviderError(Exception):
    """The provider refused or failed a call. `code` is the provider's error code when it gave one
    (``card_declined``, ``resource_missing``...); `status` the HTTP status to answer with."""

    def __init__(self, message, *, code=None, status=502):
        super().__init__(message)
        self.code = code
        self.status = status


class PaymentProvider:
    """What the payments service needs from a provider. Implementations override every method."""

    name = "abstract"
    livemode = False

    def __init__(self, config):
        self.config = config

    # -- payment intents ---------------------------------------------------------------------
    def create_intent(self, *, amount, currency, capture_method, metadata, idempotency_key,
                      customer=None, destination=None, application_fee_amount=None):
        """A PaymentIntent for `amount` minor units (``capture_method`` "manual" or "automatic");
        with `destination` (a connected account id) the payee's share is transferred there and
        `application_fee_amount` stays with the platform."""
        raise NotImplementedError

    def retrieve_intent(self, intent_id):
        """The PaymentIntent as the provider holds it now (re-read when an event is in doubt)."""
        raise NotImplementedError

    def confirm_intent(self, intent_id, *, payment_method, idempotency_key):
        """Confirm with a payment method (offline provider only: with Stripe the client confirms
        through the provider's SDK, and this raises ProviderError(status=404))."""
        raise NotImplementedError

    def capture_intent(self, intent_id, *, idempotency_key, amount_to_capture=None):
        """Capture an intent in ``requires_capture`` (all of it, or `amount_to_capture`)."""
        raise NotImplementedError

    def cancel_intent(self, intent_id, *, idempotency_key):
        """Cancel an intent not yet succeeded (releases an authorization)."""
        raise NotImplementedError

    def refund(self, intent_id, *, idempotency_key, amount=None, metadata=None):
        """Refund a succeeded intent, all of it or `amount` minor units."""
        raise NotImplementedError

    # -- customers and subscriptions ----------------------------------------------------------
    def create_customer(self, *, email, metadata, idempotency_key):
        """A Customer (who pays a subscription)."""
        raise NotImplementedError

    def create_subscription(self, *, customer_id, price, metadata, idempotency_key):
        """A Subscription to `price` (a price id), ``payment_behavior=default_incomplete``, with its
        latest invoice's payment intent expanded (its client secret confirms the first payment)."""
        raise NotImplementedError

    def retrieve_subscription(self, subscription_id):
        """The Subscription as the provider holds it now."""
        raise NotImplementedError

    def cancel_subscription(self, subscription_id, *, idempotency_key):
        """Cancel a Subscription now."""
        raise NotImplementedError

    # -- Connect (helpers who get paid) --------------------------------------------------------
    def create_connected_account(self, *, email, metadata, idempotency_key):
        """An Express connected account; returns the Account."""
        raise NotImplementedError

    def retrieve_account(self, account_id):
        """The Account (``charges_enabled``, ``payouts_enabled``, ``details_submitted``)."""
        raise NotImplementedError

    def create_account_link(self, account_id, *, refresh_url, return_url):
        """An onboarding AccountLink: ``{url, expires_at}``."""
        raise NotImplementedError


def create(config):
    """The provider PAYMENTS_PROVIDER names, built from `config`."""
    name = config.get("PAYMENTS_PROVIDER") or "offline"
    if name not in PROVIDERS:
        raise ValueError(f"PAYMENTS_PROVIDER={name!r}: use one of {sorted(PROVIDERS)}")
    module_name, class_name = PROVIDERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(config)


def init_app(app):
    """Build the app's provider once (create_app)."""
    app.extensions[EXTENSION_KEY] = create(app.config)


def get_provider(app=None):
    """The current app's provider."""
    return (app or current_app).extensions[EXTENSION_KEY]
