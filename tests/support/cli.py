"""The one way tests run the tcpcli a user runs: the installed console script in a subprocess.

``run_cli`` is for a command that finishes by itself; ``tests/hostile/harness.py`` builds its
watched runs (signals mid-run, hashed output, peak memory) on the same ``tcpcli_command``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def tcpcli_command() -> list[str]:
    """The installed console script, else ``python -m tcpcli`` (a checkout without install)."""
    exe = shutil.which("tcpcli")
    return [exe] if exe else [sys.executable, "-m", "tcpcli"]


def run_cli(*args: str, stdin: bytes | None = b"", backend: str = "asyncio",
            timeout: float = 60, cwd: Path | None = None, env: dict[str, str] | None = None,
            **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    """``tcpcli ARGS`` with ``stdin`` fed through a pipe, on the given anyio backend, colour
    off; ``env`` adds to (or overrides) this process's environment."""
    environment = {**os.environ, "TCPCLI_BACKEND": backend, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [*tcpcli_command(), *args], input=stdin, capture_output=True, timeout=timeout,
        env=environment, cwd=cwd, check=False, **kwargs,  # type: ignore[arg-type]
    )
