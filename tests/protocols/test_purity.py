"""tcpcli/protocols is sans-IO: its modules import no networking, TLS or async library.

Two checks. The static one walks each module's syntax tree (ast), so it sees every import
statement, also the ones inside functions or ``if TYPE_CHECKING`` blocks, without importing
anything. The runtime one imports the package and every module in it in a fresh
interpreter and looks at what got loaded, which also catches what the first cannot see
(an import made by some other module the package imports). Which tcpcli modules the
package may import is the layering test's business (tests/unit/test_boundaries.py).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tcpcli.protocols

PACKAGE = Path(tcpcli.protocols.__file__).parent
FORBIDDEN = {"anyio", "socket", "ssl", "dns", "asyncio", "trio", "selectors", "select",
             "subprocess", "urllib", "http", "threading", "sniffio"}
#: What must not be loaded after importing the whole package (DESIGN.md §2: stdlib only,
#: no networking). A fresh interpreter loads none of these by itself.
NOT_LOADED = ("anyio", "ssl", "socket", "asyncio", "trio", "dns")
MODULES = sorted(PACKAGE.rglob("*.py"))


def _lazy_exports(tree: ast.Module) -> set[str]:
    """The modules named by a package's lazy ``_EXPORTS`` table (see __init__.py): they
    are imported on first use, so they count as imports of the package."""
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
                assert isinstance(node.value, ast.Dict)
                return {ast.literal_eval(value) for value in node.value.values}
    return set()


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = "tcpcli.protocols"
    names: set[str] = set()
    lazy = _lazy_exports(tree)
    names |= lazy
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
            # The one dynamic import allowed is the lazy table's, whose targets are above.
            assert name not in ("__import__", "import_module") or lazy, \
                f"{path.name}: dynamic import"
    return names


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    for name in imported_modules(path):
        assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_the_walker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import ssl\n    from anyio import abc\n")
    assert {"ssl", "anyio", "anyio.abc"} <= imported_modules(sample)


def test_the_walker_counts_a_lazy_table_as_imports(tmp_path: Path) -> None:
    sample = tmp_path / "__init__.py"
    sample.write_text('_EXPORTS: dict[str, str] = {"x": "anyio.abc"}\n')
    assert "anyio.abc" in imported_modules(sample)


def _modules_loaded_by(modules: list[str]) -> list[str]:
    """Of NOT_LOADED, those in sys.modules after a fresh interpreter imports ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {NOT_LOADED!r}\n"
        "                        if m in sys.modules or any(k.startswith(m + '.')\n"
        "                                                   for k in sys.modules))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded: list[str] = json.loads(proc.stdout)
    return loaded


def test_importing_every_module_loads_no_io_library() -> None:
    modules = ["tcpcli.protocols"] + [
        "tcpcli.protocols." + path.stem for path in MODULES if path.name != "__init__.py"]
    assert len(modules) == len(MODULES)
    assert _modules_loaded_by(modules) == []


def test_the_runtime_check_sees_a_loaded_library() -> None:
    assert "ssl" in _modules_loaded_by(["tcpcli.protocols", "ssl"])
