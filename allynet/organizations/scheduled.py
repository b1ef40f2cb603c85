"""The organizations' plan loop: those whose grace ran out go back to free (allynet/payments/subscriptions.py).

Rare (ORG_GRACE_SWEEP_SECONDS, default 15 min) and one indexed query on `plan_grace_until`; reading
an organization applies its own expired grace at once, and the queries selecting dispatching
organizations leave it out meanwhile, so the sweep is only the catch-all.
"""
from allynet.background import periodic
from allynet.db import get_db
from allynet.payments import subscriptions
from allynet.payments.provider import get_provider


@periodic("subscription_grace_sweep", interval=lambda cfg: float(cfg.get("ORG_GRACE_SWEEP_SECONDS", 900.0)))
def grace_sweep(app):
    """Apply the graces that ran out and cancel those subscriptions at the provider."""
    subscriptions.sweep(db=get_db(), provider=get_provider(app))
