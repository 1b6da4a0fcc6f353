"""The benchmarks still run, each once at its smallest size. Their figures are not checked
here (the README's come from full runs on a quiet machine); what is checked is that every
tcpcli row is measured, so a change that breaks a benchmark is seen in CI, not when the
next figures are due."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.isolated_namespace import isolated_command, skip_without_namespace

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_benchmark(name: str, *args: str, prefix: tuple[str, ...] = ()) -> str:
    proc = subprocess.run([*prefix, sys.executable, str(BENCHMARKS / name), *args],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_connect_throughput() -> None:
    # The installed checkout, not a freshly built wheel: that needs the package index.
    out = run_benchmark("connect_throughput.py", "--size-mib", "8", "--rounds", "1",
                        "--tcpcli", "current")
    rows = {line[:28].strip() for line in out.splitlines()[1:]}
    assert {"push tcpcli", "pull tcpcli", "startup tcpcli --version"} <= rows
    if shutil.which("openssl"):
        assert "tls tcpcli" in rows


def test_bench_accuracy() -> None:
    out = run_benchmark("bench_accuracy.py", "--rounds", "1", "--count", "300",
                        "--concurrency", "8", "--memory-samples", "20000")
    assert "rate ratio tcpcli/reference" in out
    assert "peak memory for 20,000 samples" in out


def test_throughput() -> None:
    out = run_benchmark("throughput.py", "--rounds", "1", "--seconds", "0.3")
    assert "up tcpcli's own figure / the peer's" in out
    assert "down tcpcli's own figure / the peer's" in out


@pytest.mark.skipif(not (shutil.which("nmap") and shutil.which("nc")),
                    reason="compares with nmap and nc, which are not installed")
def test_probe_scan() -> None:
    # In a loopback-only namespace, as the README's figures were taken: outside it, other
    # processes' listeners come and go mid-scan and the open-port sets may differ.
    skip_without_namespace()
    out = run_benchmark("probe_scan.py", "--rounds", "1", prefix=tuple(isolated_command()))
    assert "tcpcli/nmap median ratio" in out
    assert "open-port sets identical in 1/1 rounds" in out
