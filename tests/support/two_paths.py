"""One run two ways: the CLI as installed (its loop-free paths on) and with every run on
the event loop (``tests.support.event_loop_cli``). What the user sees must not differ."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.cli import tcpcli_command

REPO = Path(__file__).resolve().parents[2]
PATHS = ["no-loop", "event-loop"]

Run = subprocess.CompletedProcess[bytes]


def command_on(path: str, *args: str) -> list[str]:
    """The command line of ``tcpcli ARGS`` on one path (run it with :func:`environment`)."""
    return [*tcpcli_command(), *args] if path == "no-loop" else \
        [sys.executable, "-m", "tests.support.event_loop_cli", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO)}


def run_path(path: str, *args: str, stdin: bytes | int = b"", timeout: float = 30) -> Run:
    """``tcpcli ARGS`` on one path; ``stdin`` bytes through a pipe, or a descriptor."""
    env = environment()
    command = command_on(path, *args)
    if isinstance(stdin, int):
        return subprocess.run(command, stdin=stdin, capture_output=True, timeout=timeout,
                              env=env, cwd=REPO, check=False)
    return subprocess.run(command, input=stdin, capture_output=True, timeout=timeout,
                          env=env, cwd=REPO, check=False)


def both(*args: str, stdin: bytes = b"", timeout: float = 30) -> tuple[Run, Run]:
    no_loop, event_loop = (run_path(path, *args, stdin=stdin, timeout=timeout)
                           for path in PATHS)
    return no_loop, event_loop


_TIMES = re.compile(rb" *-?\d+\.\d+ (?:ms|s)\b")
_PORTS = re.compile(rb"127\.0\.0\.1:\d+")
_KERNEL = re.compile(rb"(kernel tcp: )[^(\n]*")


def timeless(text: bytes) -> bytes:
    """Messages with their times, ephemeral ports and the kernel's live figures masked."""
    return _PORTS.sub(b"127.0.0.1:P", _TIMES.sub(b" T", _KERNEL.sub(rb"\1K ", text)))


def assert_same(no_loop: Run, event_loop: Run) -> None:
    assert no_loop.returncode == event_loop.returncode, (no_loop.stderr, event_loop.stderr)
    assert no_loop.stdout == event_loop.stdout, _difference(no_loop.stdout, event_loop.stdout)
    assert timeless(no_loop.stderr) == timeless(event_loop.stderr), _difference(
        timeless(no_loop.stderr), timeless(event_loop.stderr))


def _difference(no_loop: bytes, event_loop: bytes) -> str:
    """The lines that differ (helpers here are not rewritten by pytest's assertions)."""
    import difflib

    return "\n".join(difflib.unified_diff(
        no_loop.decode(errors="replace").splitlines(),
        event_loop.decode(errors="replace").splitlines(), "no-loop", "event-loop",
        lineterm=""))
