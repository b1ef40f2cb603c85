"""The transport's boundary: private names of eventlet, python-engineio, python-socketio and Flask
only inside allynet/transport/, the version check that guards its patches, and no import cycle."""
import ast
import importlib.metadata
import pathlib
import re

import pytest

from allynet import create_app, transport

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "allynet"
TRANSPORT = PACKAGE / "transport"
# mongomock's internals, not the web stack's: the embedded store owns those (allynet/embedded/).
OUTSIDE_SCOPE = {PACKAGE / "embedded"}
# Documented public API despite the underscore (Flask's LocalProxy, "Notes On Proxies").
PUBLIC_UNDERSCORE = {"_get_current_object"}
WEB_STACK = ("eventlet", "engineio", "socketio", "flask_socketio", "flask", "simple_websocket")
# Private state of those libraries named without a leading underscore, and their private modules.
PRIVATE_PATTERNS = [r"manager\.rooms\b", r"eio\.sockets\b", r"\bflask\.globals\b", r"from flask import globals",
                    r"\b_cv_app\b", r"\b_cv_request\b"]
# Only these outside the package may import the libraries below it (Flask-SocketIO's object; wsgi.py's
# monkey patch is outside allynet/).
LOW_LEVEL = ("eventlet", "engineio", "socketio")


def private_names(source):
    """(line, text) of every private-attribute access or private name of the web stack in `source`."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
                continue  # a subclass extending its base's hook (marshmallow fields' _deserialize)
            if node.attr in PUBLIC_UNDERSCORE:
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if name.split(".")[0] in LOW_LEVEL:
                    found.append((node.lineno, f"import {name}"))
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    for lineno, line in enumerate(code.splitlines(), 1):
        for pattern in PRIVATE_PATTERNS:
            if re.search(pattern, line):
                found.append((lineno, line.strip()))
    return found


def modules_outside_transport():
    for path in sorted(PACKAGE.rglob("*.py")):
        if TRANSPORT in path.parents or any(scope in path.parents for scope in OUTSIDE_SCOPE):
            continue
        yield path


def test_no_module_outside_the_transport_names_a_private_of_the_web_stack():
    offences = []
    for path in modules_outside_transport():
        for lineno, text in private_names(path.read_text()):
            offences.append(f"{path.relative_to(ROOT)}:{lineno}: {text}")
    assert offences == [], "private names of the web stack belong in allynet/transport/:\n" + "\n".join(offences)


@pytest.mark.parametrize("source", [
    "server._send_eio_packet(eio_sid, pkt)",
    "sio.server._handle_eio_message = handle",
    "members = server.manager.rooms.get('/', {})",
    "from flask import globals as g\nvar = g._cv_app",
    "import engineio.packet",
    "sockets = sio.server.eio.sockets",
])
def test_the_check_catches_what_it_is_for(source):
    assert private_names(source)


def test_the_check_leaves_public_names_alone():
    assert private_names("app = current_app._get_current_object()\nself._x = 1\nsio.emit('a', {})") == []


def test_the_transport_has_no_import_cycle():
    modules = {path.stem for path in TRANSPORT.glob("*.py") if path.stem != "__init__"}
    edges = {name: set() for name in modules}
    for name in modules:
        for node in ast.walk(ast.parse((TRANSPORT / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("allynet.transport."):
                    edges[name].add(node.module.rsplit(".", 1)[1])
                elif node.module == "allynet.transport":
                    for alias in node.names:
                        assert alias.name in modules, f"{name} imports {alias.name} from the package's __init__"
                        edges[name].add(alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("allynet.transport."):
                        edges[name].add(alias.name.rsplit(".", 1)[1])
    done, stack = set(), []

    def visit(name):
        assert name not in stack, "import cycle: " + " -> ".join(stack[stack.index(name):] + [name])
        if name in done:
            return
        stack.append(name)
        for target in edges[name]:
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(modules):
        visit(name)


def _installed(overrides):
    real = importlib.metadata.version

    def version(package):
        return overrides.get(package) or real(package)

    return version


@pytest.mark.parametrize("package", sorted(transport.PINNED))
def test_a_dependency_at_another_version_refuses_to_start(monkeypatch, package):
    monkeypatch.setattr(importlib.metadata, "version", _installed({package: "99.0.0"}))
    with pytest.raises(transport.TransportVersionError) as info:
        create_app("testing", SOCKETIO_PRIVATE_INSTANCE=True)
    message = str(info.value)
    assert package in message and transport.PINNED[package] in message and "99.0.0" in message
    assert "ALLYNET_TRANSPORT=plain" in message


def test_plain_mode_starts_whatever_the_versions(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", _installed({"python-socketio": "99.0.0"}))
    app = create_app("testing", SOCKETIO_PRIVATE_INSTANCE=True, ALLYNET_TRANSPORT="plain")
    assert app.extensions["socketio"].server.allynet_fast is False


def test_an_unknown_transport_mode_is_refused():
    from config import ConfigError

    with pytest.raises(ConfigError, match="ALLYNET_TRANSPORT"):
        create_app("testing", ALLYNET_TRANSPORT="turbo")


def test_the_pins_are_requirements_txt():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    assert {name.lower(): version for name, version in transport.PINNED.items()} == \
        {name.lower(): pins[name.lower()] for name in transport.PINNED}
