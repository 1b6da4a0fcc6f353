"""A big scan spread over processes (``probe --processes``), so that it uses every core.

A full loopback scan spends most of its time in the kernel, two ``connect()`` calls per
closed port, and one process keeps one core busy. With the socket cap lifted, a scan that
runs without an event loop (``Scanner.run_now``) can fork: a process with no event loop
and no threads is safe to fork, and a fork starts in a millisecond where a fresh
interpreter would take a tenth of a second.

* Every process deals the same (address, port) pairs from the same targets and probes
  every ``processes``-th one (``Scanner.take_share``), each pair in exactly one process,
  with its share of ``--concurrency``, ``--rate`` and ``--host-rate``. Targets are
  literals here: each process judges them with the same policy, a pure function, so no
  process dials what another would refuse.
* Children send their rows and counts back through a pipe when done; the parent scans
  its own share meanwhile, then merges. Rows are listed in address and port order (the
  order a one-process loopback scan finds them in), after the whole scan.
* Ctrl-C reaches the whole process group from a terminal: children ignore it, and the
  parent, which decides, stops them with SIGTERM; each still sends what it probed, so
  the interrupted summary counts every process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import TYPE_CHECKING, Protocol

from tcpcli.engines.scan_results import ProbeResult, ResultSink, ScanSummary

if TYPE_CHECKING:
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.scan_limits import SocketRoom
    from tcpcli.engines.scan_results import Tally
    from tcpcli.engines.scan_targets import Target


class Scanner(Protocol):
    """What forking needs of ``engines.scan.Scanner`` (declared here, so that the scan,
    which forks through this module, is the only one of the two importing the other)."""

    invocation: Invocation
    tally: Tally
    summary: ScanSummary
    room: SocketRoom

    def take_share(self, index: int, of: int, on_result: ResultSink) -> None: ...

    def run_blocking(self, targets: Sequence[Target], ports: list[int]) -> None: ...

    def finished(self, start: float) -> None: ...

@dataclass
class _ShareResult:
    """What a child sends back: its rows and its counts."""

    rows: list[ProbeResult] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    peak_sockets: int = 0
    socket_backoffs: int = 0
    failure: BaseException | None = None


class _Stopped(Exception):
    """SIGTERM from the parent: stop probing and send what was probed."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stopped


def run_in_processes(scanner: Scanner, targets: Sequence[Target], ports: list[int],
                     processes: int) -> ScanSummary:
    """The scan in ``processes`` processes: this one and ``processes - 1`` forked children
    (see the module doc). Rows reach the scanner's ``on_result`` once all are done."""
    if scanner.invocation.slots.limit is not None:
        raise ValueError("a scan is spread over processes only with the socket cap lifted")
    started = time.perf_counter()
    deliver = scanner.tally.on_result
    rows: list[ProbeResult] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()  # or each child would flush the parent's buffered text again
    children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
    try:
        for index in range(1, processes):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                os.close(read_end)
                _child(scanner, targets, ports, index, processes, write_end)
            os.close(write_end)
            children.append((pid, read_end))
        scanner.take_share(0, processes, rows.append)
        scanner.run_blocking(targets, ports)
    except BaseException:
        for pid, _ in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(Exception):  # what stopped the scan is what is raised
            _merge(scanner, children, rows, deliver, started)
        raise
    _merge(scanner, children, rows, deliver, started)
    return scanner.summary


def _child(scanner: Scanner, targets: Sequence[Target], ports: list[int], index: int,
           processes: int, write_end: int) -> None:
    """A child's whole life: its share, then everything it found, down the pipe."""
    import pickle

    result = _ShareResult()
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
        signal.signal(signal.SIGTERM, _on_sigterm)
        scanner.take_share(index, processes, result.rows.append)
        with contextlib.suppress(_Stopped):
            scanner.run_blocking(targets, ports)
    except BaseException as exc:  # (the parent raises it; a child has no one to tell)
        result.failure = exc
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped or not, the results go back
        summary = scanner.summary
        result.counts = {str(state): count for state, count in summary.counts.items()}
        result.probes = summary.probes
        result.peak_sockets = scanner.room.slots.peak
        result.socket_backoffs = summary.socket_backoffs
        try:
            payload = pickle.dumps(result)
        except Exception:  # an exception that does not pickle: its text does
            result.failure = RuntimeError(str(result.failure))
            payload = pickle.dumps(result)
        with contextlib.suppress(OSError), os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)  # no atexit handlers, no flushing the parent's copied buffers


def _merge(scanner: Scanner, children: list[tuple[int, int]], rows: list[ProbeResult],
           deliver: ResultSink, started: float) -> None:
    """Every child's counts into the scanner's summary, every row to ``deliver`` in
    address and port order; a child's failure is raised here."""
    import pickle

    shares: list[_ShareResult] = []
    failure: BaseException | None = None
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            payload = pipe.read()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        if payload:
            shares.append(pickle.loads(payload))
        else:
            failure = RuntimeError(f"scan process {pid} ended without its results")
    scanner.finished(started)  # (this process's peak, the whole scan's time)
    summary = scanner.summary
    summary.processes = 1 + len(children)
    for share in shares:
        rows.extend(share.rows)
        for state, count in share.counts.items():
            summary.counts[state] += count
        summary.probes += share.probes
        summary.peak_sockets += share.peak_sockets
        summary.socket_backoffs += share.socket_backoffs
        failure = failure or share.failure
    for row in sorted(rows, key=_row_order):
        deliver(row)
    if failure is not None:
        raise failure


def _row_order(row: ProbeResult) -> tuple[int, int, int]:
    address = ip_address(row.address)
    return address.version, int(address), row.port
