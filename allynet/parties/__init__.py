"""parties feature package."""
from flask import Blueprint

bp = Blueprint("parties", __name__, url_prefix="/api/v1")

from allynet.parties import events, scheduled, views  # noqa: E402,F401
