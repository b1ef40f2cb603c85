"""Business HTTP endpoints: profiles, nearby lists, promotions (thin views over `businesses.service`)."""
from allynet.auth.decorators import auth_required, current_user_id
from allynet.businesses import bp, service
from allynet.businesses.schemas import (business_create_schema, business_list_query_schema, business_schema,
                                        business_update_schema, promotion_create_schema,
                                        promotion_list_query_schema, promotion_near_schema, promotion_schema,
                                        promotion_update_schema)
from allynet.db import get_db
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query
from allynet.payments import promotions
from allynet.payments.schemas import for_viewer, payment_schema

TAGS = ["businesses"]
WHO = "owner or moderators/admins; others 403, or 404 while the business is hidden"


@bp.post("/businesses")
@auth_required
@doc(summary="Register a business you own (category in cafe, restaurant, fuel, garage, pharmacy, hospital, "
             "shop, lodging, other; opening_hours {timezone, intervals [{day, open, close}]})",
     response=business_schema, status=201, tags=TAGS)
@use_body(business_create_schema)
def create_business(data):
    document = service.create(db=get_db(), user_id=current_user_id(), data=data)
    return ok(business_schema.dump(document), 201)


@bp.get("/businesses")
@auth_required
@doc(summary="Visible businesses near `near=lat,lng` within radius_m (100..50000, default 5000), nearest "
             "first with distance_m; category=, open_now=true (open in each business's own time zone); "
             "format=geojson answers a bare GeoJSON FeatureCollection (application/geo+json)",
     response=business_schema, many=True, geojson=True, tags=TAGS)
@use_query(business_list_query_schema)
def list_businesses(query):
    fmt = query.pop("format")
    items, next_cursor = service.list_nearby(db=get_db(), **query)
    return ok_list(business_schema.dump(items, many=True), next_cursor, fmt=fmt)


@bp.get("/businesses/<oid:business_id>")
@auth_required
@doc(summary="One business: the public view (running promotions), the full one for its owner and staff; "
             "hidden: 404 to anyone else", response=business_schema, tags=TAGS)
def get_business(business_id):
    document = service.get_for_viewer(db=get_db(), user_id=current_user_id(), business_id=business_id)
    return ok(business_schema.dump(document))


@bp.patch("/businesses/<oid:business_id>")
@auth_required
@doc(summary=f"Edit a business ({WHO}); verified and hidden: moderators and admins only (audited); "
             "safe_place: the owner's opt-in, effective while verified", response=business_schema, tags=TAGS,
     errors={403: "forbidden (not the owner or staff; verified and hidden are staff's)"})
@use_body(business_update_schema)
def update_business(business_id, data):
    document = service.update(db=get_db(), user_id=current_user_id(), business_id=business_id, data=data)
    return ok(business_schema.dump(document))


@bp.delete("/businesses/<oid:business_id>")
@auth_required
@doc(summary=f"Delete a business and its promotions ({WHO})", tags=TAGS, errors={403: "forbidden (not the owner or staff)"})
def delete_business(business_id):
    service.delete(db=get_db(), user_id=current_user_id(), business_id=business_id)
    return ok(None, message="Business deleted")


@bp.post("/businesses/<oid:business_id>/promotions")
@auth_required
@doc(summary=f"Add a promotion ({WHO}): title, description, starts_at < ends_at (future, at most 366 days), "
             "radius_m (50..50000, default 2000); at most 20 per business (409 conflict)",
     response=promotion_schema, status=201, tags=TAGS,
     errors={403: "forbidden (not the owner or staff)", 409: "conflict (20 promotions already)"})
@use_body(promotion_create_schema)
def add_promotion(business_id, data):
    promotion = service.add_promotion(db=get_db(), user_id=current_user_id(), business_id=business_id, data=data)
    return ok(promotion_schema.dump(promotion), 201)


@bp.patch("/businesses/<oid:business_id>/promotions/<oid:promotion_id>")
@auth_required
@doc(summary=f"Edit a promotion ({WHO})", response=promotion_schema, tags=TAGS, errors={403: "forbidden (not the owner or staff)"})
@use_body(promotion_update_schema)
def update_promotion(business_id, promotion_id, data):
    promotion = service.update_promotion(db=get_db(), user_id=current_user_id(), business_id=business_id,
                                         promotion_id=promotion_id, data=data)
    return ok(promotion_schema.dump(promotion))


@bp.delete("/businesses/<oid:business_id>/promotions/<oid:promotion_id>")
@auth_required
@doc(summary=f"Remove a promotion ({WHO})", tags=TAGS, errors={403: "forbidden (not the owner or staff)"})
def delete_promotion(business_id, promotion_id):
    service.delete_promotion(db=get_db(), user_id=current_user_id(), business_id=business_id,
                             promotion_id=promotion_id)
    return ok(None, message="Promotion deleted")


@bp.get("/promotions")
@auth_required
@doc(summary="Promotions running now whose radius_m covers `near=lat,lng`, featured ones first, then nearest business: "
             "{business_id, business_name, promotion, distance_m, featured (paid: listed first), verified}",
     response=promotion_near_schema, many=True, tags=TAGS)
@use_query(promotion_list_query_schema)
def list_promotions(query):
    items = service.promotions_near(db=get_db(), **query)
    return ok_list(promotion_near_schema.dump(items, many=True))


@bp.post("/businesses/<oid:business_id>/promotions/<oid:promotion_id>/feature")
@auth_required
@doc(summary="Pay PROMOTION_FEATURE_AMOUNT to feature a promotion for its duration (the business's owner): the "
             "payment (kind promotion, client_secret to confirm); featured once it succeeds, ranked first in "
             "GET /promotions; asked again before it is paid, the same payment", response=payment_schema,
     status=201, tags=["payments"],
     errors={403: "forbidden (not the business's owner)",
             409: "conflict (ended, already featured, payment canceled or refunded), payment_provider_refused",
             502: "payment_provider_error"})
@no_body
def feature_promotion(business_id, promotion_id):
    user_id = current_user_id()
    payment = promotions.feature(db=get_db(), user_id=user_id, business_id=business_id, promotion_id=promotion_id)
    return ok(payment_schema.dump(for_viewer(payment, viewer_id=user_id)), 201)
