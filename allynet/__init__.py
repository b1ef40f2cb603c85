"""AllyNet: the backend of a community safety network with a group-ride side."""
import importlib
import logging
import secrets

from flask import Flask

import config as config_module
from allynet import db as db_module
from allynet import jsonutil, request_log
from allynet.errors import register_error_handlers
from allynet.extensions import cors, jwt, limiter, socketio
from allynet.http import ObjectIdConverter

log = logging.getLogger("allynet")

BLUEPRINTS = ("ops", "auth", "users", "emergencies", "help_requests", "skills", "parties", "routes", "reports",
              "organizations", "businesses", "payments", "mapdata", "console")


def create_app(config_name=None, **overrides):
    """Build the app for `config_name` (development, testing, production)."""
    app = Flask(__name__)
    app.config.update(config_module.load(config_name, overrides))
    configure_logging(app)
    ensure_secret(app)
    app.json = jsonutil.JSONProvider(app)
    app.url_map.converters["oid"] = ObjectIdConverter
    app.url_map.strict_slashes = False
    db_module.init_app(app)
    from allynet.payments import provider as payments_provider

    payments_provider.init_app(app)
    register_blueprints(app)
    register_extensions(app)
    register_error_handlers(app)
    request_log.init_app(app)
    trust_proxies(app)
    from allynet.commands import register_commands

    register_commands(app)
    bootstrap(app)
    return app


def configure_logging(app):
    """One log format (LOG_FORMAT: text or json) at the configured level, when nothing else set up logging."""
    level = getattr(logging, str(app.config["LOG_LEVEL"]).upper(), logging.INFO)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level)
        root.handlers[0].allynet_installed = True
    for handler in root.handlers:
        if getattr(handler, "allynet_installed", False):  # ours: follows the latest app's LOG_FORMAT
            handler.setFormatter(request_log.formatter(app.config["LOG_FORMAT"]))
    logging.getLogger("allynet").setLevel(level)


def ensure_secret(app):
    """Generate a throw-away JWT secret for local runs, loudly."""
    if not app.config.get("JWT_SECRET_KEY"):
        app.config["JWT_SECRET_KEY"] = secrets.token_urlsafe(48)
        log.warning("JWT_SECRET_KEY is not set: generated a random one; tokens die with this process")
    app.config.setdefault("SECRET_KEY", app.config["JWT_SECRET_KEY"])


def register_blueprints(app):
    """Each feature package exposes `bp`; importing it also registers its socket events."""
    for name in BLUEPRINTS:
        package = importlib.import_module(f"allynet.{name}")
        app.register_blueprint(package.bp)


def register_extensions(app):
    """Bind JWT, rate limits, CORS and Socket.IO."""
    from allynet.auth import jwt_handlers  # noqa: F401  (loaders on the shared JWTManager)
    from allynet.sockets import init_socketio

    jwt.init_app(app)
    limiter.init_app(app)
    origins = app.config["CORS_ORIGINS"]
    cors.init_app(app, resources={r"/api/*": {"origins": origins if origins == "*" else origins.split(",")}})
    sio = socketio if not app.config.get("SOCKETIO_PRIVATE_INSTANCE") else type(socketio)()
    init_socketio(app, sio)


def trust_proxies(app):
    """Behind a load balancer, take the client address from X-Forwarded-For (PROXY_FIX_HOPS hops).

    Without it every client would share the balancer's address, and so its per-IP rate limits.
    Off by default: a client could otherwise pick its own address.
    """
    hops = int(app.config.get("PROXY_FIX_HOPS") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def bootstrap(app):
    """Start-up data: the bootstrap admin and, on the embedded store, the demo set."""
    spec = app.config.get("ALLYNET_BOOTSTRAP_ADMIN")
    with app.app_context():
        db = db_module.get_db()
        if spec:
            email, sep, password = spec.partition(":")
            if not sep or "@" not in email or len(password) < 8:
                raise config_module.ConfigError(
                    "ALLYNET_BOOTSTRAP_ADMIN must be 'email:password' with a password of 8+ characters")
            from allynet.users import service as users_service

            users_service.bootstrap_admin(db=db, email=email, password=password)
            log.info("bootstrap admin %s ready", email.strip().lower())
        if app.config.get("ALLYNET_DEMO"):
            if not db_module.is_embedded(db.client):
                log.warning("ALLYNET_DEMO is for the embedded store; use scripts/seed.py for MongoDB")
            else:
                try:
                    demo = importlib.import_module("allynet.demo")
                except ImportError:
                    log.warning("ALLYNET_DEMO=1 but the demo data set is not available")
                else:
                    demo.load(app)
