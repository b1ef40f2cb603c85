"""help requests feature package."""
from flask import Blueprint

bp = Blueprint("help_requests", __name__, url_prefix="/api/v1")

from allynet.help_requests import views  # noqa: E402,F401
