"""Auth HTTP endpoints."""
from flask import current_app, request
from flask_jwt_extended import get_jwt, jwt_required
from marshmallow import ValidationError

from allynet.auth import bp, service
from allynet.auth.decorators import auth_required
from allynet.auth.schemas import (auth_result_schema, login_schema, logout_schema,
                                  register_schema, token_pair_schema)
from allynet.db import get_db
from allynet.extensions import limiter
from allynet.errors import AllyNetError
from allynet.http import doc, json_body, no_body, ok, use_body


def _email_key():
    try:
        body = json_body()  # through the input gate: the key reaches the limiter's storage
    except (AllyNetError, ValidationError):
        body = None
    email = body.get("email") if isinstance(body, dict) else None
    return f"email:{email.strip().lower()}" if isinstance(email, str) else f"email:-{request.remote_addr}"


@bp.post("/register")
@limiter.limit(lambda: current_app.config["REGISTER_RATE_LIMIT"])
@doc(summary="Create an account", response=auth_result_schema, status=201, auth=False, tags=["auth"],
     errors={409: "conflict (email taken)"})
@use_body(register_schema)
def register(data):
    user, tokens = service.register(db=get_db(), data=data)
    return ok(auth_result_schema.dump({"user": user, **tokens}), 201)


@bp.post("/login")
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_IP"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_EMAIL"], key_func=_email_key)
@doc(summary="Log in", response=auth_result_schema, auth=False, tags=["auth"],
     errors={401: "unauthorized (wrong email or password)"})
@use_body(login_schema)
def login(data):
    user, tokens = service.login(db=get_db(), email=data["email"], password=data["password"])
    return ok(auth_result_schema.dump({"user": user, **tokens}))


@bp.post("/refresh")
@jwt_required(refresh=True, skip_revocation_check=True)  # service.rotate checks it, and detects reuse
@doc(summary="Rotate a refresh token", response=token_pair_schema, tags=["auth"], refresh=True)
@no_body
def refresh():
    return ok(token_pair_schema.dump(service.rotate(db=get_db(), payload=get_jwt())))


@bp.post("/logout")
@auth_required
@doc(summary="Revoke the access token and an optional refresh token", tags=["auth"])
@use_body(logout_schema, optional=True)
def logout(data):
    service.logout(db=get_db(), access_payload=get_jwt(), refresh_token=data.get("refresh_token"))
    return ok(None, message="Logged out")
