"""Help request HTTP endpoints: post, browse nearby, edit, offer, accept, complete, cancel."""
from flask import request

from allynet import idempotency
from allynet.auth.decorators import auth_required, current_user_id
from allynet.db import get_db
from allynet.help_requests import bp, service
from allynet.help_requests.schemas import (accept_schema, help_request_create_schema,
                                           help_request_list_query_schema, mine_query_schema,
                                           help_request_schema, help_request_update_schema, offer_create_schema,
                                           offer_schema)
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query

TAGS = ["help_requests"]


@bp.post("/help-requests")
@auth_required
@doc(summary="Post a help request (category in transport, groceries, repairs, childcare, elderly_care, pets, "
             "tech, moving, other; budget {amount >= 0, currency ISO 4217})",
     response=help_request_schema, status=201, tags=TAGS)
@use_body(help_request_create_schema)
def create_help_request(data):
    document = service.create(db=get_db(), user_id=current_user_id(), data=data)
    return ok(help_request_schema.dump(document), 201)


@bp.get("/help-requests")
@auth_required
@doc(summary="Help requests near `near=lat,lng` (default: your profile location) within radius_m "
             "(100..50000, default 10000), nearest first with distance_m; status defaults to open; "
             "format=geojson answers a bare GeoJSON FeatureCollection (application/geo+json)",
     response=help_request_schema, many=True, geojson=True, tags=TAGS)
@use_query(help_request_list_query_schema)
def list_help_requests(query):
    fmt = query.pop("format")
    items, next_cursor = service.list_nearby(db=get_db(), user_id=current_user_id(), **query)
    return ok_list(help_request_schema.dump(items, many=True), next_cursor, fmt=fmt)


# Before /help-requests/<oid:request_id> (which "mine" could never match anyway: ids are 24 hex digits).
@bp.get("/help-requests/mine")
@auth_required
@doc(summary="Your help requests, newest first: role=requester (default) those you posted, role=helper "
             "those you made an offer on or were assigned to (offers as on GET /help-requests/<id>)",
     response=help_request_schema, many=True, tags=TAGS)
@use_query(mine_query_schema)
def list_mine(query):
    items, next_cursor = service.list_mine(db=get_db(), user_id=current_user_id(), **query)
    return ok_list(help_request_schema.dump(items, many=True), next_cursor)


@bp.get("/help-requests/<oid:request_id>")
@auth_required
@doc(summary="One help request (offers: all for its owner, your own for an offerer)",
     response=help_request_schema, tags=TAGS)
def get_help_request(request_id):
    document = service.get_for_viewer(db=get_db(), user_id=current_user_id(), request_id=request_id)
    return ok(help_request_schema.dump(document))


@bp.patch("/help-requests/<oid:request_id>")
@auth_required
@doc(summary="Edit your help request while it is open (409 conflict otherwise; budget null removes it)",
     response=help_request_schema, tags=TAGS, errors={403: "forbidden (not the owner)", 409: "conflict"})
@use_body(help_request_update_schema)
def update_help_request(request_id, data):
    document = service.update(db=get_db(), user_id=current_user_id(), request_id=request_id, data=data)
    return ok(help_request_schema.dump(document))


@bp.post("/help-requests/<oid:request_id>/offers")
@auth_required
@doc(summary="Offer help on an open request (not your own: 403; one offer per user and request, or not open: "
             "409 conflict). Socket.IO: help_request.offer to the owner",
     response=offer_schema, status=201, tags=TAGS, errors={403: "forbidden (own request)", 409: "conflict"})
@use_body(offer_create_schema)
def make_offer(request_id, data):
    offer = service.make_offer(db=get_db(), user_id=current_user_id(), request_id=request_id, data=data)
    return ok(offer_schema.dump(offer), 201)


@bp.post("/help-requests/<oid:request_id>/accept")
@auth_required
@doc(summary="Accept an offer (owner): open -> assigned, the other offers are declined; an offer_id that is "
             "not an offer of this request is 404. Socket.IO: help_request.accepted to the helper, "
             "help_request.declined to the other offerers, help_request.status_changed to owner and offerers. "
             "An offer with a price starts its payment (payment: a manual-capture intent for the price, which "
             "may not exceed the budget; the requester confirms it, see /payments)",
     response=help_request_schema, tags=TAGS, headers=idempotency.HEADER_DOC,
     errors={403: "forbidden (not the owner)",
             409: "invalid_transition, price_above_budget, invalid_price, payment_provider_refused, "
                  "request_in_progress",
             422: "idempotency_key_reused", 502: "payment_provider_error"})
@use_body(accept_schema)
def accept_offer(request_id, data):
    body, status = service.accept_once(db=get_db(), user_id=current_user_id(), request_id=request_id,
                                       offer_id=data["offer_id"],
                                       idempotency_key=request.headers.get("Idempotency-Key"))
    return ok(body, status)


@bp.post("/help-requests/<oid:request_id>/complete")
@auth_required
@doc(summary="Mark your assigned help request completed (raises the helper's trust score); its payment, "
             "if any, must be secured and is captured (a failed capture shows last_error capture_failed: "
             "completing again retries it). Socket.IO: help_request.status_changed to owner and helper",
     response=help_request_schema, tags=TAGS,
     errors={403: "forbidden (not the owner)", 409: "invalid_transition, payment_not_secured",
             502: "payment_provider_error"})
@no_body
def complete_help_request(request_id):
    document = service.complete(db=get_db(), user_id=current_user_id(), request_id=request_id)
    return ok(help_request_schema.dump(document))


@bp.post("/help-requests/<oid:request_id>/cancel")
@auth_required
@doc(summary="Cancel your open or assigned help request. Socket.IO: help_request.status_changed to the owner "
             "and the helper (or, while open, the offerers); its payment, if any, is cancelled",
     response=help_request_schema, tags=TAGS,
     errors={403: "forbidden (not the owner)", 409: "invalid_transition", 502: "payment_provider_error"})
@no_body
def cancel_help_request(request_id):
    document = service.cancel(db=get_db(), user_id=current_user_id(), request_id=request_id)
    return ok(help_request_schema.dump(document))
