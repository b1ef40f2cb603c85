"""Organization plans: start the pro subscription, the organization's payments, the offline provider's
event feed (thin views over `payments.subscriptions`, which also holds the provider events' handlers)."""
from allynet.auth.decorators import auth_required, current_user_id, roles_required
from allynet.db import get_db
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query
from allynet.organizations import bp
from allynet.organizations.schemas import page_query_schema
from allynet.payments import subscriptions
from allynet.payments.provider import get_provider
from allynet.payments.schemas import (for_viewer, offline_event_result_schema, offline_event_schema,
                                      payment_schema, subscription_schema)

TAGS = ["payments"]  # listed with the other payment routes


@bp.post("/organizations/<oid:organization_id>/subscription")
@auth_required
@doc(summary="Start the organization's pro plan (owner, org admins): the provider's subscription, "
             "incomplete with the client_secret of its first payment; asked again while that payment is "
             "pending, the same subscription", response=subscription_schema, status=201, tags=TAGS,
     errors={403: "forbidden (not the owner or an org admin)",
             409: "conflict (already pro: active or past_due), payment_provider_refused",
             502: "payment_provider_error"})
@no_body
def start_subscription(organization_id):
    subscription = subscriptions.start(db=get_db(), provider=get_provider(), organization_id=organization_id,
                                       actor_id=current_user_id())
    return ok(subscription_schema.dump(subscription), 201)


@bp.get("/organizations/<oid:organization_id>/payments")
@auth_required
@doc(summary="The organization's payments (its subscription's invoices), newest first (owner, org admins)",
     response=payment_schema, many=True, tags=TAGS, errors={403: "forbidden (not the owner or an org admin)"})
@use_query(page_query_schema)
def organization_payments(organization_id, query):
    user_id = current_user_id()
    items, next_cursor = subscriptions.list_payments(db=get_db(), organization_id=organization_id, user_id=user_id,
                                                     cursor=query.get("cursor"), limit=query["limit"])
    return ok_list([payment_schema.dump(for_viewer(item, viewer_id=user_id)) for item in items], next_cursor)


@bp.post("/payments/offline/events")
@roles_required("admin")
@doc(summary="Offline provider only (404 under stripe; platform admins): feed an event of an organization's "
             "subscription (invoice.paid, invoice.payment_failed, customer.subscription.deleted) through the "
             "webhook's handler; completed from the subscription as the provider would send it; an event id "
             "seen before has no effect (duplicate: true)", response=offline_event_result_schema, tags=TAGS,
     errors={404: "not_found (not the offline provider, or no such subscription)"})
@use_body(offline_event_schema)
def feed_offline_event(data):
    result = subscriptions.feed_offline_event(db=get_db(), provider=get_provider(), data=data)
    return ok(offline_event_result_schema.dump(result))

