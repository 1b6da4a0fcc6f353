"""The port-scan engine behind ``tcpcli probe``: targets, ports, states with reasons.

:class:`Scanner` is the front door: it turns targets into plans (one address each, judged
once by ``core.destination``), dials each allowed port through the invocation's connector
and counts every outcome. Its parts, each in its own module:

* ``scan_targets`` — what to probe: ``--ports`` lists, targets, the ``--yes`` guard,
  :class:`~tcpcli.engines.scan_targets.HostPlan`.
* ``scan_results`` — port states and their reasons (a failed connect's errno is read
  through ``core.errnos``), rows, options, the summary, and the
  :class:`~tcpcli.engines.scan_results.Tally` that counts and reports them.
* ``scan_batch`` — the fast path on the real network: batched non-blocking connects
  through a :class:`~tcpcli.core.connect.BatchConnector`, one kernel poller, no task
  per port.
* ``scan_inspect`` — banners, harmless probes and TLS detection on open ports.
* ``scan_limits`` — what holds a scan back: ``--rate``/``--host-rate``, socket slots,
  file descriptors.

Through any other connector (the in-memory seam, a proxy) the scanner runs one task per
port through ``connect_tcp``, bounded by the same concurrency limit (below).

A scan on the fast path that inspects no port and resolves no name is all its run does:
:meth:`Scanner.run_now` runs it without an event loop (``core.waits.BlockingWaits``).

The six-socket cap is honoured: each in-flight socket holds one of the invocation's
:class:`~tcpcli.core.slots.SocketSlots` (a lifted cap, ``None``, is not counted).

States: ``open`` (connected), ``closed`` (refused/RST, or a TCP self-connect, which means
nothing listens there), ``filtered`` (no answer before the per-port timeout),
``unreachable`` (ICMP/route errors, with the errno), ``blocked`` (the policy refused it;
no packet sent). Every row also says whether a Worker's ``connect()`` would be allowed.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from ipaddress import ip_address
from typing import TYPE_CHECKING

from tcpcli.core.connect import BatchConnector
from tcpcli.core.destination import IPAddress, literal_destination, locate
from tcpcli.core.errnos import OUT_OF_SOCKETS_ERRNOS
from tcpcli.core.errors import ResolveError, TcpcliError
from tcpcli.core.invocation import Invocation
from tcpcli.core.policy import Policy
from tcpcli.core.waits import BlockingWaits, run_without_loop
from tcpcli.engines.scan_batch import BatchScan
from tcpcli.engines.scan_inspect import PortInspector
from tcpcli.engines.scan_limits import OUT_OF_SOCKETS_PATIENCE, Pacer, SocketRoom, fd_budget
from tcpcli.engines.scan_results import (
    SELF_CONNECT_REASON,
    ErrorSink,
    PortState,
    ResultSink,
    ScanOptions,
    ScanSummary,
    Tally,
    connect_failure,
    is_self_connect,
    no_answer_reason,
)
from tcpcli.engines.scan_targets import HostPlan, Target, deal

if TYPE_CHECKING:
    import anyio
    import anyio.abc


class Scanner:
    """Probe every (address, port) of the given targets; results go to ``on_result``.

    ``report`` names the states passed to ``on_result``; the others are only counted
    (a 65,535-port scan need not build 65,530 "closed" rows nobody will read).
    """

    def __init__(self, invocation: Invocation, options: ScanOptions, on_result: ResultSink,
                 *, on_error: ErrorSink | None = None,
                 report: frozenset[PortState] = frozenset(PortState)) -> None:
        self.invocation = invocation
        self.options = options
        self.tally = Tally(on_result, report, on_error)
        self.summary = self.tally.summary
        self.room = SocketRoom(invocation.slots)
        cap = invocation.slots.limit
        self.limit = max(1, min(options.concurrency, cap if cap is not None else math.inf,
                                fd_budget()))
        self._pacer = Pacer(options.rate, options.host_rate)
        self.inspector = PortInspector(options, self._connect, self.room,
                                       self.tally.finish_open, self.limit)
        self._batch = self._batch_scan()
        #: True when the fast path (``scan_batch``) runs, not one task per port.
        self.fast = self._batch is not None
        #: This process's share of the (address, port) pairs, as (index, of how many):
        #: every ``of``-th pair, dealt across all targets (``scan_shards``).
        self._share = (0, 1)
        self._dealt = 0

    def _batch_scan(self) -> BatchScan | None:
        connector = self.invocation.connector
        if not isinstance(connector, BatchConnector) or self.invocation.options.proxy:
            return None
        return BatchScan(connector, self.options, self.tally, self.room, self._pacer,
                         self.inspector, self.limit)

    def take_share(self, index: int, of: int, on_result: ResultSink) -> None:
        """Probe only share ``index`` of ``of`` of the pairs, with that share of the
        concurrency and of --rate and --host-rate; rows go to ``on_result``."""
        self._share, self._dealt = (index, of), 0
        self.tally.on_result = on_result
        rate, host_rate = self.options.rate, self.options.host_rate
        self._pacer = Pacer(rate / of if rate else None, host_rate / of if host_rate else None)
        self.limit = max(1, self.limit // of)
        self._batch = self._batch_scan()

    def _dealt_share(self, ports: list[int]) -> list[int]:
        index, of = self._share
        if of == 1:
            return ports
        share = deal(ports, index, of, self._dealt)
        self._dealt += len(ports)
        return share

    # ------------------------------------------------------------------ plans

    async def plans(self, targets: Iterable[Target], ports: list[int]) -> AsyncIterator[HostPlan]:
        """Targets -> addresses to probe, resolving names one at a time (streamed)."""
        policy = self.invocation.policy
        for target in targets:
            self.summary.hosts += 1
            target_ports = [target.port] if target.port else ports
            if target.network is not None:
                network = target.network
                hosts = network.hosts() if network.num_addresses > 2 else iter(network)
                for ip in hosts:
                    yield self._literal_plan(str(ip), ip_address(str(ip)), target_ports, policy)
            elif target.literal is not None:
                yield self._literal_plan(target.host, target.literal, target_ports, policy)
            else:
                async for plan in self._name_plans(target, target_ports, policy):
                    yield plan

    def _literal_plan(self, host: str, ip: IPAddress, ports: list[int],
                      policy: Policy) -> HostPlan:
        return HostPlan(host, ip, self._dealt_share(ports), literal_destination(ip, policy, host))

    async def _name_plans(self, target: Target, ports: list[int],
                          policy: Policy) -> AsyncIterator[HostPlan]:
        invocation = self.invocation
        try:
            destination = await locate(target.host, ports, policy=policy,
                                       resolver=lambda: invocation.resolver,
                                       family=self.options.family,
                                       timeout=self.options.timeout * 5, target=target.host)
        except TcpcliError as exc:
            self.tally.error(target, exc)
            return
        if destination.resolution is None:  # refused before DNS for every port
            yield HostPlan(target.host, None, ports, destination)
            return
        ordered = destination.ordered(self.options.family)
        if not ordered:
            self.tally.error(target, ResolveError(f"{target.host} has no address of the "
                                                  "requested family", target=target.host))
            return
        probed = ordered if self.options.all_addresses else ordered[:1]
        if len(probed) < len(ordered):
            self.summary.unprobed[target.host] = [str(ip) for ip in ordered[len(probed):]]
        for ip in probed:
            yield HostPlan(target.host, ip, ports, destination)

    # ------------------------------------------------------------------ running

    async def run(self, targets: Iterable[Target], ports: list[int]) -> ScanSummary:
        import anyio

        start = time.perf_counter()
        try:
            async with anyio.create_task_group() as tg:
                plans = self.plans(targets, ports)
                if self._batch is not None:
                    await self._batch.run(plans, tg)
                else:
                    await self._run_via_connector(plans, tg)
        finally:
            self.finished(start)
        return self.summary

    def runs_without_loop(self, targets: Sequence[Target]) -> bool:
        """Whether :meth:`run_now` can run: the fast path, no port to inspect, no name."""
        return self._batch is not None and not self.inspector.wanted and all(
            target.literal is not None or target.network is not None for target in targets)

    def run_now(self, targets: Sequence[Target], ports: list[int], *,
                processes: int = 1) -> ScanSummary | None:
        """:meth:`run` without an event loop, on this thread; None, with nothing done,
        when the scan needs one (see :meth:`runs_without_loop`). ``processes`` > 1
        spreads it over that many processes (``scan_shards``; the cap must be lifted)."""
        if not self.runs_without_loop(targets):
            return None
        if processes > 1:
            from tcpcli.engines.scan_shards import run_in_processes

            return run_in_processes(self, targets, ports, processes)
        start = time.perf_counter()
        try:
            self.run_blocking(targets, ports)
        finally:
            self.finished(start)
        return self.summary

    def run_blocking(self, targets: Sequence[Target], ports: list[int]) -> None:
        """This process's share of the scan, blocking (the sockets stay open on error)."""
        batch = self._batch
        assert batch is not None
        batch.waits = BlockingWaits()
        run_without_loop(batch.run(self.plans(targets, ports), None))

    def finished(self, start: float) -> None:
        """Close what the scan still holds; the summary's time and peak."""
        if self._batch is not None:
            self._batch.close()
        self.summary.elapsed_ms = (time.perf_counter() - start) * 1000
        self.summary.peak_sockets = self.room.slots.peak

    # ------------------------------------------------------------------ one task per port

    async def _run_via_connector(self, plans: AsyncIterator[HostPlan],
                                 tg: anyio.abc.TaskGroup) -> None:
        import anyio

        limiter = anyio.Semaphore(int(self.limit))
        async for plan in plans:
            if plan.address is None:
                for port in plan.ports:
                    self.tally.blocked(plan, port, plan.judge(port))
                continue
            for port in plan.ports:
                decision = plan.judge(port)
                if not decision.allowed:
                    self.tally.blocked(plan, port, decision)
                    continue
                await limiter.acquire()
                pacer = self._pacer
                if pacer.active:  # this loop alone starts connects: one sleep is enough
                    delay = pacer.ready_at(plan.address_text) - time.monotonic()
                    if delay > 0:
                        await anyio.sleep(delay)
                    pacer.started(plan.address_text, time.monotonic())
                tg.start_soon(self._probe_one, plan, port, limiter)

    async def _probe_one(self, plan: HostPlan, port: int, limiter: anyio.Semaphore) -> None:
        try:
            for attempt in range(1, self.options.retries + 2):
                if await self._attempt(plan, port, attempt):
                    return
        finally:
            limiter.release()

    async def _attempt(self, plan: HostPlan, port: int, attempt: int) -> bool:
        """One connect through the connector; False means "filtered, retry"."""
        import anyio
        import anyio.abc

        assert plan.address is not None
        slot = await self.room.acquire()
        handed_over = False
        try:
            started = time.monotonic()
            try:
                stream, started = await self._connect(plan.address, port)
            except OSError as exc:
                if exc.errno in OUT_OF_SOCKETS_ERRNOS:
                    raise
                state, reason = connect_failure(exc.errno or errno.EIO)
                if state is PortState.OPEN:  # accepted, then reset (see port_state)
                    result = self.tally.open_result(
                        plan, port, (time.monotonic() - started) * 1000, attempt,
                        reason=reason)
                    if result is not None:
                        self.tally.finish_open(result)
                    return True
                if state is PortState.FILTERED and attempt <= self.options.retries:
                    return False
                self.tally.emit(plan, port, state, reason, errno=exc.errno, attempts=attempt)
                return True
            if stream is None:
                if attempt <= self.options.retries:
                    return False
                self.tally.emit(plan, port, PortState.FILTERED,
                                no_answer_reason(self.options.timeout), attempts=attempt)
                return True
            latency = (time.monotonic() - started) * 1000
            local = stream.extra(anyio.abc.SocketAttribute.local_address, None)
            remote = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
            if is_self_connect(local, remote):
                await anyio.aclose_forcefully(stream)
                self.tally.emit(plan, port, PortState.CLOSED, SELF_CONNECT_REASON,
                                attempts=attempt)
                return True
            result = self.tally.open_result(plan, port, latency, attempt)
            if result is not None and self.options.kernel_facts:
                from tcpcli.core.tcpinfo import tcp_info

                raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
                result.tcp = tcp_info(raw) if raw is not None else None
            if result is None or not self.inspector.wanted:
                await anyio.aclose_forcefully(stream)
                if result is not None:
                    self.tally.finish_open(result)
                return True
            handed_over = True
            await self.inspector.inspect(stream, slot, plan, result)
            return True
        finally:
            if not handed_over:
                self.room.release(slot)
                self.room.freed()

    async def _connect(self, address: IPAddress,
                       port: int) -> tuple[anyio.abc.ByteStream | None, float]:
        """The connector's connect within the per-port timeout, and when that attempt
        started (the stream is None: no answer in time).

        Running out of descriptors (EMFILE...) says nothing about the port: wait for one
        of ours to close and try again, so the timeout only counts the real attempt.
        """
        import anyio

        starved_since = time.monotonic()
        while True:
            out_of_sockets: OSError | None = None
            started = time.monotonic()
            with anyio.move_on_after(self.options.timeout):
                try:
                    stream = await self.invocation.connector.connect_tcp(
                        address, port, local_address=self.options.local_address)
                    return stream, started
                except OSError as exc:
                    if exc.errno not in OUT_OF_SOCKETS_ERRNOS:
                        raise
                    out_of_sockets = exc
            if out_of_sockets is None:
                return None, started
            self.summary.socket_backoffs += 1
            if time.monotonic() - starved_since > OUT_OF_SOCKETS_PATIENCE:
                raise out_of_sockets
            await self.room.wait()
