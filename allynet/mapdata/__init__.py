"""mapdata feature package: traffic from our riders, weather, overlays and vector tiles."""
from flask import Blueprint

bp = Blueprint("mapdata", __name__, url_prefix="/api/v1")

from allynet.mapdata import scheduled, views  # noqa: E402,F401
