"""The request log: one line per HTTP request and per socket connect, disconnect or event outcome.

An HTTP line holds the method, the route template (the matched url_rule, e.g.
``/api/v1/emergencies/<oid:emergency_id>``, or ``<unmatched>``), the status,
the duration in ms, the user id of a verified JWT (none otherwise) and the
request id (``X-Request-ID``, see ``allynet.errors.request_id``). A socket line
holds the event (``connect``, ``disconnect`` or the client event's name), the
sid, the user id and the outcome (``ok`` or the refusal's error code).

What a line never holds, by construction: the raw path or its query string
(``?token=``), headers (``Authorization``), bodies, payloads, locations. The
fields travel as ``extra`` attributes of the record, so ``LOG_FORMAT=json``
(``JsonFormatter``) writes them as JSON members and ``text`` as key=value pairs
in the message.
"""
import json
import logging
import time
from datetime import datetime, timezone

from flask import g, request, request_finished, request_started
from flask_jwt_extended import get_jwt_identity

from allynet.errors import request_id

log = logging.getLogger("allynet.access")

UNMATCHED = "<unmatched>"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has: anything else on a record came in through `extra`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the record's extra fields, exc_info."""

    def format(self, record):
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                 .replace("+00:00", "Z"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def formatter(log_format):
    """The Formatter for LOG_FORMAT (`text` or `json`)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def init_app(app):
    """Log one line per request `app` handles."""
    request_started.connect(_started, app)
    request_finished.connect(_finished, app)


def _started(sender, **extra):
    g.allynet_request_started = time.perf_counter()


def _verified_user_id():
    """The `sub` of the JWT that flask-jwt-extended verified for this request, else None."""
    try:
        identity = get_jwt_identity()
    except RuntimeError:  # no token was verified for this request
        return None
    return identity if isinstance(identity, str) and identity else None


def _finished(sender, response, **extra):
    started = g.get("allynet_request_started")
    rule = request.url_rule
    fields = {
        "kind": "http",
        "method": request.method,
        "route": rule.rule if rule is not None else UNMATCHED,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000.0, 2) if started is not None else None,
        "user_id": _verified_user_id(),
        "request_id": request_id(),
    }
    log.info("request method=%s route=%s status=%s duration_ms=%s user_id=%s request_id=%s",
             fields["method"], fields["route"], fields["status"], fields["duration_ms"],
             fields["user_id"] or "-", fields["request_id"], extra=fields)


def socket_line(event, *, sid, user_id, outcome):
    """Log a socket connect, disconnect or event with its outcome (`ok` or an error code), never a payload."""
    fields = {"kind": "socket", "event": event, "sid": sid,
              "user_id": str(user_id) if user_id is not None else None, "outcome": outcome}
    log.info("socket event=%s sid=%s user_id=%s outcome=%s", event, sid, fields["user_id"] or "-", outcome,
             extra=fields)


def socket_ack(event, *, sid, user_id, ack):
    """Log the outcome of a client event from its ack."""
    socket_line(event, sid=sid, user_id=user_id, outcome="ok" if ack.get("ok") else ack["error"]["code"])
