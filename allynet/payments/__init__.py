"""payments feature package: intents, subscriptions and history on a provider (offline or Stripe)."""
from flask import Blueprint

bp = Blueprint("payments", __name__, url_prefix="/api/v1")

from allynet.payments import views  # noqa: E402,F401  (the help-request flow, refunds, Connect)
from allynet.payments import webhook_views  # noqa: E402,F401  (the Stripe webhook route)
