"""Payment HTTP endpoints: your payments, one payment, confirm (offline), refund (staff), Connect onboarding."""
from flask import request

from allynet import idempotency
from allynet.auth.decorators import auth_required, current_user_id
from allynet.db import get_db
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query
from allynet.payments import bp, service
from allynet.payments.schemas import (confirm_schema, onboarding_link_schema, payment_page_query_schema,
                                      payment_schema, refund_schema)

TAGS = ["payments"]
PROVIDER_ERRORS = {409: "invalid_transition, payment_provider_refused, request_in_progress",
                   422: "idempotency_key_reused", 502: "payment_provider_error"}


@bp.get("/payments")
@auth_required
@doc(summary="Your payments (as payer or payee), newest first; amounts in minor units",
     response=payment_schema, many=True, tags=TAGS)
@use_query(payment_page_query_schema)
def list_payments(query):
    items, next_cursor = service.list_mine(db=get_db(), user_id=current_user_id(), **query)
    user_id = current_user_id()
    return ok_list([service.render(item, viewer_id=user_id) for item in items], next_cursor)


@bp.post("/payments/connect/onboarding")
@auth_required
@doc(summary="The provider's onboarding link for your connected account (made on first use): helpers who "
             "have onboarded are paid their share directly", response=onboarding_link_schema, tags=TAGS,
     errors={409: "payment_provider_refused", 502: "payment_provider_error"})
@no_body
def connect_onboarding():
    link = service.onboarding_link(db=get_db(), user_id=current_user_id())
    return ok(onboarding_link_schema.dump(link))


@bp.get("/payments/<oid:payment_id>")
@auth_required
@doc(summary="One payment (its payer, its payee, staff; 404 to anyone else); client_secret to the payer only",
     response=payment_schema, tags=TAGS)
def get_payment(payment_id):
    record = service.get_for_viewer(db=get_db(), user_id=current_user_id(), payment_id=payment_id)
    return ok(service.render(record, viewer_id=current_user_id()))


@bp.post("/payments/<oid:payment_id>/confirm")
@auth_required
@doc(summary="Offline provider only (404 under Stripe, whose SDK confirms with the client_secret): the payer "
             "confirms with a test payment method; requires_capture means secured, a declined card leaves "
             "requires_payment_method with last_error.code card_declined. Socket.IO: "
             "help_request.payment_secured to the helper",
     response=payment_schema, tags=TAGS, headers=idempotency.HEADER_DOC,
     errors={403: "forbidden (the payee or staff)", **PROVIDER_ERRORS})
@use_body(confirm_schema)
def confirm_payment(payment_id, data):
    body, status = service.confirm(db=get_db(), user_id=current_user_id(), payment_id=payment_id,
                                   payment_method=data["payment_method"],
                                   idempotency_key=request.headers.get("Idempotency-Key"))
    return ok(body, status)


@bp.post("/payments/<oid:payment_id>/refund")
@auth_required
@doc(summary="Staff: refund a captured payment, all that is left or `amount` minor units, with a reason "
             "(kept in the audit log)", response=payment_schema, tags=TAGS, headers=idempotency.HEADER_DOC,
     errors={403: "forbidden (the payer or payee)", **PROVIDER_ERRORS})
@use_body(refund_schema)
def refund_payment(payment_id, data):
    body, status = service.refund(db=get_db(), user_id=current_user_id(), payment_id=payment_id,
                                  amount=data.get("amount"), reason=data["reason"],
                                  idempotency_key=request.headers.get("Idempotency-Key"))
    return ok(body, status)
