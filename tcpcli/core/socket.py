"""The Workers-style Socket: ``connect()``, ``opened``, ``closed``, half-open, ``start_tls()``.

This mirrors ``connect()`` from ``cloudflare:sockets`` (spec §2–3) in structured-concurrency
Python. The Workers quick start translates line for line::

    socket = connect("db.internal:5432", secure_transport="on")   # validates synchronously
    try:
        await socket.opened                                         # -> SocketInfo
        await socket.writable.send(b"QUERY\\r\\n")
        await socket.writable.aclose()                              # half-close: FIN
        value = await socket.readable.receive()
    finally:
        await socket.close()

Where Python differs, on purpose:

* The connection starts when the socket is first awaited (``opened``, ``closed``, a read,
  a write, ``close()`` or ``async with``) rather than in the background: there is no
  task to own a background connect in structured concurrency. Writes issued before the
  socket is open still go out in order, after it opens.
* ``readable``/``writable`` are anyio byte streams: ``receive()`` raises
  ``anyio.EndOfStream`` at EOF where a Workers reader returns ``{done: true}``.
* ``closed`` also resolves once both directions are finished (our EOF sent and the peer's
  EOF read) with ``allow_half_open=True``; Workers waits for ``close()`` in that case.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from tcpcli.core.address import (
    ParsedAddress,
    SecureTransport,
    SocketAddress,
    parse_address,
    tls_name,
    validate_secure_transport,
)
from tcpcli.core.connect import (
    ConnectOptions,
    Dialed,
    dial,
    dial_proxy,
    parse_proxy_chain,
    proxy_resolves_names,
)
from tcpcli.core.destination import check_name_only
from tcpcli.core.errors import (
    NOT_BYTES,
    READABLE_CLOSING,
    READER_LOCKED,
    SOCKET_CLOSED,
    WRITABLE_CLOSING,
    WRITER_LOCKED,
    ConnectionLostError,
    ConnectTimeoutError,
    ResolveTimeoutError,
    SocketCanceledError,
    SocketOptionError,
    StartTlsError,
    StreamCancelledError,
    StreamClosedError,
    TcpcliError,
    map_exceptions,
)
from tcpcli.core.invocation import Invocation, current_invocation
from tcpcli.core.resolve import Resolution
from tcpcli.core.slots import SocketSlot
from tcpcli.core.timing import REPLY_TIMEOUT, Phase, PhaseClock
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.record import Record, replace

if TYPE_CHECKING:
    import socket
    import ssl
    from ipaddress import IPv4Address, IPv6Address

    from _typeshed import HasFileno, WriteableBuffer as WritableBuffer

    from tcpcli.core.proxyheader import ProxyHeaderSpec
    from tcpcli.core.tls import TLSReport, TLSStream, Verification

T = TypeVar("T")

#: How long close() waits for a graceful close (TLS close_notify) before aborting.
CLOSE_GRACE_SECONDS = 2.0
#: Default read size: large reads keep bulk transfers cheap (see the connect benchmark).
READ_SIZE = 256 * 1024

_START_TLS_ON_TLS = "Cannot startTls on a TLS socket."
_START_TLS_CLOSED = "The connection was closed before startTls could be started."
_START_TLS_NOT_STARTTLS = (
    "The `secureTransport` socket option must be set to 'starttls' for startTls to be used."
)
_START_TLS_EXPECTED_NAME = (
    "The expectedServerHostname option is not currently supported in startTls."
)
_START_TLS_AGAIN = (
    "startTls has already been called on this socket, or the socket was transferred over RPC."
)
_START_TLS_INCOMPLETE = "The connection was closed before startTls completed."
_ABORTED = "The socket was aborted."
_CLOSED_BEFORE_OPEN = "The socket was closed before it was opened."


class SocketInfo(Record, frozen=True):
    """What ``opened`` resolves to. ``remote_address`` is the address string exactly as
    given (Workers does not report the peer IP); ``local_address`` is unset for outbound
    sockets, as in Workers. The dialed peer is ``Socket.peer_address``."""

    remote_address: str | None
    local_address: str | None = None


class Deferred(Generic[T]):
    """A settle-once value that any number of tasks can await (a promise)."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._settled = False
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def settled(self) -> bool:
        return self._settled

    @property
    def error(self) -> BaseException | None:
        return self._error

    def resolve(self, value: T) -> None:
        if not self._settled:
            self._settled, self._value = True, value
            if self._event is not None:
                self._event.set()

    def reject(self, error: BaseException) -> None:
        if not self._settled:
            self._settled, self._error = True, error
            if self._event is not None:
                self._event.set()

    async def wait(self) -> T:
        if not self._settled:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class _Awaitable(Generic[T]):
    """``socket.opened`` / ``socket.closed``: awaitable any number of times, never a
    dangling coroutine when only inspected."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory

    def __await__(self) -> Generator[Any, None, T]:
        result: T = yield from self._factory().__await__()
        return result


class ReadableStream(anyio.abc.ByteReceiveStream):
    """The socket's read side. ``receive()`` raises ``anyio.EndOfStream`` on the peer's EOF."""

    def __init__(self, socket: Socket) -> None:
        self._socket = socket

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        return await self._socket._receive(max_bytes)

    async def receive_into(self, buffer: WritableBuffer) -> int:
        """Read into ``buffer`` (a writable bytes-like object) and return the count; at the
        peer's EOF raise ``anyio.EndOfStream``, as :meth:`receive` does. For bulk
        transfers: one buffer reused saves allocating (and faulting in) every chunk."""
        return await self._socket._receive_into(buffer)

    async def aclose(self) -> None:
        """Stop reading (Workers ``readable.cancel()``); the write side stays usable."""
        await self._socket._close_read_side()


class WritableStream(anyio.abc.ByteSendStream):
    """The socket's write side. ``aclose()`` sends FIN (a half-close) after pending writes;
    reading goes on until the peer closes."""

    def __init__(self, socket: Socket) -> None:
        self._socket = socket

    async def send(self, item: bytes) -> None:
        await self._socket._send(item)

    async def send_file(self, file: int | HasFileno, max_bytes: int = 16 * 1024 * 1024) -> int:
        """Send up to ``max_bytes`` from a regular file (a descriptor or an object with
        ``fileno()``), from its current position, which advances; return the count, 0 at
        the end of the file. On a plain TCP socket the kernel copies the bytes itself
        (``sendfile``), which pushes files about 1.5x faster than reading and sending;
        over TLS, a proxy or a memory stream it reads and sends."""
        return await self._socket._send_file(file, max_bytes)

    async def aclose(self) -> None:
        await self._socket._close_write_side()


class Socket:
    """A TCP (or TLS) socket with the Workers semantics. Create it with :func:`connect`."""

    def __init__(
        self,
        address: ParsedAddress,
        secure_transport: SecureTransport,
        allow_half_open: bool,
        options: ConnectOptions,
        invocation: Invocation,
        *,
        upgrade_from: Socket | None = None,
        tls_session: ssl.SSLSession | None = None,
    ) -> None:
        self.address = address
        self._secure_transport: SecureTransport = secure_transport
        self.allow_half_open = allow_half_open
        self.options = options
        self.invocation = invocation
        self.clock = PhaseClock(invocation.observer)
        self.readable = ReadableStream(self)
        self.writable = WritableStream(self)
        #: Library extras for diagnostics (not in Workers):
        self.resolution: Resolution | None = None
        #: The tunnel entry point dialed in the target's stead (``via=``), as host:port.
        self.via: str | None = None
        #: Why the policy could judge the target only by its name (behind ``via``).
        self.judged_by_name: str | None = None
        #: Keep the kernel's last facts when the connection closes (see tcp_info).
        self.keep_tcp_info = False
        self._tcp_info_at_close: dict[str, object] | None = None
        self.peer_address: tuple[str, int] | None = None
        self.local_sockname: tuple[str, int] | None = None
        self._tls: TLSStream | None = None  # its report and verdict, once handshaken
        self.bytes_sent = 0
        self.bytes_received = 0
        self.io_in_progress = 0
        self.last_used_ns = time.perf_counter_ns()
        self._upgrade_from = upgrade_from
        self._tls_session = tls_session  # offered for resumption in our TLS handshake
        self._opened_state: Deferred[SocketInfo] = Deferred()
        self._closed_state: Deferred[None] = Deferred()
        self._started = False
        self._transport: anyio.abc.ByteStream | None = None  # the TCP (or proxy) stream
        self._stream: anyio.abc.ByteStream | None = None  # what we read/write: TCP or TLS
        self._truncated = False  # kept past close: the TLS stream said so before it went
        self._slot: SocketSlot | None = None
        self._write_lock: anyio.Lock | None = None
        self._pending_writes = 0  # sends issued and not finished: close() flushes them
        self._sendfile_works = True  # until a file system says otherwise
        self._write_done = False
        self._read_done = False
        self._closing = False
        self._finished = False
        self._upgraded = False
        self._upgraded_to: Socket | None = None  # start_tls()'s socket, until handed over
        self._handed_over = False  # the connection has moved to the upgraded socket
        self._opening: anyio.CancelScope | None = None  # while dialing or handshaking
        self._abort_error: BaseException | None = None  # abort() while opening
        self._end_error: BaseException | None = None  # why it ended, set as it starts to
        self._first_byte: Phase | None = None
        invocation.register(self)

    # ------------------------------------------------------------------ Workers surface

    @property
    def opened(self) -> _Awaitable[SocketInfo]:
        return _Awaitable(self._ensure_open)

    @property
    def closed(self) -> _Awaitable[None]:
        return _Awaitable(self._wait_closed)

    @property
    def upgraded(self) -> bool:
        return self._upgraded

    @property
    def truncated(self) -> bool:
        """Over TLS: the peer closed the connection without close_notify, so what arrived
        may have been cut short by anyone on the path (plain TCP: always False)."""
        return self._truncated or bool(getattr(self._stream, "truncated", False))

    @property
    def tls_report(self) -> TLSReport | None:
        """The TLS session's report (None without TLS), built on first use: summarizing
        the certificates imports cryptography, which a run that shows none never needs."""
        return self._tls.report if self._tls is not None else None

    @property
    def tls_verification(self) -> Verification | None:
        """The verdict on the peer's certificate (None without TLS); cheap, unlike
        ``tls_report``."""
        return self._tls.verification if self._tls is not None else None

    @property
    def secure_transport(self) -> SecureTransport:
        return self._secure_transport

    @property
    def is_open(self) -> bool:
        """Connected (TLS handshake included), not closing, nothing under way to open it:
        one of the connections the cap's deadlock rule may cancel when idle."""
        return (self._opening is None and not self._finished and not self._closing
                and (self._stream is not None or self._transport is not None))

    async def close(self) -> None:
        """Wait for the open to settle, flush pending writes, then close both directions.

        Like Workers, this resolves even when the connection failed (``closed`` rejects).
        After start_tls() the connection belongs to the upgraded socket: this hands it over.
        """
        if self._upgraded_to is not None:
            await self._release_to_upgrade()
            return
        if self._closing or self._finished:
            await self._wait_settled(self._closed_state)
            return
        self._closing = True
        if not self._started:
            self._started = True
            self._opened_state.reject(StreamClosedError(_CLOSED_BEFORE_OPEN))
            self._closed_state.resolve(None)
            self.invocation.forget(self)
            return
        if not await self._wait_settled(self._opened_state) or self._upgraded:
            return
        while self._pending_writes:  # flush: writes already issued go out first
            async with self._lock():
                pass
            await anyio.lowlevel.checkpoint()
        self._write_done = self._read_done = True
        await self._finish()

    def start_tls(
        self, *, expected_server_hostname: str | None = None, tls: TLSOptions | None = None
    ) -> Socket:
        """Upgrade to TLS (spec §3.7): returns a new ``"on"`` socket verified against the
        original hostname; this socket is marked upgraded and its ``closed`` resolves.

        ``tls`` (library extension) adjusts TLS options for the upgraded socket.
        """
        # workerd's checks, in its order (spec §3.7). A second call before the connection
        # has moved to the upgraded socket is row 14; once it has moved (workerd: after
        # the flush, a tick later; here: when either socket is next awaited) it is row 12,
        # as after close().
        if self._secure_transport == "on":
            raise StartTlsError(_START_TLS_ON_TLS)
        if self._closing or self._handed_over or (
                not self._upgraded and (self._finished or self._opened_state.error is not None)):
            raise StartTlsError(_START_TLS_CLOSED)
        if self._secure_transport != "starttls":
            raise StartTlsError(_START_TLS_NOT_STARTTLS)
        if self._upgraded:
            raise StartTlsError(_START_TLS_AGAIN)
        if expected_server_hostname is not None:
            raise StartTlsError(_START_TLS_EXPECTED_NAME)
        self._upgraded = True
        options = self.options if tls is None else replace(self.options, tls=tls)
        upgraded = Socket(
            self.address, "on", self.allow_half_open, options, self.invocation,
            upgrade_from=self, tls_session=self._tls_session,
        )
        upgraded.clock = self.clock  # one waterfall across the upgrade
        self._upgraded_to = upgraded
        return upgraded

    async def abort(self, error: BaseException | None = None) -> None:
        """Tear the connection down now: no flush of pending writes, no TLS close_notify,
        no wait for the peer; a connect under way is canceled and its slot given back.

        ``closed`` (and ``opened``, if it had not settled) rejects with ``error``, by
        default :class:`SocketCanceledError` ("The socket was aborted."), and later reads
        and writes raise it — as workerd's ``closed`` rejects with the reason given to
        ``writable.abort(reason)``. A socket already finished is left as it is.
        """
        if error is None:
            error = SocketCanceledError(_ABORTED)
        with anyio.CancelScope(shield=True):
            if self._finished:
                return
            if self._opening is not None:  # the opening task ends it, releasing the slot
                self._abort_error = error
                self._opening.cancel()
                await self._wait_settled(self._closed_state)
                return
            self._started = True  # a socket not yet awaited never connects now
            await self._abort(error)
            self._opened_state.reject(error)

    async def __aenter__(self) -> Socket:
        await self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=exc_type is not None):
            await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._finished else "open" if self._stream else "new"
        return f"<Socket {self.address.address_str} {self._secure_transport} {state}>"

    # ------------------------------------------------------------------ opening

    async def _ensure_open(self) -> SocketInfo:
        if not self._started:
            self._started = True
            self._opening = anyio.CancelScope()
            try:
                with self._opening:
                    await self._establish()
            except TcpcliError as exc:
                self._fail(self._abort_error or exc)
            except BaseException:
                # Cancelled (or interrupted) while connecting: nobody else may hang on it.
                self._fail(SocketCanceledError("The connection attempt was cancelled."))
                raise
            finally:
                self._opening = None
            if self._abort_error is not None:  # abort() while opening: undo what was built
                await self._abort(self._abort_error)
                self._fail(self._abort_error)
            elif not self._opened_state.settled:
                self._opened_state.resolve(SocketInfo(remote_address=self.address.address_str))
                self.invocation.slots.changed()  # one more open socket: the rule may apply
        return await self._opened_state.wait()

    async def _establish(self) -> None:
        options = self.options
        timeout = options.connect_timeout
        try:
            with anyio.fail_after(timeout):
                if self._upgrade_from is not None:
                    transport = await self._take_over(self._upgrade_from)
                else:
                    transport = await self._dial()
                    if options.send_proxy is not None:
                        await self._send_proxy_header(transport, options.send_proxy)
                stream: anyio.abc.ByteStream = transport
                if self._secure_transport == "on":
                    stream = await self._handshake(transport)
        except TimeoutError:
            resolving = [p for p in self.clock.find("resolve") if p.outcome == "cancelled"]
            if resolving:  # the DNS server never answered: a DNS failure (exit 4), said so
                raise ResolveTimeoutError(
                    f"cannot resolve {resolving[-1].detail.get('name', self.address.hostname)}: "
                    f"no answer within the {timeout:g} s connect timeout",
                    target=str(self.address), port=self.address.port,
                ) from None
            handshaking = [p for p in self.clock.find("tls") if p.outcome == "cancelled"]
            where = "in the TLS handshake with" if handshaking else "connecting to"
            raise ConnectTimeoutError(
                f"timed out after {timeout:g} s {where} {self.address}",
                target=str(self.address), port=self.address.port,
            ) from None
        self._stream = stream
        self.last_used_ns = time.perf_counter_ns()
        self._first_byte = self.clock.begin("first-byte")

    async def _dial(self) -> anyio.abc.ByteStream:
        invocation, options, address = self.invocation, self.options, self.address
        target, port = address.address_str, address.port
        if options.via is not None:
            return await self._dial_via(options.via)
        if options.proxy and proxy_resolves_names(options.proxy):
            return await self._dial_proxy_by_name(options.proxy)
        destination = await invocation.check_destination(
            address.hostname, port, family=options.family, target=target, clock=self.clock)
        self.resolution = destination.resolution
        addresses = destination.ordered(options.family)
        dialed: Dialed
        if options.proxy:
            dialed = await self._through_proxies(options.proxy, addresses[0], port)
        else:
            dialed = await dial(addresses, port, connector=invocation.connector,
                                slots=invocation.slots, clock=self.clock, options=options,
                                target=target)
        return self._take_dialed(dialed)

    def _take_dialed(self, dialed: Dialed) -> anyio.abc.ByteStream:
        keepalive = self.options.keepalive
        if keepalive is not None:
            from tcpcli.core.rawsocket import set_keepalive

            raw = dialed.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
            if raw is not None:
                set_keepalive(raw, *keepalive)
        self._adopt_slot(dialed.slot)
        self._transport = dialed.stream
        self.peer_address = (str(dialed.address), dialed.port)
        local = dialed.stream.extra(anyio.abc.SocketAttribute.local_address, None)
        self.local_sockname = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        return dialed.stream

    @property
    def _reply_timeout(self) -> float:
        """How long a proxy may take to answer (its handshake, like a TLS server's)."""
        return self.options.tls_handshake_timeout or REPLY_TIMEOUT

    def _raw_socket(self) -> socket.socket | None:
        """The kernel socket under the connection (and its TLS), None when there is none
        (not yet open, closed, or a memory connector's stream)."""
        transport = self._transport
        raw: socket.socket | None = None if transport is None else transport.extra(
            anyio.abc.SocketAttribute.raw_socket, None)
        return raw

    def ack_promptly(self) -> None:
        """ACK what arrives next at once (``core.rawsocket.ack_promptly``): for a caller
        about to wait for a reply to what it just wrote, as a STARTTLS dialogue is."""
        raw = self._raw_socket()
        if raw is not None:
            from tcpcli.core.rawsocket import ack_promptly

            ack_promptly(raw)

    def tcp_info(self) -> dict[str, object] | None:
        """What the kernel knows about this connection (Linux ``TCP_INFO``: RTT, MSS,
        retransmits, ...; ``core.tcpinfo``), or None: not told here. Once the connection
        has closed, its last facts when ``keep_tcp_info`` was set before."""
        raw = self._raw_socket()
        if raw is None:
            return self._tcp_info_at_close
        from tcpcli.core.tcpinfo import tcp_info

        return tcp_info(raw)

    async def _dial_proxy_by_name(self, proxy: str) -> anyio.abc.ByteStream:
        """socks5h/socks4a: the proxy resolves the name, so it is judged by name alone
        and never looked up here (a lookup would tell the local resolver what the user
        chose a name-resolving proxy to keep from it)."""
        invocation, address = self.invocation, self.address
        destination = check_name_only(address.hostname, address.port,
                                      policy=invocation.policy, target=address.address_str)
        name = destination.name
        self.judged_by_name = (f"the proxy resolves {name}: the policy judged its name alone "
                               "(its address is not seen here)")
        return self._take_dialed(await self._through_proxies(proxy, name, address.port))

    async def _through_proxies(self, proxy: str, host: IPv4Address | IPv6Address | str,
                               port: int) -> Dialed:
        """The first proxy dialed through the connector like an entry point (named by the
        user, resolved here if a name, never judged), then each asked for the next hop."""
        from tcpcli.core.entrypoint import EntryPoint, entry_addresses

        invocation, options = self.invocation, self.options
        hops = parse_proxy_chain(proxy)
        first = await entry_addresses(invocation, EntryPoint(hops[0].host, hops[0].port),
                                      family=options.family, clock=self.clock)
        return await dial_proxy(hops, first, host, port, connector=invocation.connector,
                                slots=invocation.slots, clock=self.clock, options=options,
                                target=self.address.address_str,
                                reply_timeout=self._reply_timeout)

    async def _dial_via(self, via: str) -> anyio.abc.ByteStream:
        """The logical target judged, the entry point dialed (``core.entrypoint``)."""
        from tcpcli.core.entrypoint import check_behind, entry_addresses, parse_entry_point

        invocation, options, address = self.invocation, self.options, self.address
        destination, self.judged_by_name = await check_behind(
            invocation, address.hostname, address.port, family=options.family,
            target=address.address_str, clock=self.clock)
        self.resolution = destination.resolution
        entry = parse_entry_point(via)
        self.via = str(entry)
        addresses = await entry_addresses(invocation, entry, family=options.family,
                                          clock=self.clock)
        dialed = await dial(addresses, entry.port, connector=invocation.connector,
                            slots=invocation.slots, clock=self.clock, options=options,
                            target=f"{address.address_str} via {entry}")
        return self._take_dialed(dialed)

    async def _send_proxy_header(self, transport: anyio.abc.ByteStream,
                                 spec: ProxyHeaderSpec) -> None:
        """The PROXY protocol header, first on the wire (before TLS), as a load balancer
        with send-proxy writes it; not counted in ``bytes_sent`` (it frames the stream)."""
        from tcpcli.core.proxyheader import header_for

        target = self.address.address_str
        header = header_for(spec, self.local_sockname, self.peer_address, target=target)
        with self.clock.phase("proxy-header", header=f"v{spec.version}", bytes=len(header)), \
                map_exceptions(target=target, port=self.address.port, phase="stream"):
            await transport.send(header)

    def _tls_hostname(self) -> str:
        return tls_name(self.address.hostname, self.options.tls.server_name)

    async def _handshake(self, transport: anyio.abc.ByteStream) -> TLSStream:
        setup_start = time.perf_counter_ns()
        from tcpcli.core.tls import (  # cryptography and certifi
            TLSStream,
            client_context,
            contexts_built,
        )

        target, port = self.address.address_str, self.address.port
        hostname = self._tls_hostname()
        try:
            # Built (once, cached) before the handshake's clock starts: loading the trust
            # store is not handshake time, and full vs resumed handshakes must compare like
            # with like. Its own phase when it happens, so the waterfall has no gap.
            built = contexts_built()
            client_context(self.options.tls, hostname=hostname)
            if contexts_built() > built:
                self.clock.record("tls-setup", setup_start,
                                  trust=self.options.tls.ca_file or "certifi")
            limit = self.options.tls_handshake_timeout
            with anyio.move_on_after(limit) as bounded, \
                    self.clock.phase("tls", server_name=hostname) as phase:
                tls = await TLSStream.wrap(transport, hostname=hostname,
                                           options=self.options.tls,
                                           session=self._tls_session, target=target,
                                           port=port)
                phase.detail["resumed"] = tls.session_reused
            if bounded.cancelled_caught:
                assert limit is not None
                raise ConnectTimeoutError(  # worded as when the connect timeout ends it
                    f"timed out after {limit:g} s in the TLS handshake with {self.address}",
                    target=target, port=port)
        except BaseException:
            await anyio.aclose_forcefully(transport)
            raise
        self._tls = tls
        return tls

    async def resumable_tls_session(self, wait: float | None = None) -> ssl.SSLSession | None:
        """This connection's TLS session, for another socket's ``connect(tls_session=...)``.

        TLS 1.3 servers send their session tickets *after* the handshake, so this reads
        for up to ``wait`` seconds (default ``tls.TICKET_WAIT``, 0.5 s) until one has
        arrived (data read meanwhile stays for the next ``readable.receive()``); TLS 1.2
        sessions are ready at once. None without TLS.
        The session may still not resume (``session.has_ticket`` False: the server sent no
        ticket). Do not call it while another task is reading.
        """
        from tcpcli.core.tls import TICKET_WAIT, TLSStream

        await self._ensure_open()
        stream = self._stream
        if not isinstance(stream, TLSStream):
            return None
        with self._in_io():
            return await stream.resumable_session(TICKET_WAIT if wait is None else wait)

    async def _take_over(self, old: Socket) -> anyio.abc.ByteStream:
        """start_tls(): wait for the plaintext socket to open and flush, then adopt it."""
        await old._release_to_upgrade(raise_errors=True)
        if self._transport is None:  # the old connection ended before it could move
            if isinstance(old._end_error, SocketCanceledError):
                raise SocketCanceledError(str(old._end_error)) from old._end_error
            raise StartTlsError(_START_TLS_INCOMPLETE) from old._end_error
        return self._transport

    async def _release_to_upgrade(self, *, raise_errors: bool = False) -> None:
        """After start_tls(): open if need be, flush what was written, then hand the
        connection to the upgraded socket (whichever of the two is awaited first)."""
        if raise_errors:
            await self._ensure_open()
        elif not await self._wait_settled(self._ensure_open()):
            return
        async with self._lock():
            pass
        if self._upgraded_to is not None and not self._finished:
            self._hand_over(self._upgraded_to)

    def _hand_over(self, new: Socket) -> None:
        """Move transport and slot to the upgraded socket; this one is done."""
        new._transport, self._transport, self._stream = self._transport, None, None
        new.peer_address, new.local_sockname = self.peer_address, self.local_sockname
        new.resolution, new.via, new.judged_by_name = (self.resolution, self.via,
                                                       self.judged_by_name)
        new.keep_tcp_info = self.keep_tcp_info
        if self._slot is not None:
            new._adopt_slot(self._slot)
            self._slot = None
        self._upgraded_to = None
        self._handed_over = True
        self._write_done = self._read_done = self._finished = True
        self._closed_state.resolve(None)
        self.invocation.forget(self)
        self.invocation.slots.changed()  # a new holder, not yet open

    def _adopt_slot(self, slot: SocketSlot) -> None:
        slot.owner = self
        self._slot = slot

    # ------------------------------------------------------------------ data

    def _lock(self) -> anyio.Lock:
        if self._write_lock is None:
            self._write_lock = anyio.Lock()
        return self._write_lock

    @contextmanager
    def _in_io(self) -> Iterator[None]:
        """A read or write in progress: counted for the cap's deadlock rule, errors
        translated, and the socket's last use stamped for its LRU choice."""
        self.io_in_progress += 1
        try:
            with map_exceptions(target=self.address.address_str, port=self.address.port,
                                phase="stream"):
                yield
        finally:
            self.io_in_progress -= 1
            self.last_used_ns = time.perf_counter_ns()
            self.invocation.slots.changed()  # maybe idle now: the cap's rule looks again

    def _write_busy(self) -> bool:
        return self._write_lock is not None and self._write_lock.locked()

    async def _receive(self, max_bytes: int) -> bytes:
        return await self._read(lambda stream: stream.receive(max_bytes), len)

    async def _receive_into(self, buffer: WritableBuffer) -> int:
        async def into(stream: anyio.abc.ByteStream) -> int:
            native = getattr(stream, "receive_into", None)
            if native is not None:
                count: int = await native(buffer)
                return count
            view = memoryview(buffer).cast("B")  # bytes, whatever the buffer's items
            data = await stream.receive(len(view))
            view[:len(data)] = data
            return len(data)

        return await self._read(into, int)

    @contextmanager
    def _issued(self) -> Iterator[None]:
        """A read or write from the call on, waiting for the open or the write lock
        included: in progress for the cap's deadlock rule, which must not cancel the
        socket between its opening and the I/O the caller already asked for."""
        self.io_in_progress += 1
        try:
            yield
        finally:
            self.io_in_progress -= 1
            self.last_used_ns = time.perf_counter_ns()
            self.invocation.slots.changed()

    async def _read(self, read: Callable[[anyio.abc.ByteStream], Awaitable[T]],
                    size_of: Callable[[T], int]) -> T:
        with self._issued():
            return await self._read_issued(read, size_of)

    async def _read_issued(self, read: Callable[[anyio.abc.ByteStream], Awaitable[T]],
                           size_of: Callable[[T], int]) -> T:
        """One read from the stream with the Workers rules: locked and closing sides, the
        peer's EOF, a lost connection, the first-byte phase and the byte count."""
        if self._upgraded:
            raise StreamClosedError(READER_LOCKED)
        if self._closing:
            raise StreamClosedError(READABLE_CLOSING)
        try:
            await self._ensure_open()
        except TcpcliError as exc:
            raise StreamCancelledError() from exc
        if self._read_done:
            if self._finished and self._end_error is not None:
                raise self._end_error
            raise anyio.EndOfStream if not self._closing else anyio.ClosedResourceError
        stream = self._stream
        assert stream is not None
        try:
            with self._in_io():
                result = await read(stream)
        except anyio.EndOfStream:
            await self._on_peer_eof()
            raise
        except ConnectionLostError:
            # The read reports the loss; `closed` resolves, as in workerd.
            self._write_done = self._read_done = True
            await self._finish(graceful=False)
            raise
        except TcpcliError as exc:
            await self._abort(exc)
            raise
        size = size_of(result)
        if self._first_byte is not None:
            self.clock.end(self._first_byte, bytes=size)
            self._first_byte = None
        self.bytes_received += size
        return result

    async def _send(self, item: bytes) -> None:
        if isinstance(item, str):
            item = item.encode("utf-8")  # workerd writes strings as UTF-8
        elif not isinstance(item, bytes | bytearray | memoryview):
            raise TypeError(NOT_BYTES)

        async def send(stream: anyio.abc.ByteStream) -> int:
            await stream.send(item)
            return len(item)

        await self._write(send)

    async def _send_file(self, file: int | HasFileno, max_bytes: int) -> int:
        fd = file if isinstance(file, int) else file.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TypeError("send_file() takes a regular file")

        async def send(stream: anyio.abc.ByteStream) -> int:
            native = getattr(stream, "send_file", None)
            if native is not None and self._sendfile_works:
                try:
                    count: int = await native(fd, max_bytes)
                    return count
                except NotImplementedError:  # a file system without sendfile
                    self._sendfile_works = False
            data = os.read(fd, max_bytes)  # a regular file never blocks
            if data:
                await stream.send(data)
            return len(data)

        return await self._write(send)

    async def _write(self, send: Callable[[anyio.abc.ByteStream], Awaitable[int]]) -> int:
        with self._issued():
            return await self._write_issued(send)

    async def _write_issued(self, send: Callable[[anyio.abc.ByteStream], Awaitable[int]]
                            ) -> int:
        """One write with the Workers rules: closed, closing and locked sides, one writer
        at a time, an error aborting the socket, and the byte count."""
        if self._write_done or self._closing or self._upgraded:
            if self._finished and isinstance(self._end_error, SocketCanceledError):
                raise self._end_error
            if self._upgraded:
                raise StreamClosedError(WRITER_LOCKED)
            raise StreamClosedError(WRITABLE_CLOSING if self._closing else None)
        self._pending_writes += 1
        try:
            await self._ensure_open()
            async with self._lock():
                if self._write_done:
                    if isinstance(self._end_error, SocketCanceledError):
                        raise self._end_error  # canceled while this write waited its turn
                    raise StreamClosedError()
                stream = self._stream
                assert stream is not None
                try:
                    with self._in_io():
                        count = await send(stream)
                except TcpcliError as exc:
                    await self._abort(exc)
                    raise
        finally:
            self._pending_writes -= 1
        self.bytes_sent += count
        return count

    async def _close_write_side(self) -> None:
        """Half-close: flush, send FIN (close_notify on TLS), keep reading."""
        if self._closing:
            raise StreamClosedError(SOCKET_CLOSED)
        if self._write_done or self._upgraded:
            return
        await self._ensure_open()
        async with self._lock():
            if self._write_done:
                return
            self._write_done = True
            stream = self._stream
            if stream is not None and not self._finished:
                try:
                    with map_exceptions(target=self.address.address_str,
                                        port=self.address.port, phase="stream"):
                        await stream.send_eof()
                except TcpcliError as exc:
                    await self._abort(exc)
                    raise
        if self._read_done:
            await self._finish()

    async def _close_read_side(self) -> None:
        if self._read_done or not self._started:
            self._read_done = True
            return
        self._read_done = True
        if self._write_done:
            await self._finish()

    async def _on_peer_eof(self) -> None:
        self._read_done = True
        if self._first_byte is not None:
            self.clock.end(self._first_byte, outcome="eof")
            self._first_byte = None
        if not self.allow_half_open:
            # Workers: EOF from the peer flushes and closes our write side too.
            await self._close_write_side()
        if self._write_done:
            async with self._lock():
                pass  # a send or send_eof still in flight (another task) finishes first
            await self._finish()

    # ------------------------------------------------------------------ ending

    def _fail(self, error: BaseException) -> None:
        """The connection could not be opened: both promises reject with the error."""
        self._opened_state.reject(error)
        self._closed_state.reject(error)
        self._write_done = self._read_done = self._finished = True
        if self._end_error is None:
            self._end_error = error
        if self._slot is not None:  # dialed, then failed (TLS) or was cancelled
            self.invocation.slots.release(self._slot)
            self._slot = None
        self.invocation.forget(self)

    async def _abort(self, error: BaseException) -> None:
        """The connection broke mid-stream: ``closed`` rejects, the slot is freed."""
        self._write_done = self._read_done = True
        await self._finish(error, graceful=False)

    async def cancel_for_limit(self) -> None:
        """Canceled by the deadlock rule of the simultaneous-connections limit (only ever
        while open and idle): its slot is free when this returns."""
        await self.abort(SocketCanceledError())

    async def _finish(self, error: BaseException | None = None, *, graceful: bool = True) -> None:
        if self._finished:
            return
        self._finished = True
        self._end_error = error
        stream, self._stream = self._stream, None
        self._truncated = self._truncated or bool(getattr(stream, "truncated", False))
        if self.keep_tcp_info:
            self._tcp_info_at_close = self.tcp_info()
        transport, self._transport = self._transport, None
        if self._first_byte is not None:  # ended before the close: the phases do not overlap
            self.clock.end(self._first_byte, outcome="none")
            self._first_byte = None
        if stream is not None:
            with anyio.CancelScope(shield=True), self.clock.phase("close", graceful=graceful):
                if graceful:
                    with anyio.move_on_after(CLOSE_GRACE_SECONDS):
                        await stream.aclose()
                await anyio.aclose_forcefully(stream)
                if transport is not None and transport is not stream:
                    await anyio.aclose_forcefully(transport)
        elif transport is not None:  # connected, not yet opened: handed over, before TLS
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(transport)
        if self._slot is not None:
            self.invocation.slots.release(self._slot)
            self._slot = None
        self.invocation.forget(self)
        if error is None:
            self._closed_state.resolve(None)
        else:
            self._closed_state.reject(error)

    async def _wait_closed(self) -> None:
        if self._upgraded_to is not None:
            await self._release_to_upgrade()
        elif not self._started:
            await self._wait_settled(self._ensure_open())
        await self._closed_state.wait()

    @staticmethod
    async def _wait_settled(state: Deferred[Any] | Coroutine[Any, Any, Any]) -> bool:
        """Await without raising; True when it succeeded (the error is reported elsewhere)."""
        try:
            await (state.wait() if isinstance(state, Deferred) else state)
        except Exception:
            return False
        return True


def connect(
    address: str | SocketAddress,
    *,
    secure_transport: str = "off",
    allow_half_open: bool = False,
    tls: TLSOptions | None = None,
    connect_timeout: float | None = None,
    family: int | None = None,
    local_address: str | None = None,
    proxy: str | None = None,
    invocation: Invocation | None = None,
    tls_session: ssl.SSLSession | None = None,
    via: str | None = None,
) -> Socket:
    """Open a TCP socket the way a Worker's ``connect()`` does.

    Validation happens here, synchronously, with the Workers rules and messages
    (``AddressError``/``SocketOptionError``, both ``TypeError``s). Everything after that —
    policy, resolution, the socket cap, dialing, TLS — happens when the socket is first
    awaited, and failures reject both ``opened`` and ``closed``.

    Beyond Workers (opt-in): ``tls`` options (SNI, ALPN, CA, client cert, pins, ...),
    ``connect_timeout`` (seconds, covering resolve + queueing + dial + TLS), ``family``
    (``socket.AF_INET``/``AF_INET6``), ``local_address``, ``proxy`` (socks5://, socks4://,
    http://), an explicit ``invocation`` (default: the current one) and ``tls_session``
    (from another socket's :meth:`Socket.resumable_tls_session`, offered for resumption in
    this socket's handshake — at once with ``"on"``, at ``start_tls()`` with
    ``"starttls"``; ``tls_report.session_reused`` says whether the server took it).
    ``via`` ("host:port") dials a tunnel entry point (a local ``cloudflared access tcp``,
    ``ssh -L`` or ``kubectl port-forward``) instead of ``address``, which still drives the
    policy, SNI, certificate verification and reports (``core.entrypoint``).
    """
    parsed = parse_address(address)
    mode = validate_secure_transport(secure_transport)
    invocation = invocation or current_invocation()
    # The invocation's defaults, with what this call names: every other field (the
    # handshake timeout, happy eyeballs' delay, ...) carries over as it is.
    given: dict[str, Any] = {"tls": tls, "connect_timeout": connect_timeout,
                             "family": family, "local_address": local_address,
                             "proxy": proxy, "via": via}
    options = replace(invocation.options,
                      **{name: value for name, value in given.items() if value is not None})
    if options.via is not None:
        if options.proxy:
            raise SocketOptionError("a tunnel entry point (via) and a proxy exclude each "
                                    "other: the entry point is the way in")
        from tcpcli.core.entrypoint import parse_entry_point

        try:
            parse_entry_point(options.via)
        except ValueError as exc:
            raise SocketOptionError(str(exc)) from None
    return Socket(parsed, mode, bool(allow_half_open), options, invocation,
                  tls_session=tls_session)
