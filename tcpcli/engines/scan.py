"""The port-scan engine behind ``tcpcli probe``: targets, ports, states with reasons.

Speed comes from not paying per-port task overhead. On the real network the engine issues
batches of non-blocking ``connect()`` calls on raw sockets, registers the ones in progress
with one kernel poller (epoll; a ``selectors`` poller elsewhere) and waits on *that* fd
with ``anyio.wait_readable`` — one wait for the whole batch, harvested with a zero-timeout
poll. Loopback answers (RST for a closed port) arrive within microseconds, so most ports
never cost an await. Slow remote ports simply stay registered until their deadline.

Through another connector (the in-memory seam, a proxy) the engine falls back to one task
per port, bounded by the same concurrency limit.

The six-socket cap is honoured: each in-flight socket holds one of the invocation's
:class:`~tcpcli.core.slots.SocketSlots` (a lifted cap, ``None``, is not counted).

States: ``open`` (connected), ``closed`` (refused/RST, or a TCP self-connect, which means
nothing listens there), ``filtered`` (no answer before the per-port timeout),
``unreachable`` (ICMP/route errors, with the errno), ``blocked`` (the policy refused it;
no packet sent). Every row also says whether a Worker's ``connect()`` would be allowed.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import selectors
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from ipaddress import ip_address
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

from tcpcli.core.connect import BatchConnector
from tcpcli.core.destination import IPAddress, literal_destination, locate
from tcpcli.core.errnos import NONBLOCKING_CONNECT_ANSWERS, OUT_OF_SOCKETS_ERRNOS
from tcpcli.core.errors import ResolveError, TcpcliError
from tcpcli.core.invocation import Invocation
from tcpcli.core.policy import Policy
from tcpcli.core.slots import SocketSlot
from tcpcli.engines.scan_results import (
    SELF_CONNECT_REASON,
    ErrorSink,
    PortState,
    ProbeResult,
    ResultSink,
    ScanOptions,
    ScanSummary,
    Tally,
    connect_failure,
    is_self_connect,
    no_answer_reason,
)
from tcpcli.engines.scan_targets import HostPlan, Target

#: Non-blocking connects issued before the poller is harvested again.
BATCH: Final = 64
#: How many bytes of a banner are kept.
BANNER_LIMIT: Final = 4096

#: How long a probe may go without being able to open any socket before giving up.
OUT_OF_SOCKETS_PATIENCE: Final = 10.0
#: File descriptors a scan leaves free for everything else the run opens.
FD_RESERVE: Final = 16


# --------------------------------------------------------------------------- pollers


class _Poller:
    """Ready-for-write notifications for many sockets through one waitable fd."""

    def __init__(self) -> None:
        self._epoll = select_epoll()
        self._selector: selectors.BaseSelector | None = None
        if self._epoll is None:
            self._selector = selectors.DefaultSelector()

    def fileno(self) -> int:
        if self._epoll is not None:
            return int(self._epoll.fileno())
        assert self._selector is not None
        return self._selector.fileno() if hasattr(self._selector, "fileno") else -1

    def register(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, 4)  # EPOLLOUT (EPOLLERR/EPOLLHUP are implicit)
        else:
            assert self._selector is not None
            self._selector.register(fd, selectors.EVENT_WRITE)

    def unregister(self, fd: int) -> None:
        """Only needed before closing with a selector; epoll drops closed fds itself."""
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)

    def ready(self) -> list[int]:
        if self._epoll is not None:
            return [fd for fd, _ in self._epoll.poll(0)]
        assert self._selector is not None
        return [key.fd for key, _ in self._selector.select(0)]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        if self._selector is not None:
            self._selector.close()


def select_epoll() -> Any:
    factory = getattr(select, "epoll", None)
    return factory() if factory is not None else None


#: Linux lets a TCP socket whose connect failed connect again, once a second connect()
#: has collected the error and reset it. On loopback and near hosts, where the answer is
#: there before the next harvest, reusing the socket saves a socket() and a close() per
#: closed port, about a third of the kernel's work in a full scan.
RECYCLE_SOCKETS = sys.platform == "linux"


class _Pacer:
    """Connect start times spaced 1/rate apart overall (--rate) and per address
    (--host-rate, the politeness a single host is owed however many are scanned)."""

    #: Addresses remembered before the ones whose next start has passed are forgotten.
    PRUNE_AT = 4096

    def __init__(self, rate: float | None, host_rate: float | None) -> None:
        self.rate, self.host_rate = rate, host_rate
        self.active = bool(rate or host_rate)
        self._next = 0.0
        self._next_by_host: dict[str, float] = {}

    def ready_at(self, host: str) -> float:
        """When the next connect to ``host`` may start (monotonic seconds)."""
        return max(self._next, self._next_by_host.get(host, 0.0))

    def started(self, host: str, now: float) -> None:
        if self.rate:
            self._next = max(now, self._next) + 1 / self.rate
        if self.host_rate:
            by_host = self._next_by_host
            if len(by_host) >= self.PRUNE_AT:  # bounded memory over huge target lists
                for old in [key for key, at in by_host.items() if at <= now]:
                    del by_host[old]
            by_host[host] = max(now, by_host.get(host, 0.0)) + 1 / self.host_rate


class _Pending:
    __slots__ = ("attempt", "deadline", "plan", "port", "slot", "sock", "started")

    def __init__(self, sock: socket.socket, plan: HostPlan, port: int, started: float,
                 deadline: float, attempt: int, slot: SocketSlot | None) -> None:
        self.sock, self.plan, self.port = sock, plan, port
        self.started, self.deadline, self.attempt, self.slot = started, deadline, attempt, slot


# --------------------------------------------------------------------------- the scanner


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
        self.slots = invocation.slots
        cap = self.slots.limit
        self.limit = max(1, min(options.concurrency, cap if cap is not None else math.inf,
                                _fd_budget()))
        connector = invocation.connector
        self.fast = isinstance(connector, BatchConnector) and not invocation.options.proxy
        self._batch: BatchConnector | None = connector if self.fast else None  # type: ignore[assignment]
        self._pending: dict[int, _Pending] = {}  # registered with the poller, oldest first
        self._fresh: list[_Pending] = []  # connects issued since the last harvest
        self._retry: deque[tuple[HostPlan, int, int]] = deque()
        self._poller: _Poller | None = None
        self._pacer = _Pacer(options.rate, options.host_rate)
        self._tg: anyio.abc.TaskGroup | None = None
        self._inspect_limiter = anyio.CapacityLimiter(max(1, min(self.limit, 64)))
        self._inspecting = 0  # open ports whose socket is kept for a banner or TLS check
        # Refused sockets, reset and ready for their next connect (see _recycle).
        self._spares: dict[int, list[socket.socket]] = {socket.AF_INET: [], socket.AF_INET6: []}
        self._recycling = RECYCLE_SOCKETS and not options.local_address
        self._room = anyio.Event()  # set when an inspection gives its socket back

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
        return HostPlan(host, ip, ports, literal_destination(ip, policy, host))

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
            self.tally.error(target, ResolveError(f"{target.host} has no address of the requested "
                                             "family", target=target.host))
            return
        probed = ordered if self.options.all_addresses else ordered[:1]
        if len(probed) < len(ordered):
            self.summary.unprobed[target.host] = [str(ip) for ip in ordered[len(probed):]]
        for ip in probed:
            yield HostPlan(target.host, ip, ports, destination)

    # ------------------------------------------------------------------ running

    async def run(self, targets: Iterable[Target], ports: list[int]) -> ScanSummary:
        start = time.perf_counter()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self.fast:
                    await self._run_fast(self.plans(targets, ports))
                else:
                    await self._run_via_connector(self.plans(targets, ports), tg)
        finally:
            self._close_pending()
            self.summary.elapsed_ms = (time.perf_counter() - start) * 1000
            self.summary.peak_sockets = self.slots.peak
        return self.summary

    # ------------------------------------------------------------------ fast path

    async def _run_fast(self, plans: AsyncIterator[HostPlan]) -> None:
        self._poller = _Poller()
        started = 0
        async for plan in plans:
            if plan.address is None:
                for port in plan.ports:
                    self.tally.blocked(plan, port, plan.judge(port))
                continue
            judge = plan.judge
            for port in plan.ports:
                decision = judge(port)
                if not decision.allowed:
                    self.tally.blocked(plan, port, decision)
                    continue
                await self._start_when_allowed(plan, port, 1)
                started += 1
                if started % BATCH == 0:
                    self._harvest()
                    await anyio.lowlevel.checkpoint()
        self._harvest()
        while self._pending or self._retry or self._fresh:
            while self._retry:
                plan, port, attempt = self._retry.popleft()
                await self._start_when_allowed(plan, port, attempt)
            if self._pending or self._fresh:
                await self._wait()

    @property
    def _in_flight(self) -> int:
        """Sockets this scan holds open: connects under way and ports being inspected."""
        return len(self._pending) + len(self._fresh) + self._inspecting

    async def _wait_for_room(self) -> None:
        """Wait until a socket of ours may have closed (a connect ended, an inspection)."""
        if self._pending or self._fresh:
            await self._wait()
            return
        self._room = anyio.Event()
        with anyio.move_on_after(0.05):  # also the back-off when nothing of ours is open
            await self._room.wait()

    async def _start_when_allowed(self, plan: HostPlan, port: int, attempt: int) -> None:
        pacer = self._pacer
        if pacer.active:
            while (now := time.monotonic()) < (at := pacer.ready_at(plan.address_text)):
                await self._wait(until=at)
            pacer.started(plan.address_text, now)
        starved_since: float | None = None
        while True:
            while self._in_flight >= self.limit:
                await self._wait_for_room()
            slot: SocketSlot | None = None
            if self.slots.limit is not None:
                slot = self.slots.try_acquire()
                while slot is None:
                    if self._pending or self._fresh:
                        await self._wait()
                        slot = self.slots.try_acquire()
                    else:
                        slot = await self.slots.acquire()
            failure = self._start(plan, port, attempt, slot)
            if failure is None:
                return
            # Out of descriptors: nothing is known about this port. What we hold now is
            # what this process can hold, so that becomes the limit; retry once one closes.
            self.summary.socket_backoffs += 1
            self.limit = max(1, self._in_flight)
            now = time.monotonic()
            if self._in_flight:
                starved_since = None
            elif starved_since is None:
                starved_since = now
            elif now - starved_since > OUT_OF_SOCKETS_PATIENCE:
                raise failure
            await self._wait_for_room()

    def _start(self, plan: HostPlan, port: int, attempt: int,
               slot: SocketSlot | None) -> OSError | None:
        """Issue one connect; an OSError back means no socket could be made (EMFILE...)."""
        address = plan.address
        assert address is not None
        assert self._batch is not None
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        spares = self._spares[family]
        local_address = self.options.local_address
        started = time.monotonic()
        if spares:
            sock, code = self._batch.start_connect(address, port, local_address=local_address,
                                                   reuse=spares.pop())
            if code not in NONBLOCKING_CONNECT_ANSWERS:
                # This kernel does not reconnect a failed socket after all: stop trying.
                sock.close()
                self._recycling = False
                self._close_spares()
                return self._start(plan, port, attempt, slot)
        else:
            try:
                sock, code = self._batch.start_connect(address, port,
                                                       local_address=local_address)
            except OSError as exc:
                self._release(slot)
                if exc.errno in OUT_OF_SOCKETS_ERRNOS:
                    return exc
                raise
        if code == errno.EINPROGRESS or code == errno.EWOULDBLOCK:
            # Not registered with the poller yet: on loopback the answer is usually there
            # by the next harvest, which checks the whole batch with one poll() call.
            self._fresh.append(_Pending(sock, plan, port, started,
                                        started + self.options.timeout, attempt, slot))
            return None
        pending = _Pending(sock, plan, port, started, started, attempt, slot)
        if code == 0:
            self._connected(pending)
        else:
            self._failed(pending, code)
        return None

    def _harvest(self) -> None:
        poller = self._poller
        assert poller is not None
        pending = self._pending
        fresh = self._fresh
        if fresh:
            self._fresh = []
            batch = select.poll()
            for item in fresh:
                batch.register(item.sock.fileno(), select.POLLOUT)
            ready = {fd for fd, _ in batch.poll(0)}
            refused, report_closed = errno.ECONNREFUSED, PortState.CLOSED in self.tally.report
            counts = self.summary.counts
            recycling = self._recycling
            for item in fresh:
                sock = item.sock
                fd = sock.fileno()
                if fd not in ready:
                    poller.register(fd)
                    pending[fd] = item
                    continue
                if recycling:
                    # connect() again both reads the outcome (0 once connected) and, after
                    # a failure, resets the socket so it can connect anew.
                    code = sock.connect_ex((item.plan.address_text, item.port))
                    if code == errno.EISCONN:
                        code = 0
                else:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == refused and not report_closed:  # the common case, kept cheap
                    if recycling:
                        self._spares[sock.family].append(sock)
                    else:
                        sock.close()
                    if item.slot is not None:
                        self.slots.release(item.slot)
                    self.summary.probes += 1
                    counts[PortState.CLOSED] += 1
                elif code == 0:
                    self._connected(item)
                else:
                    self._failed(item, code)
        for fd in poller.ready():
            if fd not in pending:
                continue
            item = pending.pop(fd)
            poller.unregister(fd)
            code = item.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                self._connected(item)
            else:
                self._failed(item, code)

    def _expire(self) -> None:
        now = time.monotonic()
        pending = self._pending
        while pending:
            fd, item = next(iter(pending.items()))
            if item.deadline > now:
                break
            del pending[fd]
            assert self._poller is not None
            self._poller.unregister(fd)
            item.sock.close()
            self._release(item.slot)
            if item.attempt <= self.options.retries:
                self._retry.append((item.plan, item.port, item.attempt + 1))
            else:
                self.tally.emit(item.plan, item.port, PortState.FILTERED,
                                no_answer_reason(self.options.timeout), attempts=item.attempt)

    async def _wait(self, until: float | None = None) -> None:
        """Wait for any in-progress connect to finish, the oldest deadline, or ``until``."""
        self._harvest()
        self._expire()
        if not self._pending:
            await anyio.lowlevel.checkpoint()
            if until is not None:
                await anyio.sleep(max(0.0, until - time.monotonic()))
            return
        first = next(iter(self._pending.values()))
        deadline = first.deadline if until is None else min(first.deadline, until)
        delay = deadline - time.monotonic()
        if delay > 0:
            assert self._poller is not None
            with anyio.move_on_after(delay):
                await anyio.wait_readable(self._poller.fileno())
        else:
            await anyio.lowlevel.checkpoint()
        self._harvest()
        self._expire()

    def _failed(self, item: _Pending, code: int) -> None:
        item.sock.close()
        self._release(item.slot)
        state, reason = connect_failure(code)
        if state is PortState.OPEN:  # accepted, then reset (see port_state)
            latency = (time.monotonic() - item.started) * 1000
            result = self.tally.open_result(item.plan, item.port, latency, item.attempt,
                                            reason=reason)
            if result is not None:
                self.tally.finish_open(result)
            return
        if state is PortState.FILTERED and item.attempt <= self.options.retries:
            self._retry.append((item.plan, item.port, item.attempt + 1))
            return
        self.tally.emit(item.plan, item.port, state, reason, errno=code, attempts=item.attempt)

    def _connected(self, item: _Pending) -> None:
        latency = (time.monotonic() - item.started) * 1000
        sock = item.sock
        try:
            local, remote = sock.getsockname(), sock.getpeername()
        except OSError:  # reset between the handshake and now; errno is ENOTCONN
            self._failed(item, errno.ECONNRESET)
            return
        if is_self_connect(local, remote):
            sock.close()
            self._release(item.slot)
            self.tally.emit(item.plan, item.port, PortState.CLOSED, SELF_CONNECT_REASON,
                            attempts=item.attempt)
            return
        result = self.tally.open_result(item.plan, item.port, latency, item.attempt)
        if result is None or not (self.options.banner or self.options.tls_detect):
            sock.close()
            self._release(item.slot)
            if result is not None:
                self.tally.finish_open(result)
            return
        from tcpcli.core.rawsocket import RawSocketStream

        assert self._tg is not None
        self._inspecting += 1
        self._tg.start_soon(self._inspect_counted, RawSocketStream(sock), item.slot, item.plan,
                            result)

    async def _inspect_counted(self, stream: anyio.abc.ByteStream, slot: SocketSlot | None,
                               plan: HostPlan, result: ProbeResult) -> None:
        try:
            await self._inspect(stream, slot, plan, result)
        finally:
            self._inspecting -= 1

    def _release(self, slot: SocketSlot | None) -> None:
        if slot is not None:
            self.slots.release(slot)

    def _close_spares(self) -> None:
        for spares in self._spares.values():
            for sock in spares:
                sock.close()
            spares.clear()

    def _close_pending(self) -> None:
        self._close_spares()
        for item in [*self._pending.values(), *self._fresh]:
            item.sock.close()
            self._release(item.slot)
        self._pending.clear()
        self._fresh.clear()
        if self._poller is not None:
            self._poller.close()
            self._poller = None

    # ------------------------------------------------------------------ connector path

    async def _run_via_connector(self, plans: AsyncIterator[HostPlan],
                                 tg: anyio.abc.TaskGroup) -> None:
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
        assert plan.address is not None
        slot = await self.slots.acquire() if self.slots.limit is not None else None
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
            if result is None or not (self.options.banner or self.options.tls_detect):
                await anyio.aclose_forcefully(stream)
                if result is not None:
                    self.tally.finish_open(result)
                return True
            handed_over = True
            await self._inspect(stream, slot, plan, result)
            return True
        finally:
            if not handed_over:
                self._release(slot)
                self._room.set()

    async def _connect(self, address: IPAddress,
                       port: int) -> tuple[anyio.abc.ByteStream | None, float]:
        """The connector's connect within the per-port timeout, and when that attempt
        started (the stream is None: no answer in time).

        Running out of descriptors (EMFILE...) says nothing about the port: wait for one
        of ours to close and try again, so the timeout only counts the real attempt.
        """
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
            self._room = anyio.Event()
            with anyio.move_on_after(0.05):
                await self._room.wait()

    # ------------------------------------------------------------------ banners and TLS

    async def _inspect(self, stream: anyio.abc.ByteStream, slot: SocketSlot | None,
                       plan: HostPlan, result: ProbeResult) -> None:
        """Read what the service says (and answers to harmless probes); detect TLS."""
        try:
            async with self._inspect_limiter:
                more_probes: list[tuple[str, bytes]] = []
                try:
                    if self.options.banner:
                        more_probes = await self._read_banner(stream, result)
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.aclose_forcefully(stream)
                    # Give the slot back before any fresh connection asks for one: six
                    # inspections holding the six slots, each waiting for a seventh, would
                    # wait for ever under the Workers cap.
                    self._release(slot)
                    slot = None
                for probe, payload in more_probes:
                    if await self._probe_fresh(plan, result, probe, payload):
                        break
                if self.options.tls_detect:
                    await self._detect_tls(plan, result)
        finally:
            self._release(slot)
            self._room.set()
            self.tally.finish_open(result)

    async def _read_banner(self, stream: anyio.abc.ByteStream,
                           result: ProbeResult) -> list[tuple[str, bytes]]:
        """The greeting; for a silent service, the answer to the likeliest harmless probe
        for its port (sent on this connection, which has carried nothing yet). Returns the
        probes still worth trying, each on a fresh connection, when that named nothing."""
        from tcpcli.protocols.banner import probes_for_silent_service

        data = await _read_some(stream, self.options.banner_wait)
        if data:
            self._note_reply(result, data, None, b"")
            return []
        host = result.host if result.host != result.address else "localhost"
        probes = probes_for_silent_service(result.port, host=host)
        if not probes:
            return []
        probe, payload = probes[0]
        try:
            await stream.send(payload)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return []
        data = await _read_some(stream, self.options.banner_wait)
        if data and self._note_reply(result, data, probe, payload):
            return []
        return probes[1:]

    async def _probe_fresh(self, plan: HostPlan, result: ProbeResult, probe: str,
                           payload: bytes) -> bool:
        """One more harmless probe on a new connection (a probe spoils the session for the
        next); True once a reply named the service."""
        assert plan.address is not None
        slot = await self.slots.acquire() if self.slots.limit is not None else None
        stream: anyio.abc.ByteStream | None = None
        try:
            stream, _ = await self._connect(plan.address, result.port)
            if stream is None:
                return False
            await stream.send(payload)
            data = await _read_some(stream, self.options.banner_wait)
            return bool(data) and self._note_reply(result, data, probe, payload)
        except (TcpcliError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        finally:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
            self._release(slot)

    @staticmethod
    def _note_reply(result: ProbeResult, data: bytes, probe: str | None,
                    payload: bytes) -> bool:
        """Record a reply on the row; True when it named the service."""
        from tcpcli.protocols.banner import identify

        # A text greeting is worth showing; a binary answer (a ServerHello, a CONNACK) is
        # unreadable escaped, and the identification already says what it was.
        if result.banner is None and _is_text(data[:200]):
            result.banner = _printable(data[:200])
        guess = identify(data, probe=probe, sent=payload, port=result.port)
        if guess is None:
            return False
        result.identified = guess.name
        result.identified_detail = guess.detail or None
        result.confidence = str(guess.confidence)
        if _is_text(data[:200]):
            result.banner = _printable(data[:200])  # the reply that named it
        return True

    async def _detect_tls(self, plan: HostPlan, result: ProbeResult) -> None:
        """A fresh connection and an unverified handshake: version, subject, expiry."""
        from tcpcli.core.tls import TLSOptions, TLSStream

        assert plan.address is not None
        hostname = None if plan.host == str(plan.address) else plan.host
        slot = await self.slots.acquire() if self.slots.limit is not None else None
        stream: anyio.abc.ByteStream | None = None
        try:
            stream, _ = await self._connect(plan.address, result.port)
            if stream is None:
                raise TimeoutError
            with anyio.fail_after(self.options.timeout + self.options.banner_wait):
                tls = await TLSStream.wrap(stream, hostname=hostname,
                                           options=TLSOptions(insecure=True),
                                           target=f"{plan.host}:{result.port}",
                                           port=result.port)
            report = tls.report
            facts: dict[str, Any] = {"detected": True, "version": report.version,
                                     "cipher": report.cipher}
            if report.chain:
                leaf = report.chain[0]
                facts.update(subject=leaf.subject, issuer=leaf.issuer,
                             not_after=leaf.not_after.isoformat(), days_left=leaf.days_left)
            result.tls = facts
            await anyio.aclose_forcefully(tls)
        except TimeoutError:
            result.tls = {"detected": False, "error": "no TLS answer in time"}
        except (TcpcliError, OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            result.tls = {"detected": False, "error": str(exc) or type(exc).__name__}
        finally:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
            self._release(slot)


async def _read_some(stream: anyio.abc.ByteStream, wait: float) -> bytes:
    """Up to BANNER_LIMIT bytes that arrive within ``wait`` seconds ("" on EOF/silence)."""
    data = bytearray()
    closed = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
    with anyio.move_on_after(wait), contextlib.suppress(*closed):
        data += await stream.receive(BANNER_LIMIT)
    if data:
        # A greeting may come in pieces: give the rest a moment, bounded in size and time.
        with anyio.move_on_after(0.05), contextlib.suppress(*closed):
            while len(data) < BANNER_LIMIT:
                data += await stream.receive(BANNER_LIMIT - len(data))
    return bytes(data)


def _is_text(data: bytes) -> bool:
    """Mostly printable ASCII (line ends and tabs allowed): a greeting, not a record."""
    printable = sum(1 for b in data if 32 <= b < 127 or b in (9, 10, 13))
    return printable >= 0.9 * len(data)


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in data)


def _fd_budget() -> float:
    """Sockets a scan may hold at once: the soft RLIMIT_NOFILE, less the descriptors open
    already and ``FD_RESERVE`` (lazy imports, CA files and the like must still open)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return math.inf
    return max(1, soft - _open_fds() - FD_RESERVE)


def _open_fds() -> int:
    for listing in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(listing))
    return 64 - FD_RESERVE  # unknown: assume a few dozen, as a generous margin

