"""Run this directory's ``isolated`` tests inside a loopback-only network namespace.

One pytest under ``tests/support/isolated`` runs them all (a namespace per case would cost
more than the cases). Outside the namespace they are skipped (see conftest.py), so a plain
``pytest tests/hostile`` still runs them — here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.isolated_namespace import (
    in_loopback_namespace,
    isolated_command,
    skip_without_namespace,
)

HERE = Path(__file__).parent
REPO = HERE.parents[1]


@pytest.mark.timeout(180)
@pytest.mark.skipif(in_loopback_namespace(), reason="already inside the namespace")
def test_isolated_cases_pass_inside_the_namespace() -> None:
    skip_without_namespace()
    proc = subprocess.run(
        isolated_command(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "-m", "isolated", "-o", "addopts=", str(HERE)),
        capture_output=True, text=True, timeout=170, cwd=REPO,
        env={**os.environ, "NO_COLOR": "1"},
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
