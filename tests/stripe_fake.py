"""A local Stripe: an HTTP server in a thread answering the API's documented object shapes.

The app's StripeProvider is pointed at it (``STRIPE_API_BASE=fake.url``), so the official library
sends its real requests here and nothing leaves the machine. Answered: payment intents (create,
retrieve, capture, cancel), refunds, customers, subscriptions (create with ``expand[]`` of
``latest_invoice.payment_intent``, retrieve, cancel), Connect accounts and account links. Errors
come as Stripe sends them, ``{"error": {"type", "code", "message", "param"?}}`` with Stripe's HTTP
statuses (401 bad key, 400 invalid request or idempotency error, 402 card error, 404 missing object).

Each request is recorded (`requests`: method, path, the form fields decoded flat as sent
(``metadata[payment_id]``) and nested (`params`), headers lower-cased), so tests assert what the
app sent: amounts, ``capture_method``, ``Idempotency-Key``, ``Stripe-Account``, the connected
account. A POST repeated with the same Idempotency-Key is answered with the first response, as
Stripe does (and refused with ``idempotency_error`` when its parameters differ).

What a client does through Stripe's SDKs (confirming with a card) and Stripe's own moves (an
account finishing onboarding) are test hooks: `confirm`, `complete_onboarding`; `event` builds
the Event Stripe would send to the webhook, and `fail_next` queues an error answer.
"""
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlparse

import pytest

from tests.helpers import LocalHTTPServer, QuietHandler

API_KEY = "sk_test_allynet_fake_key"
WEBHOOK_SECRET = "whsec_allynet_fake_secret"
PRICES = {"price_allynet_org_pro": (2900, "eur")}
OPEN_INTENT = ("requires_payment_method", "requires_confirmation", "requires_action", "processing")
# Test payment methods as Stripe names them: what confirming with each does.
DECLINES = {"pm_card_chargeDeclined": ("card_declined", "Your card was declined."),
            "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "Your card has insufficient funds.")}


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict
    form: dict  # flat, as encoded: {"metadata[payment_id]": "...", "expand[0]": "..."}
    params: dict  # the same decoded into nested dicts and lists
    headers: dict = field(default_factory=dict)  # lower-cased names


class StripeError(Exception):
    """An error answer: HTTP status and Stripe's error object."""

    def __init__(self, status, type_, message, code=None, param=None):
        super().__init__(message)
        self.status = status
        self.error = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
        if param:
            self.error["param"] = param


def nested(pairs):
    """Stripe's form encoding (``a[b][0][c]=v``) back into dicts and lists."""
    root = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node):
        if not isinstance(node, dict):
            return node
        node = {k: listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
        return node

    return listify(root)


def missing(kind, obj_id, param="id"):
    """Stripe's 404 for an id it does not know."""
    return StripeError(404, "invalid_request_error", f"No such {kind}: '{obj_id}'", code="resource_missing",
                       param=param)


def unexpected_state(intent, action, allowed):
    return StripeError(400, "invalid_request_error",
                       f"This PaymentIntent could not be {action} because it has a status of {intent['status']}. "
                       f"Only a PaymentIntent with one of the following statuses may be acted upon: "
                       f"{', '.join(allowed)}.", code="payment_intent_unexpected_state")


class StripeFake:
    """The server; `url` is what STRIPE_API_BASE gets."""

    def __init__(self, api_key=API_KEY):
        self.api_key = api_key
        self.objects = {}
        self.requests = []
        self.refunded = {}  # intent id -> amount refunded so far
        self.idempotent = {}  # key -> (fingerprint, status, body)
        self.errors = []  # queued (method, path regex, StripeError)
        self.lock = threading.RLock()
        fake = self

        class Handler(QuietHandler, BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's names)
                fake.serve(self, "GET")

            def do_POST(self):  # noqa: N802
                fake.serve(self, "POST")

            def do_DELETE(self):  # noqa: N802
                fake.serve(self, "DELETE")

        self.http = LocalHTTPServer(Handler)
        self.url = self.http.base_url

    def stop(self):
        self.http.stop()

    # -- what tests read and do -----------------------------------------------------------------
    def requests_to(self, method, path):
        """The recorded requests with this method whose path matches `path` (a regex, whole path)."""
        return [r for r in self.requests if r.method == method and re.fullmatch(path, r.path)]

    def fail_next(self, method, path, status, type_, message, code=None):
        """Answer the next `method` request to `path` (a regex) with this error."""
        self.errors.append((method, path, StripeError(status, type_, message, code=code)))

    def confirm(self, intent_id, payment_method="pm_card_visa"):
        """What the client's SDK does with the client secret: confirm with a test payment method."""
        with self.lock:
            intent = self.objects[intent_id]
            if payment_method in DECLINES:
                code, message = DECLINES[payment_method]
                intent.update(status="requires_payment_method", last_payment_error={
                    "code": code, "decline_code": "generic_decline", "message": message, "type": "card_error"})
            elif payment_method == "pm_card_authenticationRequired":
                intent.update(status="requires_action", next_action={"type": "use_stripe_sdk"})
            else:
                charge = self.new_id("ch")
                intent.update(last_payment_error=None, next_action=None, latest_charge=charge,
                              payment_method=self.new_id("pm"))
                if intent["capture_method"] == "manual":
                    intent.update(status="requires_capture", amount_capturable=intent["amount"])
                else:
                    intent.update(status="succeeded", amount_received=intent["amount"])
            return dict(intent)

    def pay_invoice(self, invoice_id, payment_method="pm_card_visa"):
        """The customer paid the invoice (its intent confirmed): the invoice, paid or still open."""
        with self.lock:
            invoice = self.objects[invoice_id]
            intent = self.confirm(invoice["payment_intent"], payment_method)
            if intent["status"] == "succeeded":
                invoice.update(status="paid", amount_paid=invoice["amount_due"])
                self.objects[invoice["subscription"]].update(status="active")
            else:
                invoice.update(attempt_count=invoice.get("attempt_count", 0) + 1)
            return json.loads(json.dumps(invoice))

    def complete_onboarding(self, account_id):
        """The helper finished Stripe's onboarding form: the account can be paid."""
        with self.lock:
            self.objects[account_id].update(charges_enabled=True, payouts_enabled=True, details_submitted=True)
            return dict(self.objects[account_id])

    def event(self, event_type, obj):
        """The Event Stripe sends to a webhook endpoint for `obj` (a snapshot of it)."""
        return {"id": self.new_id("evt"), "object": "event", "api_version": "2025-02-24.acacia",
                "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None}, "type": event_type,
                "data": {"object": json.loads(json.dumps(obj))}}

    # -- the HTTP side --------------------------------------------------------------------------
    @staticmethod
    def new_id(prefix):
        return f"{prefix}_{secrets.token_hex(12)}"

    def serve(self, handler, method):
        parsed = urlparse(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        pairs = parse_qsl(body if method == "POST" else parsed.query, keep_blank_values=True)
        record = Recorded(method=method, path=parsed.path, query=dict(parse_qsl(parsed.query)),
                          form=dict(pairs), params=nested(pairs),
                          headers={k.lower(): v for k, v in handler.headers.items()})
        with self.lock:
            self.requests.append(record)
            status, answer, replayed = self.answer(record)
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        if replayed:
            handler.send_header("Idempotent-Replayed", "true")
        handler.end_headers()
        handler.wfile.write(payload)

    def answer(self, record):
        """(status, body, replayed) for a request, errors included."""
        if record.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "invalid_request_error",
                                   "message": "Invalid API Key provided: sk_****"}}, False
        key = record.headers.get("idempotency-key") if record.method == "POST" else None
        fingerprint = (record.method, record.path, sorted(record.form.items()))
        if key in self.idempotent:
            first, status, body = self.idempotent[key]
            if first != fingerprint:
                return 400, {"error": {"type": "idempotency_error", "message": (
                    "Keys for idempotent requests can only be used with the same parameters they were first "
                    f"used with. Try using a key other than '{key}' if you meant to execute a different "
                    "request.")}}, False
            return status, body, True
        for queued in self.errors:
            if queued[0] == record.method and re.fullmatch(queued[1], record.path):
                self.errors.remove(queued)
                status, body = queued[2].status, {"error": queued[2].error}
                break
        else:
            try:
                status, body = 200, self.route(record)
            except StripeError as exc:
                status, body = exc.status, {"error": exc.error}
        if key is not None and status < 500:  # Stripe does not keep 5xx results (a retry runs again)
            self.idempotent[key] = (fingerprint, status, body)
        return status, body, False

    def route(self, record):
        routes = [
            ("POST", r"/v1/payment_intents", self.create_intent),
            ("GET", r"/v1/payment_intents/(\w+)", lambda r, i: self.get(i, "payment_intent")),
            ("POST", r"/v1/payment_intents/(\w+)/capture", self.capture_intent),
            ("POST", r"/v1/payment_intents/(\w+)/cancel", self.cancel_intent),
            ("POST", r"/v1/refunds", self.create_refund),
            ("POST", r"/v1/customers", self.create_customer),
            ("GET", r"/v1/customers/(\w+)", lambda r, i: self.get(i, "customer")),
            ("POST", r"/v1/subscriptions", self.create_subscription),
            ("GET", r"/v1/subscriptions/(\w+)", lambda r, i: self.subscription(i, r.params)),
            ("DELETE", r"/v1/subscriptions/(\w+)", self.cancel_subscription),
            ("POST", r"/v1/accounts", self.create_account),
            ("GET", r"/v1/accounts/(\w+)", lambda r, i: self.get(i, "account")),
            ("POST", r"/v1/account_links", self.create_account_link),
        ]
        for method, pattern, answer in routes:
            match = re.fullmatch(pattern, record.path)
            if method == record.method and match:
                return answer(record, *match.groups())
        raise StripeError(404, "invalid_request_error",
                          f"Unrecognized request URL ({record.method}: {record.path}).")

    def get(self, obj_id, kind):
        obj = self.objects.get(obj_id)
        if obj is None or obj["object"] != kind:
            raise missing(kind, obj_id)
        return obj

    def save(self, obj):
        self.objects[obj["id"]] = obj
        return obj

    @staticmethod
    def amount(params, name="amount", required=True):
        raw = params.get(name)
        if raw is None and not required:
            return None
        if raw is None:
            raise StripeError(400, "invalid_request_error", f"Missing required param: {name}.",
                              code="parameter_missing", param=name)
        if not re.fullmatch(r"\d+", raw) or int(raw) < 1:
            raise StripeError(400, "invalid_request_error", "Invalid integer: " + raw, code="parameter_invalid_integer",
                              param=name)
        return int(raw)

    # payment intents
    def create_intent(self, record):
        p = record.params
        amount = self.amount(p)
        if not p.get("currency"):
            raise StripeError(400, "invalid_request_error", "Missing required param: currency.",
                              code="parameter_missing", param="currency")
        destination = (p.get("transfer_data") or {}).get("destination")
        if destination is not None:
            self.get(destination, "account")
        fee = self.amount(p, "application_fee_amount", required=False)
        intent_id = self.new_id("pi")
        return self.save({
            "id": intent_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": 0, "currency": p["currency"], "capture_method": p.get("capture_method", "automatic"),
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}", "status": "requires_payment_method",
            "last_payment_error": None, "next_action": None, "metadata": p.get("metadata") or {}, "livemode": False,
            "latest_charge": None, "payment_method": None, "customer": p.get("customer"),
            "transfer_data": {"destination": destination} if destination else None,
            "application_fee_amount": fee, "created": int(time.time()), "canceled_at": None,
            "cancellation_reason": None, "description": p.get("description")})

    def capture_intent(self, record, intent_id):
        intent = self.get(intent_id, "payment_intent")
        if intent["status"] != "requires_capture":
            raise unexpected_state(intent, "captured", ["requires_capture"])
        amount = self.amount(record.params, "amount_to_capture", required=False) or intent["amount_capturable"]
        if amount > intent["amount_capturable"]:
            raise StripeError(400, "invalid_request_error", "The amount to capture is greater than the amount "
                              "capturable.", code="amount_too_large", param="amount_to_capture")
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return intent

    def cancel_intent(self, record, intent_id):
        intent = self.get(intent_id, "payment_intent")
        allowed = OPEN_INTENT + ("requires_capture",)
        if intent["status"] not in allowed:
            raise unexpected_state(intent, "canceled", allowed)
        intent.update(status="canceled", amount_capturable=0, canceled_at=int(time.time()),
                      cancellation_reason=record.params.get("cancellation_reason"))
        return intent

    def create_refund(self, record):
        p = record.params
        if not p.get("payment_intent"):
            raise StripeError(400, "invalid_request_error", "One of the following params should be provided for "
                              "this request: payment_intent or charge.", code="parameter_missing")
        intent = self.get(p["payment_intent"], "payment_intent")
        if intent["status"] != "succeeded":
            raise StripeError(400, "invalid_request_error", f"This PaymentIntent ({intent['id']}) does not have a "
                              "successful charge to refund.", code="charge_not_refundable")
        left = intent["amount_received"] - self.refunded.get(intent["id"], 0)
        if left <= 0:
            raise StripeError(400, "invalid_request_error", f"Charge {intent['latest_charge']} has already been "
                              "refunded.", code="charge_already_refunded")
        amount = self.amount(p, required=False) or left
        if amount > left:
            raise StripeError(400, "invalid_request_error", f"Refund amount ({amount}) is greater than unrefunded "
                              f"amount on charge ({left})", param="amount")
        self.refunded[intent["id"]] = self.refunded.get(intent["id"], 0) + amount
        return self.save({"id": self.new_id("re"), "object": "refund", "amount": amount,
                          "currency": intent["currency"], "payment_intent": intent["id"],
                          "charge": intent["latest_charge"], "status": "succeeded", "reason": p.get("reason"),
                          "metadata": p.get("metadata") or {}, "created": int(time.time())})

    # customers and subscriptions
    def create_customer(self, record):
        p = record.params
        return self.save({"id": self.new_id("cus"), "object": "customer", "email": p.get("email"),
                          "metadata": p.get("metadata") or {}, "livemode": False, "created": int(time.time())})

    def create_subscription(self, record):
        p = record.params
        self.get(p.get("customer"), "customer")
        items = p.get("items") or []
        if not items or not items[0].get("price"):
            raise StripeError(400, "invalid_request_error", "Missing required param: items.",
                              code="parameter_missing", param="items")
        price = items[0]["price"]
        if price not in PRICES:
            raise missing("price", price, param="items[0][price]")
        amount, currency = PRICES[price]
        sub_id, invoice_id = self.new_id("sub"), self.new_id("in")
        intent = self.create_intent(Recorded("POST", "/v1/payment_intents", {}, {}, {
            "amount": str(amount), "currency": currency, "customer": p["customer"],
            "metadata": {}}))
        now = int(time.time())
        period = {"start": now, "end": now + 30 * 86400}
        self.save({"id": invoice_id, "object": "invoice", "status": "open", "amount_due": amount, "amount_paid": 0,
                   "currency": currency, "customer": p["customer"], "subscription": sub_id,
                   "subscription_details": {"metadata": p.get("metadata") or {}}, "billing_reason":
                   "subscription_create", "payment_intent": intent["id"], "livemode": False,
                   "period_start": now, "period_end": now,
                   "lines": {"object": "list", "data": [{"object": "line_item", "amount": amount, "period": period,
                                                         "price": {"id": price}}]}})
        self.save({
            "id": sub_id, "object": "subscription", "status": "incomplete", "customer": p["customer"],
            "metadata": p.get("metadata") or {}, "current_period_start": now,
            "current_period_end": now + 30 * 86400, "latest_invoice": invoice_id, "livemode": False,
            "payment_behavior": p.get("payment_behavior"), "canceled_at": None,
            "items": {"object": "list", "data": [{"id": self.new_id("si"), "object": "subscription_item",
                                                  "price": {"id": price, "object": "price", "unit_amount": amount,
                                                            "currency": currency}}]}})
        return self.subscription(sub_id, p)

    def subscription(self, sub_id, params):
        """The subscription, its latest invoice (and that invoice's intent) expanded when asked."""
        sub = json.loads(json.dumps(self.get(sub_id, "subscription")))
        expand = params.get("expand") or []
        if any(path.startswith("latest_invoice") for path in expand):
            invoice = json.loads(json.dumps(self.objects[sub["latest_invoice"]]))
            if "latest_invoice.payment_intent" in expand:
                invoice["payment_intent"] = self.objects[invoice["payment_intent"]]
            sub["latest_invoice"] = invoice
        return sub

    def cancel_subscription(self, record, sub_id):
        sub = self.get(sub_id, "subscription")
        sub.update(status="canceled", canceled_at=int(time.time()))
        return self.subscription(sub_id, record.params)

    # Connect
    def create_account(self, record):
        p = record.params
        if p.get("type") != "express":
            raise StripeError(400, "invalid_request_error", "This fake answers Express accounts only.", param="type")
        return self.save({"id": self.new_id("acct"), "object": "account", "type": "express",
                          "email": p.get("email"), "metadata": p.get("metadata") or {},
                          "capabilities": {name: "inactive" for name in p.get("capabilities") or {}},
                          "charges_enabled": False, "payouts_enabled": False, "details_submitted": False,
                          "created": int(time.time())})

    def create_account_link(self, record):
        p = record.params
        account = self.get(p.get("account"), "account", ) if p.get("account") else None
        if account is None:
            raise StripeError(400, "invalid_request_error", "Missing required param: account.",
                              code="parameter_missing", param="account")
        for name in ("refresh_url", "return_url", "type"):
            if not p.get(name):
                raise StripeError(400, "invalid_request_error", f"Missing required param: {name}.",
                                  code="parameter_missing", param=name)
        now = int(time.time())
        return {"object": "account_link", "created": now, "expires_at": now + 300,
                "url": f"https://connect.stripe.com/setup/e/{account['id']}/{secrets.token_hex(8)}"}


@pytest.fixture
def stripe_fake():
    """A running StripeFake, stopped after the test."""
    fake = StripeFake()
    yield fake
    fake.stop()


def stripe_config(fake):
    """App overrides that put the app on the Stripe provider against `fake`."""
    return {"PAYMENTS_PROVIDER": "stripe", "STRIPE_API_KEY": fake.api_key, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": fake.url, "STRIPE_MAX_NETWORK_RETRIES": 0}
