"""The throughput engine behind ``tcpcli bench --mode throughput``: bytes per second over
N connections, up (we send, the peer discards), down (the peer sends, we discard) or both
(full duplex on every connection).

The shape of a run:

1. The target is policy-checked once (``core.destination``, the same literal for every
   connection, dialed through the invocation's Connector); ``connections`` connections
   are dialed (and TLS-handshaken) concurrently, each holding one of the invocation's
   :class:`SocketSlots`. Connect and TLS times are their own distributions, outside the
   throughput window.
2. When every connection is up (or has failed), all start moving bytes at once. The first
   ``warmup`` seconds move bytes that are not counted (TCP slow start, CPU frequency), as
   iperf3's ``--omit``; the measured window starts after them.
3. The window ends after ``duration`` seconds, or when every connection has moved
   ``bytes_per_connection`` counted bytes in each of its directions, whichever is first.
4. Every connection then closes gracefully outside the window: FIN (close_notify on TLS),
   and, when we sent, the peer's echo or silence is drained until it closes (bounded), so
   the peer receives every byte counted.

What is counted: up, the bytes the kernel accepted from ``send()`` (iperf3's sender view;
on a fast link the socket buffer is in flight when the window closes, and reaches the peer
during the graceful close); down, the bytes ``recv()`` returned. Counts are exact integers.

The hot loop on plain TCP calls ``send``/``recv_into`` on the non-blocking socket itself
(:mod:`rawsocket`) with one payload and one receive buffer per connection, allocated once:
nothing is allocated per chunk. A partial send is counted and the next send starts again
from the payload's first byte (the content is arbitrary random bytes, generated once), so
no slice is taken either. The loop waits on the event loop only when the kernel would
block, and yields every ``BURST`` chunks so that the timers and the other connections run.
TLS goes through :class:`TLSStream` (the ``ssl`` module allocates per record; unavoidable).

A connection that fails mid-transfer (reset, stall past ``timeout``, peer closing before
the end) keeps the bytes it moved, stops, and is counted by error kind; the others go on.

No click and no rich here: the CLI renders :class:`ThroughputResult` and :func:`summary`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel

from tcpcli.core.address import join_host_port
from tcpcli.core.destination import IPAddress
from tcpcli.core.errors import ConnectTimeoutError, IdleTimeoutError, translate
from tcpcli.core.invocation import Invocation
from tcpcli.core.slots import SocketSlot
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.engines.bench import ClosedEarlyError, checked_literal, describe
from tcpcli.engines.histogram import Histogram

Direction = Literal["up", "down", "both"]
DIRECTIONS: tuple[Direction, ...] = ("up", "down", "both")

#: Default bytes per send()/recv() call (iperf3's TCP default).
DEFAULT_CHUNK = 128 * 1024
#: Default length of the measured window when no --bytes bounds it (iperf3's default).
DEFAULT_DURATION = 10.0
#: Default per-connection timeout: connect + TLS, and the longest stall mid-transfer.
DEFAULT_TIMEOUT = 10.0
#: Successful non-blocking sends/receives in a row before the loop yields to the others.
BURST = 16
#: The longest wait for the peer to finish reading (and close) after our FIN.
DRAIN_TIMEOUT = 2.0
#: No limit (a plain int, so that the hot loop compares ints).
UNLIMITED = 1 << 62


@dataclass(frozen=True)
class ThroughputConfig:
    """What to move and for how long. ``duration`` and ``bytes_per_connection`` bound the
    window (the first reached ends it); with neither, the window lasts DEFAULT_DURATION."""

    address: str  # "host:port" or "[v6]:port"
    direction: Direction = "up"
    connections: int = 6
    duration: float | None = None
    bytes_per_connection: int | None = None  # counted bytes, each direction
    chunk: int = DEFAULT_CHUNK
    warmup: float = 0.0  # seconds moved but not counted, before the window
    interval: float = 1.0  # seconds per entry of the interval series
    timeout: float = DEFAULT_TIMEOUT
    tls: bool = False
    tls_options: TLSOptions = field(default_factory=TLSOptions)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.bytes_per_connection is not None and self.bytes_per_connection < 1:
            raise ValueError("bytes_per_connection must be at least 1")
        if self.chunk < 1:
            raise ValueError("chunk must be at least 1 byte")
        if self.warmup < 0 or self.interval <= 0 or self.timeout <= 0:
            raise ValueError("warmup must be >= 0; interval and timeout positive")

    @property
    def window(self) -> float | None:
        """The measured window's length in seconds, None when only bytes bound it."""
        if self.duration is None and self.bytes_per_connection is None:
            return DEFAULT_DURATION
        return self.duration

    @property
    def sends(self) -> bool:
        return self.direction != "down"

    @property
    def receives(self) -> bool:
        return self.direction != "up"


class Flow:
    """One connection's counters. ``sent``/``received`` count every byte since the start;
    the ``*_base`` values are the counts when the window opened (warmup excluded)."""

    __slots__ = ("connect_ns", "error", "finished_ns", "number", "receive_limit", "received",
                 "received_base", "send_limit", "sent", "sent_base", "tls_ns")

    def __init__(self, number: int) -> None:
        self.number = number
        self.sent = self.received = 0
        self.sent_base = self.received_base = 0
        self.send_limit = self.receive_limit = UNLIMITED
        self.connect_ns = 0
        self.tls_ns: int | None = None
        self.finished_ns = 0  # when it stopped moving counted bytes (0: still moving)
        self.error: BaseException | None = None

    @property
    def counted_up(self) -> int:
        return self.sent - self.sent_base

    @property
    def counted_down(self) -> int:
        return self.received - self.received_base


@dataclass(frozen=True)
class Interval:
    """Bytes counted in one slice of the window (seconds from the window's start)."""

    start_s: float
    end_s: float
    up: int
    down: int


@dataclass
class ThroughputResult:
    """The measurements so far (live while running, final afterwards)."""

    config: ThroughputConfig
    peer: str = ""  # the checked literal dialed, "ip:port"
    flows: list[Flow] = field(default_factory=list)  # the connections that came up
    connect: Histogram = field(default_factory=Histogram)
    tls: Histogram = field(default_factory=Histogram)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    transfer_started_ns: int = 0  # every connection up: bytes start to move (warmup too)
    started_ns: int = 0  # the measured window opened
    finished_ns: int = 0  # the measured window closed
    intervals: list[Interval] = field(default_factory=list)
    peak_sockets: int = 0
    interrupted: bool = False
    _mark: tuple[int, int, int] = (0, 0, 0)  # (ns, up, down) where the last interval ended

    # ------------------------------------------------------------------ totals

    @property
    def end_ns(self) -> int:
        return self.finished_ns or time.perf_counter_ns()

    @property
    def elapsed(self) -> float:
        """Seconds of measured window so far."""
        if not self.started_ns:
            return 0.0
        return max(self.end_ns - self.started_ns, 0) / 1e9

    @property
    def bytes_up(self) -> int:
        return sum(f.counted_up for f in self.flows) if self.started_ns else 0

    @property
    def bytes_down(self) -> int:
        return sum(f.counted_down for f in self.flows) if self.started_ns else 0

    def rate(self, direction: Literal["up", "down"]) -> float:
        """Bytes per second over the window."""
        elapsed = self.elapsed
        moved = self.bytes_up if direction == "up" else self.bytes_down
        return moved / elapsed if elapsed > 0 else 0.0

    def flow_rates(self, direction: Literal["up", "down"]) -> list[float]:
        """Each measured connection's bytes per second over its own part of the window."""
        if not self.started_ns:
            return []
        rates = []
        for flow in self.flows:
            end = min(flow.finished_ns or self.end_ns, self.end_ns)
            if flow.finished_ns and flow.finished_ns <= self.started_ns:
                continue  # stopped before the window: not measured
            seconds = (end - self.started_ns) / 1e9
            moved = flow.counted_up if direction == "up" else flow.counted_down
            rates.append(moved / seconds if seconds > 0 else 0.0)
        return rates

    def series(self) -> list[Interval]:
        """The interval series, with the running (or final, partial) interval last."""
        if not self.started_ns:
            return []
        mark_ns, mark_up, mark_down = self._mark
        end = self.end_ns
        up, down = self.bytes_up, self.bytes_down
        if end <= mark_ns or (end - mark_ns < 1_000_000 and up == mark_up
                              and down == mark_down):
            return list(self.intervals)
        tail = Interval((mark_ns - self.started_ns) / 1e9, (end - self.started_ns) / 1e9,
                        up - mark_up, down - mark_down)
        return [*self.intervals, tail]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def count_error(self, error: BaseException) -> None:
        kind = getattr(error, "kind", "error")
        self.errors[kind] += 1
        self.error_examples.setdefault(kind, str(error))

    # ------------------------------------------------------------------ bookkeeping

    def open_window(self, now: int) -> None:
        for flow in self.flows:
            flow.sent_base, flow.received_base = flow.sent, flow.received
        self.started_ns = now
        self._mark = (now, 0, 0)

    def close_interval(self, now: int) -> None:
        up, down = self.bytes_up, self.bytes_down
        mark_ns, mark_up, mark_down = self._mark
        self.intervals.append(Interval((mark_ns - self.started_ns) / 1e9,
                                       (now - self.started_ns) / 1e9,
                                       up - mark_up, down - mark_down))
        self._mark = (now, up, down)


class _Connection:
    """A connected flow: its stream, raw socket (plain TCP) and slot."""

    __slots__ = ("flow", "slot", "sock", "stream")

    def __init__(self, flow: Flow, stream: anyio.abc.ByteStream, slot: SocketSlot,
                 sock: socket.socket | None) -> None:
        self.flow, self.stream, self.slot, self.sock = flow, stream, slot, sock


class Throughput:
    """One throughput run inside an :class:`Invocation` (the policy, the cap, the resolver)."""

    def __init__(self, config: ThroughputConfig, invocation: Invocation, *,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.config = config
        self.invocation = invocation
        self.result = ThroughputResult(config)
        self._now = clock
        self._target = config.address
        self._address: IPAddress | None = None
        self._port = 0
        self._hostname = ""
        self._payload = b""
        self._stopping = False
        self._transfer = anyio.CancelScope()
        self._scopes: dict[int, anyio.CancelScope] = {}

    # ------------------------------------------------------------------ target

    async def check_target(self) -> None:
        """Ask ``core.destination`` once (the name, then every resolved answer); every
        connection dials the first checked literal through the invocation's Connector."""
        self._address, self._port, self._hostname = await checked_literal(
            self.invocation, self.config.address)
        self.result.peer = join_host_port(self._address, self._port)

    # ------------------------------------------------------------------ running

    async def run(self) -> ThroughputResult:
        """Connect, move bytes, close; the result is also readable live as ``self.result``."""
        if self._address is None:
            await self.check_target()
        config, result = self.config, self.result
        self._payload = os.urandom(config.chunk)
        if config.tls:
            # Import the TLS stack (cryptography) and load the trust store before any
            # connect is timed: done inside the first handshake, it stalls the loop for
            # ~60 ms and inflates the other connections' connect times.
            from tcpcli.core.tls import client_context

            with contextlib.suppress(Exception):  # a bad option fails each connection
                client_context(config.tls_options)
        connections: list[_Connection] = []
        try:
            async with anyio.create_task_group() as tg:
                for number in range(1, config.connections + 1):
                    tg.start_soon(self._connect, Flow(number), connections)
            result.flows = [c.flow for c in sorted(connections, key=lambda c: c.flow.number)]
            result.peak_sockets = self.invocation.slots.peak
            if connections:
                await self._move(connections)
                await self._close_all(connections)
        finally:
            if result.started_ns and not result.finished_ns:
                result.finished_ns = self._now()
            for connection in connections:
                self._close_now(connection)
        return result

    async def _connect(self, flow: Flow, connected: list[_Connection]) -> None:
        assert self._address is not None  # check_target() ran
        slots = self.invocation.slots
        slot = slots.try_acquire() or await slots.acquire()
        stream: anyio.abc.ByteStream | None = None
        phase = "connect"
        try:
            with anyio.fail_after(self.config.timeout):
                start = self._now()
                stream = await self.invocation.connector.connect_tcp(
                    self._address, self._port,
                    local_address=self.invocation.options.local_address)
                connected_ns = self._now()
                flow.connect_ns = connected_ns - start
                if self.config.tls:
                    phase = "tls"
                    from tcpcli.core.tls import TLSStream

                    stream = await TLSStream.wrap(stream, hostname=self._hostname,
                                                  options=self.config.tls_options,
                                                  target=self._target, port=self._port)
                    flow.tls_ns = self._now() - connected_ns
        except BaseException as exc:
            if stream is not None:
                await anyio.aclose_forcefully(stream)
            slots.release(slot)
            if not isinstance(exc, Exception):
                raise  # cancelled (Ctrl-C): nothing to count
            if isinstance(exc, TimeoutError):
                error: BaseException = ConnectTimeoutError(
                    f"no {'TLS handshake' if phase == 'tls' else 'connection'} with "
                    f"{self._target} within {self.config.timeout:g} s",
                    target=self._target, port=self._port)
            else:
                error = translate(exc, target=self._target, port=self._port, phase=phase)
            self.result.count_error(error)
            return
        self.result.connect.record(flow.connect_ns)
        if flow.tls_ns is not None:
            self.result.tls.record(flow.tls_ns)
        sock = None if self.config.tls else stream.extra(anyio.abc.SocketAttribute.raw_socket)
        connected.append(_Connection(flow, stream, slot, sock))

    async def _move(self, connections: list[_Connection]) -> None:
        config, result = self.config, self.result
        result.transfer_started_ns = self._now()
        if not config.warmup:
            self._open_window()
        with self._transfer:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._clock)
                tg.start_soon(self._watchdog, connections)
                async with anyio.create_task_group() as flows:
                    for connection in connections:
                        flows.start_soon(self._run_flow, connection)
                # Every flow reached its byte count (or failed): the window is over.
                if result.started_ns and not result.finished_ns:
                    result.finished_ns = max(f.finished_ns for f in result.flows)
                self._stop()
        if not result.finished_ns:
            result.finished_ns = self._now()
        for flow in result.flows:
            if flow.error is None and result.started_ns and not (
                    flow.counted_up or flow.counted_down):
                flow.error = IdleTimeoutError(
                    f"no data moved on connection {flow.number} to {self._target} in "
                    f"{result.elapsed:.3g} s", target=self._target, port=self._port)
                result.count_error(flow.error)

    def _open_window(self) -> None:
        self.result.open_window(self._now())
        limit = self.config.bytes_per_connection
        if limit is not None:
            for flow in self.result.flows:
                flow.send_limit, flow.receive_limit = flow.sent + limit, flow.received + limit

    def _stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            if self.result.started_ns and not self.result.finished_ns:
                self.result.finished_ns = self._now()
            self._transfer.cancel()

    async def _clock(self) -> None:
        """Open the window after the warmup, close an interval every ``interval`` seconds,
        and end the window after ``duration``."""
        config, result = self.config, self.result
        if config.warmup:
            await self._sleep_until(result.transfer_started_ns + int(config.warmup * 1e9))
            self._open_window()
        start = result.started_ns
        end = None if config.window is None else start + int(config.window * 1e9)
        step = int(config.interval * 1e9)
        tick = start + step
        while True:
            if end is not None and end <= tick:
                await self._sleep_until(end)
                self._stop()
                return
            await self._sleep_until(tick)
            result.close_interval(self._now())
            tick += step

    async def _sleep_until(self, when_ns: int) -> None:
        delay = (when_ns - self._now()) / 1e9
        if delay > 0:
            await anyio.sleep(delay)

    async def _watchdog(self, connections: list[_Connection]) -> None:
        """A connection that moves no byte for ``timeout`` seconds fails with a timeout
        (the counters are compared, so the hot loop pays nothing for it)."""
        timeout = self.config.timeout
        step = min(timeout / 10, 0.5)
        last = {c.flow.number: (-1, self._now()) for c in connections}
        while True:
            await anyio.sleep(step)
            now = self._now()
            for connection in connections:
                flow = connection.flow
                if flow.finished_ns:
                    continue
                moved = flow.sent + flow.received
                seen, since = last[flow.number]
                if moved != seen:
                    last[flow.number] = (moved, now)
                elif (now - since) / 1e9 >= timeout:
                    self._fail(flow, IdleTimeoutError(
                        f"no data moved on connection {flow.number} to {self._target} "
                        f"for {timeout:g} s", target=self._target, port=self._port))

    def _fail(self, flow: Flow, error: BaseException) -> None:
        """The first failure of a flow counts (its other direction then stops too)."""
        if flow.error is not None or self._stopping:
            return
        flow.error = error
        flow.finished_ns = self._now()
        self.result.count_error(error)
        scope = self._scopes.get(flow.number)
        if scope is not None:
            scope.cancel()

    async def _run_flow(self, connection: _Connection) -> None:
        flow, config = connection.flow, self.config
        async with anyio.create_task_group() as tg:
            self._scopes[flow.number] = tg.cancel_scope
            if config.sends:
                tg.start_soon(self._guard, flow, self._send, connection)
            if config.receives:
                tg.start_soon(self._guard, flow, self._receive, connection)
        if not flow.finished_ns:
            flow.finished_ns = self._now()

    async def _guard(self, flow: Flow, loop: Callable[[_Connection], Any],
                     connection: _Connection) -> None:
        try:
            await loop(connection)
        except anyio.EndOfStream:
            self._fail(flow, ClosedEarlyError(
                f"{self._target} closed connection {flow.number} before the run ended "
                f"(after {flow.received} bytes received)", target=self._target,
                port=self._port))
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._fail(flow, translate(exc, target=self._target, port=self._port,
                                       phase="stream"))
        except Exception as exc:  # a tcpcli error from the TLS layer
            if not hasattr(exc, "kind"):
                raise
            self._fail(flow, exc)

    # ------------------------------------------------------------------ the hot loops

    async def _send(self, connection: _Connection) -> None:
        flow, sock = connection.flow, connection.sock
        payload = self._payload
        size = len(payload)
        if sock is None:
            await self._send_stream(connection)
            return
        send = sock.send
        burst = 0
        while not self._stopping:
            left = flow.send_limit - flow.sent
            if left <= 0:
                return
            try:
                # Always from the payload's start: the content is arbitrary.
                sent = send(payload) if left >= size else send(payload[:left])
            except BlockingIOError:
                await anyio.wait_writable(sock)
                burst = 0
                continue
            flow.sent += sent
            burst += 1
            if burst >= BURST:
                burst = 0
                await anyio.lowlevel.checkpoint()

    async def _send_stream(self, connection: _Connection) -> None:
        flow, stream, payload = connection.flow, connection.stream, self._payload
        size = len(payload)
        while not self._stopping:
            left = flow.send_limit - flow.sent
            if left <= 0:
                return
            chunk = payload if left >= size else payload[:left]
            await stream.send(chunk)
            flow.sent += len(chunk)

    async def _receive(self, connection: _Connection) -> None:
        flow, sock = connection.flow, connection.sock
        size = self.config.chunk
        if sock is None:
            await self._receive_stream(connection)
            return
        buffer = bytearray(size)
        receive_into = sock.recv_into
        burst = 0
        while not self._stopping:
            left = flow.receive_limit - flow.received
            if left <= 0:
                return
            try:
                received = receive_into(buffer, size if left >= size else left)
            except BlockingIOError:
                await anyio.wait_readable(sock)
                burst = 0
                continue
            if not received:
                raise anyio.EndOfStream
            flow.received += received
            burst += 1
            if burst >= BURST:
                burst = 0
                await anyio.lowlevel.checkpoint()

    async def _receive_stream(self, connection: _Connection) -> None:
        flow, stream, size = connection.flow, connection.stream, self.config.chunk
        while not self._stopping:
            left = flow.receive_limit - flow.received
            if left <= 0:
                return
            flow.received += len(await stream.receive(min(size, left)))

    # ------------------------------------------------------------------ closing

    async def _close_all(self, connections: list[_Connection]) -> None:
        """Outside the window: FIN every connection; where we sent, let the peer read the
        rest and close (draining its echo), within DRAIN_TIMEOUT."""
        with anyio.move_on_after(min(self.config.timeout, DRAIN_TIMEOUT)):
            async with anyio.create_task_group() as tg:
                for connection in connections:
                    if connection.flow.error is None and self.config.sends:
                        tg.start_soon(self._close_gracefully, connection)

    async def _close_gracefully(self, connection: _Connection) -> None:
        stream = connection.stream
        with contextlib.suppress(Exception):
            await stream.send_eof()
            while True:
                await stream.receive(1 << 20)

    def _close_now(self, connection: _Connection) -> None:
        sock = connection.sock
        if sock is not None:
            # Nobody waits on it any more: close it now (no checkpoint, not cancellable).
            with contextlib.suppress(RuntimeError):
                anyio.notify_closing(sock)
            sock.close()
        else:
            transport = getattr(connection.stream, "transport_stream", None)
            raw = transport.extra(anyio.abc.SocketAttribute.raw_socket) if transport else None
            if raw is not None:
                raw.close()
        self.invocation.slots.release(connection.slot)


# ---------------------------------------------------------------------- summary


def spread(values: list[float]) -> dict[str, float] | None:
    """min, median and max, or None without values."""
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _direction(result: ThroughputResult, direction: Literal["up", "down"]) -> dict[str, Any]:
    rate = result.rate(direction)
    per_connection = spread(result.flow_rates(direction))
    return {
        "bytes": result.bytes_up if direction == "up" else result.bytes_down,
        "bytes_per_second": round(rate, 3),
        "bits_per_second": round(rate * 8, 3),
        "per_connection_bytes_per_second": None if per_connection is None else
        {k: round(v, 3) for k, v in per_connection.items()},
    }


def summary(result: ThroughputResult) -> dict[str, Any]:
    """The JSON-able summary: exact byte counts, rates in bytes and bits per second."""
    config = result.config
    data: dict[str, Any] = {
        "mode": "throughput",
        "peer": result.peer,
        "tls": config.tls,
        "direction": config.direction,
        "connections": config.connections,
        "connected": len(result.flows),
        "chunk_bytes": config.chunk,
        "duration_target_s": config.window,
        "bytes_target": config.bytes_per_connection,
        "warmup_s": config.warmup,
        "elapsed_s": round(result.elapsed, 6),
        "peak_sockets": result.peak_sockets,
        "interrupted": result.interrupted,
        "errors": dict(result.errors),
    }
    if config.sends:
        data["up"] = _direction(result, "up")
    if config.receives:
        data["down"] = _direction(result, "down")
    data["intervals"] = [
        {"start_s": round(i.start_s, 6), "end_s": round(i.end_s, 6),
         **({"up_bytes": i.up} if config.sends else {}),
         **({"down_bytes": i.down} if config.receives else {})}
        for i in result.series()
    ]
    data["distributions"] = {"connect": describe(result.connect)}
    if config.tls:
        data["distributions"]["tls"] = describe(result.tls)
    return data


__all__ = ["DEFAULT_CHUNK", "DEFAULT_DURATION", "DIRECTIONS", "Direction", "Flow", "Interval",
           "Throughput", "ThroughputConfig", "ThroughputResult", "spread", "summary"]
