"""One bench spread over processes, so that a many-core machine brings all its cores.

A Python process runs its event loop on one core; past what one core can drive (a few
dozen loopback workers), more workers only queue. :class:`ProcessBench` keeps **one plan**
and runs it in ``processes`` children:

* The destination is judged once, here in the parent, by ``core.destination`` (through
  :meth:`Bench.check_target`). Each child is handed the checked literal and dials it
  through its own invocation's ``Connector`` (the parent's, pickled); no child resolves or
  judges anything again.
* The plan is split: each child gets its share of ``count``, ``concurrency``, ``warmup``,
  ``rate`` (open loop: each runs its own schedule at ``rate / processes``) **and of the
  socket cap**, so the sockets held at once across all children stay within it
  (:func:`split`). ``duration`` and the per-sample timeout are the same for all.
* Children start with the ``forkserver`` context where there is one, else ``spawn``: a
  fork of a process that already runs an event loop (or threads) is not safe. They wait
  at a start line until all are ready, so the measured phase does not include the start-up
  of the slowest one.
* Each child sends a snapshot four times a second and a last one when done or stopped:
  its histograms' buckets, sample and error counts. The parent's :class:`BenchResult` is
  the exact sum (HDR-style buckets add), so percentiles are those of all samples together.
  Per-sample observers still see every sample, a snapshot's worth at a time.
* Stopping (Ctrl-C, SIGTERM, cancellation) tells every child to stop; each sends what it
  measured, which the result keeps (``interrupted``). Children ignore SIGINT themselves
  (a terminal sends it to the whole process group): only the parent decides.

Timing across processes uses ``time.perf_counter_ns``, a system-wide monotonic clock on
Linux, macOS and Windows; the measured phase runs from the first child's start to the last
child's end. ``peak_sockets`` is the sum of each child's own peak.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

import anyio

from tcpcli.engines.bench import Bench, BenchConfig, BenchResult, SampleObserver
from tcpcli.engines.cores import available_cores
from tcpcli.engines.histogram import Histogram

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess

    from tcpcli.core.connect import ConnectOptions, Connector
    from tcpcli.core.invocation import Invocation

#: Workers one process is given before another is worth starting (``auto``): a loopback
#: connect storm fills a core long before this, a distant peer's round trips do not.
WORKERS_PER_PROCESS = 32
#: A count below this per process is over before a second process pays for its start-up.
SAMPLES_PER_PROCESS = 5000
#: How often children report progress (seconds).
SNAPSHOT_INTERVAL = 0.25
#: How long stopped children get to send their last measurements.
STOP_GRACE = 5.0


def auto_processes(config: BenchConfig, *, loopback: bool, cores: int | None = None) -> int:
    """``--processes auto``: one process per :data:`WORKERS_PER_PROCESS` workers, no more
    than the cores, and no more than the count repays (:data:`SAMPLES_PER_PROCESS`). A
    loopback peer runs on the same cores, so it is left one. The default six workers
    always get one process."""
    if sys.platform == "win32":
        return 1  # the parent waits on its children's pipes as file descriptors
    cores = (cores or available_cores()) - (1 if loopback else 0)
    wanted = min(cores, config.concurrency // WORKERS_PER_PROCESS)
    if config.bounded_count is not None:
        wanted = min(wanted, config.bounded_count // SAMPLES_PER_PROCESS)
    return max(1, wanted)


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def split(config: BenchConfig, max_sockets: int | None, processes: int) -> (
    list[tuple[BenchConfig, int | None]]
):
    """Each process's config and socket cap. Shares differ by at most one; a process's cap
    is at least its workers whenever the whole cap is at least the whole ``-c``."""
    if not 1 <= processes <= config.concurrency:
        raise ValueError(f"{processes} processes need 1 to {config.concurrency} workers each")
    if config.count is not None and config.count < processes:
        raise ValueError(f"{processes} processes need at least {processes} samples")
    if max_sockets is not None and max_sockets < processes:
        raise ValueError(f"{processes} processes need a socket cap of at least {processes}")
    shares: list[tuple[BenchConfig, int | None]] = []
    for i in range(processes):
        count = config.count
        if count is None and config.duration is None:
            count = config.bounded_count  # the default count is split too
        shares.append((replace(
            config,
            count=None if count is None else _share(count, processes, i),
            concurrency=_share(config.concurrency, processes, i),
            warmup=_share(config.warmup, processes, i),
            rate=None if config.rate is None else config.rate / processes,
        ), None if max_sockets is None else _share(max_sockets, processes, i)))
    return shares


@dataclass(frozen=True)
class _Plan:
    """What one child is handed: its share of the plan and the checked destination."""

    config: BenchConfig
    max_sockets: int | None
    address: IPv4Address | IPv6Address
    port: int
    hostname: str
    options: ConnectOptions
    connector: Connector
    backend: str
    observe_samples: bool


# --------------------------------------------------------------------------- children


def _child(plan: _Plan, conn: Connection) -> None:
    """A child's process entry: run its share, talk to the parent over ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        anyio.run(_child_main, plan, conn, backend=plan.backend)
    except BaseException:  # a bug, not a sample's failure (those are counted)
        import traceback

        with contextlib.suppress(OSError):
            conn.send(("crashed", traceback.format_exc()))
    finally:
        conn.close()


async def _receive(conn: Connection) -> Any:
    """The next message on ``conn``; ``None`` once the other end is gone."""
    await anyio.wait_readable(conn.fileno())
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _snapshot(result: BenchResult, samples: list[tuple[str, int]], *, final: bool) -> (
    tuple[str, dict[str, Any]]
):
    data = {
        "samples": result.samples,
        "warmup_done": result.warmup_done,
        "errors": dict(result.errors),
        "error_examples": dict(result.error_examples),
        "histograms": {name: h.to_dict() for name, h in result.histograms.items()},
        "started_ns": result.started_ns,
        "finished_ns": result.finished_ns,
        "peak_sockets": result.peak_sockets,
        "resume_misses": result.resume_misses,
        "kernel_rtt": result.kernel_rtt.to_dict(),
        "retransmits": result.retransmits,
        "observed": samples[:],
    }
    samples.clear()
    return ("final" if final else "progress"), data


async def _child_main(plan: _Plan, conn: Connection) -> None:
    from tcpcli.core.invocation import Invocation

    observed: list[tuple[str, int]] = []
    invocation = Invocation(max_sockets=plan.max_sockets, connector=plan.connector,
                            options=plan.options)
    async with invocation:
        bench = Bench(plan.config, invocation,
                      on_sample=(lambda name, ns: observed.append((name, ns)))
                      if plan.observe_samples else None)
        bench.use_target(plan.address, plan.port, plan.hostname)
        conn.send(("ready", None))
        if await _receive(conn) != "go":
            return
        result = bench.result

        async def report() -> None:
            while True:
                await anyio.sleep(SNAPSHOT_INTERVAL)
                result.peak_sockets = invocation.slots.peak
                conn.send(_snapshot(result, observed, final=False))

        async def stop_when_told(scope: anyio.CancelScope) -> None:
            await _receive(conn)  # "stop", or the parent is gone
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(report)
            tg.start_soon(stop_when_told, tg.cancel_scope)
            await bench.run()
            tg.cancel_scope.cancel()
        result.peak_sockets = invocation.slots.peak
        if not result.finished_ns:
            result.finished_ns = time.perf_counter_ns()
        conn.send(_snapshot(result, observed, final=True))


# --------------------------------------------------------------------------- the parent


class ProcessBench:
    """A :class:`Bench` run by ``processes`` children, read as one (see the module doc).

    The same surface as :class:`Bench`: :meth:`check_target`, :meth:`run` and the live
    ``result``."""

    def __init__(self, config: BenchConfig, invocation: Invocation, processes: int, *,
                 on_sample: SampleObserver | None = None,
                 checked: Bench | None = None) -> None:
        """``checked``: a :class:`Bench` of the same config whose target is checked
        already (the CLI checks before it knows how many processes ``auto`` means)."""
        self.config = config
        self.invocation = invocation
        self.on_sample = on_sample
        self.shares = split(config, invocation.slots.limit, processes)
        self._checker = checked or Bench(config, invocation)
        self.result = BenchResult(config, peer=self._checker.result.peer,
                                  histograms={n: Histogram() for n in config.distributions})
        self._latest: list[dict[str, Any] | None] = [None] * processes

    async def check_target(self) -> None:
        await self._checker.check_target()
        self.result.peer = self._checker.result.peer

    async def run(self) -> BenchResult:
        """Start the children, wait for them, and merge what they measured."""
        target = self._checker.checked_target
        if target is None:
            await self.check_target()
            target = self._checker.checked_target
        assert target is not None
        backend = _running_backend()
        context = _context()
        conns: list[Connection] = []
        children: list[BaseProcess] = []
        finished: set[int] = set()
        try:
            for config, cap in self.shares:
                plan = _Plan(config, cap, *target, self.invocation.options,
                             self.invocation.connector, backend, self.on_sample is not None)
                ours, theirs = context.Pipe()
                child = context.Process(target=_child, args=(plan, theirs), daemon=True,
                                        name=f"tcpcli-bench-{len(children) + 1}")
                child.start()
                theirs.close()
                conns.append(ours)
                children.append(child)
            for index, conn in enumerate(conns):
                self._expect(index, await _receive(conn), "ready")
            for conn in conns:
                conn.send("go")
            async with anyio.create_task_group() as tg:
                for index, conn in enumerate(conns):
                    tg.start_soon(self._follow, index, conn, finished)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(conns, finished)
            for conn in conns:
                conn.close()
            for process in children:
                process.join(1)
                if process.is_alive():
                    process.kill()
                    process.join(1)
        if not self.result.finished_ns:
            self.result.finished_ns = time.perf_counter_ns()
        return self.result

    def _expect(self, index: int, message: Any, kind: str) -> Any:
        if message is None:
            raise RuntimeError(f"bench process {index + 1} ended unexpectedly")
        if message[0] == "crashed":
            raise RuntimeError(f"bench process {index + 1} failed:\n{message[1]}")
        if message[0] != kind:  # pragma: no cover - a protocol slip
            raise RuntimeError(f"bench process {index + 1} sent {message[0]!r}, not {kind!r}")
        return message[1]

    async def _follow(self, index: int, conn: Connection, finished: set[int]) -> None:
        """Take a child's snapshots until its last one."""
        while index not in finished:
            message = await _receive(conn)
            kind = "final" if message is not None and message[0] == "final" else "progress"
            self._take(index, self._expect(index, message, kind))
            if kind == "final":
                finished.add(index)

    async def _stop(self, conns: list[Connection], finished: set[int]) -> None:
        """Tell every child still running to stop, and keep what each last measured."""
        running = [i for i in range(len(conns)) if i not in finished]
        for index in running:
            with contextlib.suppress(OSError):
                conns[index].send("stop")
        with anyio.move_on_after(STOP_GRACE):
            for index in running:
                while index not in finished:
                    message = await _receive(conns[index])
                    if message is None or message[0] == "crashed":
                        break
                    self._take(index, message[1])
                    if message[0] == "final":
                        finished.add(index)

    def _take(self, index: int, data: dict[str, Any]) -> None:
        """Record a child's snapshot and re-add all children's latest ones."""
        self._latest[index] = data
        if self.on_sample is not None:
            for name, ns in data["observed"]:
                self.on_sample(name, ns)
        self._merge()

    def _merge(self) -> None:
        result = self.result
        histograms = {name: Histogram() for name in self.config.distributions}
        errors: Counter[str] = Counter()
        examples: dict[str, str] = {}
        samples = warmup = peak = misses = retransmits = 0
        kernel_rtt = Histogram()
        started: list[int] = []
        ended: list[int] = []
        for data in self._latest:
            if data is None:
                continue
            for name, saved in data["histograms"].items():
                histograms[name].merge(Histogram.from_dict(saved))
            errors.update(data["errors"])
            for kind, text in data["error_examples"].items():
                examples.setdefault(kind, text)
            samples += data["samples"]
            warmup += data["warmup_done"]
            peak += data["peak_sockets"]
            misses += data["resume_misses"]
            kernel_rtt.merge(Histogram.from_dict(data["kernel_rtt"]))
            retransmits += data["retransmits"]
            if data["started_ns"]:
                started.append(data["started_ns"])
            ended.append(data["finished_ns"])
        result.histograms, result.errors, result.error_examples = histograms, errors, examples
        result.samples, result.warmup_done = samples, warmup
        result.peak_sockets, result.resume_misses = peak, misses
        result.kernel_rtt, result.retransmits = kernel_rtt, retransmits
        result.started_ns = min(started, default=0)
        # The phase ends with the last child; while any runs, the result is live.
        result.finished_ns = 0 if not ended or 0 in ended or len(ended) < len(self._latest) \
            else max(ended)


def _context() -> ForkServerContext | SpawnContext:
    """forkserver where there is one (a child forks from a clean server process, with the
    engine already imported), else spawn; never a fork of this process."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


__all__ = ["ProcessBench", "auto_processes", "available_cores", "split"]


def _running_backend() -> str:
    """The running event loop's anyio backend ("asyncio" or "trio"), for the children to
    run the same. Told by asyncio's running loop, as anyio tells it without sniffio, which
    anyio no longer depends on since 4.7 (nor does tcpcli)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"  # (anyio runs on one of the two)
    return "asyncio"
