"""Health, readiness and the OpenAPI and AsyncAPI documents."""
from flask import current_app, jsonify

from allynet.db import get_db, indexes_ready
from allynet.ops import bp, service
from allynet.ops.asyncapi import build_asyncapi
from allynet.ops.openapi import build_spec


@bp.get("/healthz")
def healthz():
    return jsonify({"success": True, "data": {"status": "ok"}})


@bp.get("/readyz")
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
def openapi():
    if "openapi_spec" not in current_app.extensions:
        current_app.extensions["openapi_spec"] = build_spec(current_app)
    return jsonify(current_app.extensions["openapi_spec"])


@bp.get("/api/v1/asyncapi.json")
def asyncapi():
    if "asyncapi_spec" not in current_app.extensions:
        current_app.extensions["asyncapi_spec"] = build_asyncapi()
    return jsonify(current_app.extensions["asyncapi_spec"])
