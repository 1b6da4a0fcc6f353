"""The package's shape, read from its imports: no cycles, and data flows one way.

DESIGN.md §2: cli → engines → core → protocols/data; render reads core and engine types;
nothing outside the CLI imports it; no import cycles, lazy imports included. The graph is
built from the syntax tree (``ast``), without importing anything: imports inside functions
count (a lazy import that closes a loop hides a cycle, it does not remove it), as do the
names a package's lazy ``_EXPORTS`` table loads on first use; ``if TYPE_CHECKING:`` blocks
do not (they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import tcpcli

ROOT = Path(tcpcli.__file__).parent
PACKAGE = "tcpcli"

#: Which layers each layer may import (its own included). A module directly in tcpcli/
#: (the package's __init__, __main__) is layer "tcpcli".
MAY_IMPORT: dict[str, frozenset[str]] = {
    "cli": frozenset({"cli", "engines", "render", "core", "protocols", "data", "tcpcli"}),
    "render": frozenset({"render", "engines", "core", "protocols", "data", "tcpcli"}),
    "engines": frozenset({"engines", "core", "protocols", "data", "tcpcli"}),
    "core": frozenset({"core", "protocols", "data", "tcpcli"}),
    "protocols": frozenset({"protocols", "data"}),
    "data": frozenset({"data"}),
}
#: Outside the CLI, only ``python -m tcpcli`` may import it.
CLI_IMPORTERS = frozenset({"tcpcli.__main__"})
#: Declaration helpers every layer may use, the sans-IO protocols too: they import only
#: the standard library (``Record``: dataclass behaviour without per-class compiling).
FOR_EVERY_LAYER = frozenset({"tcpcli.record"})


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((package, *parts))] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(body: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth (functions, classes, try, with,
    match...), skipping TYPE_CHECKING blocks."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _import_nodes(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                yield from _import_nodes(children)


def _lazy_exports(tree: ast.Module) -> set[str]:
    """The modules a package's ``_EXPORTS`` table (name -> module) loads on first use."""
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.target.id == "_EXPORTS" and isinstance(node.value, ast.Dict):
            return {ast.literal_eval(value) for value in node.value.values}
    return set()


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (``from a import b`` names a and, when
    it is a module, a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = _lazy_exports(tree)
    for node in _import_nodes(tree.body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            parts = base.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            source = ".".join(parts + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        found.add(source)
        found.update(f"{source}.{alias.name}" for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]], packages: set[str]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan). A package importing
    its own submodules (the usual __init__ re-export) is left out of each component, so a
    cycle is named by the modules that make it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            modules = sorted(m for m in component if m not in packages)
            if len(modules) > 1:
                found.append(modules)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT) \
        else "tcpcli"


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that goes against the layering, as "importer -> imported (rule)"."""
    found = []
    for importer, targets in sorted(graph.items()):
        source = layer(importer)
        for target in sorted(targets):
            into = layer(target)
            if into == "cli" and source != "cli" and importer not in CLI_IMPORTERS:
                found.append(f"{importer} -> {target} (only the CLI imports the CLI)")
            elif target in FOR_EVERY_LAYER:
                continue
            elif source in MAY_IMPORT and into not in MAY_IMPORT[source]:
                found.append(f"{importer} -> {target} ({source} may not import {into})")
    return found


MODULES = module_files()
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}
GRAPH = import_graph(MODULES)


def test_the_graph_sees_the_package() -> None:
    assert {"tcpcli.cli.main", "tcpcli.core.errors", "tcpcli.protocols.base"} <= set(GRAPH)
    assert "tcpcli.protocols.errors" in GRAPH["tcpcli.core.errors"]
    # A lazy import inside a function counts (cli.starttls imports the registry there).
    assert "tcpcli.protocols.registry" in GRAPH["tcpcli.cli.starttls"]


def test_no_import_cycles() -> None:
    found = cycles(GRAPH, PACKAGES)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_layers_import_one_way() -> None:
    found = violations(GRAPH)
    assert not found, "layering violations:\n" + "\n".join(found)


def test_what_every_layer_may_import_imports_nothing_of_tcpcli() -> None:
    for module in FOR_EVERY_LAYER:
        assert not {target for target in GRAPH[module] if target.startswith("tcpcli")}, module


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A tiny package in tcpcli's shape with one lazy cycle, one cycle through TYPE_CHECKING
    (not a cycle) and two layering violations."""
    root = tmp_path / "tcpcli"
    files = {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from tcpcli.core import b\n",
        "core/b.py": "from . import a\nfrom tcpcli.engines.scan import x\n",
        "core/c.py": "from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from tcpcli.core.d import y\n",
        "core/d.py": "import tcpcli.core.c\n",
        "cli/__init__.py": "",
        "cli/main.py": "",
        "engines/__init__.py": "",
        "engines/scan.py": "try:\n    from tcpcli.cli.main import z\nexcept ImportError:\n"
                           "    pass\n",
        "protocols/__init__.py": '_EXPORTS: dict[str, str] = {"q": "tcpcli.protocols.base"}\n',
        "protocols/base.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_catch_a_lazy_cycle_and_layering_violations(sample: Path) -> None:
    modules = module_files(sample, "tcpcli")
    graph = import_graph(modules)
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    assert cycles(graph, packages) == [["tcpcli.core.a", "tcpcli.core.b"]]
    assert graph["tcpcli.protocols"] == {"tcpcli.protocols.base"}
    assert violations(graph) == [
        "tcpcli.core.b -> tcpcli.engines.scan (core may not import engines)",
        "tcpcli.engines.scan -> tcpcli.cli.main (only the CLI imports the CLI)",
    ]


# ------------------------------------------------------------------ where the network is touched

#: Calls that make a socket, dial or resolve, and the one module each may appear in. A
#: dial anywhere else would go around the Connector seam or the checked destination. (A
#: bare ``.connect()`` is not listed: the library's own ``connect()`` shares the name; no
#: dial can happen without a socket from one of these.)
NETWORK_CALLS: dict[str, frozenset[str]] = {
    "socket.socket": frozenset({"tcpcli.core.rawsocket",
                                # finds a free loopback port for its own listeners: never dials
                                "tcpcli.cli.demo"}),
    # (engines read a batched connect's outcome with rawsocket.connect_status)
    "connect_ex": frozenset({"tcpcli.core.rawsocket"}),
    "create_connection": frozenset(),
    "getaddrinfo": frozenset(),
    "gethostbyname": frozenset(),
    "open_connection": frozenset(),
    "anyio.connect_tcp": frozenset(),
}
#: Modules that may import dnspython: resolution lives behind the Resolver seam.
DNS_IMPORTERS = frozenset({"tcpcli.core.resolve"})


def _called_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        base = func.value
        if isinstance(base, ast.Name) and base.id in ("socket", "anyio"):
            return f"{base.id}.{func.attr}"
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def misplaced_network_use(modules: dict[str, Path]) -> list[str]:
    """Each call of NETWORK_CALLS, and each dnspython import, outside its permitted modules."""
    misplaced = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = _called_name(node)
                allowed = NETWORK_CALLS.get(called)
                if allowed is not None and name not in allowed:
                    misplaced.append(f"{name}:{node.lineno} calls {called}")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                if any(n == "dns" or n.startswith("dns.") for n in names) \
                        and name not in DNS_IMPORTERS:
                    misplaced.append(f"{name}:{node.lineno} imports dnspython")
    return misplaced


def test_sockets_dials_and_lookups_live_where_the_map_says() -> None:
    misplaced = misplaced_network_use(module_files())
    assert not misplaced, misplaced


def test_the_network_check_sees_a_dial_around_the_seam(tmp_path: Path) -> None:
    package = tmp_path / "tcpcli"
    (package / "engines").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "engines" / "__init__.py").write_text("")
    (package / "engines" / "rogue.py").write_text(
        "import socket\nimport dns.resolver\n"
        "socket.socket().connect_ex(('192.0.2.1', 80))\n")
    assert sorted(misplaced_network_use(module_files(package, "tcpcli"))) == [
        "tcpcli.engines.rogue:2 imports dnspython",
        "tcpcli.engines.rogue:3 calls connect_ex",
        "tcpcli.engines.rogue:3 calls socket.socket",
    ]
