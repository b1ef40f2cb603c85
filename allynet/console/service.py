"""What the console reads that no API service already answers: who may see what (staff: everything;
an organization's dispatcher: its service area), the reports queue and live map inside that, the
map's GeoJSON, and the tokens (the session's and its page's socket's)."""
from datetime import timedelta

from flask import current_app
from flask_jwt_extended import create_access_token

from allynet import clock, realtime
from allynet.auth import service as auth_service
from allynet.fields import iso
from allynet.organizations import service as organizations_service
from allynet.reports import service as reports_service
from allynet.reports.alerts_service import CREDIBLE, not_expired

STAFF = ("moderator", "admin")
MAP_LIMIT = 200
QUEUE_LIMIT = 100
QUEUES = ("pending", "flagged")


class Scope:
    """What one console user sees: everything (staff) or the service areas of `organizations`."""

    def __init__(self, *, staff, organizations=()):
        self.staff = staff
        self.organizations = list(organizations)

    @property
    def organization_ids(self):
        return [org["_id"] for org in self.organizations]

    def within(self):
        """The Mongo condition on `location` that keeps a document inside the scope ({} for staff)."""
        if self.staff:
            return {}
        areas = [{"location": {"$geoWithin": {"$geometry": org["service_area"]}}} for org in self.organizations]
        return areas[0] if len(areas) == 1 else {"$or": areas}


def scope_of(*, db, user):
    """The console scope of a user document: staff, an organization's dispatcher, or None (no console)."""
    if user.get("role") in STAFF:
        return Scope(staff=True)
    organizations = organizations_service.dispatch_organizations(
        db=db, user_id=user["_id"], projection={"_id": 1, "name": 1, "service_area": 1})
    return Scope(staff=False, organizations=organizations) if organizations else None


def queues(*, db, scope):
    """Pending cameras and flagged reports inside the scope, oldest first (they are worked in order)."""
    now, within = clock.now(), scope.within()
    result = {}
    for status in QUEUES:
        condition = reports_service.flagged_filter() if status == "flagged" else {"status": status}
        query = {"$and": [condition, not_expired(now)] + ([within] if within else [])}
        result[status] = list(db.reports.find(query).sort([("created_at", 1), ("_id", 1)]).limit(QUEUE_LIMIT))
    return result


def live_map(*, db, scope):
    """Open SOS (their location only while open), credible reports and current alerts inside the
    scope, newest first."""
    now, within = clock.now(), scope.within()
    newest = [("created_at", -1), ("_id", -1)]
    sos = db.emergencies.find({"is_open": True, **within},
                              projection={"type": 1, "status": 1, "location": 1, "created_at": 1})
    reports = db.reports.find({"status": {"$in": list(CREDIBLE)}, **not_expired(now), **within})
    alerts = db.alerts.find({**not_expired(now), **within})
    return {name: list(cursor.sort(newest).limit(MAP_LIMIT))
            for name, cursor in (("sos", sos), ("reports", reports), ("alerts", alerts))}


def _feature(doc, **properties):
    return {"type": "Feature", "id": str(doc["_id"]), "geometry": doc["location"],
            "properties": {"id": str(doc["_id"]), "type": doc["type"], "created_at": iso(doc.get("created_at")),
                           **properties}}


def map_geojson(layers, scope):
    """The live map's layers as GeoJSON FeatureCollections (what MapLibre draws); `areas`: the
    dispatcher's service areas (none for staff)."""
    features = {
        "areas": [{"type": "Feature", "id": str(org["_id"]), "geometry": org["service_area"],
                   "properties": {"id": str(org["_id"]), "name": org.get("name") or ""}}
                  for org in scope.organizations],
        "sos": [_feature(doc, status=doc["status"]) for doc in layers["sos"]],
        "reports": [_feature(doc, status=doc["status"], description=doc.get("description") or "")
                    for doc in layers["reports"]],
        "alerts": [_feature(doc, description=doc.get("description") or "") for doc in layers["alerts"]],
    }
    return {name: {"type": "FeatureCollection", "features": items} for name, items in features.items()}


def session_token(*, user):
    """The console session's access token (its cookie): console-only, a login family of its own."""
    claims = {"role": user["role"], "email": user["email"], auth_service.CONSOLE_CLAIM: True,
              auth_service.FAMILY_CLAIM: auth_service.new_family()}
    return create_access_token(identity=str(user["_id"]), additional_claims=claims,
                               expires_delta=timedelta(seconds=float(current_app.config["CONSOLE_SESSION_SECONDS"])))


def socket_token(*, user, session):
    """A console page's socket token: good only to connect a listen-only socket, in the session's
    login family (signing out ends that socket too), for CONSOLE_SOCKET_SECONDS at most and never
    past the session. Returns (token, seconds)."""
    left = float(session["exp"]) - clock.timestamp()
    seconds = max(1, int(min(float(current_app.config["CONSOLE_SOCKET_SECONDS"]), left)))
    claims = {"role": user["role"], "email": user["email"], auth_service.CONSOLE_CLAIM: auth_service.CONSOLE_SOCKET,
              auth_service.FAMILY_CLAIM: session.get(auth_service.FAMILY_CLAIM)}
    token = create_access_token(identity=str(user["_id"]), additional_claims=claims,
                                expires_delta=timedelta(seconds=seconds))
    return token, seconds


def join_rooms(*, db, user_id, sid):
    """A console page's socket enters `console` (staff) or `console:org:<id>` of each organization
    its user dispatches for; False when the user may not use the console any more."""
    user = db.users.find_one({"_id": user_id}, projection={"role": 1})
    scope = scope_of(db=db, user=user) if user is not None else None
    if scope is None:
        return False
    rooms = ([realtime.CONSOLE_ROOM] if scope.staff else
             [realtime.console_organization_room(org_id) for org_id in scope.organization_ids])
    for room in rooms:
        realtime.enter_room(sid, room)
    return True
