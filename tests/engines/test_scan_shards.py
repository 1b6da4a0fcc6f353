"""A scan spread over processes (``probe --processes``): every (address, port) pair in
exactly one process, the same rows and counts as one process finds, Ctrl-C still
reporting every process's probes, and the rules for when it forks at all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings, strategies as st

from tcpcli.engines.cores import PROBES_PER_PROCESS, auto_processes, can_fork
from tcpcli.engines.scan_targets import deal
from tests.support.cli import tcpcli_command
from tests.support.peers import filtered_port

pytestmark = pytest.mark.timeout(120)
needs_fork = pytest.mark.skipif(not can_fork(), reason="scans fork only on Linux")

UNLIMITED = ("--allow", "127.0.0.1", "--max-sockets", "unlimited")


@settings(max_examples=200, deadline=2000)
@given(st.lists(st.lists(st.integers(1, 65535), max_size=40), max_size=12),
       st.integers(1, 9))
def test_every_pair_falls_in_exactly_one_share(plans: list[list[int]], of: int) -> None:
    shares: list[Counter[tuple[int, int]]] = []
    for index in range(of):
        dealt, share = 0, Counter[tuple[int, int]]()
        for number, ports in enumerate(plans):
            share.update((number, port) for port in deal(ports, index, of, dealt))
            dealt += len(ports)
        shares.append(share)
    everything = Counter((number, port) for number, ports in enumerate(plans)
                         for port in ports)
    assert sum(shares, Counter()) == everything
    sizes = [share.total() for share in shares]
    assert max(sizes) - min(sizes) <= 1


def test_auto_forks_only_for_big_uncapped_scans() -> None:
    big = 65535
    assert auto_processes(big, capped=True, cores=8) == 1
    assert auto_processes(PROBES_PER_PROCESS - 1, capped=False, cores=8) == 1
    expected = min(8, big // PROBES_PER_PROCESS) if can_fork() else 1
    assert auto_processes(big, capped=False, cores=8) == expected
    assert auto_processes(big, capped=False, cores=1) == 1
    # At a terminal the live line shows a long scan's progress: one process draws it.
    assert auto_processes(big, capped=False, live_line=True, cores=8) == 1


@pytest.fixture
def ports() -> Iterator[tuple[list[int], int]]:
    """Three listening ports among refused ones, and a silent (filtered) one."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    with filtered_port() as silent:
        try:
            yield [listener.getsockname()[1] for listener in listeners], silent
        finally:
            for listener in listeners:
                listener.close()


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*tcpcli_command(), "probe", *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "NO_COLOR": "1"})


def steady(line: str) -> dict[str, object]:
    row = json.loads(line)
    for live in ("t_ms", "latency_ms", "elapsed_ms", "tcp"):
        row.pop(live, None)
    return row


@needs_fork
def test_three_processes_find_what_one_finds(ports: tuple[list[int], int]) -> None:
    open_ports, silent = ports
    spec = ",".join(str(p) for p in [*open_ports, silent, *range(40000, 40200)])
    runs = [probe("127.0.0.1", "-p", spec, *UNLIMITED, "--timeout", "0.3", "--show", "all",
                  "--json", "--processes", str(n)) for n in (1, 3)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    one, three = ([steady(line) for line in run.stdout.splitlines()] for run in runs)
    assert sorted(map(json.dumps, one[:-1])) == sorted(map(json.dumps, three[:-1]))
    assert [row["port"] for row in three[:-1]] == sorted(row["port"] for row in three[:-1])
    one[-1].pop("peak_sockets"), three[-1].pop("peak_sockets")
    assert three[-1].pop("processes") == 3 and "processes" not in one[-1]
    assert one[-1] == three[-1]
    assert three[-1]["open"] == 3 and three[-1]["filtered"] == 1, (three[-1], [r for r in three if r.get("state") == "open"])


@needs_fork
def test_ctrl_c_stops_every_process_and_counts_what_each_probed() -> None:
    with filtered_port() as silent:
        spec = f"30001-32000,{silent}"
        proc = subprocess.Popen([*tcpcli_command(), "probe", "127.0.0.1", "-p", spec,
                                 *UNLIMITED, "--timeout", "30", "--processes", "2",
                                 "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
        try:
            # The silent port holds one process for 30 s; a terminal's Ctrl-C goes to all.
            import time

            time.sleep(1.5)
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads(out.splitlines()[-1])
    # Every port but the silent one was probed, by one process or the other; the silent
    # one's probe was cut short, so it is not counted at all.
    assert summary["probes"] == 2000 and summary["filtered"] == 0, summary
    assert summary["interrupted"] is True and summary["processes"] == 2


def test_processes_need_the_cap_lifted() -> None:
    run = probe("127.0.0.1", "-p", "1-10", "--allow", "127.0.0.1", "--processes", "2")
    assert run.returncode == 2
    assert "--processes needs --max-sockets unlimited" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@needs_fork
def test_a_scan_that_needs_the_loop_says_it_runs_in_one_process() -> None:
    run = probe("127.0.0.1", "-p", "9", *UNLIMITED, "--banner", "--processes", "2")
    assert run.returncode == 0, run.stderr
    assert "--processes 2: only a plain scan of addresses is spread" in run.stderr
