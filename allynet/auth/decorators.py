"""Route guards: authenticated user, roles, and the caller's id."""
import functools

from flask_jwt_extended import get_jwt, get_jwt_identity, jwt_required, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from flask_limiter.util import get_remote_address
from jwt import PyJWTError

from allynet.db import get_db
from allynet.errors import Forbidden, Unauthorized
from allynet.http import _record
from allynet.fields import object_id

ROLES = ("user", "moderator", "admin")


def current_user_id():
    """The authenticated caller's id as an ObjectId."""
    user_id = object_id(get_jwt_identity())
    if user_id is None:
        raise Unauthorized("Invalid token subject")
    return user_id


def current_claims():
    """The verified JWT's claims."""
    return get_jwt()


def auth_required(view):
    """A valid, unrevoked access token is required."""
    return _record(jwt_required()(view), auth=True)


def roles_required(*roles):
    """The caller's current role (read from the database, not the token) must be one of `roles`."""

    def decorator(view):
        @functools.wraps(view)
        @jwt_required()
        def wrapper(*args, **kwargs):
            user = get_db().users.find_one({"_id": current_user_id()}, projection={"role": 1})
            if user is None:
                raise Unauthorized("Account no longer exists")
            if user.get("role") not in roles:
                raise Forbidden(f"Requires role {' or '.join(roles)}")
            return view(*args, **kwargs)

        return _record(wrapper, auth=True, roles=list(roles))

    return decorator


def user_or_ip_key():
    """Rate-limit key: the authenticated user when there is one, else the client address."""
    try:
        verify_jwt_in_request(optional=True)
        identity = get_jwt_identity()
    except (JWTExtendedException, PyJWTError):
        identity = None
    return f"user:{identity}" if identity else f"ip:{get_remote_address()}"
