"""The built wheel, installed into a fresh venv, is a complete tool: the command and
``python -m tcpcli`` run, the offline demo works, every command has help, and the man
pages and completion scripts land where man and the shells look under the prefix."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tcpcli.cli.completion import SCRIPT_FILES
from tcpcli.cli.main import COMMANDS

REPOSITORY = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


def run(*command: str | Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # Never from the checkout: its tcpcli/ would shadow the installed package.
    proc = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=Path(sys.prefix))
    assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with only the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist,
        REPOSITORY)
    wheels = list(dist.glob("tcpcli-*.whl"))
    assert len(wheels) == 1
    prefix = root / "venv"
    run(sys.executable, "-m", "venv", prefix)
    run(prefix / "bin" / "python", "-m", "pip", "install", "--quiet",
        "--disable-pip-version-check", wheels[0])
    return prefix


def clean_env(prefix: Path) -> dict[str, str]:
    """No PYTHONPATH or checkout on the path: only what the venv holds can be imported."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    return env


def test_the_installed_package_is_the_wheel(venv: Path, tmp_path: Path) -> None:
    proc = run(venv / "bin" / "python", "-c", "import tcpcli; print(tcpcli.__file__)",
               env=clean_env(venv))
    assert Path(proc.stdout.strip()).is_relative_to(venv)
    version = run(venv / "bin" / "python", "-m", "tcpcli", "--version", env=clean_env(venv))
    assert version.stdout.startswith("tcpcli")


def test_demo_and_every_commands_help(venv: Path) -> None:
    env = clean_env(venv)
    tcpcli = venv / "bin" / "tcpcli"
    demo = run(tcpcli, "demo", env=env, timeout=120)
    assert "connect" in demo.stdout + demo.stderr
    for name in COMMANDS:
        helped = run(tcpcli, name, "--help", env=env)
        assert helped.stdout.startswith(f"Usage: tcpcli {name}"), name


def test_a_bench_over_processes_needs_only_the_wheels_dependencies(venv: Path) -> None:
    """``bench --processes 2`` starts its children on the parent's event loop backend;
    it once asked sniffio, which neither tcpcli nor anyio (since 4.7) depends on, so only
    a user's install, where no test dependency brings it, failed."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    done = threading.Event()

    def accept_and_close() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                listener.accept()[0].close()

    acceptor = threading.Thread(target=accept_and_close, daemon=True)
    acceptor.start()
    port = listener.getsockname()[1]
    try:
        proc = run(venv / "bin" / "tcpcli", "bench", f"127.0.0.1:{port}", "--allow",
                   "127.0.0.1", "-n", "200", "-c", "64", "--max-sockets", "unlimited",
                   "--processes", "2", "--json", "-q", env=clean_env(venv))
    finally:
        done.set()
        acceptor.join(5)
        listener.close()
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["event"] == "bench_summary" and summary["samples"] == 200, summary
    assert run(venv / "bin" / "python", "-c", "import importlib.util as u; "
               "print(u.find_spec('sniffio') is None)", env=clean_env(venv)).stdout == "True\n"


def test_completions_are_installed_and_complete(venv: Path) -> None:
    env = clean_env(venv)
    installed = {
        "bash": Path("share/bash-completion/completions") / SCRIPT_FILES["bash"],
        "zsh": Path("share/zsh/site-functions") / SCRIPT_FILES["zsh"],
        "fish": Path("share/fish/vendor_completions.d") / SCRIPT_FILES["fish"],
    }
    for shell, path in installed.items():
        assert (venv / path).read_text() == (REPOSITORY / path).read_text(), shell
    # The bash shim, as bash-completion would load it, completes a partial command line
    # through the installed tcpcli.
    script = (f"source {venv / installed['bash']} && complete -p tcpcli && "
              "COMP_WORDS=(tcpcli sta) COMP_CWORD=1 && _tcpcli_completion tcpcli && "
              'printf "%s\\n" "${COMPREPLY[@]}"')
    completed = run("bash", "-c", script, env=env).stdout.splitlines()
    assert completed[0].startswith("complete ") and completed[0].endswith(" tcpcli")
    assert completed[1:] == ["starttls"]


def test_man_pages_are_installed_and_render(venv: Path) -> None:
    pages = sorted((venv / "share" / "man" / "man1").glob("tcpcli*.1"))
    assert {page.name for page in pages} == {p.name for p in (REPOSITORY / "man").glob("*.1")}
    if shutil.which("groff") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("groff is missing; .ci/run installs groff-base")
        pytest.skip("groff is not installed")
    for page in pages:
        rendered = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(page)],
                                  capture_output=True, text=True, timeout=60)
        assert rendered.returncode == 0 and rendered.stderr == "", page.name
        assert page.stem.upper() in rendered.stdout
