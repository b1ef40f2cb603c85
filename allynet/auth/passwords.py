"""bcrypt hashing with the configured cost."""
import functools

import bcrypt
from flask import current_app, has_app_context

DEFAULT_ROUNDS = 12


def _rounds():
    return current_app.config["BCRYPT_ROUNDS"] if has_app_context() else DEFAULT_ROUNDS


@functools.lru_cache(maxsize=4)
def _dummy_hash(rounds):
    # Checked when the email is unknown, so both login failures cost the same.
    return bcrypt.hashpw(b"allynet-timing-equaliser", bcrypt.gensalt(rounds))


def hash_password(password, rounds=None):
    """bcrypt hash of a password (cost from BCRYPT_ROUNDS)."""
    salt = bcrypt.gensalt(rounds or _rounds())
    return bcrypt.hashpw(password.encode("utf-8"), salt).decode()


def check_password(password, password_hash):
    """True when the password matches; spends bcrypt time even when there is no hash."""
    encoded = password.encode("utf-8")[:72]
    try:
        if not password_hash:
            bcrypt.checkpw(encoded, _dummy_hash(_rounds()))
            return False
        return bcrypt.checkpw(encoded, password_hash.encode())
    except ValueError:
        return False
