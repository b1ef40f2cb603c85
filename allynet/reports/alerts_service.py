"""The alerts feed, official alerts, and pushing new alerts to nearby parties.

The feed (`GET /alerts`) merges two `$geoNear` queries, so distances come
from the database: official alerts (collection ``alerts``, created by
moderators and admins) and credible community reports (``active`` or
``approved``, never pending, hidden or rejected), both not expired, nearest
first, each with ``distance_m`` and ``source`` ("official" or "report").

Party push: a new visible report (created visible, or a pending one approved)
or a new official alert emits Socket.IO ``party:alert`` once to the rooms of
every active party with a member within ``ALERT_PUSH_RADIUS_M`` (default
5000 m). Payload::

    {"type": <report or alert type>, "source": "report" | "official", "id": <24-hex>,
     "location": {"lat", "lng"}, "description": <text>}

One emit reaches all those rooms (a member of two parties gets it once), so
the payload carries no ``party_id``; the party's own alerts
(``member_left_behind``...) are told apart by ``source`` being absent.
Parties are found by `allynet.parties.service.active_parties_near` (a geo
query on members' last locations); when that lookup fails nothing is pushed.
"""
import heapq
import logging
from datetime import timedelta

from flask import current_app
from pymongo import ReturnDocument

from allynet import audit, clock, realtime
from allynet.errors import NotFound, ValidationFailed
from allynet.fields import point_to_latlng
from allynet.organizations import service as organizations_service
from allynet.parties import service as parties_service
from allynet.pagination import newest_first_page

log = logging.getLogger(__name__)

CREDIBLE = ("active", "approved")


def not_expired(now):
    """Filter for documents whose `expires_at` is unset, null or in the future (every query uses it)."""
    # `$not: {$lte}` rather than `$or`, so it combines freely with geo queries.
    return {"expires_at": {"$not": {"$lte": now}}}


def alert_payload(*, source, item):
    """The `party:alert` payload for a report or an official alert."""
    return {"type": item["type"], "source": source, "id": str(item["_id"]),
            "location": point_to_latlng(item["location"]), "description": item.get("description") or ""}


def push_to_nearby_parties(*, db, source, item):
    """Emit `party:alert` to every active party with a member near `item`; returns their ids."""
    try:
        party_ids = list(parties_service.active_parties_near(
            db=db, location=item["location"], radius_m=float(current_app.config["ALERT_PUSH_RADIUS_M"])) or [])
    except Exception:  # the report is stored; a failing lookup must not fail the request
        log.exception("finding parties near %s %s failed", source, item["_id"])
        return []
    if party_ids:
        realtime.emit_to_rooms([realtime.party_room(pid) for pid in party_ids], "party:alert",
                               alert_payload(source=source, item=item))
    return party_ids


def tell_console(*, db, layer, item, change):
    """`console:changed` for a report or alert (`layer`): to staff, and to the dispatchers of the
    dispatching organizations whose service area covers it (their console shows only that area)."""
    try:
        organization_ids = organizations_service.dispatching_organization_ids(db=db, location=item["location"])
    except Exception:  # the change is stored; staff still hear of it
        log.exception("finding the organizations around %s %s failed", layer, item["_id"])
        organization_ids = []
    realtime.emit_to_rooms(realtime.console_rooms(organization_ids), "console:changed",
                           {"layer": layer, "id": str(item["_id"]), "change": change})


def _check_expiry(expires_at, now):
    horizon = now + timedelta(days=float(current_app.config["OFFICIAL_ALERT_MAX_DAYS"]))
    if expires_at <= now:
        raise ValidationFailed(details={"expires_at": ["Must be in the future."]})
    if expires_at > horizon:
        raise ValidationFailed(details={"expires_at": [
            f"At most {current_app.config['OFFICIAL_ALERT_MAX_DAYS']} days ahead."]})


def create_alert(*, db, user_id, data):
    """Publish an official alert (moderators, admins); audited and pushed to nearby parties."""
    now = clock.now()
    _check_expiry(data["expires_at"], now)
    alert = {"type": data["type"], "location": data["location"], "description": data["description"],
             "expires_at": data["expires_at"], "created_by": user_id, "created_at": now}
    db.alerts.insert_one(alert)
    audit.record(db=db, actor_id=user_id, action="alert.create", target_type="alert", target_id=alert["_id"],
                 after={"type": alert["type"], "expires_at": alert["expires_at"]})
    push_to_nearby_parties(db=db, source="official", item=alert)
    tell_console(db=db, layer="alerts", item=alert, change="created")
    return alert


EDITABLE = ("type", "location", "description", "expires_at")


def update_alert(*, db, actor_id, alert_id, data):
    """Change a current official alert (404 once expired); audited with the fields before and after."""
    now = clock.now()
    if "expires_at" in data:
        _check_expiry(data["expires_at"], now)
    before = db.alerts.find_one_and_update({"_id": alert_id, **not_expired(now)},
                                           {"$set": {**data, "updated_at": now}},
                                           return_document=ReturnDocument.BEFORE)
    if before is None:
        raise NotFound("Alert not found")
    audit.record(db=db, actor_id=actor_id, action="alert.update", target_type="alert", target_id=alert_id,
                 before={key: before.get(key) for key in data}, after=dict(data))
    after = {**before, **data, "updated_at": now}
    tell_console(db=db, layer="alerts", item=after, change="updated")
    if after["location"] != before["location"]:  # it may have left an organization's area
        tell_console(db=db, layer="alerts", item=before, change="removed")
    return after


def delete_alert(*, db, actor_id, alert_id):
    """Withdraw a current official alert (404 once expired or deleted); audited."""
    deleted = db.alerts.find_one_and_delete({"_id": alert_id, **not_expired(clock.now())})
    if deleted is None:
        raise NotFound("Alert not found")
    audit.record(db=db, actor_id=actor_id, action="alert.delete", target_type="alert", target_id=alert_id,
                 before={key: deleted.get(key) for key in EDITABLE})
    tell_console(db=db, layer="alerts", item=deleted, change="removed")


def list_official(*, db, cursor=None, limit=50):
    """Current official alerts, newest first (the console's list)."""
    return newest_first_page(db.alerts, query=not_expired(clock.now()), limit=limit, cursor=cursor)


def _near(collection, *, point, radius_m, query, limit):
    pipeline = [
        {"$geoNear": {"near": point, "key": "location", "distanceField": "distance_m",
                      "maxDistance": radius_m, "query": query, "spherical": True}},
        {"$limit": limit},
    ]
    return list(collection.aggregate(pipeline))


def alerts_near(*, db, lat, lng, radius_m, types=None, limit=200):
    """Current official alerts and credible reports within `radius_m`, nearest first."""
    now = clock.now()
    point = {"type": "Point", "coordinates": [lng, lat]}
    type_filter = {"type": {"$in": list(types)}} if types else {}
    officials = _near(db.alerts, point=point, radius_m=radius_m, limit=limit,
                      query={**not_expired(now), **type_filter})
    reports = _near(db.reports, point=point, radius_m=radius_m, limit=limit,
                    query={"status": {"$in": list(CREDIBLE)}, **not_expired(now), **type_filter})
    entries = [_entry(doc, "official") for doc in officials] + [_entry(doc, "report") for doc in reports]
    return heapq.nsmallest(limit, entries, key=lambda entry: (entry["distance_m"], entry["id"]))


def _entry(doc, source):
    report = source == "report"
    return {"id": str(doc["_id"]), "source": source, "type": doc["type"], "location": doc["location"],
            "description": doc.get("description") or "", "upvotes": doc.get("upvotes") if report else None,
            "downvotes": doc.get("downvotes") if report else None, "expires_at": doc.get("expires_at"),
            "created_at": doc["created_at"], "distance_m": doc["distance_m"]}

