"""A plain ``probe`` of addresses given as literals runs without an event loop
(``Scanner.run_now``: the same batched scan, waiting in ``select`` instead of on anyio);
every other probe runs on the loop. To the user they are one command: each scan here runs
both ways and must give the same rows, summary, exit code and messages (times aside)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest

from tests.support.peers import filtered_port, serve
from tests.support.two_paths import Run, assert_same, both

pytestmark = pytest.mark.timeout(120)

#: What differs between two scans of the same ports: times (every decimal figure; an
#: address's dotted quad is no figure) and the kernel's live figures (-v shows them as
#: kernel_*: the MSS, for one, is 32768 on one connection and 32741 on the next).
_LIVE = re.compile(rb'"tcp":\{[^}]*\}|(?:tcp|kernel)_[a-z_]+=\S+|(?<![\d.])\d+\.\d+(?![\d.])')


def steady(text: bytes) -> bytes:
    return _LIVE.sub(b"T", text)


def assert_same_scan(no_loop: Run, event_loop: Run) -> None:
    no_loop.stdout, event_loop.stdout = steady(no_loop.stdout), steady(event_loop.stdout)
    assert_same(no_loop, event_loop)


def quiet(conn: socket.socket) -> None:
    conn.close()


@pytest.fixture
def ports() -> Iterator[tuple[int, int, int]]:
    """An open, a closed and a filtered port on 127.0.0.1."""
    with serve(quiet) as server, socket.socket() as unused, filtered_port() as filtered:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: refused
        yield int(server.address.rsplit(":", 1)[1]), unused.getsockname()[1], filtered


@pytest.mark.parametrize("output", [(), ("--json",), ("--csv",), ("-v",)])
def test_open_closed_and_filtered_ports_are_the_same_both_ways(
        ports: tuple[int, int, int], output: tuple[str, ...]) -> None:
    spec = ",".join(map(str, ports))
    runs = both("probe", "127.0.0.1", "-p", spec, "--allow", "127.0.0.1", "--timeout",
                "0.3", *output)
    assert runs[0].returncode == 0, runs[0].stderr
    if output == ("--json",):
        rows = [json.loads(line) for line in runs[0].stdout.splitlines()]
        states = {row["port"]: row["state"] for row in rows[:-1]}
        assert [states[port] for port in ports] == ["open", "closed", "filtered"]
    else:
        assert b"1 open, 1 closed, 1 filtered" in runs[0].stderr
    assert_same_scan(*runs)


def test_a_network_and_a_retry_are_the_same_both_ways(ports: tuple[int, int, int]) -> None:
    open_port, _, filtered = ports
    runs = both("probe", "127.0.0.0/30", "-p", f"{open_port},{filtered}", "--allow",
                "127.0.0.0/8", "--timeout", "0.2", "--retries", "1", "--json")
    assert runs[0].returncode == 0, runs[0].stderr
    summary = json.loads(runs[0].stdout.splitlines()[-1])
    assert summary["probes"] == 4 and summary["open"] == 1
    assert_same_scan(*runs)


def test_a_policy_refusal_and_a_failed_expectation_are_the_same_both_ways(
        ports: tuple[int, int, int]) -> None:
    open_port, closed, _ = ports
    refused = both("probe", "127.0.0.1", "-p", str(open_port))
    assert refused[0].returncode == 3 and b"--allow 127.0.0.1" in refused[0].stderr
    assert_same_scan(*refused)
    failed = both("probe", "127.0.0.1", "-p", f"{open_port},{closed}", "--allow",
                  "127.0.0.1", "--expect", "open")
    assert failed[0].returncode == 9
    assert_same_scan(*failed)


def test_a_paced_scan_keeps_its_pace_without_the_loop(ports: tuple[int, int, int]) -> None:
    open_port, closed, _ = ports
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        runs = both("probe", "127.0.0.1", "-p", f"{open_port},{closed},"
                    f"{unused.getsockname()[1]}", "--allow", "127.0.0.1", "--rate", "10",
                    "--json")
    for run in runs:
        summary = json.loads(run.stdout.splitlines()[-1])
        assert summary["elapsed_ms"] >= 190  # three starts at 10/s: two gaps of 100 ms
    assert_same_scan(*runs)
