"""tcpcli/protocols is sans-IO: its modules import no networking, TLS or async library.

The check walks each module's syntax tree (ast), so it sees every import statement, also
the ones inside functions or ``if TYPE_CHECKING`` blocks, without importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tcpcli.protocols

PACKAGE = Path(tcpcli.protocols.__file__).parent
FORBIDDEN = {"anyio", "socket", "ssl", "dns", "asyncio", "trio", "selectors", "select",
             "subprocess", "urllib", "http", "threading", "sniffio"}
#: The one module outside the package it may use: the single exception tree.
ALLOWED_TCPCLI = {"tcpcli.core.errors"}
MODULES = sorted(PACKAGE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = "tcpcli.protocols"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                assert node.module is not None
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            assert name not in ("__import__", "import_module"), f"{path.name}: dynamic import"
    return names


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "tcpcli" and not name.startswith("tcpcli.protocols"):
            assert any(name == allowed or name.startswith(allowed + ".")
                       for allowed in ALLOWED_TCPCLI), f"{path.name} imports {name}"


def test_the_walker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import ssl\n    from anyio import abc\n")
    assert {"ssl", "anyio", "anyio.abc"} <= imported_modules(sample)
