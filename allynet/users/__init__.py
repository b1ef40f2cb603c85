"""Users: own profile, location, public views and admin changes."""
from flask import Blueprint

bp = Blueprint("users", __name__, url_prefix="/api/v1")

from allynet.users import views  # noqa: E402,F401
