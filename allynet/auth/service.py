"""Auth rules: accounts, token pairs, rotation and durable revocation.

Every pair issued by one login carries the same family id (`fam`), kept through
refresh rotations, so a login can be revoked as a whole: on logout, and when a
rotated refresh token is presented again (reuse: it was stolen or replayed).
Ending a login also ends its live Socket.IO sessions (`realtime.end_user_sessions`).
"""
import logging
import uuid
from datetime import datetime, timedelta, timezone

import jwt as pyjwt
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import ExpiredSignatureError, InvalidTokenError
from pymongo.errors import DuplicateKeyError

from allynet import clock, realtime
from allynet.auth.passwords import check_password
from allynet.errors import AccountSuspended, TokenExpired, TokenRevoked, Unauthorized, ValidationFailed
from allynet.fields import object_id
from allynet.users import service as users_service

log = logging.getLogger(__name__)

FAMILY_CLAIM = "fam"
CONSOLE_CLAIM = "console"  # a console session's token: read from its cookie by the console only
# The value of CONSOLE_CLAIM in a console page's socket token (allynet/console/service.py): good for
# connecting a listen-only console socket, and for nothing else (not the API, not the console's pages).
CONSOLE_SOCKET = "socket"
TOKEN_TYPES = ("access", "refresh")


def new_family():
    """A new login family id (the `fam` claim of every token one login issues)."""
    return uuid.uuid4().hex


def issue_tokens(user, family=None):
    """A fresh access + refresh pair for a user document, in login `family` (a new one when None)."""
    identity = str(user["_id"])
    claims = {"role": user.get("role", "user"), "email": user["email"], FAMILY_CLAIM: family or new_family()}
    return {
        "access_token": create_access_token(identity=identity, additional_claims=claims),
        "refresh_token": create_refresh_token(identity=identity, additional_claims=claims),
    }


def register(*, db, data):
    """Create an account and return (user, tokens)."""
    user = users_service.create_user(db=db, **data)
    return user, issue_tokens(user)


def login(*, db, email, password):
    """Check credentials; the same 401 for an unknown email and a wrong password."""
    user = users_service.find_by_email(db=db, email=email)
    if not check_password(password, user.get("password_hash") if user else None):
        raise Unauthorized("Invalid email or password")
    if users_service.is_suspended(user):
        raise AccountSuspended()
    return user, issue_tokens(user)


def _expiry(payload):
    return datetime.fromtimestamp(payload["exp"], tz=timezone.utc).replace(tzinfo=None)


def revoke(*, db, payload, reason):
    """Store a token's revocation until its own expiry; False when it already was revoked."""
    try:
        db.revoked_tokens.insert_one({
            "_id": payload["jti"],
            "type": payload.get("type"),
            "user_id": payload.get("sub"),
            "reason": reason,
            "revoked_at": clock.now(),
            "expires_at": _expiry(payload),
        })
    except DuplicateKeyError:
        return False
    return True


def _family_key(family):
    return f"family:{family}"


def revoke_family(*, db, user_id, family, reason):
    """Revoke every token of one login until the newest could expire; False when it already was."""
    lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    if not isinstance(lifetime, timedelta):
        lifetime = timedelta(seconds=lifetime) if lifetime else timedelta(days=3650)
    try:
        db.revoked_tokens.insert_one({
            "_id": _family_key(family),
            "type": "family",
            "user_id": str(user_id),
            "reason": reason,
            "revoked_at": clock.now(),
            "expires_at": clock.now() + lifetime,
        })
    except DuplicateKeyError:
        return False
    return True


def is_revoked(*, db, jti, family=None):
    """True when this token id, or its login family, has been revoked."""
    ids = [jti] if jti else []
    if family:
        ids.append(_family_key(family))
    if not ids:
        return False
    query = {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}
    return db.revoked_tokens.find_one(query, projection={"_id": 1}) is not None


def token_problem(payload, token_type, raw_token=None, console=False):
    """Why a validly signed token is not one we issue for `token_type` use, or None.

    flask-jwt-extended fills a missing `type` with "access" and a missing `jti` with None,
    so with `raw_token` the claims as signed are checked too. A console session's token is good
    only where `console` is true (the console's pages), and only there; a console socket token
    only where `console` is CONSOLE_SOCKET (a socket's connect).
    """
    if not isinstance(payload.get("jti"), str) or not payload["jti"]:
        return "Token has no id"
    claim = payload.get(CONSOLE_CLAIM) or False
    if claim != console:
        return "Console tokens are for the console only" if not console else "Not a console session"
    if payload.get("type") not in ((token_type,) if token_type else TOKEN_TYPES):
        return "Wrong token type"
    if raw_token is not None:
        try:
            signed = pyjwt.decode(raw_token, options={"verify_signature": False})
        except InvalidTokenError:
            return "Malformed token"
        if signed.get("type") != payload["type"]:
            return "Wrong token type"
    return None


def rotate(*, db, payload):
    """Exchange a refresh token for a new pair of the same login, revoking it.

    A refresh token presented again after its rotation is reuse: the whole login is
    revoked and its live sockets end (`token_revoked`).
    """
    family = payload.get(FAMILY_CLAIM)
    if is_revoked(db=db, jti=None, family=family):
        raise TokenRevoked()
    if not revoke(db=db, payload=payload, reason="rotated"):
        _refresh_reused(db=db, payload=payload)
        raise TokenRevoked()
    user = db.users.find_one({"_id": object_id(payload["sub"])})
    if user is None:
        raise Unauthorized("Account no longer exists")
    if users_service.is_suspended(user):
        raise AccountSuspended()
    return issue_tokens(user, family=family)


def _refresh_reused(*, db, payload):
    family = payload.get(FAMILY_CLAIM)
    log.warning("refresh token reused for user %s: revoking its login", payload.get("sub"))
    if family:
        revoke_family(db=db, user_id=payload["sub"], family=family, reason="refresh_reused")
    # Without a family (a token from before login families) which sockets it opened is unknown:
    # then all of the user's end.
    realtime.end_user_sessions(payload["sub"], "token_revoked", family=family)


def logout(*, db, access_payload, refresh_token=None):
    """Revoke the access token, its login (every token of the family) and, when given, the refresh
    token; that login's live sockets end with `logout`."""
    if refresh_token:
        try:
            refresh = decode_token(refresh_token)
        except ExpiredSignatureError:
            refresh = None  # already dead; nothing to revoke
        except (InvalidTokenError, JWTExtendedException) as exc:
            raise ValidationFailed(details={"refresh_token": ["Not a valid refresh token."]}) from exc
        if refresh is not None:
            if token_problem(refresh, "refresh", raw_token=refresh_token) or \
                    refresh.get("sub") != access_payload["sub"]:
                raise ValidationFailed(details={"refresh_token": ["Not a refresh token of this user."]})
            revoke(db=db, payload=refresh, reason="logout")
    else:
        refresh = None
    revoke(db=db, payload=access_payload, reason="logout")
    user_id = access_payload["sub"]
    families = {payload.get(FAMILY_CLAIM) for payload in (access_payload, refresh) if payload}
    families.discard(None)
    for family in families:
        revoke_family(db=db, user_id=user_id, family=family, reason="logout")
        realtime.end_user_sessions(user_id, "logout", family=family)
    if not families:  # a token from before login families: the sockets opened with it
        realtime.end_user_sessions(user_id, "logout", jti=access_payload["jti"])


def access_token_owner(*, db, token, console_socket=False):
    """(user id, claims) of a valid, unrevoked access token of an existing user (Socket.IO).

    With `console_socket`, a console page's socket token is good too (its claims say which)."""
    if not token or not isinstance(token, str):
        raise Unauthorized("Missing token")
    try:
        payload = decode_token(token)
    except ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except (InvalidTokenError, JWTExtendedException, ValueError, KeyError) as exc:
        raise Unauthorized("Invalid token") from exc
    console = CONSOLE_SOCKET if console_socket and payload.get(CONSOLE_CLAIM) == CONSOLE_SOCKET else False
    problem = token_problem(payload, "access", raw_token=token, console=console)
    if problem:
        raise Unauthorized(problem)
    if is_revoked(db=db, jti=payload["jti"], family=payload.get(FAMILY_CLAIM)):
        raise TokenRevoked()
    user_id = object_id(payload.get("sub"))
    user = db.users.find_one({"_id": user_id}, projection={"suspended_until": 1}) if user_id else None
    if user is None:
        raise Unauthorized("Unknown user")
    if users_service.is_suspended(user):
        raise AccountSuspended()
    return user_id, payload


def user_id_from_access_token(*, db, token):
    """The user id of a valid, unrevoked access token (Socket.IO connect)."""
    return access_token_owner(db=db, token=token)[0]


def renewal_claims(*, db, token, user_id):
    """Claims of a new access token for a live socket of `user_id`; every refusal is `unauthorized`."""
    try:
        owner, payload = access_token_owner(db=db, token=token)
    except (TokenExpired, TokenRevoked) as exc:
        raise Unauthorized(exc.message) from exc
    if owner != user_id:
        raise Unauthorized("Token of another user")
    return payload
