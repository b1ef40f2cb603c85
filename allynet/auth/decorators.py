"""Route guards: authenticated user, roles, and the caller's id."""
import functools

from flask import request
from flask_jwt_extended import decode_token, get_current_user, get_jwt_identity, jwt_required
from flask_limiter.util import get_remote_address

from allynet.errors import Forbidden, Unauthorized
from allynet.http import record_doc
from allynet.fields import object_id

ROLES = ("user", "moderator", "admin")


def current_user_id():
    """The authenticated caller's id as an ObjectId."""
    user_id = object_id(get_jwt_identity())
    if user_id is None:
        raise Unauthorized("Invalid token subject")
    return user_id


def auth_required(view):
    """A valid, unrevoked access token is required."""
    return record_doc(jwt_required()(view), auth=True)


def roles_required(*roles):
    """The caller's current role (read from the database, not the token) must be one of `roles`."""

    def decorator(view):
        @functools.wraps(view)
        @jwt_required()
        def wrapper(*args, **kwargs):
            user = get_current_user()  # read from the database by the JWT user lookup (jwt_handlers)
            if user is None:
                raise Unauthorized("Account no longer exists")
            if user.get("role") not in roles:
                raise Forbidden(f"Requires role {' or '.join(roles)}")
            return view(*args, **kwargs)

        return record_doc(wrapper, auth=True, roles=list(roles))

    return decorator


def user_or_ip_key():
    """Rate-limit key: the token's user when it bears a valid signature, else the client address."""
    # Decoded only, without the revocation lookup: a rate-limit key must not need MongoDB
    # (during an outage each lookup cost a timeout, and Flask-Limiter took the failure for a
    # dead rate-limit storage). The view's own auth check still rejects revoked tokens.
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    identity = None
    if scheme.lower() == "bearer" and token.strip():
        try:
            identity = decode_token(token.strip()).get("sub")
        except Exception:  # any unusable token just means "not a user": key by address
            identity = None
    return f"user:{identity}" if isinstance(identity, str) and identity else f"ip:{get_remote_address()}"
