"""Periodic background loops (escalation sweeps and the like).

Features register a loop with `periodic`; `wsgi.py` starts them in the
server process with `start(app)`. Tests call the loop bodies directly, so no
test depends on timing. Each body must be safe to run in several processes at
once (claim work atomically in the database).
"""
import logging
import time

log = logging.getLogger(__name__)

LOOPS = []


def periodic(name, interval):
    """Register `fn(app)` to run every `interval(app.config)` seconds."""

    def decorator(fn):
        LOOPS.append((name, fn, interval))
        return fn

    return decorator


def _run_forever(app, sio, name, fn, interval):
    while True:
        started = time.monotonic()
        try:
            with app.app_context():
                fn(app)
        except Exception:
            log.exception("background loop %s failed; continuing", name)
        delay = max(0.05, interval(app.config) - (time.monotonic() - started))
        sio.sleep(delay)


def start(app):
    """Start every registered loop as a Socket.IO background task."""
    if not app.config.get("BACKGROUND_TASKS", True):
        return []
    sio = app.extensions["socketio"]
    return [sio.start_background_task(_run_forever, app, sio, name, fn, interval)
            for name, fn, interval in LOOPS]
