"""The AllyNetError family and the handlers that render the contract's error shape.

Every error leaves the server as
``{"success": false, "error": {"code", "message", "details"?}}``.
"""
import logging
import math
import re
import time
import uuid

from flask import g, jsonify, request
from marshmallow import ValidationError
from pymongo.errors import (AutoReconnect, BulkWriteError, ConnectionFailure, ServerSelectionTimeoutError,
                            WriteError)
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# A client's X-Request-ID is kept when it looks like an id; anything else is replaced.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class AllyNetError(Exception):
    """A domain error with an HTTP status and a contract error code."""

    status = 400
    code = "bad_request"
    message = "Bad request"

    def __init__(self, message=None, *, details=None, code=None, status=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        if code:
            self.code = code
        if status:
            self.status = status

    def to_dict(self):
        """The contract's `error` object."""
        body = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(AllyNetError):
    status, code, message = 400, "bad_request", "Bad request"


class ValidationFailed(AllyNetError):
    status, code, message = 400, "validation_error", "Validation failed"


class Unauthorized(AllyNetError):
    status, code, message = 401, "unauthorized", "Authentication required"


class AccountSuspended(AllyNetError):
    status, code, message = 401, "account_suspended", "This account is suspended"


class TokenRevoked(AllyNetError):
    status, code, message = 401, "token_revoked", "Token has been revoked"


class TokenExpired(AllyNetError):
    status, code, message = 401, "token_expired", "Token has expired"


class Forbidden(AllyNetError):
    status, code, message = 403, "forbidden", "Not allowed"


class NotFound(AllyNetError):
    status, code, message = 404, "not_found", "Not found"


class Conflict(AllyNetError):
    status, code, message = 409, "conflict", "Conflict"


class InvalidTransition(AllyNetError):
    status, code, message = 409, "invalid_transition", "Invalid state transition"


class ServiceUnavailable(AllyNetError):
    status, code, message = 503, "service_unavailable", "A backing service is unavailable"


class RateLimited(AllyNetError):
    status, code, message = 429, "rate_limited", "Too many requests"


# MongoDB unreachable: answered 503 instead of a hang or a 500.
MONGO_DOWN_ERRORS = (ServerSelectionTimeoutError, AutoReconnect, ConnectionFailure)

# "Can't extract geo keys": a geometry a 2dsphere index refuses (MongoDB, and the embedded
# store's geo layer with the same code). Schemas refuse such input first; one that gets
# through is still the client's bad input, not a server fault.
GEO_KEYS_CODE = 16755


def client_error(exc):
    """The client-facing error for a database exception caused by bad input, or None."""
    if isinstance(exc, BulkWriteError):
        codes = {error.get("code") for error in (exc.details or {}).get("writeErrors", ())}
    elif isinstance(exc, WriteError):
        codes = {exc.code}
    else:
        return None
    if GEO_KEYS_CODE in codes:
        return ValidationFailed("The geometry cannot be indexed (invalid or degenerate)",
                                details={"_schema": ["Geometry not accepted: check for repeated, "
                                                     "antipodal or out-of-range coordinates."]})
    return None


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "bad_request",
    429: "rate_limited",
    503: "service_unavailable",
}


def error_response(status, code, message, details=None, headers=None):
    """Render one error in the contract's shape."""
    error = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    response = jsonify({"success": False, "error": error})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def request_id():
    """The id of this request: the client's X-Request-ID when well-formed (REQUEST_ID), else a uuid4 hex."""
    if "request_id" not in g:
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
    return g.request_id


def _retry_after(exc):
    from allynet.extensions import limiter

    current = limiter.current_limit
    if current is not None:
        return max(1, math.ceil(current.reset_at - time.time()))
    limit = getattr(getattr(exc, "limit", None), "limit", None)
    return max(1, int(limit.get_expiry())) if limit is not None else 60


def register_error_handlers(app):
    """Map every error the app can meet to the contract's format."""

    @app.errorhandler(AllyNetError)
    def handle_domain(exc):
        headers = {"Retry-After": str(exc.details.get("retry_after"))} if (
            isinstance(exc, RateLimited) and exc.details and exc.details.get("retry_after")
        ) else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(ValidationError)
    def handle_validation(exc):
        details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return error_response(400, "validation_error", "Validation failed", details)

    @app.errorhandler(HTTPException)
    def handle_http(exc):
        status = exc.code or 500
        code = HTTP_CODES.get(status, "bad_request" if status < 500 else "internal_error")
        headers = {}
        if status == 429:
            headers["Retry-After"] = str(_retry_after(exc))
            message = "Too many requests, retry later"
        elif status == 413:
            message = f"Request body over {app.config['MAX_CONTENT_LENGTH']} bytes"
        elif status == 405:
            message = f"Method {request.method} not allowed here"
            allow = exc.get_response().headers.get("Allow")
            if allow:
                headers["Allow"] = allow
        elif status == 404:
            message = "Not found"
        else:
            message = exc.description or exc.name
        return error_response(status, code, message, headers=headers)

    def handle_mongo_down(exc):
        rid = request_id()
        log.warning("MongoDB unreachable (request %s): %s", rid, exc, extra={"request_id": rid})
        return error_response(503, "service_unavailable", "Database unavailable, retry shortly",
                              {"service": "mongodb"})

    for exc_class in MONGO_DOWN_ERRORS:
        app.register_error_handler(exc_class, handle_mongo_down)

    @app.errorhandler(WriteError)
    @app.errorhandler(BulkWriteError)
    def handle_write_error(exc):
        known = client_error(exc)
        if known is None:
            return handle_unexpected(exc)
        log.info("write refused as bad input (request %s): %s", request_id(), exc)
        return handle_domain(known)

    @app.errorhandler(Exception)
    def handle_unexpected(exc):
        rid = request_id()
        log.exception("internal_error (request %s)", rid, extra={"request_id": rid})
        return error_response(500, "internal_error", "Internal error",
                              {"request_id": rid})

    @app.after_request
    def add_request_id(response):
        response.headers["X-Request-ID"] = request_id()
        return response
