"""The codebase's shape rules, read from the source with `ast`.

- No module reaches into another allynet module's private names (`from x import _name`,
  `module._name`): what another module needs is public and has a docstring.
- No import cycle among allynet modules (top-level imports: the ones that run at import time).
- No code or comment says "issue <number>": it says what the thing is.
"""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "allynet"

# Going below a dependency's public API is allowed in one place only, allynet/transport/
# (see STYLE.md, "Speed without a maze"); tests/test_structure_transport.py checks the
# libraries' private names, this file allynet's own.
TRANSPORT_PREFIX = "allynet.transport"
ALLOWED_CYCLES = []

ISSUE_REFERENCE = re.compile(r"\bissues?\s*(?:no\.?\s*)?#?\s*\d+", re.IGNORECASE)


def module_name(path):
    """allynet/parties/service.py -> allynet.parties.service; a package's __init__ is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in MODULES.items()}


def is_package(name):
    """True when `name` is a package (its source is an __init__.py)."""
    return MODULES[name].name == "__init__.py"


def absolute(name, node):
    """The absolute module an ImportFrom in module `name` names (relative imports resolved)."""
    if not node.level:
        return node.module
    base = name.split(".")
    if not is_package(name):
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def is_private(attribute):
    """A single leading underscore: `_record`, not `__name__`."""
    return attribute.startswith("_") and not attribute.startswith("__")


def is_transport(name):
    """Modules allowed below the public API of each other (and of their dependencies)."""
    return name == TRANSPORT_PREFIX or name.startswith(TRANSPORT_PREFIX + ".")


def private_uses(name, tree):
    """[(line, text)] for every private name of another allynet module that `name` uses."""
    found = []
    aliases = {}  # local name -> allynet module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    if is_private(alias.name.rsplit(".", 1)[-1]):
                        found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            source = absolute(name, node)
            if source not in MODULES:
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                if is_private(alias.name) and source != name:
                    found.append((node.lineno, f"from {source} import {alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            target = dotted(node.value, aliases)
            if target is not None and target != name:
                found.append((node.lineno, f"{target}.{node.attr}"))
    return found


def dotted(node, aliases):
    """The allynet module an expression (`realtime`, `allynet.http`) names, else None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id) or (node.id if node.id in MODULES else None)
    if isinstance(node, ast.Attribute):
        parent = dotted(node.value, aliases)
        if parent is not None and f"{parent}.{node.attr}" in MODULES:
            return f"{parent}.{node.attr}"
    return None


def top_level_imports(name, tree):
    """The allynet modules `name` imports when it is imported (not inside functions or classes)."""
    imported = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name in MODULES)
            elif isinstance(node, ast.ImportFrom):
                source = absolute(name, node)
                if source not in MODULES:
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    imported.add(submodule if submodule in MODULES else source)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(node, block, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    imported.discard(name)
    return imported


def is_blueprint_cycle(cycle):
    """A feature package and its own modules: `bp = Blueprint(...)` in the package's __init__, then
    `from allynet.<feature> import views` there, and `from allynet.<feature> import bp` in views.
    The order inside __init__ makes it safe, and it is the house layout (STYLE.md)."""
    packages = [name for name in cycle if name != "allynet" and is_package(name)
                and all(other == name or other.startswith(name + ".") for other in cycle)]
    return bool(packages)


def import_graph():
    """{module: the allynet modules it imports at import time}."""
    return {name: top_level_imports(name, tree) for name, tree in TREES.items()}


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_source_was_read():
    assert {"allynet.http", "allynet.auth.decorators", "allynet.parties.service", "allynet"} <= set(MODULES)


def test_no_module_uses_another_modules_private_names():
    offences = [f"{MODULES[name].relative_to(ROOT)}:{line}: {text}"
                for name, tree in TREES.items() if not is_transport(name)
                for line, text in private_uses(name, tree)]
    assert offences == []


def test_the_private_name_check_sees_both_forms():
    source = ("from allynet.http import _record\n"
              "from allynet import realtime\n"
              "import allynet.geo as g\n"
              "def f():\n"
              "    return realtime._rooms, g._cache, realtime.emit_to_room\n")
    found = private_uses("allynet.example", ast.parse(source))
    assert [text for _, text in found] == ["from allynet.http import _record", "allynet.realtime._rooms",
                                           "allynet.geo._cache"]


def test_the_import_graph_has_the_known_edges():
    graph = import_graph()
    assert {"allynet.http", "allynet.errors"} <= graph["allynet.auth.decorators"]
    assert "allynet.parties.service" in graph["allynet.parties.views"]
    assert "allynet.parties.views" in graph["allynet.parties"] and "allynet.parties" in graph["allynet.parties.views"]
    assert is_blueprint_cycle({"allynet.parties", "allynet.parties.views", "allynet.parties.events"})
    assert not is_blueprint_cycle({"allynet.parties.service", "allynet.emergencies.service"})
    assert not is_blueprint_cycle({"allynet", "allynet.db"})


def test_no_import_cycles():
    found = [sorted(cycle) for cycle in cycles(import_graph())
             if cycle not in ALLOWED_CYCLES and not is_blueprint_cycle(cycle)]
    assert found == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]


def test_nothing_says_issue_and_a_number():
    offences = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                for path in MODULES.values()
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if ISSUE_REFERENCE.search(line)]
    assert offences == []


def test_the_issue_pattern():
    assert all(ISSUE_REFERENCE.search(text) for text in ("(issue 9)", "Issue #12", "issues 3 and 4", "issue no. 7"))
    assert not any(ISSUE_REFERENCE.search(text)
                   for text in ("the issuer", "issued 3 tokens", "github.com/o/r/issues/281", "no issue here"))
