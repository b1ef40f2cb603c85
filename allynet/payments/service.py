"""Payments rules: the help-request payment, who may read or act on a payment, refunds, Connect.

The help-request flow (the help_requests service calls these; nothing else calls the provider):

- accepting an offer with a price starts a *manual-capture* intent for the offer's price, in minor
  units computed here from the stored `{amount, currency}` (never a client's number), refused when
  above the request's budget; the platform keeps ``PLATFORM_FEE_BPS`` of it (``fee_amount``), the
  helper's share (``payee_amount``) goes to their connected account when they have onboarded
  (``payout: "connected_account"``), else the platform holds it (``payout: "awaiting_onboarding"``);
- the requester confirms it (``POST /payments/<id>/confirm`` offline, the provider's SDK with
  Stripe): ``requires_capture`` means secured; a declined card leaves it ``requires_payment_method``
  with ``last_error``;
- completing the request captures it (``succeeded``); cancelling it cancels the intent (``canceled``).

Every provider call that creates or changes money carries an idempotency key derived from our
record (``payment:<id>:create``, ``:capture:<version>``, ``:cancel:<version>``,
``:refund:<n>:<amount>``), so a retry never charges twice. Every status change goes through
records.advance (forward only, history kept).
The provider's events (payment_intent.*, charge.refunded, refund.created, account.updated) re-read
the intent from the provider and move the record forward to it; a late or repeated one changes
nothing.
"""
import logging
from datetime import datetime, timedelta, timezone

from flask import current_app
from pymongo.errors import DuplicateKeyError

from allynet import audit, clock, idempotency, money
from allynet.errors import AllyNetError, Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from allynet.pagination import newest_first_page
from allynet.payments import events, records
from allynet.payments.provider import ProviderError, get_provider
from allynet.payments.schemas import for_viewer, payment_schema

log = logging.getLogger(__name__)

STAFF_ROLES = ("moderator", "admin")
ACCOUNTS = "payment_accounts"  # user id -> the provider's connected account for their payouts
BPS = 10_000
SECURED = ("requires_capture", "succeeded", "partially_refunded", "refunded")
REFUNDABLE = ("succeeded", "partially_refunded")
INTENT_STATUSES = records.STATUSES[:7]
INTENT_EVENTS = ("payment_intent.created", "payment_intent.processing", "payment_intent.requires_action",
                 "payment_intent.amount_capturable_updated", "payment_intent.succeeded",
                 "payment_intent.payment_failed", "payment_intent.canceled")


# ---- the provider, behind our errors ------------------------------------------------------------

def provider():
    """The app's payment provider (this module is the only caller)."""
    return get_provider()


def provider_failure(exc):
    """A ProviderError as the contract's error: 502 when the provider failed, 409 when it refused."""
    if exc.status >= 500:
        return AllyNetError("The payment provider is unavailable; retry later", status=502,
                            code="payment_provider_error", details={"provider_code": exc.code})
    return AllyNetError(f"The payment provider refused: {exc}", status=409, code="payment_provider_refused",
                        details={"provider_code": exc.code})


def _call(method, *args, **kwargs):
    try:
        return method(*args, **kwargs)
    except ProviderError as exc:
        raise provider_failure(exc) from exc


# ---- reading ------------------------------------------------------------------------------------

def is_staff(*, db, user_id):
    """Whether the caller is a moderator or an admin (read from the database)."""
    user = db.users.find_one({"_id": user_id}, projection={"role": 1})
    return user is not None and user.get("role") in STAFF_ROLES


def _viewer_role(record, *, db, user_id):
    if record.get("payer_id") == user_id:
        return "payer"
    if record.get("payee_id") == user_id:
        return "payee"
    return "staff" if is_staff(db=db, user_id=user_id) else None


def get_for_viewer(*, db, user_id, payment_id):
    """The payment for its payer, its payee or staff; 404 for anyone else (they may not know it exists)."""
    record, _ = _visible(db=db, user_id=user_id, payment_id=payment_id)
    return record


def _visible(*, db, user_id, payment_id):
    record = records.find(db=db, payment_id=payment_id)
    role = None if record is None else _viewer_role(record, db=db, user_id=user_id)
    if role is None:
        raise NotFound("Payment not found")
    return record, role


def list_mine(*, db, user_id, limit, cursor=None):
    """The caller's payments (as payer or payee), newest first: (items, next_cursor)."""
    return newest_first_page(db[records.COLLECTION], query={"$or": [{"payer_id": user_id}, {"payee_id": user_id}]},
                             limit=limit, cursor=cursor)


def render(record, *, viewer_id):
    """The payment object as `viewer_id` may read it (the client secret for the payer only)."""
    return payment_schema.dump(for_viewer(record, viewer_id=viewer_id))


def summary(record):
    """What a help request shows of its payment (requester and helper only). `version` orders writes."""
    return {"id": record["_id"], "status": record["status"], "amount": record["amount"],
            "currency": record["currency"], "fee_amount": record["fee_amount"],
            "payee_amount": record["payee_amount"], "refunded_amount": record.get("refunded_amount", 0),
            "last_error": record.get("last_error"), "payout": record.get("payout"),
            "livemode": record["livemode"], "version": record.get("version", len(record["history"]))}


def on_help_request_change(fn):
    """Decorator: `fn(db, payment, previous_status)` runs after a help-request payment changed status."""
    return records.on_change("help_request")(fn)


# ---- the help-request flow ----------------------------------------------------------------------

def platform_fee(amount, config=None):
    """The platform's share of `amount` minor units: PLATFORM_FEE_BPS of it, rounded down."""
    return amount * int((config or current_app.config)["PLATFORM_FEE_BPS"]) // BPS


def agreed_price(*, help_request, offer):
    """(amount in minor units, currency) an accepted offer costs, or None when it has no price (or 0).

    409 price_above_budget when it exceeds the request's budget or is in another currency.
    """
    price = offer.get("price")
    if not price:
        return None
    try:
        currency = money.normalize_code(price["currency"])
        amount = money.to_minor(price["amount"], currency)
        budget = help_request.get("budget")
        ceiling = None if not budget else (money.normalize_code(budget["currency"]),
                                           money.to_minor(budget["amount"], budget["currency"]))
    except money.MoneyError as exc:
        raise Conflict(f"This offer's price cannot be paid: {exc}", code="invalid_price") from exc
    if amount == 0:
        return None
    if ceiling is not None and (ceiling[0] != currency or amount > ceiling[1]):
        raise Conflict("This offer's price is above the request's budget: raise the budget first",
                       code="price_above_budget",
                       details={"price": {"amount": price["amount"], "currency": currency},
                                "budget": {"amount": budget["amount"], "currency": ceiling[0]}})
    return amount, currency


def start_help_request_payment(*, db, help_request, offer, amount, currency):
    """The payment of an accepted offer with its manual-capture intent (once per offer: a retry gets
    the same record and intent)."""
    prov = provider()
    fee = platform_fee(amount)
    record, _ = records.create(
        db=db, origin=f"help_request:{help_request['_id']}:{offer['_id']}", kind="help_request",
        payer_id=help_request["user_id"], payee_id=offer["user_id"], amount=amount, currency=currency,
        fee_amount=fee, status="requires_payment_method", cause="offer_accepted", livemode=prov.livemode,
        provider=prov.name, refs={"help_request_id": help_request["_id"], "offer_id": offer["_id"]})
    if record.get("provider_intent_id"):
        return record
    destination = payout_account(db=db, user_id=offer["user_id"])
    intent = _call(prov.create_intent, amount=amount, currency=currency.lower(), capture_method="manual",
                   metadata={"payment_id": str(record["_id"]), "help_request_id": str(help_request["_id"])},
                   idempotency_key=f"payment:{record['_id']}:create", destination=destination,
                   application_fee_amount=fee if destination else None)
    return records.update_fields(db=db, payment_id=record["_id"], fields={
        "provider_intent_id": intent["id"], "client_secret": intent["client_secret"], "destination": destination,
        "payout": "connected_account" if destination else "awaiting_onboarding"})


# A capture still pending this long after the request was completed died with its process: completing
# again retries it. Sooner, only a capture the provider failed (`capture_failed`) is retried, so a second
# complete racing the first one's capture is refused as a repeat instead of answered twice.
CAPTURE_STALE_AFTER = timedelta(seconds=60)


def awaits_capture(record, *, completed_at):
    """Whether completing the request again should retry the capture of this payment."""
    if record["status"] != "requires_capture":
        return False
    failed = (record.get("last_error") or {}).get("code") == "capture_failed"
    return failed or completed_at is None or clock.now() - completed_at >= CAPTURE_STALE_AFTER


def is_secured(record):
    """Whether the payer's money is held (or taken): the request may be completed."""
    return record["status"] in SECURED


def find(*, db, payment_id):
    """The payment record, or None."""
    return records.find(db=db, payment_id=payment_id)


def capture(*, db, payment_id, cause="help_request_completed"):
    """Capture an authorized payment (once, however many times it is asked); returns the record, with
    `last_error.code` capture_failed when the provider failed (the caller may ask again)."""
    record = records.find(db=db, payment_id=payment_id)
    if record["status"] != "requires_capture":
        return record
    # Keyed by the record's version: concurrent captures share one key, a retry after a failure gets a
    # fresh one (the provider replays a failed answer to the same key). The request is done either way.
    intent, noted = _or_note_failure(
        db=db, payment_id=payment_id, code="capture_failed",
        message="The provider did not capture the payment; completing the request again retries",
        call=lambda: provider().capture_intent(record["provider_intent_id"],
                                               idempotency_key=f"payment:{payment_id}:capture:{record['version']}"))
    if intent is None:
        return noted
    return sync_intent(db=db, intent=intent, cause=cause, record=record)


def abandon(*, db, payment_id, cause):
    """Cancel a payment not yet captured (its intent too); returns the record (`last_error.code`
    cancel_failed when the provider failed)."""
    record = records.find(db=db, payment_id=payment_id)
    if record["status"] not in records.TRANSITIONS["canceled"]:
        return record
    if record.get("provider_intent_id"):
        # The provider lets an uncaptured authorization lapse by itself; its payment_intent.canceled event
        # then cancels ours. Until then the payment says why it is still open.
        intent, noted = _or_note_failure(
            db=db, payment_id=payment_id, code="cancel_failed", message="The provider did not cancel the payment yet",
            call=lambda: provider().cancel_intent(record["provider_intent_id"],
                                                  idempotency_key=f"payment:{payment_id}:cancel:{record['version']}"))
        if intent is None:
            return noted
        return sync_intent(db=db, intent=intent, cause=cause, record=record)
    return records.advance(db=db, payment_id=payment_id, status="canceled", cause=cause) or \
        records.find(db=db, payment_id=payment_id)


def _or_note_failure(*, db, payment_id, code, message, call):
    """(call's intent, None), or (None, the record now saying `code` in last_error) when the provider failed."""
    try:
        return call(), None
    except ProviderError as exc:
        log.warning("payment %s: %s: %s", payment_id, code, exc)
        return None, records.update_fields(db=db, payment_id=payment_id, fields={
            "last_error": {"code": code, "message": f"{message} ({exc.code})"}})


def _last_error(intent):
    error = intent.get("last_payment_error")
    return None if not error else {"code": error.get("code"), "message": error.get("message")}


def sync_intent(*, db, intent, cause, record=None, always=False):
    """Move our record forward to the intent's status (a step back is refused by records.advance).

    `always` records the step even when the status is the same (a second declined card)."""
    record = record or records.find_by(db=db, provider_intent_id=intent["id"])
    if record is None or intent["status"] not in INTENT_STATUSES:
        return record
    status = intent["status"]
    if status == record["status"] and not always:
        return record
    if status == "succeeded" and record["status"] in ("partially_refunded", "refunded"):
        return record
    fields = {"last_error": _last_error(intent), "amount_received": intent.get("amount_received") or 0}
    updated = records.advance(db=db, payment_id=record["_id"], status=status, cause=cause, fields=fields)
    return updated or records.find(db=db, payment_id=record["_id"])


# ---- actions on a payment -----------------------------------------------------------------------

def _may_act(*, db, user_id, payment_id, role, action, idempotency_key):
    """404 when the caller may not see the payment, 403 when they see it but are not `role`; the
    request's idempotency key, checked."""
    _, viewer_role = _visible(db=db, user_id=user_id, payment_id=payment_id)
    if viewer_role != role:
        raise Forbidden(f"Only the {role} can {action} a payment")
    return idempotency.clean_key(idempotency_key)


def confirm(*, db, user_id, payment_id, payment_method, idempotency_key=None):
    """Confirm the payer's intent with a test payment method (offline provider only; 404 under
    another): (body, status)."""
    prov = provider()
    if prov.name != "offline":
        raise NotFound("Confirm through the provider's SDK with the payment's client_secret")
    key = _may_act(db=db, user_id=user_id, payment_id=payment_id, role="payer", action="confirm",
                   idempotency_key=idempotency_key)

    def confirm_and_render():
        current = records.find(db=db, payment_id=payment_id)
        if current["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
            raise InvalidTransition(f"This payment is {current['status']}: nothing to confirm",
                                    details={"status": current["status"]})
        count = len(current["history"])
        intent = _call(prov.confirm_intent, current["provider_intent_id"], payment_method=payment_method,
                       idempotency_key=f"payment:{payment_id}:confirm:{count}:{payment_method}")
        cause = f"confirmed:{payment_method}"
        if intent["status"] == "requires_payment_method" and intent.get("last_payment_error"):
            cause = f"declined:{intent['last_payment_error'].get('code')}"
        updated = sync_intent(db=db, intent=intent, cause=cause, record=current, always=True)
        return render(updated, viewer_id=user_id), 200

    return idempotency.run(db=db, user_id=user_id, key=key, scope=f"payments.confirm:{payment_id}",
                           payload={"payment_method": payment_method}, fn=confirm_and_render)


def refund(*, db, user_id, payment_id, amount=None, reason, idempotency_key=None):
    """Refund a captured payment, all that is left of it or `amount` minor units (staff); the audit
    log keeps who, how much and why. (body, status)."""
    key = _may_act(db=db, user_id=user_id, payment_id=payment_id, role="staff", action="refund",
                   idempotency_key=idempotency_key)

    def refund_and_render():
        current = records.find(db=db, payment_id=payment_id)
        if current["status"] not in REFUNDABLE:
            raise InvalidTransition(f"Only a captured payment can be refunded; this one is {current['status']}",
                                    details={"status": current["status"]})
        left = current.get("amount_received", current["amount"]) - current["refunded_amount"]
        value = left if amount is None else amount
        if value > left:
            raise ValidationFailed(details={"amount": [f"At most {left} (minor units) is left to refund."]})
        made = _call(provider().refund, current["provider_intent_id"], amount=value,
                     idempotency_key=f"payment:{payment_id}:refund:{len(current.get('refunds', []))}:{value}",
                     metadata={"payment_id": str(payment_id), "reason": reason})
        updated, added = apply_refund(db=db, payment_id=payment_id, refund=made, cause="refund", reason=reason,
                                      by=user_id)
        if added:  # a concurrent request with the same derived key got the same refund: one entry
            audit.record(db=db, actor_id=user_id, action="payment.refund", target_type="payment",
                         target_id=payment_id,
                         before={"status": current["status"], "refunded_amount": current["refunded_amount"]},
                         after={"status": updated["status"], "refunded_amount": updated["refunded_amount"],
                                "refund_id": made["id"], "amount": made["amount"]},
                         reason=reason)
        return render(updated, viewer_id=user_id), 200

    return idempotency.run(db=db, user_id=user_id, key=key, scope=f"payments.refund:{payment_id}",
                           payload={"amount": amount, "reason": reason}, fn=refund_and_render)


def apply_refund(*, db, payment_id, refund, cause, reason=None, by=None):
    """Add one provider refund to the record (once per refund id, however often it is reported):
    (record, whether this call added it)."""
    entry = {"id": refund["id"], "amount": int(refund["amount"]), "reason": reason or
             (refund.get("metadata") or {}).get("reason"), "by": by, "at": clock.now()}
    for _ in range(5):
        record = records.find(db=db, payment_id=payment_id)
        if any(made["id"] == refund["id"] for made in record.get("refunds", [])):
            return record, False
        if record["status"] not in REFUNDABLE:
            return record, False
        total = record["refunded_amount"] + entry["amount"]
        captured = record.get("amount_received") or record["amount"]
        status = "refunded" if total >= captured else "partially_refunded"
        updated = records.advance(db=db, payment_id=payment_id, status=status, cause=cause,
                                  fields={"refunded_amount": total},
                                  expect={"refunded_amount": record["refunded_amount"],
                                          "refunds.id": {"$ne": refund["id"]}},
                                  push={"refunds": entry})
        if updated is not None:
            return updated, True
    return records.find(db=db, payment_id=payment_id), False


# ---- Connect: where a helper gets paid ----------------------------------------------------------

def payout_account(*, db, user_id):
    """The connected account id of a helper who has finished onboarding, else None."""
    account = db[ACCOUNTS].find_one({"_id": user_id})
    if account is None:
        return None
    if not account.get("onboarded"):
        try:
            found = provider().retrieve_account(account["account_id"])
        except ProviderError:
            return None
        if not (found.get("charges_enabled") and found.get("payouts_enabled")):
            return None
        db[ACCOUNTS].update_one({"_id": user_id}, {"$set": {"onboarded": True, "updated_at": clock.now()}})
    return account["account_id"]


def onboarding_link(*, db, user_id):
    """The provider's onboarding link for the caller's connected account (made on first use):
    {url, expires_at}."""
    prov = provider()
    account = db[ACCOUNTS].find_one({"_id": user_id})
    if account is None:
        user = db.users.find_one({"_id": user_id}, projection={"email": 1}) or {}
        made = _call(prov.create_connected_account, email=user.get("email"), metadata={"user_id": str(user_id)},
                     idempotency_key=f"connect:{user_id}")
        try:
            db[ACCOUNTS].update_one({"_id": user_id}, {"$setOnInsert": {
                "account_id": made["id"], "provider": prov.name, "onboarded": False, "created_at": clock.now()}},
                upsert=True)
        except DuplicateKeyError:  # a concurrent first onboarding inserted it
            pass
        account = db[ACCOUNTS].find_one({"_id": user_id})
    config = current_app.config
    link = _call(prov.create_account_link, account["account_id"], refresh_url=config["PAYMENTS_CONNECT_REFRESH_URL"],
                 return_url=config["PAYMENTS_CONNECT_RETURN_URL"])
    expires_at = datetime.fromtimestamp(link["expires_at"], tz=timezone.utc).replace(tzinfo=None)
    return {"url": link["url"], "expires_at": expires_at}


# ---- the provider's events ----------------------------------------------------------------------

@events.handles(*INTENT_EVENTS)
def on_intent_event(db, prov, event):
    """A payment intent moved: re-read it from the provider and move our record forward to it. A
    failed payment is recorded with its reason even though the status stays requires_payment_method
    (a declined card, as the client's confirmation through the provider's SDK reports it)."""
    obj = event["data"]["object"]
    record = records.find_by(db=db, provider_intent_id=obj.get("id"))
    if record is None:
        return  # not one of ours (a subscription's invoice intent: invoice.* events carry those)
    sync_intent(db=db, intent=prov.retrieve_intent(obj["id"]), cause=event["type"], record=record,
                always=event["type"] == "payment_intent.payment_failed")


@events.handles("charge.refunded")
def on_charge_refunded(db, prov, event):
    """A charge was refunded (here or in the provider's dashboard): add each refund it lists."""
    charge = event["data"]["object"]
    record = records.find_by(db=db, provider_intent_id=charge.get("payment_intent"))
    if record is None:
        return
    for made in (charge.get("refunds") or {}).get("data") or []:
        if made.get("status") in ("succeeded", "pending"):
            apply_refund(db=db, payment_id=record["_id"], refund=made, cause=event["type"])


@events.handles("refund.created")
def on_refund_created(db, prov, event):
    """One refund was made: add it to its payment."""
    made = event["data"]["object"]
    record = records.find_by(db=db, provider_intent_id=made.get("payment_intent"))
    if record is not None and made.get("status") in ("succeeded", "pending"):
        apply_refund(db=db, payment_id=record["_id"], refund=made, cause=event["type"])


@events.handles("account.updated")
def on_account_updated(db, prov, event):
    """A connected account finished (or lost) onboarding."""
    account = event["data"]["object"]
    onboarded = bool(account.get("charges_enabled") and account.get("payouts_enabled"))
    db[ACCOUNTS].update_one({"account_id": account.get("id")},
                            {"$set": {"onboarded": onboarded, "updated_at": clock.now()}})
