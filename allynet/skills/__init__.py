"""skills feature package."""
from flask import Blueprint

bp = Blueprint("skills", __name__, url_prefix="/api/v1")

from allynet.skills import views  # noqa: E402,F401
