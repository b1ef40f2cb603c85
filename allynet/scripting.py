"""What the admin scripts share: picking the database as the app does, outages, logging, progress.

`scripts/seed.py` and `scripts/maintenance.py` (and their `flask` CLI twins)
open the database exactly like `create_app`: `config.load()` then
`allynet.db.make_client()`. No `MONGO_URI` means a fresh embedded mongomock
store that dies with the script, so every script says so when it runs there.
"""
import logging
import re
import sys

from pymongo.errors import ConfigurationError, PyMongoError

import config as config_module
from allynet import db as db_module

log = logging.getLogger("allynet.scripts")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

EMBEDDED_NOTE = (
    "Without MONGO_URI a script runs against its own in-process embedded store, and whatever it "
    "changes dies with the script. The embedded server loads the demo city itself with ALLYNET_DEMO=1 "
    "and creates an admin with ALLYNET_BOOTSTRAP_ADMIN=email:password."
)

DATABASE_HELP = """\
database: picked as the app picks it: MONGO_URI and MONGO_DB (default 'allynet')
from the environment (or --mongo-uri); MONGO_SERVER_SELECTION_TIMEOUT_MS bounds
how long an unreachable server is waited for (default 3000 ms).
Without MONGO_URI a script runs against its own in-process embedded store and
whatever it changes dies with the script: for the embedded server, use
ALLYNET_DEMO=1 (loads the demo city at start-up) and
ALLYNET_BOOTSTRAP_ADMIN=email:password (creates an admin at start-up)."""

EXIT_CODES_HELP = "exit codes: 0 done, 1 failed or refused, 2 bad usage, 3 database unreachable."


class DatabaseUnreachable(RuntimeError):
    """The configured MongoDB did not answer."""


def redact(uri):
    """A MongoDB URI without its password, fit for a log line."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri or "")


def load_config(mongo_uri=None, config=None):
    """The app's configuration (ALLYNET_ENV and the environment), with an optional URI override."""
    values = dict(config) if config is not None else config_module.load()
    if mongo_uri:
        values["MONGO_URI"] = mongo_uri
        values["MONGO_CLIENT"] = None
    return values


def open_database(config):
    """The configured database, checked with a ping; DatabaseUnreachable when it does not answer."""
    where = redact(config.get("MONGO_URI")) or "the embedded store"
    try:
        client = db_module.make_client(config)
        db = client[config["MONGO_DB"]]
        ping(db)
    except (PyMongoError, ConfigurationError) as exc:
        raise DatabaseUnreachable(
            f"cannot reach MongoDB at {where} within {config.get('MONGO_SERVER_SELECTION_TIMEOUT_MS')} ms "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Check MONGO_URI and that the server "
            "is running.") from exc
    note_embedded(db, config)
    return db


def note_embedded(db, config):
    """Warn that changes to an embedded store die with the process (not in tests)."""
    if db_module.is_embedded(db.client) and not config.get("TESTING"):
        log.warning("no MONGO_URI: this runs on an in-process embedded store. %s", EMBEDDED_NOTE)


def ping(db):
    """Raise when the database does not answer (the embedded store always does)."""
    if not db_module.is_embedded(db.client):
        db.command("ping")


def configure_logging(verbose=False):
    """INFO (or DEBUG) lines on stderr, unless the host already set logging up."""
    level = logging.DEBUG if verbose else logging.INFO
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("allynet").setLevel(level)


def fail(message, code):
    """Print a clear one-line error on stderr and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def progress(total, desc, enabled=None):
    """A tqdm progress bar on stderr (None: only when stderr is a terminal)."""
    from tqdm import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(total=total, desc=desc, unit="doc", disable=disable, leave=False, file=sys.stderr)


def batched(iterable, size):
    """Lists of at most `size` items from `iterable`."""
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
