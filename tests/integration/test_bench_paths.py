"""A plain ``bench`` (connect mode, closed loop, one process) to an address known without
DNS runs without an event loop (``Bench.run_now``: the same connect storm, waiting in
``select`` instead of on anyio); every other bench runs on the loop. To the user they are
one command: each run here goes both ways and must give the same report lines, events,
counts and exit code (figures aside)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.peers import filtered_port
from tests.support.two_paths import Run, both

pytestmark = pytest.mark.timeout(120)

ALLOW = ("--allow", "127.0.0.1")
#: Figures differ between any two runs: every decimal, and the kernel's retransmits.
_FIGURES = re.compile(rb'(?<![\d.])\d+\.\d+(?![\d.])|(?<=retransmits=)\d+|'
                      rb'(?<="retransmits":)\d+')


def shape(run: Run) -> tuple[int, list[bytes], list[bytes]]:
    """Exit code, stdout lines and stderr lines with the figures masked."""
    return (run.returncode, _FIGURES.sub(b"F", run.stdout).splitlines(),
            _FIGURES.sub(b"F", run.stderr).splitlines())


@contextmanager
def listening() -> Iterator[str]:
    """A listener that accepts and closes in a tight loop, with a backlog deep enough that
    no handshake waits on it (or on SYN retransmits)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)

    def accept_and_close() -> None:
        with contextlib.suppress(OSError):
            while True:
                listener.accept()[0].close()

    thread = threading.Thread(target=accept_and_close, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


@pytest.mark.parametrize("output", [(), ("--json",), ("--expect", "p50<1s")])
def test_a_connect_bench_is_the_same_both_ways(output: tuple[str, ...]) -> None:
    with listening() as address:
        runs = both("bench", address, *ALLOW, "-n", "200", "--warmup", "5", *output)
    assert runs[0].returncode == 0, runs[0].stderr
    assert shape(runs[0]) == shape(runs[1])
    if output == ("--json",):
        for run in runs:
            events = [json.loads(line) for line in run.stdout.splitlines()]
            assert [e["event"] for e in events] == ["bench_start", "bench_summary"]
            assert events[1]["samples"] == 200 and events[0]["processes"] == 1


def test_refused_and_silent_targets_count_the_same_errors_both_ways() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: refused
        refused = both("bench", f"127.0.0.1:{unused.getsockname()[1]}", *ALLOW, "-n", "20",
                       "--json")
    assert refused[0].returncode == 5
    assert shape(refused[0]) == shape(refused[1])
    with filtered_port() as port:
        silent = both("bench", f"127.0.0.1:{port}", *ALLOW, "-n", "3", "-c", "1",
                      "--timeout", "0.2", "--json")
    summary = json.loads(silent[0].stdout.splitlines()[-1])
    assert summary["errors"] == {"timeout": 3}, summary
    assert shape(silent[0]) == shape(silent[1])


def test_a_duration_and_a_policy_refusal_are_the_same_both_ways() -> None:
    with listening() as address:
        timed = both("bench", address, *ALLOW, "-d", "0.3", "-c", "2", "--json")
    for run in timed:
        summary = json.loads(run.stdout.splitlines()[-1])
        assert run.returncode == 0 and summary["samples"] > 0
        assert 0.3 <= summary["elapsed_s"] < 2
    refused = both("bench", "127.0.0.1:9", "-n", "1")
    assert refused[0].returncode == 3 and b"--allow 127.0.0.1" in refused[0].stderr
    assert shape(refused[0]) == shape(refused[1])
