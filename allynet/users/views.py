"""Profile and user HTTP endpoints."""
from allynet.auth.decorators import auth_required, current_user_id, roles_required
from allynet.db import get_db
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query
from allynet.users import bp, service
from allynet.users.schemas import (admin_user_schema, admin_user_update_schema, location_update_schema,
                                   profile_schema, profile_update_schema, public_user_schema,
                                   suspend_schema, user_list_query_schema)


@bp.get("/profile")
@auth_required
@doc(summary="Own profile", response=profile_schema, tags=["users"])
def get_profile():
    return ok(profile_schema.dump(service.get_or_raise(db=get_db(), user_id=current_user_id())))


@bp.route("/profile", methods=["PUT", "PATCH"])
@auth_required
@doc(summary="Update own profile (whitelisted fields)", response=profile_schema, tags=["users"])
@use_body(profile_update_schema)
def update_profile(data):
    user = service.update_profile(db=get_db(), user_id=current_user_id(), data=data)
    return ok(profile_schema.dump(user))


@bp.put("/profile/location")
@auth_required
@doc(summary="Set own location", response=profile_schema, tags=["users"])
@use_body(location_update_schema)
def set_location(data):
    user = service.set_location(db=get_db(), user_id=current_user_id(), **data)
    return ok(profile_schema.dump(user))


@bp.get("/users/<oid:user_id>")
@auth_required
@doc(summary="Public view of a user", response=public_user_schema, tags=["users"])
def get_user(user_id):
    return ok(public_user_schema.dump(service.get_or_raise(db=get_db(), user_id=user_id)))


@bp.patch("/users/<oid:user_id>")
@roles_required("admin")
@doc(summary="Admin: change a user's role, verified and/or is_helper (one audit entry)", response=profile_schema,
     tags=["users"])
@use_body(admin_user_update_schema)
def admin_update_user(user_id, data):
    user = service.admin_update(db=get_db(), actor_id=current_user_id(), user_id=user_id, data=data)
    return ok(profile_schema.dump(user))


@bp.get("/users")
@roles_required("moderator", "admin")
@doc(summary="Staff: users, newest first; q matches an email prefix or part of the display name; "
             "filters role, status (active|suspended), verified, is_helper",
     response=admin_user_schema, many=True, tags=["users"])
@use_query(user_list_query_schema)
def list_users(query):
    items, next_cursor = service.list_users(db=get_db(), query=query)
    return ok_list(admin_user_schema.dump(items, many=True), next_cursor)


@bp.get("/users/<oid:user_id>/admin")
@roles_required("moderator", "admin")
@doc(summary="Staff: the full view of one user, suspension included", response=admin_user_schema, tags=["users"])
def get_user_admin(user_id):
    return ok(admin_user_schema.dump(service.for_staff(service.get_or_raise(db=get_db(), user_id=user_id))))


@bp.post("/users/<oid:user_id>/suspend")
@roles_required("admin")
@doc(summary="Admin: suspend a user (tokens refused with 401 account_suspended, sockets ended, party left, "
             "out of helper searches; an open SOS stays). Never the last admin: 409 last_admin. Audited",
     response=admin_user_schema, tags=["users"], errors={409: "last_admin"})
@use_body(suspend_schema)
def suspend_user(user_id, data):
    user = service.suspend(db=get_db(), actor_id=current_user_id(), user_id=user_id, **data)
    return ok(admin_user_schema.dump(user))


@bp.post("/users/<oid:user_id>/unsuspend")
@roles_required("admin")
@doc(summary="Admin: lift a suspension (409 conflict when not suspended); audited",
     response=admin_user_schema, tags=["users"], errors={409: "conflict (the user is not suspended)"})
@no_body
def unsuspend_user(user_id):
    user = service.unsuspend(db=get_db(), actor_id=current_user_id(), user_id=user_id)
    return ok(admin_user_schema.dump(user))
