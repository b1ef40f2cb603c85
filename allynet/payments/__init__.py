"""payments feature package: intents, subscriptions and history on a provider (offline or Stripe)."""
from flask import Blueprint

bp = Blueprint("payments", __name__, url_prefix="/api/v1")
