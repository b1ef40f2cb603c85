"""Console pages and form actions (HTML).

Sign-in puts an access token in an HttpOnly, SameSite=Strict cookie (flask-jwt-extended's cookie
mode, path /console); every form carries the token's CSRF value and flask-jwt-extended refuses a
state-changing request without it (double submit; the pages' scripts send it as X-CSRF-TOKEN).
Only this blueprint reads the cookie: its token carries the `console` claim, which the API refuses
(auth.jwt_handlers), and the API reads headers only. Every page answers with a strict
Content-Security-Policy: scripts only from the package's static folder (the live updates, the map
and the vendored MapLibre and socket.io client), never inline; Jinja escapes every value, the
scripts write text only. Actions call the same services as the API, so the rules and the audit
log are the same.

Who gets in: moderators and admins (everything), and the owners, admins and dispatchers of a
dispatching organization (verified, pro plan), who see the reports queue (without the moderation
actions) and the live map of their service area only, and a 403 page elsewhere.
"""
import functools
from urllib.parse import urlsplit

from flask import Response, current_app, g, jsonify, make_response, redirect, render_template, request, url_for
from flask_jwt_extended import (get_current_user, get_jwt, set_access_cookies, unset_jwt_cookies,
                                verify_jwt_in_request)
from flask_jwt_extended.exceptions import CSRFError, JWTExtendedException
from jwt import PyJWTError
from marshmallow import ValidationError

from allynet import inputgate
from allynet.auth import service as auth_service
from allynet.console import bp, service
from allynet.db import get_db
from allynet.errors import AllyNetError
from allynet.extensions import limiter
from allynet.reports import alerts_service
from allynet.reports import service as reports_service
from allynet.reports.schemas import (ALERT_TYPES, alert_create_schema, alert_update_schema, audit_filter_schema,
                                     audit_query_schema, moderate_schema)
from allynet.users import service as users_service
from allynet.users.schemas import ROLES, admin_user_update_schema, suspend_schema, user_list_query_schema

STAFF = service.STAFF
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _tile_origin():
    """scheme://host[:port] of CONSOLE_TILE_URL, or None."""
    url = current_app.config.get("CONSOLE_TILE_URL")
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def map_csp():
    """The live map page's policy: MapLibre starts its worker from a blob: URL (worker-src blob:) and,
    with CONSOLE_TILE_URL, fetches the base map from that origin (connect-src, img-src)."""
    origin = _tile_origin()
    extra = f" {origin}" if origin else ""
    return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{extra}; "
            f"connect-src 'self'{extra}; worker-src blob:; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'")


@bp.after_request
def security_headers(response):
    """Every console response: strict CSP, no framing, no sniffing, no caching, no referrer."""
    response.headers["Content-Security-Policy"] = map_csp() if request.endpoint == "console.live_map" else CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _page(template, status=200, **context):
    return render_template(f"console/{template}", user=g.get("console_user"), csrf=g.get("console_csrf"),
                           scope=g.get("console_scope"), **context), status


def _refusal(roles, dispatchers):
    who = [role + "s" for role in roles] + (["organization dispatchers"] if dispatchers else [])
    listed = f"{', '.join(who[:-1])} and {who[-1]}" if len(who) > 1 else who[0]
    return f"This page is for {listed} only."


def staff_page(*roles, dispatchers=False):
    """Signed in through the cookie with one of `roles` (staff by default), or with `dispatchers` an
    organization's dispatcher: else the sign-in page (no or dead session), 403 page (anyone else,
    or a form without the CSRF value). The view finds the viewer's scope in `g.console_scope`."""
    roles = roles or STAFF

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            try:
                verify_jwt_in_request(locations=["cookies"])
            except CSRFError:
                return _page("error.html", 403, message="This form is out of date or came from another "
                                                        "site; reload the page and try again.")
            except (JWTExtendedException, PyJWTError, AllyNetError):
                response = make_response(redirect(url_for("console.sign_in"), 303))
                if current_app.config["JWT_ACCESS_COOKIE_NAME"] in request.cookies:  # a dead session
                    unset_jwt_cookies(response)
                return response
            user = users_service.get_or_raise(db=get_db(), user_id=get_current_user()["_id"])
            g.console_user, g.console_csrf = user, get_jwt().get("csrf")
            g.console_scope = service.scope_of(db=get_db(), user=user)
            if user.get("role") not in roles and not (dispatchers and g.console_scope is not None):
                return _page("error.html", 403, message=_refusal(roles, dispatchers))
            try:
                return view(*args, **kwargs)
            except ValidationError as exc:
                return _page("error.html", 400, message="Please check the form.", details=exc.messages)
            except AllyNetError as exc:
                return _page("error.html", exc.status, message=exc.message, details=exc.details)

        return wrapper

    return decorator


def _fields(source, names):
    data = {name: source[name].strip() for name in names if source.get(name, "").strip()}
    inputgate.check(data)
    return data


def _form(*names):
    """The named form fields (blank ones left out), through the input gate."""
    return _fields(request.form, names)


def _args(*names):
    """The named query parameters (blank ones left out), through the input gate."""
    return _fields(request.args, names)


def _utc(data, *names):
    """`<input type=datetime-local>` values (minutes, no zone) read as UTC."""
    for name in names:
        if name in data and len(data[name]) == 16:
            data[name] += ":00Z"
    return data


def _back(endpoint, **values):
    return redirect(url_for(endpoint, **values), 303)


# ---- sign-in ------------------------------------------------------------------------------------

@bp.get("/login")
def sign_in():
    return render_template("console/login.html"), 200


def _form_email_key():
    return f"email:{request.form.get('email', '').strip().lower()[:200]}"


@bp.post("/login")
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_IP"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT_EMAIL"], key_func=_form_email_key)
def sign_in_submit():
    email, password = request.form.get("email", ""), request.form.get("password", "")
    try:
        user, _ = auth_service.login(db=get_db(), email=email, password=password)
    except AllyNetError as exc:
        return render_template("console/login.html", error=exc.message, email=email), exc.status
    if service.scope_of(db=get_db(), user=user) is None:
        return render_template("console/error.html", message="The console is for moderators, admins and "
                                                             "organization dispatchers."), 403
    response = make_response(redirect(url_for("console.reports"), 303))
    set_access_cookies(response, service.session_token(user=user))
    return response


@bp.post("/logout")
@staff_page(dispatchers=True)
def sign_out():
    """End the session: its token and login family are revoked, and its pages' sockets end."""
    auth_service.logout(db=get_db(), access_payload=get_jwt())
    response = make_response(redirect(url_for("console.sign_in"), 303))
    unset_jwt_cookies(response)
    return response


@bp.get("/")
@staff_page(dispatchers=True)
def home():
    return _back("console.reports")


@bp.post("/socket-token")
@staff_page(dispatchers=True)
def socket_token():
    """A short-lived token for this page's listen-only socket (JSON; the form's CSRF value as X-CSRF-TOKEN)."""
    token, seconds = service.socket_token(user=g.console_user, session=get_jwt())
    return jsonify({"token": token, "expires_in": seconds}), 200


# ---- reports queue ------------------------------------------------------------------------------

@bp.get("/reports")
@staff_page(dispatchers=True)
def reports():
    return _page("reports.html", queues=service.queues(db=get_db(), scope=g.console_scope), live="reports")


@bp.post("/reports/<oid:report_id>/moderate")
@staff_page()
def moderate(report_id):
    data = moderate_schema.load(_form("action", "reason"))
    reports_service.moderate(db=get_db(), actor_id=g.console_user["_id"], report_id=report_id,
                             action=data["action"], reason=data.get("reason"))
    return _back("console.reports")


# ---- users --------------------------------------------------------------------------------------

@bp.get("/users")
@staff_page()
def users():
    query = user_list_query_schema.load(_args("q", "role", "status", "cursor"))
    items, next_cursor = users_service.list_users(db=get_db(), query=query)
    return _page("users.html", items=items, next_cursor=next_cursor, query=query, roles=ROLES)


@bp.post("/users/<oid:user_id>/suspend")
@staff_page("admin")
def suspend(user_id):
    users_service.suspend(db=get_db(), actor_id=g.console_user["_id"], user_id=user_id,
                          **suspend_schema.load(_utc(_form("reason", "until"), "until")))
    return _back("console.users", q=request.form.get("q") or None)


@bp.post("/users/<oid:user_id>/unsuspend")
@staff_page("admin")
def unsuspend(user_id):
    users_service.unsuspend(db=get_db(), actor_id=g.console_user["_id"], user_id=user_id)
    return _back("console.users", q=request.form.get("q") or None)


@bp.post("/users/<oid:user_id>/update")
@staff_page("admin")
def update_user(user_id):
    data = _form("role")
    data.update({flag: request.form.get(flag) == "on" for flag in ("verified", "is_helper")})
    users_service.admin_update(db=get_db(), actor_id=g.console_user["_id"], user_id=user_id,
                               data=admin_user_update_schema.load(data))
    return _back("console.users", q=request.form.get("q") or None)


# ---- official alerts ----------------------------------------------------------------------------

def _alert_form():
    data = _utc(_form("type", "description", "expires_at"), "expires_at")
    place = _form("lat", "lng")
    if place:
        try:
            data["location"] = {"lat": float(place.get("lat", "")), "lng": float(place.get("lng", ""))}
        except ValueError as exc:
            raise ValidationError({"location": ["Latitude and longitude must be numbers."]}) from exc
    return data


@bp.get("/alerts")
@staff_page()
def alerts():
    items, next_cursor = alerts_service.list_official(db=get_db(), cursor=_args("cursor").get("cursor"))
    return _page("alerts.html", items=items, next_cursor=next_cursor, types=ALERT_TYPES)


@bp.post("/alerts")
@staff_page()
def create_alert():
    alerts_service.create_alert(db=get_db(), user_id=g.console_user["_id"],
                                data=alert_create_schema.load(_alert_form()))
    return _back("console.alerts")


@bp.post("/alerts/<oid:alert_id>/update")
@staff_page()
def update_alert(alert_id):
    alerts_service.update_alert(db=get_db(), actor_id=g.console_user["_id"], alert_id=alert_id,
                                data=alert_update_schema.load(_alert_form()))
    return _back("console.alerts")


@bp.post("/alerts/<oid:alert_id>/delete")
@staff_page()
def delete_alert(alert_id):
    alerts_service.delete_alert(db=get_db(), actor_id=g.console_user["_id"], alert_id=alert_id)
    return _back("console.alerts")


# ---- audit log ----------------------------------------------------------------------------------

AUDIT_FIELDS = ("actor", "action", "target_type", "target_id", "since", "until")


def _audit_query():
    return _utc(_args(*AUDIT_FIELDS, "cursor"), "since", "until")


@bp.get("/audit")
@staff_page()
def audit():
    raw = _audit_query()
    entries, next_cursor = reports_service.list_audit_log(db=get_db(), query=audit_query_schema.load(raw))
    filters = {key: value for key, value in raw.items() if key != "cursor"}
    return _page("audit.html", entries=entries, next_cursor=next_cursor, filters=filters)


@bp.get("/audit/export")
@staff_page("admin")
def audit_export():
    query = audit_filter_schema.load({key: value for key, value in _audit_query().items() if key != "cursor"})
    return Response(reports_service.audit_log_csv(db=get_db(), query=query), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=audit-log.csv"})


# ---- live map -----------------------------------------------------------------------------------

@bp.get("/map")
@staff_page(dispatchers=True)
def live_map():
    return _page("map.html", layers=service.live_map(db=get_db(), scope=g.console_scope),
                 tile_url=current_app.config.get("CONSOLE_TILE_URL") or "", live="map")


@bp.get("/map/data")
@staff_page(dispatchers=True)
def map_data():
    """The live map's layers as GeoJSON FeatureCollections: {areas, sos, reports, alerts} (the scope's only)."""
    scope = g.console_scope
    return jsonify(service.map_geojson(service.live_map(db=get_db(), scope=scope), scope)), 200

