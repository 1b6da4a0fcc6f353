"""The tests' own loopback-only network namespace: ``tests/support/isolated`` and how to
use it from pytest (skip, with the kernel's reason, where no namespace can be made)."""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
from pathlib import Path

import pytest

#: The runner: ``isolated COMMAND [ARG...]`` runs COMMAND where only ``lo`` exists.
RUNNER = Path(__file__).with_name("isolated")


def isolated_command(*argv: str) -> list[str]:
    """``argv`` to run inside a fresh loopback-only namespace (the runner started by this
    interpreter, so it does not depend on a ``python3`` on PATH)."""
    return [sys.executable, str(RUNNER), *argv]


@functools.cache
def namespace_unavailable() -> str | None:
    """Why no namespace can be made here (the runner's stderr), or None. Probed once, by
    running ``true`` inside one."""
    try:
        proc = subprocess.run(isolated_command("true"), capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip() or f"the runner exited {proc.returncode}"


def skip_without_namespace() -> None:
    reason = namespace_unavailable()
    if reason is not None:
        pytest.skip(f"cannot create a loopback-only network namespace here: {reason}")


def in_loopback_namespace() -> bool:
    """True inside a network namespace that holds only ``lo`` (as the runner makes)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]
