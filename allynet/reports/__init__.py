"""reports feature package."""
from flask import Blueprint

bp = Blueprint("reports", __name__, url_prefix="/api/v1")

from allynet.reports import views  # noqa: E402,F401
