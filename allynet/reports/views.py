"""Reports, votes, moderation, the alerts feed and the audit log (HTTP).

Rules and definitions (statuses, lifetimes, "flagged", "credible", vote
errors) are in `allynet.reports.service`; the feed and the `party:alert`
push in `allynet.reports.alerts_service`.
"""
from flask import current_app

from allynet.auth.decorators import auth_required, current_user_id, roles_required, user_or_ip_key
from allynet.db import get_db
from allynet.extensions import limiter
from allynet.http import doc, ok, ok_list, use_body, use_query
from allynet.reports import alerts_service, bp, service
from allynet.reports.schemas import (alert_create_schema, alert_query_schema, alert_schema,
                                     audit_entry_schema, audit_query_schema, moderate_schema,
                                     moderation_report_schema, official_alert_schema,
                                     report_create_schema, report_list_query_schema, report_schema,
                                     vote_schema)


def _dump_report(report):
    """Moderators' view when the service added moderation state, else the public one."""
    return (moderation_report_schema if "flagged" in report else report_schema).dump(report)


@bp.post("/reports")
@auth_required
@limiter.limit(lambda: current_app.config["REPORT_RATE_LIMIT"], key_func=user_or_ip_key)
@doc(summary="File a community report (rate limited per user: REPORT_RATE_LIMIT). Speed cameras start "
             "pending unless the reporter is trusted; a visible report pushes Socket.IO party:alert "
             "{type, source: report, id, location, description} to active parties with a member nearby",
     response=report_schema, status=201,
     tags=["reports"])
@use_body(report_create_schema)
def create_report(data):
    report = service.create_report(db=get_db(), user_id=current_user_id(), data=data)
    return ok(report_schema.dump(report), 201)


@bp.get("/reports")
@auth_required
@doc(summary="Visible reports near=lat,lng (nearest first, with distance_m) or newest first; "
             "status=flagged|pending|hidden|rejected for moderators and admins. Flagged: not reviewed by a "
             "moderator since its last downvote, and hidden by votes or visible with at least "
             "REPORT_FLAG_DOWNVOTES (2) downvotes; format=geojson answers a bare GeoJSON FeatureCollection "
             "(application/geo+json)",
     response=moderation_report_schema, many=True, geojson=True, tags=["reports"],
     errors={403: "forbidden (status= is for moderators)"})
@use_query(report_list_query_schema)
def list_reports(query):
    fmt = query.pop("format")
    items, next_cursor = service.list_reports(db=get_db(), viewer_id=current_user_id(), query=query)
    return ok_list([_dump_report(item) for item in items], next_cursor, fmt=fmt)


@bp.get("/reports/<oid:report_id>")
@auth_required
@doc(summary="One report (404 once expired; pending/hidden/rejected only for its reporter and moderators)",
     response=report_schema, tags=["reports"])
def get_report(report_id):
    report = service.get_report(db=get_db(), report_id=report_id, viewer_id=current_user_id())
    return ok(_dump_report(report))


@bp.post("/reports/<oid:report_id>/vote")
@auth_required
@doc(summary="Vote up or down (one per user, changeable; not on own report: 403; "
             "hidden/pending/rejected: 409 conflict; expired: 404)", response=report_schema, tags=["reports"],
     errors={403: "forbidden (own report)", 409: "conflict"})
@use_body(vote_schema)
def vote(report_id, data):
    report = service.vote(db=get_db(), report_id=report_id, user_id=current_user_id(), value=data["value"])
    return ok(report_schema.dump(report))


@bp.post("/reports/<oid:report_id>/moderate")
@roles_required("moderator", "admin")
@doc(summary="Moderate a report: approve, reject or hide (audited)", response=moderation_report_schema,
     tags=["reports"], errors={409: "invalid_transition"})
@use_body(moderate_schema)
def moderate(report_id, data):
    report = service.moderate(db=get_db(), actor_id=current_user_id(), report_id=report_id,
                              action=data["action"], reason=data.get("reason"))
    return ok(moderation_report_schema.dump(report))


@bp.get("/alerts")
@auth_required
@doc(summary="Current official alerts and credible reports near lat,lng, nearest first; "
             "format=geojson answers a bare GeoJSON FeatureCollection (application/geo+json)",
     response=alert_schema, many=True, geojson=True, tags=["alerts"])
@use_query(alert_query_schema)
def list_alerts(query):
    entries = alerts_service.alerts_near(db=get_db(), lat=query["lat"], lng=query["lng"],
                                         radius_m=query["radius_m"], types=query.get("types"),
                                         limit=query["limit"])
    return ok_list(alert_schema.dump(entries, many=True), fmt=query["format"])


@bp.post("/alerts")
@roles_required("moderator", "admin")
@doc(summary="Publish an official alert (moderators, admins; audited)", response=official_alert_schema,
     status=201, tags=["alerts"])
@use_body(alert_create_schema)
def create_alert(data):
    alert = alerts_service.create_alert(db=get_db(), user_id=current_user_id(), data=data)
    return ok(official_alert_schema.dump(alert), 201)


@bp.get("/audit-log")
@roles_required("admin")
@doc(summary="The audit log, newest first (admins)", response=audit_entry_schema, many=True, tags=["audit"])
@use_query(audit_query_schema)
def audit_log(query):
    entries, next_cursor = service.list_audit_log(db=get_db(), query=query)
    return ok_list(audit_entry_schema.dump(entries, many=True), next_cursor)
