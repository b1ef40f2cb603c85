"""What the console pages read that no API service already answers: the live map's layers."""
from allynet import clock
from allynet.reports import alerts_service
from allynet.reports.alerts_service import CREDIBLE, not_expired

MAP_LIMIT = 200


def live_map(*, db):
    """Open SOS (with their location only while open), credible reports and current alerts, newest first."""
    now = clock.now()
    sos = list(db.emergencies.find({"is_open": True}, projection={"type": 1, "status": 1, "location": 1,
                                                                   "created_at": 1})
               .sort([("created_at", -1)]).limit(MAP_LIMIT))
    reports = list(db.reports.find({"status": {"$in": list(CREDIBLE)}, **not_expired(now)})
                   .sort([("created_at", -1)]).limit(MAP_LIMIT))
    alerts, _ = alerts_service.list_official(db=db, limit=MAP_LIMIT)
    return {"sos": sos, "reports": reports, "alerts": alerts}
