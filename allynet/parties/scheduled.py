"""The parties' background loops (allynet/background.py runs them in each server process).

Each body is safe to run in every process at once: presence entries are
per socket, position writes only touch this process's riders, and the
episode flags are compare-and-set.
"""
from allynet import clock
from allynet.background import periodic
from allynet.parties import episodes, live, presence


@periodic("party_presence_refresh", interval=lambda cfg: max(1.0, cfg["PARTY_PRESENCE_TTL_SECONDS"] / 3))
def refresh_presence(app):
    """Push back the expiry of this process's sockets in the shared presence store."""
    entries = live.party_sockets(app)
    if not entries:
        return 0
    presence.get_store(app).refresh(entries)
    return len(entries)


@periodic("party_position_flush", interval=lambda cfg: cfg["PARTY_POSITION_FLUSH_SECONDS"])
def flush_positions(app):
    """Write the positions this process holds unsaved (see live.flush_positions); returns how many."""
    return live.flush_positions(app)


@periodic("party_episode_sweep", interval=lambda cfg: cfg["PARTY_EPISODE_SWEEP_SECONDS"])
def sweep_episodes(app):
    """Decide the episodes no update saw, from Mongo (see episodes.sweep); returns how many alerts it sent."""
    live.flush_positions(app)  # decide from this process's latest positions too
    return episodes.sweep(db=app.extensions["allynet_db"], config=app.config, now=clock.now())
