"""Profile and user HTTP endpoints."""
from allynet.auth.decorators import auth_required, current_user_id, roles_required
from allynet.db import get_db
from allynet.http import doc, ok, use_body
from allynet.users import bp, service
from allynet.users.schemas import (admin_user_update_schema, location_update_schema,
                                   profile_schema, profile_update_schema, public_user_schema)


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
@doc(summary="Admin: change a user's role or verification", response=profile_schema, tags=["users"])
@use_body(admin_user_update_schema)
def admin_update_user(user_id, data):
    user = service.admin_update(db=get_db(), actor_id=current_user_id(), user_id=user_id, data=data)
    return ok(profile_schema.dump(user))
