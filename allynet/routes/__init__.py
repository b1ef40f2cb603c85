"""routes feature package: saved routes (a rider's own GeoJSON LineStrings)."""
from flask import Blueprint

bp = Blueprint("routes", __name__, url_prefix="/api/v1")

from allynet.routes import views  # noqa: E402,F401
