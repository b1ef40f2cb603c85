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


def retry_until_done(app, name, attempt, sleep, first_delay=1.0, max_delay=30.0):
    """Call `attempt(app)` until it returns True, sleeping `first_delay` seconds after the first
    failure and twice as long after each next one, at most `max_delay`. Returns the delays slept."""
    delays = []
    delay = first_delay
    while True:
        try:
            with app.app_context():
                if attempt(app):
                    return delays
        except Exception:
            log.exception("background retry %s failed; trying again", name)
        sleep(delay)
        delays.append(delay)
        delay = min(delay * 2, max_delay)


def start(app):
    """Start every registered loop as a Socket.IO background task, and the index retry if needed."""
    from allynet import db as db_module

    sio = app.extensions["socketio"]
    tasks = []
    if not db_module.indexes_ready(app):
        # Not a BACKGROUND_TASKS loop: without its indexes the database enforces none of its rules.
        tasks.append(sio.start_background_task(
            retry_until_done, app, "indexes", db_module.create_pending_indexes, sio.sleep,
            max_delay=app.config["INDEX_RETRY_MAX_SECONDS"]))
    if not app.config.get("BACKGROUND_TASKS", True):
        return tasks
    return tasks + [sio.start_background_task(_run_forever, app, sio, name, fn, interval)
                    for name, fn, interval in LOOPS]
