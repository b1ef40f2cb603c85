"""Help request rules: posting, browsing by distance, offers and the request's life cycle.

States: ``open -> assigned -> completed`` and ``open|assigned -> cancelled``.
Each transition is one `find_one_and_update` whose filter holds the expected
state (and the owner), so concurrent actions cannot both win; a refused one
is diagnosed afterwards as 404 / 403 / 409 `invalid_transition`.

Offers are embedded in their request (at most MAX_OFFERS): appending one is a
single atomic update that also checks "still open", "not the owner" and "no
earlier offer from this user". An offer's status is derived, never stored:
`accepted` for the request's `accepted_offer_id`, `pending` while the request
is open, `declined` otherwise — so accepting one offer declines the others in
the same atomic write.

Events (Socket.IO, through allynet.realtime, each to `user:<id>` rooms):
- `help_request.offer` to the owner: {help_request_id, offer};
- `help_request.accepted` to the accepted offerer: {help_request_id, offer_id, help_request};
- `help_request.declined` to every other offerer: {help_request_id, offer_id};
- `help_request.status_changed` {help_request_id, status, helper_id} to the
  owner and the people involved: all offerers on accept, the helper on
  complete, the helper (or, while open, the offerers) on cancel;
- `help_request.payment_secured` to the helper when the requester's payment is
  held (the provider authorized it): {help_request_id, payment_id, amount,
  currency, payee_amount, payout}.

Payment (allynet/payments/service.py, never the provider): accepting an offer
with a price starts its payment before the request is assigned (an offer
priced above the budget is refused, 409 `price_above_budget`); completing
needs it secured (409 `payment_not_secured`) and captures it; cancelling
cancels it. The request keeps a summary of it in `payment`, shown to its
requester and its helper only, rewritten after each change of the payment
(never by an older version over a newer one).
"""

from bson import ObjectId
from pymongo import ReturnDocument

from allynet import clock, idempotency, realtime, trust
from allynet.errors import AllyNetError, Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from allynet.help_requests.schemas import help_request_schema, offer_schema, payment_summary_schema
from allynet.pagination import nearest_page, newest_first_page
from allynet.payments import service as payments_service

MAX_OFFERS = 100
# Fields left out of lists: offers are private to the owner and each offerer, the payment to the two parties.
LIST_PROJECTION = {"offers": 0, "timeline": 0, "payment": 0}
ACCEPT_SCOPE = "help_requests.accept"


def create(*, db, user_id, data):
    """Post a new open help request."""
    now = clock.now()
    document = {
        "user_id": user_id,
        "title": data["title"],
        "description": data["description"],
        "category": data["category"],
        "location": data["location"],
        "budget": data.get("budget"),
        "status": "open",
        "helper_id": None,
        "accepted_offer_id": None,
        "offers": [],
        "offers_count": 0,
        "timeline": [{"status": "open", "at": now, "by": user_id}],
        "created_at": now,
        "updated_at": now,
    }
    db.help_requests.insert_one(document)
    return for_viewer(document, viewer_id=user_id)


def list_nearby(*, db, user_id, near=None, radius_m, status="open", category=None, limit, cursor=None):
    """Requests within `radius_m` of `near` (default: the caller's location), nearest first, paginated.

    Returns (items, next_cursor). Pages are ordered by (distance, id); the cursor
    holds the last item's pair so the next page starts strictly after it.
    """
    if near is None:
        near = _profile_location(db=db, user_id=user_id)
    query = {"status": status}
    if category is not None:
        query["category"] = category
    return nearest_page(db.help_requests, near=near, radius_m=radius_m, query=query, limit=limit,
                        cursor=cursor, projection=LIST_PROJECTION)


def list_mine(*, db, user_id, role="requester", limit, cursor=None):
    """The caller's requests, newest first: (items, next_cursor).

    `requester`: the requests they posted; `helper`: those they made an offer on
    or were assigned to. Offers are trimmed as on GET /help-requests/<id>.
    """
    if role == "helper":
        query = {"$or": [{"offers.user_id": user_id}, {"helper_id": user_id}]}
    else:
        query = {"user_id": user_id}
    documents, next_cursor = newest_first_page(db.help_requests, query=query, limit=limit, cursor=cursor)
    return [for_viewer(document, viewer_id=user_id) for document in documents], next_cursor


def get_or_raise(*, db, request_id):
    """The help request document, or 404."""
    document = db.help_requests.find_one({"_id": request_id})
    if document is None:
        raise NotFound("Help request not found")
    return document


def get_for_viewer(*, db, user_id, request_id):
    """A help request as `user_id` may see it (offers: all for the owner, their own for an offerer)."""
    return for_viewer(get_or_raise(db=db, request_id=request_id), viewer_id=user_id)


def update(*, db, user_id, request_id, data):
    """Edit an open request (owner only)."""
    changes = dict(data)
    changes["updated_at"] = clock.now()
    document = db.help_requests.find_one_and_update(
        {"_id": request_id, "user_id": user_id, "status": "open"},
        {"$set": changes}, return_document=ReturnDocument.AFTER)
    if document is None:
        _raise_refusal(db=db, user_id=user_id, request_id=request_id,
                       conflict=Conflict("Only an open help request can be edited"))
    return for_viewer(document, viewer_id=user_id)


def make_offer(*, db, user_id, request_id, data):
    """Offer to help with an open request (not one's own; one offer per user); notifies the owner."""
    now = clock.now()
    offer = {"_id": ObjectId(), "user_id": user_id, "message": data["message"],
             "price": data.get("price"), "created_at": now}
    document = db.help_requests.find_one_and_update(
        {"_id": request_id, "status": "open", "user_id": {"$ne": user_id},
         "offers.user_id": {"$ne": user_id}, "offers_count": {"$lt": MAX_OFFERS}},
        {"$push": {"offers": offer}, "$inc": {"offers_count": 1}, "$set": {"updated_at": now}},
        return_document=ReturnDocument.AFTER)
    if document is None:
        _refuse_offer(db=db, user_id=user_id, request_id=request_id)
    published = offer_schema.dump(_offer_view(document, offer))
    realtime.emit_to_user(document["user_id"], "help_request.offer",
                          {"help_request_id": str(request_id), "offer": published})
    return _offer_view(document, offer)


def accept_once(*, db, user_id, request_id, offer_id, idempotency_key=None):
    """`accept`, at most once per Idempotency-Key (a retry replays the first answer): (body, status)."""
    key = idempotency.clean_key(idempotency_key)

    def accept_and_render():
        document = accept(db=db, user_id=user_id, request_id=request_id, offer_id=offer_id)
        return help_request_schema.dump(document), 200

    return idempotency.run(db=db, user_id=user_id, key=key, scope=ACCEPT_SCOPE,
                           payload={"request_id": request_id, "offer_id": offer_id}, fn=accept_and_render)


def accept(*, db, user_id, request_id, offer_id):
    """Accept one offer of an open request (owner): it becomes `assigned`, the other offers are declined.

    An `offer_id` that is not an offer of this request is a 404 (whether or not
    it belongs to another request), and nothing changes. A priced offer's
    payment is started first; when the request then cannot be assigned (another
    accept won), that payment is cancelled.
    """
    current = get_or_raise(db=db, request_id=request_id)
    if current["user_id"] != user_id:
        raise Forbidden("Only the owner can accept an offer")
    if current["status"] != "open":
        raise InvalidTransition(f"Cannot accept an offer on a {current['status']} help request",
                                details={"status": current["status"]})
    chosen = next((offer for offer in current.get("offers", []) if offer["_id"] == offer_id), None)
    if chosen is None:
        raise NotFound("Offer not found on this help request")
    price = payments_service.agreed_price(help_request=current, offer=chosen)
    payment = None
    if price is not None:
        payment = payments_service.start_help_request_payment(db=db, help_request=current, offer=chosen,
                                                              amount=price[0], currency=price[1])
    # Offers are append-only and immutable, so the helper read above is still the offer's author.
    try:
        document = _transition(db=db, user_id=user_id, request_id=request_id, expected="open", status="assigned",
                               extra={"helper_id": chosen["user_id"], "accepted_offer_id": offer_id,
                                      "payment": payments_service.summary(payment) if payment else None},
                               extra_filter={"offers._id": offer_id})
    except AllyNetError:
        if payment is not None:
            payments_service.abandon(db=db, payment_id=payment["_id"], cause="accept_refused")
        raise
    data = _status_payload(document)
    realtime.emit_to_user(chosen["user_id"], "help_request.accepted", {
        "help_request_id": str(request_id), "offer_id": str(offer_id),
        "help_request": help_request_schema.dump(for_viewer(document, viewer_id=chosen["user_id"])),
    })
    for offer in document["offers"]:
        if offer["_id"] != offer_id:
            realtime.emit_to_user(offer["user_id"], "help_request.declined",
                                  {"help_request_id": str(request_id), "offer_id": str(offer["_id"])})
    _emit_status(document, [document["user_id"]] + [offer["user_id"] for offer in document["offers"]], data)
    return for_viewer(document, viewer_id=user_id)


def complete(*, db, user_id, request_id):
    """Mark an assigned request completed (owner), capturing its payment; the helper's trust score rises.

    A request with a payment not yet secured is refused (409 payment_not_secured) and nothing changes.
    A completed request whose capture failed (its payment says `capture_failed`) may be completed again:
    that retries the capture and changes nothing else.
    """
    current = get_or_raise(db=db, request_id=request_id)
    payment = current.get("payment")
    record = payments_service.find(db=db, payment_id=payment["id"]) if payment else None
    if current["user_id"] == user_id and record is not None:
        if current["status"] == "assigned" and not payments_service.is_secured(record):
            raise Conflict("The payment is not secured yet: the requester confirms it first",
                           code="payment_not_secured",
                           details={"payment_id": str(record["_id"]), "payment_status": record["status"]})
        if current["status"] == "completed" and payments_service.awaits_capture(record):
            show_payment(db, payments_service.capture(db=db, payment_id=record["_id"]))
            return for_viewer(get_or_raise(db=db, request_id=request_id), viewer_id=user_id)
    document = _transition(db=db, user_id=user_id, request_id=request_id, expected="assigned",
                           status="completed")
    if record is not None:
        show_payment(db, payments_service.capture(db=db, payment_id=record["_id"]))
        document = get_or_raise(db=db, request_id=request_id)
    trust.apply_event(db=db, user_id=document["helper_id"], event="help_completed")
    _emit_status(document, [document["user_id"], document["helper_id"]], _status_payload(document))
    return for_viewer(document, viewer_id=user_id)


def cancel(*, db, user_id, request_id):
    """Cancel an open or assigned request (owner); the helper, or the offerers while open, are told."""
    document = _transition(db=db, user_id=user_id, request_id=request_id, expected=["open", "assigned"],
                           status="cancelled")
    if document.get("payment"):
        show_payment(db, payments_service.abandon(db=db, payment_id=document["payment"]["id"],
                                                  cause="help_request_cancelled"))
        document = get_or_raise(db=db, request_id=request_id)
    if document.get("helper_id") is not None:
        involved = [document["helper_id"]]
    else:
        involved = [offer["user_id"] for offer in document["offers"]]
    _emit_status(document, [document["user_id"]] + involved, _status_payload(document))
    return for_viewer(document, viewer_id=user_id)


def for_viewer(document, *, viewer_id):
    """A copy of a request with derived offer statuses, trimmed to the offers `viewer_id` may see."""
    view = dict(document)
    offers = [_offer_view(document, offer) for offer in document.get("offers", [])]
    if document["user_id"] != viewer_id:
        offers = [offer for offer in offers if offer["user_id"] == viewer_id]
    view["offers"] = offers
    if viewer_id not in (document["user_id"], document.get("helper_id")):
        view.pop("payment", None)
    return view


def show_payment(db, payment):
    """Write `payment`'s summary on its help request, unless a newer one is there already; returns it."""
    summary = payments_service.summary(payment)
    db.help_requests.update_one(
        {"_id": payment["help_request_id"], "payment.id": payment["_id"],
         "payment.version": {"$lt": summary["version"]}},
        {"$set": {"payment": summary}})
    return summary


@payments_service.on_help_request_change
def payment_changed(db, payment, previous):
    """Keep the request's payment summary current; tell the helper when the payment is secured."""
    summary = show_payment(db, payment)
    if payment["status"] == "requires_capture" and previous != "requires_capture":
        realtime.emit_to_user(payment["payee_id"], "help_request.payment_secured", {
            "help_request_id": str(payment["help_request_id"]), "payment_id": str(payment["_id"]),
            **{field: value for field, value in payment_summary_schema.dump(summary).items()
               if field in ("amount", "currency", "payee_amount", "payout")}})


def _offer_view(document, offer):
    if offer["_id"] == document.get("accepted_offer_id"):
        status = "accepted"
    elif document["status"] == "open":
        status = "pending"
    else:
        status = "declined"
    return {**offer, "help_request_id": document["_id"], "status": status}


def _transition(*, db, user_id, request_id, expected, status, extra=None, extra_filter=None):
    now = clock.now()
    expected_filter = {"$in": expected} if isinstance(expected, list) else expected
    query = {"_id": request_id, "user_id": user_id, "status": expected_filter, **(extra_filter or {})}
    changes = {"status": status, "updated_at": now, f"{status}_at": now, **(extra or {})}
    document = db.help_requests.find_one_and_update(
        query, {"$set": changes, "$push": {"timeline": {"status": status, "at": now, "by": user_id}}},
        return_document=ReturnDocument.AFTER)
    if document is None:
        _raise_refusal(db=db, user_id=user_id, request_id=request_id, target=status)
    return document


def _raise_refusal(*, db, user_id, request_id, target=None, conflict=None):
    """Explain why a compare-and-set matched nothing: 404, 403 or 409."""
    current = db.help_requests.find_one({"_id": request_id}, projection={"user_id": 1, "status": 1})
    if current is None:
        raise NotFound("Help request not found")
    if current["user_id"] != user_id:
        raise Forbidden("Only the owner can do this")
    if conflict is not None:
        raise conflict
    raise InvalidTransition(f"Cannot go from {current['status']} to {target}",
                            details={"status": current["status"]})


def _refuse_offer(*, db, user_id, request_id):
    current = db.help_requests.find_one(
        {"_id": request_id}, projection={"user_id": 1, "status": 1, "offers_count": 1,
                                         "offers": {"$elemMatch": {"user_id": user_id}}})
    if current is None:
        raise NotFound("Help request not found")
    if current["user_id"] == user_id:
        raise Forbidden("You cannot offer help on your own request")
    if current["status"] != "open":
        raise Conflict(f"This help request is {current['status']}, no longer open to offers",
                       details={"status": current["status"]})
    if current.get("offers"):
        raise Conflict("You already made an offer on this help request",
                       details={"offer_id": str(current["offers"][0]["_id"])})
    raise Conflict("This help request has reached its maximum number of offers")


def _status_payload(document):
    return {"help_request_id": str(document["_id"]), "status": document["status"],
            "helper_id": str(document["helper_id"]) if document.get("helper_id") else None}


def _emit_status(document, user_ids, data):
    rooms = list(dict.fromkeys(realtime.user_room(user_id) for user_id in user_ids if user_id is not None))
    realtime.emit_to_rooms(rooms, "help_request.status_changed", data)


def _profile_location(*, db, user_id):
    user = db.users.find_one({"_id": user_id}, projection={"location": 1})
    point = (user or {}).get("location")
    if not point:
        raise ValidationFailed(details={"near": ["Required when your profile has no location."]})
    lng, lat = point["coordinates"][:2]
    return {"lat": lat, "lng": lng}
