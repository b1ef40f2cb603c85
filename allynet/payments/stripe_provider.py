"""The Stripe provider: the PaymentProvider interface on the official `stripe` library.

One ``StripeClient`` per app, built from the config: ``STRIPE_API_KEY``; ``STRIPE_API_BASE`` (when
set, every base address the library knows, API, Connect and files, points there: tests use a local
server); ``STRIPE_MAX_NETWORK_RETRIES`` and ``STRIPE_TIMEOUT_SECONDS`` keep a slow Stripe from
holding a request (the library retries with the same Idempotency-Key, so a retry never charges
twice). Requests are made at ``API_VERSION``, the version whose object shapes the interface
describes (an invoice's ``payment_intent`` and ``subscription``); the webhook endpoint should be
created at the same version (README).

Every call that creates or changes money passes the caller's ``idempotency_key`` through as
Stripe's Idempotency-Key. Help-request payments are *destination charges*: the intent is the
platform's, ``transfer_data.destination`` the helper's connected account and
``application_fee_amount`` the platform's fee; refunding one reverses the transfer and the fee in
proportion. The server never confirms an intent: clients do, with its client secret, through
Stripe's SDKs.

Stripe's errors become ProviderError: a card error keeps Stripe's code (``card_declined``) with
402; Stripe's 400, 404 and 409 keep their status and code; a rate limit is 503; anything else
(our key refused, Stripe's 5xx, no connection) is 502.
"""
import stripe

from allynet.payments.provider import PaymentProvider, ProviderError

API_VERSION = "2025-02-24.acacia"
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")
PASSED_THROUGH = (400, 402, 404, 409)


def provider_error(exc):
    """The ProviderError for a StripeError raised by the library."""
    message = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "code", None)
    status = exc.http_status
    if isinstance(exc, stripe.CardError):
        return ProviderError(message, code=code or "card_declined", status=402)
    if status in PASSED_THROUGH:
        return ProviderError(message, code=code, status=status)
    if isinstance(exc, stripe.RateLimitError):
        return ProviderError(message, code=code or "rate_limit", status=503)
    return ProviderError(message, code=code, status=502)


def plain(obj):
    """A StripeObject as the plain dict the interface promises (nested objects too)."""
    return obj.to_dict(recursive=True)


def strings(metadata):
    """Stripe's metadata holds strings."""
    return {str(key): str(value) for key, value in (metadata or {}).items()}


class StripeProvider(PaymentProvider):
    name = "stripe"

    def __init__(self, config):
        super().__init__(config)
        api_key = config.get("STRIPE_API_KEY")
        if not api_key:
            raise ValueError("PAYMENTS_PROVIDER=stripe needs STRIPE_API_KEY")
        self.livemode = api_key.startswith(LIVE_KEY_PREFIXES)
        base = config.get("STRIPE_API_BASE")
        addresses = {"api": base, "connect": base, "files": base, "meter_events": base} if base else None
        self.client = stripe.StripeClient(
            api_key, stripe_version=API_VERSION, base_addresses=addresses,
            max_network_retries=config.get("STRIPE_MAX_NETWORK_RETRIES", 2),
            http_client=stripe.RequestsClient(timeout=config.get("STRIPE_TIMEOUT_SECONDS", 10.0)))
        self.v1 = self.client.v1

    def call(self, method, *args, idempotency_key=None, **params):
        """Run one library call; its StripeObject as a dict, StripeError as ProviderError."""
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        try:
            return plain(method(*args, params=params or None, options=options))
        except stripe.StripeError as exc:
            raise provider_error(exc) from exc

    # -- payment intents ---------------------------------------------------------------------
    def create_intent(self, *, amount, currency, capture_method, metadata, idempotency_key,
                      customer=None, destination=None, application_fee_amount=None):
        """A PaymentIntent; with `destination`, a destination charge keeping `application_fee_amount`."""
        params = {"amount": int(amount), "currency": currency.lower(), "capture_method": capture_method,
                  "metadata": strings(metadata)}
        if customer:
            params["customer"] = customer
        if destination:
            params["transfer_data"] = {"destination": destination}
            if application_fee_amount:
                params["application_fee_amount"] = int(application_fee_amount)
        return self.call(self.v1.payment_intents.create, idempotency_key=idempotency_key, **params)

    def retrieve_intent(self, intent_id):
        """The PaymentIntent as Stripe holds it now."""
        return self.call(self.v1.payment_intents.retrieve, intent_id)

    def confirm_intent(self, intent_id, *, payment_method, idempotency_key):
        """Never with Stripe: the client confirms through Stripe's SDK with the client secret."""
        raise ProviderError("With Stripe the client confirms the payment through Stripe's SDK",
                            code="not_supported", status=404)

    def capture_intent(self, intent_id, *, idempotency_key, amount_to_capture=None):
        """Capture an authorized intent (all of it, or `amount_to_capture`)."""
        params = {"amount_to_capture": int(amount_to_capture)} if amount_to_capture is not None else {}
        return self.call(self.v1.payment_intents.capture, intent_id, idempotency_key=idempotency_key, **params)

    def cancel_intent(self, intent_id, *, idempotency_key):
        """Cancel an intent not yet succeeded (releases the authorization)."""
        return self.call(self.v1.payment_intents.cancel, intent_id, idempotency_key=idempotency_key)

    def refund(self, intent_id, *, idempotency_key, amount=None, metadata=None):
        """Refund a succeeded intent; a destination charge's transfer and fee are reversed in proportion."""
        intent = self.retrieve_intent(intent_id)
        params = {"payment_intent": intent_id, "metadata": strings(metadata)}
        if amount is not None:
            params["amount"] = int(amount)
        if intent.get("transfer_data"):
            params.update(reverse_transfer=True, refund_application_fee=True)
        return self.call(self.v1.refunds.create, idempotency_key=idempotency_key, **params)

    # -- customers and subscriptions ----------------------------------------------------------
    def create_customer(self, *, email, metadata, idempotency_key):
        """A Customer."""
        return self.call(self.v1.customers.create, idempotency_key=idempotency_key, email=email,
                         metadata=strings(metadata))

    def create_subscription(self, *, customer_id, price, metadata, idempotency_key):
        """An incomplete Subscription whose first invoice's intent (expanded) the client confirms."""
        return self.call(self.v1.subscriptions.create, idempotency_key=idempotency_key, customer=customer_id,
                         items=[{"price": price}], payment_behavior="default_incomplete",
                         payment_settings={"save_default_payment_method": "on_subscription"},
                         expand=["latest_invoice.payment_intent"], metadata=strings(metadata))

    def retrieve_subscription(self, subscription_id):
        """The Subscription as Stripe holds it now."""
        return self.call(self.v1.subscriptions.retrieve, subscription_id, expand=["latest_invoice.payment_intent"])

    def cancel_subscription(self, subscription_id, *, idempotency_key):
        """Cancel a Subscription now (Stripe's cancel is a DELETE: idempotent by nature)."""
        return self.call(self.v1.subscriptions.cancel, subscription_id, idempotency_key=idempotency_key)

    # -- Connect ------------------------------------------------------------------------------
    def create_connected_account(self, *, email, metadata, idempotency_key):
        """An Express account able to receive transfers (a helper's payouts)."""
        return self.call(self.v1.accounts.create, idempotency_key=idempotency_key, type="express", email=email,
                         capabilities={"transfers": {"requested": True}}, metadata=strings(metadata))

    def retrieve_account(self, account_id):
        """The connected Account."""
        return self.call(self.v1.accounts.retrieve, account_id)

    def create_account_link(self, account_id, *, refresh_url, return_url):
        """An onboarding link: ``{object, url, expires_at, created}``."""
        return self.call(self.v1.account_links.create, account=account_id, refresh_url=refresh_url,
                         return_url=return_url, type="account_onboarding")
