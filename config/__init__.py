"""Configuration: defaults per environment, overridden by environment variables.

No variables set gives the embedded default: an in-process mongomock store,
no Redis, in-memory rate limits and a generated JWT secret (with a warning).
"""
import os
from datetime import timedelta


def _bool(value):
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _seconds(value):
    return timedelta(seconds=float(value))


def _rate_limit(value):
    """A `limits` rate string ("20 per 10 seconds", "10/minute;100/day"), checked here."""
    from limits import parse_many

    parse_many(value)  # ValueError for anything it cannot read
    return value


# Environment variables read at app creation, with how to parse each one.
ENV_VARS = {
    "MONGO_URI": str,
    "MONGO_DB": str,
    "MONGO_SERVER_SELECTION_TIMEOUT_MS": int,
    "INDEX_RETRY_MAX_SECONDS": float,
    "REDIS_URL": str,
    "JWT_SECRET_KEY": str,
    "JWT_ACCESS_TOKEN_EXPIRES": _seconds,
    "JWT_REFRESH_TOKEN_EXPIRES": _seconds,
    "CORS_ORIGINS": str,
    "MAX_CONTENT_LENGTH": int,
    "HTTP_MAX_URL_BYTES": int,
    "HTTP_MAX_HEADER_BYTES": int,
    "SOCKET_MAX_FRAME_BYTES": int,
    "RATELIMIT_ENABLED": _bool,
    "SOCKETIO_ASYNC_MODE": str,
    "ALLYNET_BOOTSTRAP_ADMIN": str,
    "ALLYNET_DEMO": _bool,
    "BCRYPT_ROUNDS": int,
    "ESCALATION_SECONDS": float,
    "ESCALATION_SWEEP_SECONDS": float,
    "LEFT_BEHIND_M": float,
    "TRAIL_SAMPLE_SECONDS": float,
    "TRAIL_RETENTION_DAYS": float,
    "MAX_UPDATE_HZ": float,
    "ALERT_PUSH_RADIUS_M": float,
    "SAFE_PLACE_RADIUS_M": float,
    "TRUSTED_REPORTER_SCORE": float,
    "REPORT_RATE_LIMIT": str,
    "REPORT_FLAG_DOWNVOTES": int,
    "ORG_MAX_AREA_KM2": float,
    "ORG_FREE_MEMBERS": int,
    "ORG_INVITATION_TTL_HOURS": float,
    # per-user / per-room limits on writes (allynet/ratelimit.py)
    "PARTY_CREATE_RATE_LIMIT": _rate_limit,
    "PARTY_MESSAGE_RATE_LIMIT": _rate_limit,
    "PARTY_MESSAGE_ROOM_RATE_LIMIT": _rate_limit,
    "PARTY_ALERT_RATE_LIMIT": _rate_limit,
    "PARTY_ALERT_ROOM_RATE_LIMIT": _rate_limit,
    "EMERGENCY_MESSAGE_RATE_LIMIT": _rate_limit,
    "EMERGENCY_MESSAGE_ROOM_RATE_LIMIT": _rate_limit,
    "PARTY_IDLE_HOURS": float,
    "SOS_MAX_HOURS": float,
    "PARTY_PRESENCE_TTL_SECONDS": float,
    "PARTY_POSITION_FLUSH_SECONDS": float,
    "PARTY_EPISODE_SWEEP_SECONDS": float,
    "PARTY_BATCH_MS": int,
    "SOCKET_SESSION_SWEEP_SECONDS": float,
    "LOG_LEVEL": str,
    "LOG_FORMAT": str,
    # scale-out
    "REDIS_KEY_PREFIX": str,
    "REDIS_SOCKET_TIMEOUT": float,
    "SOCKETIO_CHANNEL": str,
    "SOCKETIO_WS_COMPRESSION": _bool,
    "SOCKETIO_ASYNC_HANDLERS": _bool,
    "SOCKETIO_TCP_NODELAY": _bool,
    "ALLYNET_TRANSPORT": str,
    "RATELIMIT_KEY_PREFIX": str,
    "PROXY_FIX_HOPS": int,
    # operator console
    "CONSOLE_SESSION_SECONDS": float,
    "CONSOLE_SOCKET_SECONDS": float,
    "CONSOLE_TILE_URL": str,
    "JWT_COOKIE_SECURE": _bool,
    # map data (allynet/mapdata/)
    "MAP_MAX_BBOX_KM2": float,
    "TRAFFIC_INTERVAL_SECONDS": float,
    "TRAFFIC_WINDOW_MINUTES": float,
    "TRAFFIC_H3_RES": int,
    "TRAFFIC_MIN_RIDERS": int,
    "WEATHER_PROVIDER": str,
    "OPEN_METEO_URL": str,
    "WEATHER_CACHE_SECONDS": float,
    "WEATHER_STALE_SECONDS": float,
    "WEATHER_CHECK_SECONDS": float,
    "TILE_CACHE_SECONDS": int,
    "WEATHER_RATE_LIMIT": _rate_limit,
    # payments (allynet/payments/)
    "PAYMENTS_PROVIDER": str,
    "STRIPE_API_KEY": str,
    "STRIPE_WEBHOOK_SECRET": str,
    "STRIPE_API_BASE": str,
    "STRIPE_MAX_NETWORK_RETRIES": int,
    "STRIPE_TIMEOUT_SECONDS": float,
    "PLATFORM_FEE_BPS": int,
    "ORG_PRO_PRICE": str,
    "ORG_PRO_AMOUNT": int,
    "ORG_PRO_CURRENCY": str,
    "ORG_GRACE_DAYS": float,
    "ORG_GRACE_SWEEP_SECONDS": float,
    "PROMOTION_FEATURE_AMOUNT": int,
    "PROMOTION_FEATURE_CURRENCY": str,
    "PAYMENTS_CONNECT_RETURN_URL": str,
    "PAYMENTS_CONNECT_REFRESH_URL": str,
}


class Config:
    """Defaults shared by every environment."""

    # payments (allynet/payments/): amounts in minor units of their currency
    PAYMENTS_PROVIDER = "offline"  # or "stripe" (STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET)
    STRIPE_API_KEY = None
    STRIPE_WEBHOOK_SECRET = None
    STRIPE_API_BASE = None  # the stripe library's api_base (tests point it at a local server)
    STRIPE_MAX_NETWORK_RETRIES = 2  # the library's retries of a failed call (same Idempotency-Key)
    STRIPE_TIMEOUT_SECONDS = 10.0  # longest wait for one Stripe call: a slow Stripe must not hold requests
    PLATFORM_FEE_BPS = 1000  # the platform keeps 10 % of a help request's payment
    ORG_PRO_PRICE = "price_allynet_org_pro"  # the provider's price id of the organizations' pro plan
    ORG_PRO_AMOUNT = 2900  # what that price is (the offline provider bills it; shown to clients)
    ORG_PRO_CURRENCY = "EUR"
    ORG_GRACE_DAYS = 7.0  # a pro organization whose payment failed stays pro this long
    ORG_GRACE_SWEEP_SECONDS = 900.0  # how often graces that ran out are applied to organizations nobody read
    PROMOTION_FEATURE_AMOUNT = 1500  # featuring a promotion for its duration
    PROMOTION_FEATURE_CURRENCY = "EUR"
    PAYMENTS_CONNECT_RETURN_URL = "https://allynet.invalid/payments/connect/return"
    PAYMENTS_CONNECT_REFRESH_URL = "https://allynet.invalid/payments/connect/refresh"

    ENV_NAME = "development"
    MONGO_URI = None  # None: embedded in-process mongomock store
    MONGO_DB = "allynet"
    MONGO_SERVER_SELECTION_TIMEOUT_MS = 3000
    MONGO_CLIENT = None  # an already-built client to share (tests, multi-app)
    INDEX_RETRY_MAX_SECONDS = 30.0  # indexes not created at start (MongoDB down): retried 1 s, 2 s, ... up to this
    REDIS_URL = None
    JWT_SECRET_KEY = None
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=15)
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=30)
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ERROR_MESSAGE_KEY = "message"
    # The operator console (/console) keeps its session in an HttpOnly SameSite=Strict cookie with a
    # CSRF double submit; only the console blueprint reads cookies (the API reads headers only).
    JWT_ACCESS_COOKIE_NAME = "allynet_console"
    JWT_ACCESS_COOKIE_PATH = "/console"
    JWT_ACCESS_CSRF_COOKIE_NAME = "allynet_console_csrf"
    JWT_ACCESS_CSRF_COOKIE_PATH = "/console"
    JWT_COOKIE_SAMESITE = "Strict"
    JWT_COOKIE_SECURE = False  # True in production (HTTPS only)
    JWT_CSRF_CHECK_FORM = True
    CONSOLE_SESSION_SECONDS = 3600.0
    CONSOLE_SOCKET_SECONDS = 600.0  # a console page's socket token; the page fetches a new one when it ends
    # The live map's base map: a MapLibre style URL, or a raster tile URL template with {z}/{x}/{y};
    # None draws the layers on a blank background (no tile server needed).
    CONSOLE_TILE_URL = None
    CORS_ORIGINS = "*"
    MAX_CONTENT_LENGTH = 64 * 1024
    # The server's own limits (wsgi.py, eventlet): a longer request line is 414 `uri_too_long`, a
    # longer header line (or all headers over 8 times this) 431 `headers_too_large`.
    HTTP_MAX_URL_BYTES = 8192
    HTTP_MAX_HEADER_BYTES = 8192
    # Largest Socket.IO message a client may send (websocket frame, polling body): parsed, then
    # refused by the event's own limits; over it `session:ended {"reason": "frame_too_large"}` and close.
    SOCKET_MAX_FRAME_BYTES = 1024 * 1024
    MAX_JSON_DEPTH = 20
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_HEADER_RETRY_AFTER_VALUE = "delta-seconds"
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    REGISTER_RATE_LIMIT = "20/hour"
    LOGIN_RATE_LIMIT_IP = "30/minute"
    LOGIN_RATE_LIMIT_EMAIL = "10/minute"
    SOCKETIO_ASYNC_MODE = "threading"  # wsgi.py selects eventlet/gevent explicitly
    ALLYNET_BOOTSTRAP_ADMIN = None
    ALLYNET_DEMO = False
    BCRYPT_ROUNDS = 12
    ESCALATION_SECONDS = 60.0
    # emergencies
    ESCALATION_SWEEP_SECONDS = 2.0  # how often each process looks for due escalation waves
    EMERGENCY_CREATE_RATE_LIMIT = "30/minute"  # per user; one open SOS at a time is the real bound
    LEFT_BEHIND_M = 2000.0
    TRAIL_SAMPLE_SECONDS = 5.0
    TRAIL_RETENTION_DAYS = 30.0
    MAX_UPDATE_HZ = 5.0
    ALERT_PUSH_RADIUS_M = 5000.0
    SAFE_PLACE_RADIUS_M = 1000.0  # an SOS's detail lists the open safe places within this distance
    TRUSTED_REPORTER_SCORE = 80.0
    # reports and alerts
    REPORT_RATE_LIMIT = "10/minute;100/day"  # per user, on POST /reports
    REPORT_FLAG_DOWNVOTES = 2  # downvotes that put a visible report in the moderators' flagged queue
    OFFICIAL_ALERT_MAX_DAYS = 30  # how far ahead an official alert's expires_at may be
    # organizations
    ORG_MAX_AREA_KM2 = 5000.0  # largest service area
    ORG_FREE_MEMBERS = 25  # members of a free-plan organization (the owner counts)
    ORG_INVITATION_TTL_HOURS = 72.0  # an invitation code's lifetime
    # Limits on writes (allynet/ratelimit.py), shared by all processes through Redis. "User" limits
    # count one user's writes, "room" limits everyone's in one party or SOS chat. Party creation
    # counts POST /parties and party:create together. party:update has MAX_UPDATE_HZ instead.
    PARTY_CREATE_RATE_LIMIT = "10 per hour"
    PARTY_MESSAGE_RATE_LIMIT = "20 per 10 seconds"
    PARTY_MESSAGE_ROOM_RATE_LIMIT = "60 per 10 seconds"
    PARTY_ALERT_RATE_LIMIT = "10 per minute"
    PARTY_ALERT_ROOM_RATE_LIMIT = "30 per minute"
    EMERGENCY_MESSAGE_RATE_LIMIT = "20 per 10 seconds"
    EMERGENCY_MESSAGE_ROOM_RATE_LIMIT = "60 per 10 seconds"
    PARTY_IDLE_HOURS = 12.0
    SOS_MAX_HOURS = 24.0
    # parties
    PARTY_PRESENCE_TTL_SECONDS = 90.0  # a crashed process's sockets leave presence after this
    # Pending rider positions are written in one bulk write per process this often. None: 2 s with
    # MongoDB (what other processes read); 30 s with the embedded store, which has no other process
    # and whose readers of stored positions (sweep, alerts near parties) flush first anyway.
    PARTY_POSITION_FLUSH_SECONDS = None
    PARTY_STOPPED_ALERT_SECONDS = 300.0  # stopped this long while others ride -> member_stopped
    PARTY_EPISODE_SWEEP_SECONDS = 15.0  # left-behind/stopped check from Mongo of quiet and stopped riders
    # Tick of the opt-in `party:updates` batches (allynet/transport/batching.py): at most one per socket this
    # often, so a batched position waits at most this long. 20..1000.
    PARTY_BATCH_MS = 200
    # How often each process ends its sockets whose access token expired without them sending anything
    # (one that sends is ended at its next event).
    SOCKET_SESSION_SWEEP_SECONDS = 15.0
    BACKGROUND_TASKS = True  # escalation sweeps and similar in-process loops
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "text"  # or "json": one JSON object per log line (allynet/request_log.py)
    TESTING = False
    # scale-out: N processes sharing rooms, limits and presence through Redis
    REDIS_KEY_PREFIX = "allynet:"  # every app key in Redis starts with it
    REDIS_SOCKET_TIMEOUT = 0.5  # seconds any Redis command may take before it counts as down
    REDIS_RETRY_SECONDS = 1.0  # after a Redis failure, skip optional Redis work this long
    SOCKETIO_CHANNEL = "allynet-socketio"  # Redis pub/sub channel; same for every process of a deployment
    SOCKETIO_QUEUE_RETRY_MAX = 2.0  # longest pause between queue reconnect attempts
    # real-time fast path (issue 9)
    SOCKETIO_WS_COMPRESSION = False  # permessage-deflate on Socket.IO websockets: zlib per ~200-byte frame per recipient
    SOCKETIO_ASYNC_HANDLERS = False  # True: one greenlet/thread per Socket.IO event (python-socketio's default)
    SOCKETIO_TCP_NODELAY = True  # websockets send without Nagle's delay (eventlet; Node's ws does the same)
    # `fast`: the patched real-time transport (allynet/transport/); `plain`: Flask-SocketIO's own path, no patches.
    ALLYNET_TRANSPORT = "fast"
    RATELIMIT_KEY_PREFIX = "allynet"
    PROXY_FIX_HOPS = 0  # reverse proxies in front (nginx: 1) whose X-Forwarded-For/-Proto to trust
    # map data (allynet/mapdata/): traffic from our riders' trails, weather, overlays and tiles
    MAP_MAX_BBOX_KM2 = 2500.0  # largest bbox /traffic and /overlays answer
    TRAFFIC_INTERVAL_SECONDS = 60.0  # how often the traffic cells are recomputed
    TRAFFIC_WINDOW_MINUTES = 10.0  # trail points that count, and how long a cell lives
    TRAFFIC_H3_RES = 9
    TRAFFIC_MIN_RIDERS = 3  # distinct riders (from 2+ parties) before a cell is published
    WEATHER_PROVIDER = "open-meteo"  # or "off"
    OPEN_METEO_URL = "https://api.open-meteo.com/v1/forecast"
    WEATHER_CACHE_SECONDS = 600.0  # a cached forecast is fresh this long
    WEATHER_STALE_SECONDS = 21600.0  # and served as stale this long while the provider is down
    WEATHER_CHECK_SECONDS = 600.0  # how often active parties are checked for weather alerts
    WEATHER_TIMEOUT_SECONDS = 2.0
    WEATHER_RETRIES = 1  # retries of a failed provider call (connection errors and 5xx)
    WEATHER_BREAKER_FAILURES = 3  # failed calls in a row that open the breaker
    WEATHER_BREAKER_RESET_SECONDS = 60.0  # how long an open breaker answers at once before trying again
    # On-the-road thresholds (current conditions at a party's position)
    WEATHER_GUST_KMH = 70.0
    WEATHER_HEAVY_RAIN_MM = 7.6  # mm in the hour
    WEATHER_LOW_VISIBILITY_M = 200.0
    WEATHER_RATE_LIMIT = "60 per minute"  # GET /weather per user: each uncached cell is a provider call
    OVERLAY_LAYER_LIMIT = 500  # default features per layer in /overlays (max 2000)
    TILE_CACHE_SECONDS = 60  # Cache-Control max-age of tiles


class DevelopmentConfig(Config):
    """The embedded default a newcomer runs."""


class TestingConfig(Config):
    """Fast hashes, fresh in-process store per app, no background loops."""

    ENV_NAME = "testing"
    TESTING = True
    BCRYPT_ROUNDS = 4
    JWT_SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256"
    REGISTER_RATE_LIMIT = "1000/minute"
    LOGIN_RATE_LIMIT_IP = "1000/minute"
    LOGIN_RATE_LIMIT_EMAIL = "1000/minute"
    BACKGROUND_TASKS = False
    MONGO_SERVER_SELECTION_TIMEOUT_MS = 1000
    WEATHER_PROVIDER = "off"  # tests never call out; weather tests turn it on against a local server


class ProductionConfig(Config):
    """Real MongoDB, Redis-backed limits, an explicit secret: checked at start."""

    ENV_NAME = "production"
    JWT_COOKIE_SECURE = True


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


POSITION_FLUSH_SECONDS = 2.0
EMBEDDED_POSITION_FLUSH_SECONDS = 30.0
PAYMENTS_PROVIDERS = ("offline", "stripe")  # allynet/payments/provider.py


class ConfigError(RuntimeError):
    """The configuration cannot run in the chosen environment."""


def load(name=None, overrides=None, environ=None):
    """Build the config dict for `name` (default: $ALLYNET_ENV or development)."""
    environ = os.environ if environ is None else environ
    name = name or environ.get("ALLYNET_ENV") or "development"
    if name not in CONFIGS:
        raise ConfigError(f"unknown ALLYNET_ENV {name!r}; use one of {sorted(CONFIGS)}")
    cls = CONFIGS[name]
    values = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
    if name != "testing":
        for key, parse in ENV_VARS.items():
            raw = environ.get(key)
            if raw not in (None, ""):
                try:
                    values[key] = parse(raw)
                except ValueError as exc:
                    raise ConfigError(f"{key}={raw!r} is not valid: {exc}") from exc
    values.update(overrides or {})
    if values.get("PARTY_POSITION_FLUSH_SECONDS") is None:
        embedded = not values.get("MONGO_URI") and values.get("MONGO_CLIENT") is None
        values["PARTY_POSITION_FLUSH_SECONDS"] = EMBEDDED_POSITION_FLUSH_SECONDS if embedded \
            else POSITION_FLUSH_SECONDS
    batch_ms = values.get("PARTY_BATCH_MS")
    if isinstance(batch_ms, bool) or not isinstance(batch_ms, int) or not 20 <= batch_ms <= 1000:
        raise ConfigError(f"PARTY_BATCH_MS={batch_ms!r} must be a whole number of milliseconds, 20 to 1000")
    if values.get("ALLYNET_TRANSPORT") not in ("fast", "plain"):
        raise ConfigError(f"ALLYNET_TRANSPORT={values.get('ALLYNET_TRANSPORT')!r} must be fast or plain")
    if values.get("PAYMENTS_PROVIDER") not in PAYMENTS_PROVIDERS:
        raise ConfigError(f"PAYMENTS_PROVIDER={values.get('PAYMENTS_PROVIDER')!r} must be one of "
                          f"{', '.join(PAYMENTS_PROVIDERS)}")
    if values.get("LOG_FORMAT") not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT={values.get('LOG_FORMAT')!r} must be text or json")
    if values.get("REDIS_URL") and values["RATELIMIT_STORAGE_URI"] == "memory://":
        values["RATELIMIT_STORAGE_URI"] = values["REDIS_URL"]
    if str(values["RATELIMIT_STORAGE_URI"]).startswith(("redis://", "rediss://")):
        # A Redis outage must cost a request milliseconds: then the limiter falls back to memory.
        timeout = values["REDIS_SOCKET_TIMEOUT"]
        values.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": timeout,
                                                        "socket_connect_timeout": timeout})
    if name == "production":
        check_production(values)
    return values


def check_production(values):
    """Refuse, with a one-line reason, what must never run in production."""
    if not values.get("MONGO_URI") and values.get("MONGO_CLIENT") is None:
        raise ConfigError("production refuses the embedded mongomock store: set MONGO_URI")
    if str(values.get("RATELIMIT_STORAGE_URI", "")).startswith("memory://"):
        raise ConfigError("production refuses in-memory rate limits: set REDIS_URL")
    if not values.get("JWT_SECRET_KEY"):
        raise ConfigError("production refuses a generated JWT secret: set JWT_SECRET_KEY")
    if not values.get("RATELIMIT_ENABLED", True):
        raise ConfigError("production keeps rate limiting on: unset RATELIMIT_ENABLED=0")
    if values.get("PAYMENTS_PROVIDER") != "stripe":
        raise ConfigError("production refuses the offline payment provider (test mode): set PAYMENTS_PROVIDER=stripe")
    missing = [key for key in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET") if not values.get(key)]
    if missing:
        raise ConfigError(f"production with PAYMENTS_PROVIDER=stripe needs {' and '.join(missing)}")
