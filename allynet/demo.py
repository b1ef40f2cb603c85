"""The demo city in the embedded store at start-up (`ALLYNET_DEMO=1`).

A small, fast version of what `scripts/seed.py` builds (the same code, in
`allynet.seeding`), so a newcomer sees a living city without a database.
Its logins are logged at start-up.
"""
import logging

from allynet import seeding
from allynet.db import EXTENSION_KEY

log = logging.getLogger("allynet.demo")

# Small enough to load in about a second, big enough to look alive.
DEMO_PLAN = dict(users=250, helper_ratio=0.3, verified_ratio=0.7, skills=60, help_requests=30, parties=4,
                 party_size=5, trail_points=30, reports=60, alerts=4, sos=2)


def load(app, **overrides):
    """Seed the demo city into the app's store (once) and log its logins; returns the SeedResult or None."""
    db = app.extensions[EXTENSION_KEY]
    plan = seeding.SeedPlan(**{**DEMO_PLAN, **overrides})
    try:
        result = seeding.seed(db=db, config=app.config, plan=plan, show_progress=False)
    except seeding.AlreadySeeded:
        # A shared store (several apps on one client) already holds it.
        log.info("demo city already loaded")
        return None
    summary = ", ".join(f"{count} {name}" for name, count in sorted(result.created.items()))
    log.info("ALLYNET_DEMO: loaded the demo city in %.1f s: %s", result.seconds, summary)
    for login in result.logins:
        log.info("demo login: %s / %s (%s: %s)", login["email"], login["password"], login["role"],
                 login["purpose"])
    return result
