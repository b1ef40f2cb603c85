"""Auth: register, login, refresh with rotation, logout with durable revocation."""
from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")

from allynet.auth import events, views  # noqa: E402,F401
