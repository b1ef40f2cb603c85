"""Emergency (SOS) HTTP endpoints: thin views over `emergencies.service`."""
from flask import current_app, request

from allynet.auth.decorators import auth_required, current_user_id, user_or_ip_key
from allynet.db import get_db
from allynet.emergencies import bp, service
from allynet.emergencies.schemas import (create_result_schema, create_schema, emergency_schema,
                                         message_schema, messages_query_schema, mine_query_schema,
                                         near_query_schema, nearby_schema, respond_schema)
from allynet.extensions import limiter
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query

TAGS = ["emergencies"]
IDEMPOTENCY_HEADER = [{
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    "description": "Retries with the same key (per user, kept 24 h) replay the first response; "
                   "another body gives 422 idempotency_key_reused, a retry while the first runs 409 "
                   "request_in_progress. The body field request_id is an alternative.",
}]


@bp.post("/emergencies")
@limiter.limit(lambda: current_app.config["EMERGENCY_CREATE_RATE_LIMIT"], key_func=user_or_ip_key)
@auth_required
@doc(summary="Raise an SOS: alerts nearby verified helpers and the requester's party", status=201,
     response=create_result_schema, tags=TAGS, headers=IDEMPOTENCY_HEADER,
     errors={409: "active_emergency_exists (details.emergency_id) or request_in_progress",
             422: "idempotency_key_reused"})
@use_body(create_schema)
def create_emergency(data):
    body, status = service.create_emergency(db=get_db(), user_id=current_user_id(), data=data,
                                            idempotency_key=request.headers.get("Idempotency-Key"))
    return ok(body, status)


@bp.get("/emergencies")
@auth_required
@doc(summary="Open emergencies near a point (verified helpers only), nearest first, with distance_m",
     response=nearby_schema, many=True, tags=TAGS, errors={403: "forbidden (not a verified helper)"})
@use_query(near_query_schema)
def list_near(query):
    items = service.list_open_near(db=get_db(), user_id=current_user_id(), near=query.get("near"),
                                   radius_m=query.get("radius_m"), limit=query.get("limit", 50))
    return ok_list(nearby_schema.dump(items, many=True))


@bp.get("/emergencies/mine")
@auth_required
@doc(summary="The caller's emergencies, newest first", response=emergency_schema, many=True, tags=TAGS)
@use_query(mine_query_schema)
def list_mine(query):
    items, next_cursor = service.list_mine(db=get_db(), user_id=current_user_id(), cursor=query.get("cursor"),
                                           limit=query.get("limit", service.DEFAULT_PAGE))
    return ok_list(emergency_schema.dump(items, many=True), next_cursor=next_cursor)


@bp.get("/emergencies/<oid:emergency_id>")
@auth_required
@doc(summary="One emergency (owner, alerted helpers, responders, moderators, admins; else 404)",
     response=emergency_schema, tags=TAGS)
def get_emergency(emergency_id):
    emergency = service.get_for_viewer(db=get_db(), emergency_id=emergency_id, user_id=current_user_id())
    return ok(emergency_schema.dump(emergency))


@bp.get("/emergencies/<oid:emergency_id>/messages")
@auth_required
@doc(summary="The SOS room's messages, oldest first (owner, responders, moderators, admins; else 404)",
     response=message_schema, many=True, tags=TAGS)
@use_query(messages_query_schema)
def list_messages(emergency_id, query):
    items, next_cursor = service.list_messages(db=get_db(), emergency_id=emergency_id, user_id=current_user_id(),
                                               cursor=query.get("cursor"),
                                               limit=query.get("limit", service.DEFAULT_PAGE))
    return ok_list(message_schema.dump(items, many=True), next_cursor=next_cursor)


@bp.post("/emergencies/<oid:emergency_id>/respond")
@auth_required
@doc(summary="A verified helper responds (active -> responding) and all their connections join the SOS room; "
             "responding twice is a no-op",
     response=emergency_schema, tags=TAGS,
     errors={403: "forbidden (not a verified helper, or the owner)", 409: "invalid_transition"})
@use_body(respond_schema, optional=True)
def respond(emergency_id, data):
    emergency = service.respond(db=get_db(), emergency_id=emergency_id, helper_id=current_user_id(),
                                eta_minutes=data.get("eta_minutes"))
    return ok(emergency_schema.dump(emergency))


@bp.post("/emergencies/<oid:emergency_id>/decline")
@auth_required
@doc(summary="An alerted helper declines; never alerted again for this SOS", response=emergency_schema,
     tags=TAGS, errors={403: "forbidden (not alerted for it)", 409: "conflict or invalid_transition"})
@no_body
def decline(emergency_id):
    emergency = service.decline(db=get_db(), emergency_id=emergency_id, helper_id=current_user_id())
    return ok(emergency_schema.dump(emergency))


@bp.post("/emergencies/<oid:emergency_id>/resolve")
@auth_required
@doc(summary="Resolve (owner or admin); the room gets emergency.resolved and is closed",
     response=emergency_schema, tags=TAGS, errors={403: "forbidden", 409: "invalid_transition"})
@no_body
def resolve(emergency_id):
    emergency = service.resolve(db=get_db(), emergency_id=emergency_id, actor_id=current_user_id())
    return ok(emergency_schema.dump(emergency))


@bp.post("/emergencies/<oid:emergency_id>/cancel")
@auth_required
@doc(summary="Cancel (owner); the room is closed", response=emergency_schema, tags=TAGS,
     errors={403: "forbidden", 409: "invalid_transition"})
@no_body
def cancel(emergency_id):
    emergency = service.cancel(db=get_db(), emergency_id=emergency_id, actor_id=current_user_id())
    return ok(emergency_schema.dump(emergency))
