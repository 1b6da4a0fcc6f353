"""The benchmarks still run, each once at its smallest size. Their figures are not checked
here (the README's come from full runs on a quiet machine); what is checked is that every
tcpcli row is measured, so a change that breaks a benchmark is seen in CI, not when the
next figures are due."""

from __future__ import annotations

import json
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
    out = run_benchmark("probe_scan.py", "--rounds", "1", "--listeners", "3",
                        prefix=tuple(isolated_command()))
    assert "tcpcli/nmap median ratio" in out
    assert "open-port sets identical in 1/1 rounds" in out


#: Cheap rows of benchmarks/run: one start-up, the connect rate, and rr (skipped, with its
#: reason, where sockperf is missing: --no-install keeps CI from installing it).
RUN_CASES = ("startup-help-tcpcli", "bench-rate", "bench-rr")


def run_suite(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCHMARKS / "run"), *args],
                          capture_output=True, text=True, timeout=120)


def test_run_prints_one_table_of_the_chosen_cases(tmp_path: Path) -> None:
    saved = tmp_path / "rows.json"
    proc = run_suite("--quick", "--only", ",".join(RUN_CASES), "--rounds", "1",
                     "--tcpcli", "current", "--no-install", "--json", str(saved))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "| case | tcpcli median | peer median | ratio | goal | met? |"
    table = [line for line in lines if line.startswith("| ")][1:]
    assert len(table) == len(RUN_CASES), proc.stdout
    assert all(line.count(" | ") == 5 for line in table), table
    rows = {row["case"]: row for row in json.loads(saved.read_text())["rows"]}
    assert set(rows) == set(RUN_CASES)
    for case in ("startup-help-tcpcli", "bench-rate"):  # no peer to install: measured
        assert rows[case]["tcpcli"] > 0 and rows[case]["peer"] > 0, rows[case]
        assert rows[case]["met"] in (True, False)
    assert rows["startup-help-tcpcli"]["goal"] == "≤ 1.3×"
    assert rows["bench-rate"]["goal"] == "≥ 1.5×"
    if not (shutil.which("sockperf") and shutil.which("socat")):
        assert rows["bench-rr"]["tcpcli"] is None
        assert "not installed (--no-install)" in rows["bench-rr"]["note"]
        assert "skipped bench-rr: " in proc.stdout
    else:
        assert rows["bench-rr"]["tcpcli"] > 0


def test_run_names_the_cases_when_one_is_unknown() -> None:
    proc = run_suite("--only", "startup-connect,no-such-case")
    assert proc.returncode != 0
    assert "unknown case(s) ['no-such-case']" in proc.stderr
    assert "probe-full-nmap" in proc.stderr
