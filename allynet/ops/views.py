"""Health, readiness and the OpenAPI and AsyncAPI documents."""
from flask import current_app, jsonify

from allynet.db import get_db, indexes_ready
from allynet.http import doc
from allynet.ops import bp, service
from allynet.ops.asyncapi import build_asyncapi
from allynet.ops.openapi import build_spec

HEALTH = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}
READY = {"type": "object", "required": ["status", "checks"], "properties": {
    "status": {"type": "string", "enum": ["ready"]},
    "checks": {"type": "object", "additionalProperties": {"type": "string"}}}}


@bp.get("/healthz")
@doc(summary="Liveness: 200 while the process runs", response=HEALTH, auth=False, db=False, tags=["ops"])
def healthz():
    return jsonify({"success": True, "data": {"status": "ok"}})


@bp.get("/readyz")
@doc(summary="Readiness: 200 when MongoDB and Redis (if configured) answer and the indexes exist, else 503 "
             "naming the failed ones in error.details (indexes: pending)", response=READY, auth=False, tags=["ops"],
     errors={503: "service_unavailable (details: {service: ok | reason})"})
def readyz():
    checks, ready = service.readiness(db=get_db(), redis_url=current_app.config.get("REDIS_URL"),
                                      indexes_ready=indexes_ready(current_app))
    if ready:
        return jsonify({"success": True, "data": {"status": "ready", "checks": checks}})
    failed = sorted(name for name, value in checks.items() if value != "ok")
    return jsonify({"success": False, "error": {
        "code": "service_unavailable", "message": f"Not ready: {', '.join(failed)} failed",
        "details": checks}}), 503


@bp.get("/api/v1/openapi.json")
@doc(summary="This OpenAPI 3 document (not in the envelope)", response={"type": "object"}, envelope=False,
     auth=False, db=False, tags=["ops"])
def openapi():
    if "openapi_spec" not in current_app.extensions:
        current_app.extensions["openapi_spec"] = build_spec(current_app)
    return jsonify(current_app.extensions["openapi_spec"])


@bp.get("/api/v1/asyncapi.json")
@doc(summary="The AsyncAPI 3.0 document of the Socket.IO events (not in the envelope)", response={"type": "object"},
     envelope=False, auth=False, db=False, tags=["ops"])
def asyncapi():
    if "asyncapi_spec" not in current_app.extensions:
        current_app.extensions["asyncapi_spec"] = build_asyncapi()
    return jsonify(current_app.extensions["asyncapi_spec"])
