"""benchmarks/service_scan.py still runs: the comparison with ``nmap -sV`` that
``benchmarks/run`` reports (its figures come from full runs, not from here), on one real
server that answers fast, so a change that breaks the benchmark is seen in CI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.realservers.conftest import require, require_binary, require_root

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "service_scan.py"


@pytest.mark.timeout(120)
def test_the_nmap_comparison_runs_and_counts() -> None:
    require_binary("sshd")
    require_root("sshd")
    require(shutil.which("nmap") is not None, "nmap is not installed")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "1", "--layouts", "free",
                           "--servers", "sshd", "--json"], capture_output=True, text=True,
                          timeout=110)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (layout,) = json.loads(proc.stdout)["layouts"]
    assert layout["layout"] == "free" and layout["note"] == ""
    assert layout["counts"]["listeners"] == 1
    said = layout["said"]["sshd/ssh"]
    assert said["tcpcli"]["product"] == "OpenSSH"
    assert said["nmap"]["product"] == "OpenSSH"  # so the two are compared, not assumed
    assert layout["counts"]["same_product"] == 1
    assert len(layout["seconds"]["tcpcli"]) == len(layout["seconds"]["nmap"]) == 1
    assert "| sshd/ssh | ssh: OpenSSH " in layout["table"]
