"""The benchmark engine behind ``tcpcli bench``: latency distributions that can be trusted.

Modes:

* ``connect`` — a new TCP connection per sample (``connect``), plus the TLS handshake as its
  own distribution (``tls``) with ``tls=True``. With ``resume=True`` each worker alternates
  a full handshake with one offering its last session, so full (``tls``) and resumed
  (``tls-resumed``) handshakes are measured side by side under the same load; an offer
  the server declined is a full handshake, counted in ``resume_misses``.
* ``rr`` — request/response: send ``payload``, read until ``expect`` appears or
  ``expect_bytes`` arrived (default: the first bytes of any reply), on one persistent
  connection per worker or (``fresh=True``) a new connection per sample.

How the numbers stay honest:

* The destination is judged by the invocation's policy **once** (``core.destination``), and
  every sample dials the checked literal through the invocation's ``Connector``: no
  per-sample resolution or policy work.
* One task per worker, not per sample; one cached SSL context (``tlscontext``).
* Plain ``connect`` mode, closed loop, through a :class:`BatchConnector` (the real network)
  takes the fast path: the workers' connects are issued without a task each, each checked
  at once by a second ``connect()`` and, when still under way, waited for through one
  epoll fd (:meth:`Bench._connect_storm`) — what a task, a future and two selector calls
  per connect cost is most of a loopback connect. A latency ends when the connect is
  seen to be answered, without an event-loop turn in between.
* Every connection holds one of the invocation's :class:`SocketSlots`, so the Workers cap
  (6) is respected and ``slots.peak`` proves it.
* ``rate`` runs open-loop: sample *i* is due at ``start + i / rate`` and its latency is
  measured from that intended time, so a stalled server cannot hide its stall by slowing
  the load down (coordinated omission).
* Latencies go into streaming :class:`Histogram`\\ s (nanoseconds): flat memory.
* Errors are counted by their ``kind`` (refused, reset, timeout, tls, ...), never hidden.

No click and no rich here: the CLI renders :class:`BenchResult`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Literal, cast

from tcpcli.core.address import join_host_port, parse_address
from tcpcli.core.connect import BatchConnector
from tcpcli.core.errnos import LOST_ERRNOS
from tcpcli.core.errors import (
    ConnectError,
    ConnectTimeoutError,
    ErrorKind,
    RemoteProtocolError,
    TcpcliError,
    translate,
)
from tcpcli.core.invocation import Invocation
from tcpcli.core.rawsocket import CONNECT_UNDER_WAY, connect_status
from tcpcli.core.slots import SocketSlot
from tcpcli.core.tcpinfo import rtt_and_retransmits
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.core.waits import BlockingWaits, LoopWaits, Waits, run_without_loop
from tcpcli.engines.histogram import Histogram
from tcpcli.protocols.errors import ProtocolError as ProtocolFailure

if TYPE_CHECKING:
    import ssl

    import anyio
    import anyio.abc

    from tcpcli.core.destination import Destination
    from tcpcli.core.proxyheader import ProxyHeaderSpec
    from tcpcli.core.tls import TLSStream

Mode = Literal["connect", "rr"]
IPAddress = IPv4Address | IPv6Address

#: The percentiles every report shows.
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
#: Default per-sample timeout (seconds) when none is given: keeps every run bounded.
DEFAULT_TIMEOUT = 10.0
#: Default sample count when neither a count nor a duration is given.
DEFAULT_COUNT = 100
#: A reply larger than this without the expected pattern is a protocol error.
MAX_REPLY = 1 << 20
READ_SIZE = 65536

#: Called for each measured sample: (distribution, nanoseconds).
SampleObserver = Callable[[str, int], None]

_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK})
#: The fast path needs epoll (Linux); elsewhere connect mode runs on the workers.
_EPOLL = getattr(select, "epoll", None)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how hard. ``count`` or ``duration`` bound the run."""

    address: str  # "host:port" or "[v6]:port"
    mode: Mode = "connect"
    count: int | None = None
    duration: float | None = None
    concurrency: int = 6
    rate: float | None = None  # samples per second, open loop
    warmup: int = 0  # samples run and discarded before measuring
    timeout: float = DEFAULT_TIMEOUT  # per sample (connect + TLS + reply)
    tls: bool = False
    tls_options: TLSOptions = field(default_factory=TLSOptions)
    payload: bytes = b""
    expect: bytes | None = None
    expect_bytes: int | None = None
    fresh: bool = False
    resume: bool = False  # every other handshake offers the last session (see above)
    # rr --fresh: also time each request whole, from its connect to the reply ("request"):
    # what a client without a pool waits (--pooling's fresh arm).
    whole_request: bool = False
    #: "postgres": each connection opens a session (SSLRequest before TLS, start-up and
    #: authentication, timed as "startup") and rr's request is a simple query (``payload``
    #: a Query message) whose reply ends at ReadyForQuery (``protocols.pgwire``).
    protocol: str | None = None
    pg_user: str = "postgres"
    pg_database: str | None = None  # None: the user's name, as libpq does
    pg_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.mode == "rr" and not self.payload:
            raise ValueError("rr mode needs a request to send")
        if self.resume and not (self.tls and (self.mode == "connect" or self.fresh)):
            raise ValueError("resume needs tls and a new connection per sample")
        if self.protocol not in (None, "postgres"):
            raise ValueError(f"no bench protocol {self.protocol!r} (postgres is the one)")

    @property
    def bounded_count(self) -> int | None:
        if self.count is None and self.duration is None:
            return DEFAULT_COUNT
        return self.count

    @property
    def distributions(self) -> tuple[str, ...]:
        """The distributions this run measures, primary first."""
        names: list[str] = []
        if self.mode == "rr" and self.fresh and self.whole_request:
            names.append("request")
        if self.mode == "rr":
            names.append("rr")
        if self.mode == "connect" or self.fresh:
            names.append("connect")
            if self.tls:
                names.append("tls")
            if self.resume:
                names.append("tls-resumed")
            if self.protocol is not None:
                names.append("startup")
        return tuple(names)


@dataclass
class BenchResult:
    """The measurements so far (live while running, final afterwards)."""

    config: BenchConfig
    peer: str = ""  # the checked literal dialed, "ip:port"
    histograms: dict[str, Histogram] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    samples: int = 0  # successful measured samples (of the primary distribution)
    warmup_done: int = 0
    started_ns: int = 0  # start of the measured phase
    finished_ns: int = 0
    peak_sockets: int = 0
    interrupted: bool = False
    resume_misses: int = 0  # sessions offered that the server declined (full handshakes)
    #: The kernel's view (Linux TCP_INFO), one reading per measured connection as it is
    #: done: its smoothed RTT (ns), beside the application's latency, and the segments it
    #: had to send again (SYNs included). Empty where the system does not tell.
    kernel_rtt: Histogram = field(default_factory=Histogram)
    retransmits: int = 0

    @property
    def primary(self) -> str:
        return self.config.distributions[0]

    @property
    def elapsed(self) -> float:
        if not self.started_ns:
            return 0.0
        end = self.finished_ns or time.perf_counter_ns()
        return (end - self.started_ns) / 1e9

    @property
    def rate(self) -> float:
        """Successful samples per second of the measured phase (conn/s or req/s)."""
        elapsed = self.elapsed
        return self.samples / elapsed if elapsed > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def count_error(self, error: BaseException) -> None:
        kind = getattr(error, "kind", "error")
        self.errors[kind] += 1
        self.error_examples.setdefault(kind, str(error))


class ClosedEarlyError(ConnectError):
    """The peer closed before the reply was complete (counted as ``closed``)."""

    kind = ErrorKind.CLOSED


class _Failed(Exception):
    """A sample failed; ``error`` is already a tcpcli error."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Watch:
    """A worker's timeout state: its scope, and when its current sample started (0: idle)."""

    __slots__ = ("scope", "since")

    def __init__(self) -> None:
        import anyio

        self.scope = anyio.CancelScope()
        self.since = 0


async def checked_literal(invocation: Invocation, target: str) -> tuple[IPAddress, int, str]:
    """The first checked address of ``target`` (a host:port), its port, and the name it
    was checked as (for SNI and verification): what every connection of a run dials.
    With a tunnel entry point (``via``), the entry point's address and port."""
    parsed = parse_address(target)
    family = invocation.options.family
    via = invocation.options.via
    if via is not None:  # a tunnel's entry point: dialed, the target judged (core.entrypoint)
        from tcpcli.core.entrypoint import check_behind, entry_addresses, parse_entry_point

        destination, _ = await check_behind(invocation, parsed.hostname, parsed.port,
                                            family=family, target=target, clock=None)
        entry = parse_entry_point(via)
        entries = await entry_addresses(invocation, entry, family=family)
        return entries[0], entry.port, destination.name
    destination = await invocation.check_destination(parsed.hostname, parsed.port,
                                                     family=family, target=target)
    return _dialed(destination, parsed.port, family)


def checked_literal_now(invocation: Invocation,
                        target: str) -> tuple[IPAddress, int, str] | None:
    """:func:`checked_literal` without an event loop, when no DNS query and no entry point
    is involved; None when one is. A refusal raises as there."""
    if invocation.options.via is not None:
        return None
    parsed = parse_address(target)
    family = invocation.options.family
    destination = invocation.check_destination_now(parsed.hostname, parsed.port,
                                                   family=family, target=target)
    if destination is None:
        return None
    return _dialed(destination, parsed.port, family)


def _dialed(destination: Destination, port: int, family: int) -> tuple[IPAddress, int, str]:
    """What every connection dials (the first checked address), and the checked name."""
    return destination.ordered(family)[0], port, destination.name


class Bench:
    """One benchmark run inside an :class:`Invocation` (the policy, the cap, the resolver)."""

    def __init__(self, config: BenchConfig, invocation: Invocation, *,
                 on_sample: SampleObserver | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.config = config
        self.invocation = invocation
        self.on_sample = on_sample
        self.result = BenchResult(config, histograms={n: Histogram()
                                                      for n in config.distributions})
        self._now = clock
        #: How the connect storm waits: on the loop, or blocking (:meth:`run_now`).
        self.waits: Waits = LoopWaits()
        self._connector = invocation.connector
        self._address: IPAddress | None = None
        self._port = 0
        self._hostname = ""
        self._target = config.address
        # The ticket dispenser shared by the workers.
        self._issued = 0
        self._limit: int | None = None
        self._deadline_ns: int | None = None
        self._start_ns = 0
        self._interval_ns: float | None = None
        self._recording = False
        self._watches: list[_Watch] = []
        # --resume: how long to wait for a TLS 1.3 ticket (tls.TICKET_WAIT, set by run());
        # 0 once the server sent none in time, so that it is waited for only once.
        self._ticket_wait = 0.0
        self._startup_ns = 0  # the last --protocol start-up's time (see _open)

    # ------------------------------------------------------------------ target

    async def check_target(self) -> tuple[IPAddress, int]:
        """Ask ``core.destination`` once (the name, then every resolved answer) and pick
        the first checked literal: every sample dials that one address."""
        address, port, self._hostname = await checked_literal(self.invocation,
                                                              self.config.address)
        self._address, self._port = address, port
        self.result.peer = join_host_port(address, port)
        return address, port

    @property
    def checked_target(self) -> tuple[IPAddress, int, str] | None:
        """The literal every sample dials, its port and the name it was checked as (for
        TLS); None until :meth:`check_target` or :meth:`use_target`."""
        if self._address is None:
            return None
        return self._address, self._port, self._hostname

    def use_target(self, address: IPAddress, port: int, hostname: str) -> None:
        """Dial ``address`` (already checked by :meth:`check_target` elsewhere, e.g. in the
        parent of a multi-process run) without resolving or judging it again."""
        self._address, self._port, self._hostname = address, port, hostname
        self.result.peer = join_host_port(address, port)

    # ------------------------------------------------------------------ running

    def storms_without_loop(self) -> bool:
        """Whether :meth:`run_now` can run: every phase is the plain connect storm and the
        target is checked (here, once) without DNS. A refusal raises as :meth:`run` would.
        TLS, rr, a rate, a name to resolve, an entry point or a proxy need the loop."""
        if not self._storms(rate=self.config.rate):
            return False
        if self._address is None:
            checked = checked_literal_now(self.invocation, self.config.address)
            if checked is None:
                return False
            self.use_target(*checked)
        return True

    def run_now(self) -> BenchResult | None:
        """:meth:`run` without an event loop, on this thread; None, with nothing dialed,
        when the run needs the loop (see :meth:`storms_without_loop`)."""
        if not self.storms_without_loop():
            return None
        self.waits = BlockingWaits()
        return run_without_loop(self.run())

    def _storms(self, *, rate: float | None) -> bool:
        """Whether a phase takes the fast path (see :meth:`_connect_storm`)."""
        config = self.config
        return (config.mode == "connect" and not config.tls and rate is None
                and config.protocol is None and _EPOLL is not None
                and self.invocation.options.send_proxy is None
                and isinstance(self._connector, BatchConnector)
                and not self.invocation.options.proxy)

    async def run(self) -> BenchResult:
        """Warm up, then measure; the result is also readable live as ``self.result``."""
        if self._address is None:
            await self.check_target()
        config = self.config
        if config.tls:
            from tcpcli.core.tls import TICKET_WAIT, client_context

            self._ticket_wait = TICKET_WAIT
            # Loading the trust store (~20 ms for certifi) is not a handshake: do it before
            # the first sample. An error here is counted per sample, as before.
            with contextlib.suppress(TcpcliError):
                client_context(config.tls_options, hostname=self._hostname)
        if config.warmup:
            await self._phase(limit=config.warmup, duration=None, rate=None, recording=False)
        result = self.result
        result.started_ns = self._now()
        try:
            await self._phase(limit=config.bounded_count, duration=config.duration,
                              rate=config.rate, recording=True)
        finally:
            result.finished_ns = self._now()
            result.peak_sockets = self.invocation.slots.peak
        return result

    async def _phase(self, *, limit: int | None, duration: float | None,
                     rate: float | None, recording: bool) -> None:
        self._issued = 0
        self._limit = limit
        self._start_ns = self._now()
        self._deadline_ns = None if duration is None else self._start_ns + int(duration * 1e9)
        self._interval_ns = None if rate is None else 1e9 / rate
        self._recording = recording
        connector = self._connector
        if self._storms(rate=rate):
            assert isinstance(connector, BatchConnector)
            await self._connect_storm(connector)
            return
        import anyio

        async with anyio.create_task_group() as outer:
            outer.start_soon(self._watchdog)
            async with anyio.create_task_group() as tg:
                for _ in range(self.config.concurrency):
                    tg.start_soon(self._worker)
            outer.cancel_scope.cancel()

    def _ticket(self) -> int | None:
        """The next sample's intended start (ns), or None when the run is over."""
        if self._limit is not None and self._issued >= self._limit:
            return None
        if self._interval_ns is not None:
            due = self._start_ns + int(self._issued * self._interval_ns)
            if self._deadline_ns is not None and due >= self._deadline_ns:
                return None
        else:
            due = self._now()
            if self._deadline_ns is not None and due >= self._deadline_ns:
                return None
        self._issued += 1
        return due

    async def _wait_until(self, due: int) -> None:
        import anyio

        delay = (due - self._now()) / 1e9
        if delay > 0:
            await anyio.sleep(delay)

    def _record(self, name: str, value: int) -> None:
        if not self._recording:
            return
        self.result.histograms[name].record(value)
        if self.on_sample is not None:
            self.on_sample(name, value)

    def _fail(self, error: BaseException) -> None:
        if self._recording:
            self.result.count_error(error)
        else:
            self.result.warmup_done += 1

    # ------------------------------------------------------------------ the fast path

    async def _connect_storm(self, connector: BatchConnector) -> None:
        """``concurrency`` connects in flight without a task each (see the module doc).

        Each round starts up to ``concurrency`` connects; a second ``connect()`` on each
        new socket tells whether it is answered already (on loopback, nearly always: the
        handshake ran inside the first call), the rest wait in one epoll set, whose fd is
        the only thing the event loop is asked to watch. Every connect holds a slot of the
        invocation, as on the workers' path."""
        assert self._address is not None
        assert _EPOLL is not None
        address, port = self._address, self._port
        local_address = self.invocation.options.local_address
        slots = self.invocation.slots
        concurrency = self.config.concurrency
        timeout_ns = int(self.config.timeout * 1e9)
        now = self._now
        epoll = _EPOLL()
        target = (str(address), port)
        waiting: dict[int, tuple[socket.socket, int, SocketSlot]] = {}  # oldest first
        issued_all = False
        try:
            while True:
                # A round starts up to `concurrency` connects, then looks at the waiting ones.
                for _ in range(concurrency):
                    if issued_all or len(waiting) >= concurrency:
                        break
                    slot = slots.try_acquire()
                    if slot is None:
                        if waiting:
                            break  # one of ours will give a slot back
                        slot = await slots.acquire()
                    if self._ticket() is None:
                        issued_all = True
                        slots.release(slot)
                        break
                    started = now()
                    try:
                        sock, code = connector.start_connect(address, port,
                                                             local_address=local_address)
                    except OSError as exc:  # no socket to be had (EMFILE...)
                        slots.release(slot)
                        self._connect_failed(exc)
                        await self.waits.checkpoint()
                        continue
                    if code in _IN_PROGRESS:
                        # Asked again, connect() tells how it went without waiting (EISCONN:
                        # connected; on loopback the handshake ran inside the first call).
                        code = connect_status(sock, target)
                        if code in CONNECT_UNDER_WAY:
                            epoll.register(sock.fileno(), select.EPOLLOUT)
                            waiting[sock.fileno()] = (sock, started, slot)
                            continue
                    self._connect_done(sock, 0 if code == errno.EISCONN else code,
                                       now() - started, slot)
                if waiting:
                    ready = epoll.poll(0)
                    if not ready and (issued_all or len(waiting) >= concurrency):
                        oldest = next(iter(waiting.values()))[1]
                        delay = (oldest + timeout_ns - now()) / 1e9
                        if delay > 0:
                            await self.waits.readable(epoll.fileno(), delay)
                            ready = epoll.poll(0)
                    seen = now()
                    for fd, _ in ready:
                        item = waiting.pop(fd)
                        epoll.unregister(fd)
                        self._connect_done(item[0], None, seen - item[1], item[2])
                    while waiting:
                        fd, item = next(iter(waiting.items()))
                        if seen - item[1] <= timeout_ns:
                            break
                        del waiting[fd]
                        epoll.unregister(fd)
                        item[0].close()
                        slots.release(item[2])
                        self._timed_out()
                elif issued_all:
                    return
                # Loopback connects may never block: let the rest of the program run.
                await self.waits.checkpoint()
        finally:
            for sock, _, slot in waiting.values():
                sock.close()
                slots.release(slot)
            epoll.close()

    def _connect_done(self, sock: socket.socket, code: int | None, elapsed_ns: int,
                      slot: SocketSlot) -> None:
        """A fast-path connect was answered (``code`` None: read it from the socket)."""
        if code is None:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0 and self._recording:
            self._note_kernel(sock)
        sock.close()
        self.invocation.slots.release(slot)
        # Accepted, then reset before we looked: the connect itself succeeded (open_tcp).
        if code == 0 or code in LOST_ERRNOS:
            if self._recording:
                self.result.histograms["connect"].record(elapsed_ns)
                self.result.samples += 1
                if self.on_sample is not None:
                    self.on_sample("connect", elapsed_ns)
            else:
                self.result.warmup_done += 1
        else:
            self._connect_failed(OSError(code, os.strerror(code)))

    def _note_kernel(self, sock: socket.socket | None) -> None:
        """One connection's kernel RTT and retransmits, read as it is done with."""
        facts = rtt_and_retransmits(sock) if sock is not None else None
        if facts is not None:
            self.result.kernel_rtt.record(facts[0] * 1000)
            self.result.retransmits += facts[1]

    def _connect_failed(self, error: OSError) -> None:
        self._fail(translate(error, target=self._target, port=self._port, phase="connect"))

    # ------------------------------------------------------------------ connections

    async def _acquire(self) -> SocketSlot:
        slots = self.invocation.slots
        slot = slots.try_acquire()
        return slot if slot is not None else await slots.acquire()

    async def _open(self, start_ns: int, session: ssl.SSLSession | None = None) -> (
        tuple[anyio.abc.ByteStream, int, int | None]
    ):
        """Dial (and handshake, offering ``session``; and open a --protocol session): the
        stream, the connect time from ``start_ns`` and the TLS handshake time (with the
        SSLRequest before it, for postgres). Failures raise :class:`_Failed` with a
        tcpcli error. The start-up's time is kept in ``self._startup_ns``."""
        import anyio

        assert self._address is not None
        try:
            stream: anyio.abc.ByteStream = await self._connector.connect_tcp(
                self._address, self._port, local_address=self.invocation.options.local_address)
        except Exception as exc:
            raise _Failed(translate(exc, target=self._target, port=self._port,
                                    phase="connect")) from exc
        connected = self._now()
        tls_ns: int | None = None
        try:
            spec = self.invocation.options.send_proxy
            if spec is not None:
                await self._send_proxy_header(stream, spec)
            if self.config.tls:
                stream = await self._tls(stream, session)
                tls_ns = self._now() - connected
            if self.config.protocol == "postgres":
                opened = self._now()
                await self._postgres_startup(stream)
                self._startup_ns = self._now() - opened
        except _Failed:
            await anyio.aclose_forcefully(stream)
            raise
        return stream, connected - start_ns, tls_ns

    async def _send_proxy_header(self, stream: anyio.abc.ByteStream,
                                 spec: ProxyHeaderSpec) -> None:
        """The PROXY protocol header first on the wire (before TLS), as a load balancer
        with send-proxy writes it: for a service behind accept-proxy (--send-proxy)."""
        import anyio.abc

        from tcpcli.core.proxyheader import header_for

        local = stream.extra(anyio.abc.SocketAttribute.local_address, None)
        peer = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
        ends = [end[:2] if isinstance(end, tuple) else None for end in (local, peer)]
        try:
            await stream.send(header_for(spec, *ends, target=self._target))
        except Exception as exc:
            raise _Failed(translate(exc, target=self._target, port=self._port,
                                    phase="stream")) from exc

    async def _tls(self, stream: anyio.abc.ByteStream,
                   session: ssl.SSLSession | None) -> anyio.abc.ByteStream:
        """The TLS handshake (after PostgreSQL's SSLRequest, with --protocol postgres)."""
        from tcpcli.core.tls import TLSStream  # cryptography: only when benchmarking TLS

        try:
            if self.config.protocol == "postgres":
                from tcpcli.protocols.pgwire import PgError
                from tcpcli.protocols.postgres import SSL_REQUEST

                await stream.send(SSL_REQUEST)
                answer = await stream.receive(1)
                if answer != b"S":
                    raise PgError(f"the server answered the SSLRequest with {answer!r}: it "
                                  "does not do TLS (bench without --tls)")
            return await TLSStream.wrap(stream, hostname=self._hostname,
                                        options=self.config.tls_options, session=session,
                                        target=self._target, port=self._port)
        except Exception as exc:
            raise _Failed(translate(exc, target=self._target, port=self._port,
                                    phase="tls")) from exc

    async def _postgres_startup(self, stream: anyio.abc.ByteStream) -> None:
        """Start-up and authentication, until the server is ready for a query."""
        import anyio

        from tcpcli.protocols.pgwire import StartupSession, next_message

        config = self.config
        session = StartupSession(config.pg_user, config.pg_database or config.pg_user,
                                 config.pg_password, encrypted=config.tls)
        buffer = bytearray()
        try:
            await stream.send(session.first())
            while not session.ready:
                received = next_message(buffer)
                if received is None:
                    buffer += await stream.receive(READ_SIZE)
                    continue
                answer = session.receive(*received)
                if answer:
                    await stream.send(answer)
        except anyio.EndOfStream:
            raise _Failed(ClosedEarlyError(
                f"{self._target} closed the connection during the PostgreSQL start-up",
                target=self._target, port=self._port)) from None
        except Exception as exc:
            raise _Failed(translate(exc, target=self._target, port=self._port,
                                    phase="stream")) from exc

    async def _watchdog(self) -> None:
        """Per-sample timeouts without a cancel scope per sample (they cost more than a
        loopback connect): each worker's long-lived scope is cancelled when its current
        sample has run past the timeout."""
        import anyio

        timeout_ns = int(self.config.timeout * 1e9)
        interval = min(self.config.timeout / 10, 0.1)
        while True:
            await anyio.sleep(interval)
            now = self._now()
            for watch in self._watches:
                if watch.since and now - watch.since > timeout_ns:
                    watch.since = 0
                    watch.scope.cancel()

    def _timed_out(self) -> None:
        self._fail(ConnectTimeoutError(
            f"no answer from {self._target} within {self.config.timeout:g} s",
            target=self._target, port=self._port))

    async def _worker(self) -> None:
        """One task per worker; re-entered after a sample timed out."""
        import anyio

        loop = self._rr_loop if self.config.mode == "rr" and not self.config.fresh \
            else self._fresh_loop
        watch = _Watch()
        self._watches.append(watch)
        try:
            while True:
                with anyio.CancelScope() as scope:
                    watch.scope, watch.since = scope, 0
                    await loop(watch)
                    return
                if scope.cancelled_caught:
                    self._timed_out()
        finally:
            self._watches.remove(watch)

    async def _close(self, stream: anyio.abc.ByteStream) -> None:
        import anyio
        import anyio.abc

        from tcpcli.core.rawstream import RawSocketStream

        if isinstance(stream, RawSocketStream):
            # Nobody else waits on this socket: close it now. RawSocketStream.aclose() would
            # add a checkpoint, one more event-loop turn per sample (-20 % conn/s at -c 64).
            stream.extra(anyio.abc.SocketAttribute.raw_socket).close()
        else:
            await anyio.aclose_forcefully(stream)

    async def _fresh_loop(self, watch: _Watch) -> None:
        """A new connection per sample (``connect`` mode, and ``rr --fresh``)."""
        import anyio.lowlevel

        slots = self.invocation.slots
        rr = self.config.mode == "rr"
        resume = self.config.resume
        session: ssl.SSLSession | None = None  # kept while the server resumes it
        offer = False  # --resume: alternate full handshakes and offers of the session
        open_loop = self._interval_ns is not None
        while True:
            due = self._ticket()
            if due is None:
                return
            if open_loop:
                await self._wait_until(due)
            slot = await self._acquire()
            stream: anyio.abc.ByteStream | None = None
            start = watch.since = self._now()
            # Open loop: the primary distribution counts from the intended start.
            origin = due if open_loop else start
            reply_ns = 0
            resumed = False
            try:
                stream, connect_ns, tls_ns = await self._open(origin if not rr else start,
                                                              session if offer else None)
                if rr:
                    sent = self._now() if not open_loop else origin
                    await self._exchange(stream, bytearray())
                    reply_ns = self._now() - sent
                if resume:
                    resumed, session = await self._next_session(cast("TLSStream", stream),
                                                                session)
                    offer = not offer
            except _Failed as failed:
                session = None
                self._fail(failed.error)
                # A loopback refusal can fail without ever blocking: let others run.
                await anyio.lowlevel.checkpoint()
            else:
                if rr:
                    self._record("rr", reply_ns)
                    if self.config.whole_request:
                        self._record("request", self._now() - start)
                self._record("connect", connect_ns)
                if tls_ns is not None:
                    self._record("tls-resumed" if resumed else "tls", tls_ns)
                if self.config.protocol is not None:
                    self._record("startup", self._startup_ns)
                if self._recording and stream is not None:
                    self._note_kernel(_raw_socket(stream))
                self._succeeded()
            finally:
                watch.since = 0
                if stream is not None:
                    await self._close(stream)
                slots.release(slot)

    async def _next_session(self, stream: TLSStream, kept: ssl.SSLSession | None) -> (
        tuple[bool, ssl.SSLSession | None]
    ):
        """Whether this handshake resumed, and the session to offer next: the kept one
        while the server resumes it (as ``openssl s_time -reuse``: no ticket wait on the
        hot path), else this connection's, once its TLS 1.3 ticket has arrived."""
        if stream.session_reused:
            return True, kept
        if stream.session_offered:
            if self._recording:
                self.result.resume_misses += 1
        elif kept is not None:
            return False, kept  # a full handshake on purpose: the kept session still serves
        try:
            session = await stream.resumable_session(self._ticket_wait)
        except TcpcliError:
            return False, None  # no ticket; the sample itself (the handshake) succeeded
        if (session is not None and not session.has_ticket
                and stream.ssl_object.version() == "TLSv1.3"):
            self._ticket_wait = 0  # the server sends none: do not wait on every sample
        return False, session

    def _succeeded(self) -> None:
        if self._recording:
            self.result.samples += 1
        else:
            self.result.warmup_done += 1

    async def _rr_loop(self, watch: _Watch) -> None:
        """One persistent connection per worker; reconnect after a failure or timeout."""
        import anyio
        import anyio.lowlevel

        slots = self.invocation.slots
        stream: anyio.abc.ByteStream | None = None
        slot: SocketSlot | None = None
        leftover = bytearray()
        try:
            while True:
                due = self._ticket()
                if due is None:
                    return
                if self._interval_ns is not None:
                    await self._wait_until(due)
                try:
                    watch.since = self._now()
                    if stream is None:
                        slot = await self._acquire()
                        stream, _, _ = await self._open(self._now())
                        leftover.clear()
                    start = self._now() if self._interval_ns is None else due
                    await self._exchange(stream, leftover)
                    elapsed = self._now() - start
                except _Failed as failed:
                    self._fail(failed.error)
                    await anyio.lowlevel.checkpoint()
                    if stream is not None:
                        self._note_kernel(_raw_socket(stream))
                        await self._close(stream)
                        stream = None
                    if slot is not None:
                        slots.release(slot)
                        slot = None
                else:
                    self._record("rr", elapsed)
                    self._succeeded()
                finally:
                    watch.since = 0
        finally:
            with anyio.CancelScope(shield=True):
                if stream is not None:
                    # The kept connection spans warm-up and measurement: read at its end.
                    self._note_kernel(_raw_socket(stream))
                    await self._close(stream)
                if slot is not None:
                    slots.release(slot)

    async def _exchange(self, stream: anyio.abc.ByteStream, buffer: bytearray) -> None:
        """Send the request; read until the reply is complete. Bytes past the end of the
        reply stay in ``buffer`` for the next exchange on the same connection."""
        import anyio

        config = self.config
        postgres = config.protocol == "postgres"
        try:
            await stream.send(config.payload)
            while True:
                if postgres:
                    from tcpcli.protocols.pgwire import reply_end

                    end = reply_end(buffer)
                    if end is not None:
                        del buffer[:end[0]]
                        if end[1] is not None:
                            raise end[1]
                        return
                elif config.expect is not None:
                    found = buffer.find(config.expect)
                    if found >= 0:
                        del buffer[:found + len(config.expect)]
                        return
                elif config.expect_bytes is not None:
                    if len(buffer) >= config.expect_bytes:
                        del buffer[:config.expect_bytes]
                        return
                elif buffer:
                    buffer.clear()
                    return
                if len(buffer) > MAX_REPLY:
                    raise RemoteProtocolError(
                        f"{self._target} sent {len(buffer)} bytes without the expected reply")
                try:
                    buffer += await stream.receive(READ_SIZE)
                except anyio.EndOfStream:
                    raise ClosedEarlyError(
                        f"{self._target} closed the connection before the reply was complete",
                        target=self._target, port=self._port) from None
        except TcpcliError as exc:
            raise _Failed(exc) from exc
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                ProtocolFailure) as exc:
            raise _Failed(translate(exc, target=self._target, port=self._port,
                                    phase="stream")) from exc


def _raw_socket(stream: anyio.abc.ByteStream) -> socket.socket | None:
    import anyio.abc

    raw: socket.socket | None = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    return raw


def kernel_summary(result: BenchResult) -> dict[str, Any] | None:
    """The kernel's RTT distribution and retransmits; None where it told nothing."""
    if result.kernel_rtt.count == 0:
        return None
    return {"connections": result.kernel_rtt.count, "rtt": describe(result.kernel_rtt),
            "retransmits": result.retransmits}


def summary(result: BenchResult) -> dict[str, Any]:
    """The JSON-able summary (milliseconds), shared by ``--json`` and ``--save``."""
    config = result.config
    distributions: dict[str, Any] = {}
    for name, histogram in result.histograms.items():
        distributions[name] = describe(histogram)
    return {
        "mode": config.mode,
        "peer": result.peer,
        "tls": config.tls,
        "resume": config.resume,
        "resume_misses": result.resume_misses,
        "concurrency": config.concurrency,
        "rate_target": config.rate,
        "samples": result.samples,
        "errors": dict(result.errors),
        # One message per error kind, as the text report shows it.
        **({"error_examples": dict(result.error_examples)} if result.errors else {}),
        "elapsed_s": round(result.elapsed, 6),
        "per_second": round(result.rate, 3),
        "unit": "req/s" if config.mode == "rr" else "conn/s",
        "peak_sockets": result.peak_sockets,
        "interrupted": result.interrupted,
        "distributions": distributions,
        "kernel": kernel_summary(result),
    }


def pooling_summary(result: PoolingResult) -> dict[str, Any]:
    """The JSON-able pooling comparison: each arm's summary and the saving per request."""
    return {
        "rounds": result.rounds,
        "kept": summary(result.kept),
        "fresh": summary(result.fresh),
        "saving_ms": {f"p{p:g}": round(result.saving_ms(p), 6) for p in (50, 90, 99)},
    }


def describe(histogram: Histogram) -> dict[str, Any]:
    """min, mean, stdev, percentiles and max of one distribution, in milliseconds."""
    out: dict[str, Any] = {
        "count": histogram.count,
        "min_ms": round(histogram.min / 1e6, 6),
        "mean_ms": round(histogram.mean / 1e6, 6),
        "stdev_ms": round(histogram.stdev / 1e6, 6),
    }
    for p in PERCENTILES:
        out[f"p{p:g}_ms"] = round(histogram.percentile(p) / 1e6, 6)
    out["max_ms"] = round(histogram.max / 1e6, 6)
    return out


#: Kept and fresh connections take turns this many times in a pooling comparison, so a
#: drift of the machine or the peer during the run falls on both alike.
POOLING_ROUNDS = 6


@dataclass
class PoolingResult:
    """``rr`` over a kept connection and over a fresh one per request, interleaved: what
    a connection pool (Hyperdrive's, in front of a database) saves per request."""

    kept: BenchResult
    fresh: BenchResult
    rounds: int = 0

    def saving_ms(self, p: float) -> float:
        """How much sooner a request completes on a kept connection, at percentile ``p``:
        the fresh arm's whole request (connect, TLS, reply) against the kept arm's reply."""
        return (self.fresh.histograms["request"].percentile(p)
                - self.kept.histograms["rr"].percentile(p)) / 1e6


async def run_pooling(config: BenchConfig, invocation: Invocation, *,
                      rounds: int = POOLING_ROUNDS) -> PoolingResult:
    """``config`` (rr) measured both ways against the same checked target, the two arms
    taking turns ``rounds`` times (each round swaps who goes first), each turn with a
    share of the count or duration. The histograms of an arm add up exactly."""
    from dataclasses import replace

    count = None if config.count is None else max(1, config.count // rounds)
    duration = None if config.duration is None else config.duration / rounds
    if count is None and duration is None:
        count = max(1, DEFAULT_COUNT // rounds)
    arms = {fresh: replace(config, fresh=fresh, whole_request=fresh, count=count,
                           duration=duration, warmup=0) for fresh in (False, True)}
    totals = {fresh: BenchResult(arms[fresh]) for fresh in (False, True)}
    outcome = PoolingResult(totals[False], totals[True])
    elapsed_ns = {False: 0, True: 0}
    if config.warmup:
        warm = Bench(replace(arms[False], count=config.warmup, duration=None), invocation)
        await warm.check_target()
        await warm.run()
    for number in range(rounds):
        for fresh in ((False, True) if number % 2 == 0 else (True, False)):
            bench = Bench(arms[fresh], invocation)
            await bench.check_target()
            result = await bench.run()
            total = totals[fresh]
            total.peer = result.peer
            for name, histogram in result.histograms.items():
                total.histograms.setdefault(name, Histogram()).merge(histogram)
            total.samples += result.samples
            total.errors.update(result.errors)
            for kind, example in result.error_examples.items():
                total.error_examples.setdefault(kind, example)
            total.peak_sockets = max(total.peak_sockets, result.peak_sockets)
            elapsed_ns[fresh] += result.finished_ns - result.started_ns
            total.started_ns, total.finished_ns = 1, 1 + elapsed_ns[fresh]  # summed turns
        outcome.rounds = number + 1
    return outcome


__all__ = ["PERCENTILES", "POOLING_ROUNDS", "Bench", "BenchConfig", "BenchResult",
           "PoolingResult", "describe", "pooling_summary", "run_pooling", "summary"]
