"""The operator console: server-rendered pages for moderators and admins at /console."""
from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

from allynet.console import events, views  # noqa: E402,F401
