"""Auth rules: accounts, token pairs, rotation and durable revocation."""
from datetime import datetime, timezone

from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import ExpiredSignatureError, InvalidTokenError
from pymongo.errors import DuplicateKeyError

from allynet import clock
from allynet.auth.passwords import check_password
from allynet.errors import TokenExpired, TokenRevoked, Unauthorized, ValidationFailed
from allynet.fields import object_id
from allynet.users import service as users_service


def issue_tokens(user):
    """A fresh access + refresh pair for a user document."""
    identity = str(user["_id"])
    claims = {"role": user.get("role", "user"), "email": user["email"]}
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


def is_revoked(*, db, jti):
    """True when this token id has been revoked."""
    return db.revoked_tokens.find_one({"_id": jti}, projection={"_id": 1}) is not None


def rotate(*, db, payload):
    """Exchange a refresh token for a new pair, revoking it; a reused one is token_revoked."""
    if not revoke(db=db, payload=payload, reason="rotated"):
        raise TokenRevoked()
    user = db.users.find_one({"_id": object_id(payload["sub"])})
    if user is None:
        raise Unauthorized("Account no longer exists")
    return issue_tokens(user)


def logout(*, db, access_payload, refresh_token=None):
    """Revoke the access token and, when given, the user's refresh token."""
    if refresh_token:
        try:
            refresh = decode_token(refresh_token)
        except ExpiredSignatureError:
            refresh = None  # already dead; nothing to revoke
        except (InvalidTokenError, JWTExtendedException) as exc:
            raise ValidationFailed(details={"refresh_token": ["Not a valid refresh token."]}) from exc
        if refresh is not None:
            if refresh.get("type") != "refresh" or refresh.get("sub") != access_payload["sub"]:
                raise ValidationFailed(details={"refresh_token": ["Not a refresh token of this user."]})
            revoke(db=db, payload=refresh, reason="logout")
    revoke(db=db, payload=access_payload, reason="logout")


def user_id_from_access_token(*, db, token):
    """The user id of a valid, unrevoked access token (Socket.IO connect)."""
    if not token or not isinstance(token, str):
        raise Unauthorized("Missing token")
    try:
        payload = decode_token(token)
    except ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except (InvalidTokenError, JWTExtendedException, ValueError, KeyError) as exc:
        raise Unauthorized("Invalid token") from exc
    if payload.get("type") != "access":
        raise Unauthorized("Not an access token")
    if is_revoked(db=db, jti=payload.get("jti")):
        raise TokenRevoked()
    user_id = object_id(payload.get("sub"))
    if user_id is None or db.users.find_one({"_id": user_id}, projection={"_id": 1}) is None:
        raise Unauthorized("Unknown user")
    return user_id
