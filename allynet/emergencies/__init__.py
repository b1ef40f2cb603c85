"""emergencies feature package."""
from flask import Blueprint

bp = Blueprint("emergencies", __name__, url_prefix="/api/v1")

from allynet.emergencies import events, views  # noqa: E402,F401
