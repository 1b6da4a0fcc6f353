"""The scan's fast path: batched non-blocking connects, one kernel poller, reused sockets.

Speed comes from not paying per-port task overhead. Through a :class:`BatchConnector`
(the real network, no proxy) :class:`BatchScan` issues batches of non-blocking
``connect()`` calls, registers the ones in progress with one kernel poller (epoll; a
``selectors`` poller elsewhere) and waits on *that* fd with ``anyio.wait_readable`` — one
wait for the whole batch, harvested with a zero-timeout poll. Loopback answers (RST for a
closed port) arrive within microseconds, so most ports never cost an await. Slow remote
ports simply stay registered until their deadline. On Linux a refused socket is reset by a
second ``connect()`` and kept for the next port (``RECYCLE_SOCKETS``).

The sockets come from the connector (``start_connect``); none is made here.

How the scan waits is ``core.waits``: on the event loop, or blocking in ``select`` when
the scan is all the run does (``Scanner.run_now``).
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from tcpcli.core.connect import BatchConnector
from tcpcli.core.errnos import NONBLOCKING_CONNECT_ANSWERS, OUT_OF_SOCKETS_ERRNOS
from tcpcli.core.rawsocket import connect_status
from tcpcli.core.slots import SocketSlot
from tcpcli.core.waits import LoopWaits, Waits
from tcpcli.engines.scan_inspect import PortInspector
from tcpcli.engines.scan_limits import OUT_OF_SOCKETS_PATIENCE, Pacer, SocketRoom
from tcpcli.engines.scan_results import (
    SELF_CONNECT_REASON,
    PortState,
    ProbeResult,
    ScanOptions,
    Tally,
    connect_failure,
    is_self_connect,
    no_answer_reason,
)
from tcpcli.engines.scan_targets import HostPlan

if TYPE_CHECKING:
    import selectors

    import anyio.abc

#: Non-blocking connects issued before the poller is harvested again.
BATCH: Final = 64


class _Poller:
    """Ready-for-write notifications for many sockets through one waitable fd."""

    def __init__(self) -> None:
        self._epoll = select_epoll()
        self._selector: selectors.BaseSelector | None = None
        if self._epoll is None:
            import selectors

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
            import selectors

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


class _Pending:
    __slots__ = ("attempt", "deadline", "plan", "port", "slot", "sock", "started")

    def __init__(self, sock: socket.socket, plan: HostPlan, port: int, started: float,
                 deadline: float, attempt: int, slot: SocketSlot | None) -> None:
        self.sock, self.plan, self.port = sock, plan, port
        self.started, self.deadline, self.attempt, self.slot = started, deadline, attempt, slot


class BatchScan:
    """Probes (address, port) pairs with batched non-blocking connects through one poller.

    Open ports whose rows want a banner or TLS check keep their socket and go to the
    inspector, in a task of their own; every other outcome is counted (and reported) by the
    tally at once. ``limit`` caps the sockets held at once and drops to what this process
    can hold when descriptors run out.
    """

    def __init__(self, connector: BatchConnector, options: ScanOptions, tally: Tally,
                 room: SocketRoom, pacer: Pacer, inspector: PortInspector,
                 limit: float) -> None:
        self.options = options
        self.waits: Waits = LoopWaits()
        self.tally = tally
        self.summary = tally.summary
        self.slots = room.slots
        self.limit = limit
        self._connector = connector
        self._room = room
        self._pacer = pacer
        self._inspector = inspector
        self._pending: dict[int, _Pending] = {}  # registered with the poller, oldest first
        self._fresh: list[_Pending] = []  # connects issued since the last harvest
        self._retry: deque[tuple[HostPlan, int, int]] = deque()
        self._poller: _Poller | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._inspecting = 0  # open ports whose socket is kept for a banner or TLS check
        # Refused sockets, reset and ready for their next connect (see RECYCLE_SOCKETS).
        # By IP version (socket.family would build an enum member per port).
        self._spares: dict[int, list[socket.socket]] = {4: [], 6: []}
        self._recycling = RECYCLE_SOCKETS and not options.local_address

    async def run(self, plans: AsyncIterator[HostPlan],
                  tg: anyio.abc.TaskGroup | None) -> None:
        """Probe every allowed port of ``plans``; inspections of open ports start in ``tg``
        (None: no port is inspected, as with :class:`BlockingWaits`)."""
        self._tg = tg
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
                    await self.waits.checkpoint()
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
        await self.waits.room(self._room)  # also the back-off when nothing of ours is open

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
        spares = self._spares[plan.version]
        local_address = self.options.local_address
        started = time.monotonic()
        if spares:
            sock, code = self._connector.start_connect(address, port,
                                                       local_address=local_address,
                                                       reuse=spares.pop())
            if code not in NONBLOCKING_CONNECT_ANSWERS:
                # This kernel does not reconnect a failed socket after all: stop trying.
                sock.close()
                self._recycling = False
                self._close_spares()
                return self._start(plan, port, attempt, slot)
        else:
            try:
                sock, code = self._connector.start_connect(address, port,
                                                           local_address=local_address)
            except OSError as exc:
                self._room.release(slot)
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
                    code = connect_status(sock, (item.plan.address_text, item.port))
                    if code == errno.EISCONN:
                        code = 0
                else:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == refused and not report_closed:  # the common case, kept cheap
                    if recycling:
                        self._spares[item.plan.version].append(sock)
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
            self._room.release(item.slot)
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
            await self.waits.checkpoint()
            if until is not None:
                await self.waits.sleep(max(0.0, until - time.monotonic()))
            return
        first = next(iter(self._pending.values()))
        deadline = first.deadline if until is None else min(first.deadline, until)
        delay = deadline - time.monotonic()
        if delay > 0:
            assert self._poller is not None
            await self.waits.readable(self._poller.fileno(), delay)
        else:
            await self.waits.checkpoint()
        self._harvest()
        self._expire()

    def _failed(self, item: _Pending, code: int) -> None:
        item.sock.close()
        self._room.release(item.slot)
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
            self._room.release(item.slot)
            self.tally.emit(item.plan, item.port, PortState.CLOSED, SELF_CONNECT_REASON,
                            attempts=item.attempt)
            return
        result = self.tally.open_result(item.plan, item.port, latency, item.attempt)
        if result is not None and self.options.kernel_facts:
            from tcpcli.core.tcpinfo import tcp_info

            result.tcp = tcp_info(sock)
        if result is None or not self._inspector.wanted:
            sock.close()
            self._room.release(item.slot)
            if result is not None:
                self.tally.finish_open(result)
            return
        from tcpcli.core.rawstream import RawSocketStream

        assert self._tg is not None
        self._inspecting += 1
        self._tg.start_soon(self._inspect_counted, RawSocketStream(sock), item.slot, item.plan,
                            result)

    async def _inspect_counted(self, stream: anyio.abc.ByteStream, slot: SocketSlot | None,
                               plan: HostPlan, result: ProbeResult) -> None:
        try:
            await self._inspector.inspect(stream, slot, plan, result)
        finally:
            self._inspecting -= 1

    def _close_spares(self) -> None:
        for spares in self._spares.values():
            for sock in spares:
                sock.close()
            spares.clear()

    def close(self) -> None:
        """Close every socket still held (the scan ended, or was cut short)."""
        self._close_spares()
        for item in [*self._pending.values(), *self._fresh]:
            item.sock.close()
            self._room.release(item.slot)
        self._pending.clear()
        self._fresh.clear()
        if self._poller is not None:
            self._poller.close()
            self._poller = None
