"""organizations feature package."""
from flask import Blueprint

bp = Blueprint("organizations", __name__, url_prefix="/api/v1")

from allynet.organizations import events, plan_views, scheduled, views  # noqa: E402,F401
