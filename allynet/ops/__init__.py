"""Operations: health, readiness and the OpenAPI document."""
from flask import Blueprint

bp = Blueprint("ops", __name__)

from allynet.ops import views  # noqa: E402,F401
