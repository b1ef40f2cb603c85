"""businesses feature package: business profiles, opening hours, promotions and safe places."""
from flask import Blueprint

bp = Blueprint("businesses", __name__, url_prefix="/api/v1")

from allynet.businesses import views  # noqa: E402,F401
