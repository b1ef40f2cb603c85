"""flask-jwt-extended loaders: every token problem is a 401 in the contract's shape.

A validly signed token must also be one we issue (an id, the right type: `token_problem`)
and belong to a user who still exists and is not suspended (the user lookup, which
`roles_required` reuses; a suspended user's tokens answer 401 `account_suspended`).
"""
from flask import request

from allynet.auth import service
from allynet.db import get_db
from allynet.errors import AccountSuspended, error_response
from allynet.extensions import jwt
from allynet.fields import object_id
from allynet.users import service as users_service


@jwt.token_in_blocklist_loader
def _is_revoked(jwt_header, jwt_payload):
    return service.is_revoked(db=get_db(), jti=jwt_payload.get("jti"),
                              family=jwt_payload.get(service.FAMILY_CLAIM))


@jwt.token_verification_loader
def _is_ours(jwt_header, jwt_payload):
    console = request.blueprint == "console"  # the console reads its cookie, never this header
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return service.token_problem(jwt_payload, None, raw_token=None if console else token.strip() or None,
                                 console=console) is None


@jwt.user_lookup_loader
def _load_user(jwt_header, jwt_payload):
    user_id = object_id(jwt_payload.get("sub"))
    if user_id is None:
        return None
    user = get_db().users.find_one({"_id": user_id}, projection={"role": 1, "suspended_until": 1})
    if users_service.is_suspended(user):
        raise AccountSuspended()
    return user


@jwt.revoked_token_loader
def _revoked(jwt_header, jwt_payload):
    return error_response(401, "token_revoked", "Token has been revoked")


@jwt.expired_token_loader
def _expired(jwt_header, jwt_payload):
    return error_response(401, "token_expired", "Token has expired")


@jwt.invalid_token_loader
def _invalid(reason):
    return error_response(401, "unauthorized", f"Invalid token: {reason}")


@jwt.unauthorized_loader
def _missing(reason):
    return error_response(401, "unauthorized", "Missing or malformed Authorization header")


@jwt.needs_fresh_token_loader
def _needs_fresh(jwt_header, jwt_payload):
    return error_response(401, "unauthorized", "Fresh token required")


@jwt.user_lookup_error_loader
def _user_lookup(jwt_header, jwt_payload):
    return error_response(401, "unauthorized", "Unknown user")


@jwt.token_verification_failed_loader
def _verification_failed(jwt_header, jwt_payload):
    return error_response(401, "unauthorized", "Token verification failed")
