"""Server entry point: `python wsgi.py` serves on $PORT (default 5000).

The async mode comes from SOCKETIO_ASYNC_MODE (default eventlet). Its monkey
patch must run before anything else is imported, so only `os` (stdlib, to
read the mode) precedes it. Nothing outside this file depends on eventlet.
"""
import os

ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE", "eventlet")
if ASYNC_MODE == "eventlet":
    import eventlet

    eventlet.monkey_patch()
elif ASYNC_MODE == "gevent":
    from gevent import monkey

    monkey.patch_all()

import logging  # noqa: E402
import resource  # noqa: E402

from allynet import background, create_app, gc_tuning  # noqa: E402
from allynet.transport import start_listening  # noqa: E402

MAX_CONNECTIONS = int(os.environ.get("MAX_CONNECTIONS", "10000"))

app = create_app(SOCKETIO_ASYNC_MODE=ASYNC_MODE)
log = logging.getLogger("allynet.wsgi")


def raise_open_files_limit(wanted):
    """Each socket is a file descriptor: lift the soft limit toward `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main():
    """Serve HTTP and Socket.IO until interrupted."""
    host = os.environ.get("HOST", "0.0.0.0")
    port = int(os.environ.get("PORT", "5000"))
    raise_open_files_limit(MAX_CONNECTIONS + 1024)
    sio = app.extensions["socketio"]
    gc_tuning.tune_gc()  # GC_THRESHOLDS, see allynet/gc_tuning.py
    background.start(app)
    # Subscribe to the Redis queue now rather than at the first connection (no-op without REDIS_URL).
    start_listening(sio)
    options = {"host": host, "port": port, "log_output": False}
    if ASYNC_MODE == "eventlet":
        from allynet.transport import eventlet_http

        # eventlet.wsgi caps simultaneous connections at 1,024 by default.
        options["max_size"] = MAX_CONNECTIONS
        # URL and header limits, refused in the contract's envelope: allynet/transport/eventlet_http.py.
        options.update(eventlet_http.server_options(app.config))
    elif ASYNC_MODE == "threading":
        options["allow_unsafe_werkzeug"] = True
    log.info("AllyNet serving on %s:%d (%s, store: %s, redis: %s)", host, port, ASYNC_MODE,
             "MongoDB" if app.config.get("MONGO_URI") else "embedded",
             "on" if app.config.get("REDIS_URL") else "off")
    sio.run(app, **options)


if __name__ == "__main__":
    main()
