"""Bare extension objects, bound to an app in create_app()."""
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_socketio import SocketIO

jwt = JWTManager()
limiter = Limiter(key_func=get_remote_address)
socketio = SocketIO()
cors = CORS()
