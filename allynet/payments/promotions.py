"""Promoted offers: a business owner pays PROMOTION_FEATURE_AMOUNT to feature a promotion for its
duration; featured promotions rank first in GET /promotions near a point.

One payment per promotion (origin ``promotion:<business>:<promotion>``, kind ``promotion``), the
platform's in full (``fee_amount`` = ``amount``, no payee), on an automatic-capture intent the owner
confirms like any other (POST /payments/<id>/confirm offline, the provider's SDK with Stripe). When
the payment succeeds (however it gets there: the confirm route or the provider's event) the
promotion is featured until its ``ends_at`` as it is then; a full refund ends the featuring.
"""
from flask import current_app

from allynet import clock
from allynet.businesses import service as businesses_service
from allynet.errors import Conflict
from allynet.payments import records
from allynet.payments.provider import get_provider
from allynet.payments.provider_calls import call_provider

OPEN = ("requires_payment_method", "requires_confirmation", "requires_action", "processing")


def feature(*, db, user_id, business_id, promotion_id):
    """The payment that features a promotion (its business's owner); asked again before it is paid,
    the same payment. 409 once the promotion ended, is featured, or its payment was canceled or refunded."""
    _business, promotion = businesses_service.owned_promotion(db=db, user_id=user_id, business_id=business_id,
                                                              promotion_id=promotion_id)
    now = clock.now()
    if promotion["ends_at"] <= now:
        raise Conflict("The promotion has ended")
    if businesses_service.featured(promotion, now):
        raise Conflict("The promotion is already featured",
                       details={"featured_until": promotion["featured_until"].isoformat() + "Z"})
    provider = get_provider()
    amount = int(current_app.config["PROMOTION_FEATURE_AMOUNT"])
    currency = current_app.config["PROMOTION_FEATURE_CURRENCY"].upper()
    record, _ = records.create(
        db=db, origin=f"promotion:{business_id}:{promotion_id}", kind="promotion", payer_id=user_id, payee_id=None,
        amount=amount, currency=currency, fee_amount=amount, status="requires_payment_method",
        cause="feature_requested", livemode=provider.livemode, provider=provider.name,
        refs={"business_id": business_id, "promotion_id": promotion_id})
    if record["status"] not in OPEN:
        raise Conflict(f"This promotion's payment is {record['status']}", details={"payment_id": str(record["_id"])})
    if record.get("provider_intent_id"):
        return record
    intent = call_provider(
        provider.create_intent, amount=amount, currency=currency.lower(), capture_method="automatic",
        metadata={"payment_id": str(record["_id"]), "business_id": str(business_id),
                  "promotion_id": str(promotion_id)},
        idempotency_key=f"payment:{record['_id']}:create")
    return records.update_fields(db=db, payment_id=record["_id"], fields={
        "provider_intent_id": intent["id"], "client_secret": intent["client_secret"]})


@records.on_change("promotion")
def follow_payment(db, payment, previous_status):
    """Paid: featured until the promotion's end; refunded in full: no longer featured."""
    if payment["status"] == "succeeded":
        promotion = businesses_service.find_promotion(db=db, business_id=payment["business_id"],
                                                      promotion_id=payment["promotion_id"])
        if promotion is not None:
            businesses_service.set_featured(db=db, business_id=payment["business_id"],
                                            promotion_id=payment["promotion_id"],
                                            featured_until=promotion["ends_at"], payment_id=payment["_id"])
    elif payment["status"] == "refunded":
        businesses_service.set_featured(db=db, business_id=payment["business_id"],
                                        promotion_id=payment["promotion_id"], featured_until=None,
                                        payment_id=payment["_id"])
