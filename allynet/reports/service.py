"""Community reports: creation, lifetimes, votes, moderation and listing.

Statuses
- ``pending``: a speed camera waiting for a moderator; shown only to its
  reporter and to moderators. Reporters whose trust score is at least
  ``TRUSTED_REPORTER_SCORE`` skip it (their cameras start ``active``).
- ``active``: visible. ``approved``: visible, approved by a moderator.
- ``hidden``: hidden by votes (``hidden_by: "votes"``, when downvotes exceed
  upvotes by ``HIDE_MARGIN``) or by a moderator (``hidden_by: "moderator"``).
- ``rejected``: rejected by a moderator.

Visible ("credible") = ``active`` or ``approved`` and not expired.

Lifetimes: ``LIFETIMES`` per type from creation; every voter's first upvote
extends ``expires_at`` by a quarter of the base lifetime (toggling a vote
does not extend it again). Speed cameras have no ``expires_at``: pending ones
wait for a moderator, approved or trusted ones stay. Expiry is a TTL index
on ``expires_at`` and, because the TTL sweep runs only once a minute, also
the ``not_expired`` filter in every query here: an expired report is a 404.

Votes: one ``report_votes`` document per (report, user), unique index. The
vote record decides, atomically, whether a vote is new, changed or repeated;
only then are the report's counters moved with one ``$inc`` (never
read-modify-write), so ``upvotes``/``downvotes`` always equal the vote
records. Voting on a hidden, pending or rejected report is 409 ``conflict``;
on an expired or unknown one 404; on one's own report 403.

Flagged (the moderators' queue, ``GET /reports?status=flagged``): a
not-expired report not reviewed by a moderator since its last downvote that
is either hidden by votes, or visible with at least ``REPORT_FLAG_DOWNVOTES``
(default 2) downvotes. Any moderator action marks it reviewed; a later
downvote puts it back in the queue.

Trust (``allynet.trust``): ``report_confirmed`` once per report, when net
upvotes first reach ``trust.CONFIRM_UPVOTES`` or a moderator approves it;
``report_rejected`` when a moderator rejects it.
"""
import csv
import io
import json
from datetime import timedelta

from flask import current_app
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from allynet import audit, clock, trust
from allynet.errors import Conflict, Forbidden, InvalidTransition, NotFound
from allynet.pagination import newest_first_page, time_ordered_page
from allynet.reports import alerts_service
from allynet.reports.alerts_service import not_expired
from allynet.reports.schemas import DEFAULT_RADIUS_M, audit_entry_schema

LIFETIMES = {
    "police": timedelta(hours=2),
    "accident": timedelta(hours=3),
    "traffic": timedelta(hours=1),
    "weather": timedelta(hours=6),
    "hazard": timedelta(hours=24),
    "road_closure": timedelta(hours=24),
    "speed_camera": None,  # waits for a moderator, then stays
}
HIDE_MARGIN = 3  # downvotes - upvotes that hide an active report
VISIBLE = ("active", "approved")
MODERATOR_ROLES = ("moderator", "admin")
QUEUES = ("pending", "flagged")  # status lists served oldest first
# action -> (statuses it may start from, status it leads to)
TRANSITIONS = {
    "approve": (("pending", "active", "hidden"), "approved"),
    "reject": (("pending", "active", "hidden", "approved"), "rejected"),
    "hide": (("pending", "active", "approved"), "hidden"),
}
AUDITED_FIELDS = ("status", "hidden_by", "expires_at")


def flag_downvotes():
    """Downvotes that put a visible report in the flagged queue (config REPORT_FLAG_DOWNVOTES)."""
    return int(current_app.config["REPORT_FLAG_DOWNVOTES"])


def flagged_filter():
    """The Mongo filter for the flagged queue (see the module docstring)."""
    return {
        "reviewed": {"$ne": True},
        "$or": [
            {"status": "hidden", "hidden_by": "votes"},
            {"status": {"$in": list(VISIBLE)}, "downvotes": {"$gte": flag_downvotes()}},
        ],
    }


def is_flagged(report, min_downvotes):
    """The same rule as `flagged_filter`, for one document."""
    if report.get("reviewed"):
        return False
    if report["status"] == "hidden":
        return report.get("hidden_by") == "votes"
    return report["status"] in VISIBLE and report.get("downvotes", 0) >= min_downvotes


def for_moderators(report):
    """A report with its `flagged` state, for the moderators' view."""
    report["flagged"] = is_flagged(report, flag_downvotes())
    return report


def has_role(*, db, user_id, roles):
    """True when the user's current role (from the database) is one of `roles`."""
    user = db.users.find_one({"_id": user_id}, projection={"role": 1})
    return user is not None and user.get("role") in roles


def create_report(*, db, user_id, data):
    """File a report; visible ones are pushed to nearby parties at once."""
    now = clock.now()
    report_type = data["type"]
    lifetime = LIFETIMES[report_type]
    status = "active"
    if lifetime is None:
        user = db.users.find_one({"_id": user_id}, projection={"trust_score": 1}) or {}
        trusted = (user.get("trust_score") or 0) >= current_app.config["TRUSTED_REPORTER_SCORE"]
        status = "active" if trusted else "pending"
    report = {
        "user_id": user_id,
        "type": report_type,
        "location": data["location"],
        "description": data.get("description") or "",
        "status": status,
        "upvotes": 0,
        "downvotes": 0,
        "net": 0,  # upvotes - downvotes, kept by the same $inc so filters need no $expr
        "extensions": 0,
        "lifetime_s": lifetime.total_seconds() if lifetime else None,
        "expires_at": now + lifetime if lifetime else None,
        "confirmed": False,
        "reviewed": False,
        "hidden_by": None,
        "created_at": now,
        "updated_at": now,
    }
    db.reports.insert_one(report)
    if status in VISIBLE:
        alerts_service.push_to_nearby_parties(db=db, source="report", item=report)
    alerts_service.tell_console(db=db, layer="reports", item=report, change="created")
    return report


def get_report(*, db, report_id, viewer_id):
    """A report the viewer may see: visible ones to all; others to their reporter and moderators."""
    report = db.reports.find_one({"_id": report_id, **not_expired(clock.now())})
    if report is None:
        raise NotFound("Report not found")
    if report["status"] in VISIBLE or report["user_id"] == viewer_id:
        return report
    if has_role(db=db, user_id=viewer_id, roles=MODERATOR_ROLES):
        return for_moderators(report)
    raise NotFound("Report not found")


def vote(*, db, report_id, user_id, value):
    """Cast or change the caller's vote; returns the updated report."""
    now = clock.now()
    report = db.reports.find_one({"_id": report_id, **not_expired(now)},
                                 projection={"user_id": 1, "status": 1})
    if report is None:
        raise NotFound("Report not found")
    if report["user_id"] == user_id:
        raise Forbidden("You cannot vote on your own report")
    if report["status"] not in VISIBLE:
        # Only those who may see it (get_report) learn that it exists but takes no votes.
        if not has_role(db=db, user_id=user_id, roles=MODERATOR_ROLES):
            raise NotFound("Report not found")
        raise Conflict("This report is not open for votes", details={"status": report["status"]})

    counts, extends = _record_vote(db=db, report_id=report_id, user_id=user_id, value=value, now=now)
    if counts is None:  # the same vote again: nothing moves
        return _current(db=db, report_id=report_id, now=now)
    update = {"$inc": counts, "$set": {"updated_at": now}}
    if value == "down":
        update["$set"]["reviewed"] = False  # back in the flagged queue if it qualifies
    if extends:
        update["$inc"]["extensions"] = 1
    updated = db.reports.find_one_and_update({"_id": report_id}, update, return_document=ReturnDocument.AFTER)
    if updated is None:  # removed by the TTL sweep meanwhile
        raise NotFound("Report not found")
    if extends and updated.get("lifetime_s") and updated.get("expires_at") is not None:
        updated = _extend(db=db, report=updated)
    if value == "up":
        if not updated.get("confirmed"):
            _confirm_once(db=db, report_id=report_id, min_net=trust.CONFIRM_UPVOTES)
    else:  # a downvote may put it in the flagged queue or hide it
        updated = _hide_if_voted_down(db=db, report=updated, now=now)
        alerts_service.tell_console(db=db, layer="reports", item=updated, change="updated")
    if updated.get("expires_at") is not None and updated["expires_at"] <= now:
        raise NotFound("Report not found")
    return updated


def _record_vote(*, db, report_id, user_id, value, now):
    """Write the vote record; returns (counter increments or None, whether it extends the report)."""
    other = "down" if value == "up" else "up"
    try:
        db.report_votes.insert_one({"report_id": report_id, "user_id": user_id, "value": value,
                                    "extended": value == "up", "created_at": now, "updated_at": now})
        return {f"{value}votes": 1, "net": 1 if value == "up" else -1}, value == "up"
    except DuplicateKeyError:
        pass
    changes = {"value": value, "updated_at": now}
    if value == "up":
        changes["extended"] = True
    # Compare-and-set on the previous value: of two racing changes only one moves the counters.
    before = db.report_votes.find_one_and_update(
        {"report_id": report_id, "user_id": user_id, "value": other}, {"$set": changes},
        return_document=ReturnDocument.BEFORE)
    if before is None:
        return None, False
    counts = {f"{value}votes": 1, f"{other}votes": -1, "net": 2 if value == "up" else -2}
    return counts, value == "up" and not before.get("extended")


def _extend(*, db, report):
    """Move `expires_at` to creation + lifetime + extensions quarters (monotonic `$max`)."""
    lifetime = timedelta(seconds=report["lifetime_s"])
    target = report["created_at"] + lifetime + report["extensions"] * lifetime / 4
    # Racing upvoters each write the target their own count gives; $max keeps the largest,
    # which is the one computed from the final count.
    return db.reports.find_one_and_update(
        {"_id": report["_id"], "expires_at": {"$ne": None}}, {"$max": {"expires_at": target}},
        return_document=ReturnDocument.AFTER) or report


def _net_votes(db, report_id):
    """Upvotes minus downvotes counted from the vote records.

    The counters on the report are moved by one `$inc` per vote after its record is written, so
    under racing votes they can lag behind or run ahead of any state the votes ever had (one user
    flipping up and down fast: -1, then -2 applied before the +2 in between). Each user's single
    record is always a real state of that user's vote: hiding and confirming decide from these."""
    up = db.report_votes.count_documents({"report_id": report_id, "value": "up"})
    down = db.report_votes.count_documents({"report_id": report_id, "value": "down"})
    return up - down


def _confirm_once(*, db, report_id, min_net=None):
    """Count `report_confirmed` for the reporter the first time the report is confirmed (by votes:
    once the vote records give a net of `min_net`)."""
    if min_net is not None and _net_votes(db, report_id) < min_net:
        return
    confirmed = db.reports.find_one_and_update({"_id": report_id, "confirmed": {"$ne": True}},
                                               {"$set": {"confirmed": True}}, projection={"user_id": 1})
    if confirmed is not None:
        trust.apply_event(db=db, user_id=confirmed["user_id"], event="report_confirmed")


def _hide_if_voted_down(*, db, report, now):
    """Hide an active report once downvotes exceed upvotes by HIDE_MARGIN (in the vote records)."""
    if report["status"] != "active" or _net_votes(db, report["_id"]) > -HIDE_MARGIN:
        return report
    hidden = db.reports.find_one_and_update(
        {"_id": report["_id"], "status": "active"},
        {"$set": {"status": "hidden", "hidden_by": "votes", "hidden_at": now, "reviewed": False}},
        return_document=ReturnDocument.AFTER)
    return hidden or _current(db=db, report_id=report["_id"], now=now)


def _current(*, db, report_id, now):
    report = db.reports.find_one({"_id": report_id, **not_expired(now)})
    if report is None:
        raise NotFound("Report not found")
    return report


def moderate(*, db, actor_id, report_id, action, reason=None):
    """Approve, reject or hide a report; one compare-and-set, then the audit entry and trust."""
    now = clock.now()
    report = db.reports.find_one({"_id": report_id, **not_expired(now)})
    if report is None:
        raise NotFound("Report not found")
    sources, target = TRANSITIONS[action]
    if report["status"] not in sources:
        raise InvalidTransition(f"Cannot {action} a {report['status']} report",
                                details={"status": report["status"], "action": action})
    changes = {"status": target, "reviewed": True, "moderated_by": actor_id, "moderated_at": now,
               "moderation_reason": reason, "updated_at": now}
    if action == "hide":
        changes["hidden_by"] = "moderator"
    elif action == "approve":
        changes["hidden_by"] = None
        if report["type"] == "speed_camera":
            changes["expires_at"] = None  # approved cameras stay
    before = db.reports.find_one_and_update(
        {"_id": report_id, "status": report["status"], **not_expired(now)}, {"$set": changes},
        return_document=ReturnDocument.BEFORE)
    if before is None:
        raise InvalidTransition("The report changed meanwhile; reload it", details={"action": action})
    after = {**before, **changes}
    audit.record(db=db, actor_id=actor_id, action=f"report.{action}", target_type="report",
                 target_id=report_id, before={key: before.get(key) for key in AUDITED_FIELDS},
                 after={key: after.get(key) for key in AUDITED_FIELDS}, reason=reason)
    if action == "approve":
        _confirm_once(db=db, report_id=report_id)
        if before["status"] not in VISIBLE:
            alerts_service.push_to_nearby_parties(db=db, source="report", item=after)
    elif action == "reject":
        trust.apply_event(db=db, user_id=before["user_id"], event="report_rejected")
    alerts_service.tell_console(db=db, layer="reports", item=after, change="updated")
    return for_moderators(after)


def list_reports(*, db, viewer_id, query):
    """Visible reports near a point (by distance) or newest first; `status` lists are for moderators."""
    now = clock.now()
    status = query.get("status")
    if status is not None:
        if not has_role(db=db, user_id=viewer_id, roles=MODERATOR_ROLES):
            raise Forbidden("Requires role moderator or admin")
        conditions = [flagged_filter() if status == "flagged" else {"status": status}]
    else:
        conditions = [{"status": {"$in": list(VISIBLE)}}]
    conditions.append(not_expired(now))
    if query.get("type"):
        conditions.append({"type": query["type"]})
    limit = query["limit"]
    if query.get("near") is not None:
        pipeline = [
            {"$geoNear": {"near": query["near"], "key": "location", "distanceField": "distance_m",
                          "maxDistance": query.get("radius_m") or DEFAULT_RADIUS_M,
                          "query": {"$and": conditions}, "spherical": True}},
            {"$limit": limit},
        ]
        items = list(db.reports.aggregate(pipeline))
        next_cursor = None
    else:
        # The moderators' queues are worked oldest first; every other list is newest first.
        items, next_cursor = time_ordered_page(db.reports, query={"$and": conditions}, limit=limit,
                                               cursor=query.get("cursor"), oldest_first=status in QUEUES)
    if status is not None:
        items = [for_moderators(item) for item in items]
    return items, next_cursor


AUDIT_FILTERS = {"actor": "actor_id", "action": "action", "target_type": "target_type", "target_id": "target_id"}


def audit_conditions(query):
    """Mongo conditions for the audit-log filters (actor, action, target_type, target_id, since, until)."""
    conditions = [{field: query[key]} for key, field in AUDIT_FILTERS.items() if query.get(key) is not None]
    if query.get("since") is not None:
        conditions.append({"at": {"$gte": query["since"]}})
    if query.get("until") is not None:
        conditions.append({"at": {"$lt": query["until"]}})
    return conditions


CSV_COLUMNS = ("at", "actor_id", "action", "target_type", "target_id", "reason", "before", "after")


def audit_log_csv(*, db, query):
    """Every audit entry matching the filters, newest first, as CSV text (`before`, `after` as JSON).

    A cell a spreadsheet would run as a formula (starting with = + - @) is prefixed with '.
    """
    conditions = audit_conditions(query)
    entries = db.audit_log.find({"$and": conditions} if conditions else {}).sort([("at", -1), ("_id", -1)])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in audit_entry_schema.dump(entries, many=True):
        cells = [json.dumps(entry.get(col), default=str) if col in ("before", "after") else entry.get(col)
                 for col in CSV_COLUMNS]
        writer.writerow(["'" + c if isinstance(c, str) and c[:1] in ("=", "+", "-", "@") else c for c in cells])
    return buffer.getvalue()


def list_audit_log(*, db, query):
    """Audit entries, newest first, filtered (see audit_conditions); cursor-paginated."""
    conditions = audit_conditions(query)
    return newest_first_page(db.audit_log, query={"$and": conditions} if conditions else {},
                             limit=query["limit"], cursor=query.get("cursor"), time_field="at")
