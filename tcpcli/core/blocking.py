"""One TCP connection without an event loop: what a one-shot ``connect`` needs.

Starting asyncio and anyio costs a one-shot run more than everything else it does (about
1.5× ``import click`` on its own), and a plain connection to an address known without a
DNS query needs neither. Such a connection is opened here, polled with ``selectors``, on
the same checked path as :class:`~tcpcli.core.socket.Socket`: the same policy
(``Invocation.check_destination_now``), the same connector seam
(``BatchConnector.start_connect``), a slot of the same cap, the same phases (resolve,
connect per attempt, first-byte, close), the same happy-eyeballs order and delay, and the
same errors. TLS runs over it in ``core.blockingtls``, the event-loop core's own TLS
session driven by ``select``. What it cannot do — a proxy, a DNS query, a connector
without ``start_connect`` — it declines before dialing, and the caller uses the event-loop
core.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

from tcpcli.core.address import join_host_port
from tcpcli.core.connect import BatchConnector, IPAddress, best_error
from tcpcli.core.errors import ConnectTimeoutError, TcpcliError, translate
from tcpcli.core.rawsocket import (
    CONNECT_UNDER_WAY,
    LOST_AFTER_ESTABLISHED,
    connect_error,
    set_keepalive,
)
from tcpcli.core.timing import Phase, PhaseClock

if TYPE_CHECKING:
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.proxyheader import ProxyHeaderSpec
    from tcpcli.core.slots import SocketSlot, SocketSlots


class BlockingConnection:
    """A connected plaintext socket and what ``connect``'s reports read from a
    :class:`~tcpcli.core.socket.Socket` (addresses, byte counts, phases)."""

    secure_transport = "off"
    tls_report = None
    tls_verification = None
    truncated = False
    via = None  # (a tunnel entry point needs the event-loop core)
    judged_by_name = None

    def __init__(self, sock: socket.socket, slot: SocketSlot, slots: SocketSlots,
                 clock: PhaseClock, target: str, port: int, peer_address: tuple[str, int],
                 local_sockname: tuple[str, int] | None, lost: OSError | None) -> None:
        self.sock, self.slot, self.slots, self.clock = sock, slot, slots, clock
        self.target, self.port = target, port  # as the user named it: what errors say
        self.peer_address, self.local_sockname = peer_address, local_sockname
        self.lost = lost  # reset between the handshake and our first look
        self.bytes_sent = self.bytes_received = 0
        self._first_byte: Phase | None = None  # from open_now's end, as Socket has it
        self._closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def tcp_info(self) -> dict[str, object] | None:
        """The kernel's facts about the connection (``core.tcpinfo``), while it is open."""
        if self._closed:
            return None
        from tcpcli.core.tcpinfo import tcp_info

        return tcp_info(self.sock)

    def mark_open(self) -> None:
        """Open for the caller's bytes: the first-byte phase runs from here, as in Socket."""
        self._first_byte = self.clock.begin("first-byte")

    def _send_all(self, data: bytes) -> None:
        """All of ``data``, waiting for room (uncounted: what frames the stream)."""
        import select

        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                select.select([], [self.sock], [])
            except OSError as exc:
                raise self._lost(exc) from exc

    def send_proxy_header(self, spec: ProxyHeaderSpec) -> None:
        """The PROXY protocol header, first on the wire (``Socket`` does the same)."""
        from tcpcli.core.proxyheader import header_for

        header = header_for(spec, self.local_sockname, self.peer_address, target=self.target)
        with self.clock.phase("proxy-header", header=f"v{spec.version}", bytes=len(header)):
            self._send_all(header)

    def _lost(self, exc: OSError) -> TcpcliError | BaseException:
        return translate(exc, target=self.target, port=self.port, phase="stream")

    def recv_into(self, buffer: memoryview) -> int | None:
        """Bytes read into ``buffer``; 0 at the peer's EOF; None when none are there yet."""
        try:
            if self.lost is not None:
                raise self.lost
            count = self.sock.recv_into(buffer)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._lost(exc) from exc
        if self._first_byte is not None:
            if count:
                self.clock.end(self._first_byte, bytes=count)
            else:
                self.clock.end(self._first_byte, outcome="eof")
            self._first_byte = None
        self.bytes_received += count
        return count

    def send(self, data: memoryview) -> int:
        """Bytes of ``data`` the kernel took (0 when its buffer is full)."""
        try:
            if self.lost is not None:
                raise self.lost
            sent = self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._lost(exc) from exc
        self.bytes_sent += sent
        return sent

    def send_file(self, fd: int, max_bytes: int) -> int | None:
        """Up to ``max_bytes`` from a regular file's position, copied by the kernel; 0 at
        the file's end, None when the socket's buffer is full. NotImplementedError when
        the file cannot be sent so (read and send it instead)."""
        from tcpcli.core.rawsocket import sendfile_from_position

        try:
            if self.lost is not None:
                raise self.lost
            sent = sendfile_from_position(self.sock, fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._lost(exc) from exc
        self.bytes_sent += sent
        return sent

    def shutdown_write(self) -> None:
        """FIN: no more bytes from us; the peer's still come."""
        try:
            if self.lost is not None:
                raise self.lost
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._lost(exc) from exc

    #: Nothing waits to be sent: the kernel has every byte ``send`` took (see BlockingTLS).
    unsent = False

    def flush(self) -> None:
        """Nothing to flush: ``send`` hands its bytes to the kernel (see BlockingTLS)."""

    def close(self, *, graceful: bool = True, first: Callable[[], None] | None = None) -> None:
        """Close and give the slot back (again is harmless); ``first`` runs inside the
        close phase before the socket closes (TLS's close_notify)."""
        if self._closed:
            return
        self._closed = True
        if self._first_byte is not None:
            self.clock.end(self._first_byte, outcome="none")
            self._first_byte = None
        with self.clock.phase("close", graceful=graceful):
            if first is not None:
                first()
            self.sock.close()
        self.slots.release(self.slot)

    def discard(self) -> None:
        """Close with no close phase and give the slot back: the connection never opened
        for the caller (its TLS handshake failed), as ``Socket`` drops its transport."""
        if self._closed:
            return
        self._closed = True
        self.sock.close()
        self.slots.release(self.slot)


class _Attempt:
    def __init__(self, sock: socket.socket, address: IPAddress, slot: SocketSlot,
                 phase: Phase) -> None:
        self.sock, self.address, self.slot, self.phase = sock, address, slot, phase


def open_now(invocation: Invocation, hostname: str, port: int, *, target: str,
             options: ConnectOptions, clock: PhaseClock,
             ready: bool = True) -> BlockingConnection | None:
    """The checked, connected plaintext socket for ``hostname:port``, or None (having done
    nothing) when the event-loop core is needed. Refusals, DNS-free lookups and dial
    failures raise the same errors as ``Socket.opened`` rejects with. ``ready=False``
    leaves the first-byte phase to whoever speaks next on it (``core.blockingtls``)."""
    connector = invocation.connector
    if options.proxy or options.via or not isinstance(connector, BatchConnector):
        return None
    started = time.monotonic()
    destination = invocation.check_destination_now(hostname, port, family=options.family,
                                                   target=target, clock=clock)
    if destination is None:
        return None
    deadline = None if options.connect_timeout is None else started + options.connect_timeout
    try:
        conn = _dial(destination.ordered(options.family), port, connector=connector,
                     slots=invocation.slots, clock=clock, options=options, target=target,
                     deadline=deadline)
    except TimeoutError:
        raise ConnectTimeoutError(
            f"timed out after {options.connect_timeout:g} s connecting to {target}",
            target=target, port=port) from None
    try:
        if options.send_proxy is not None:
            conn.send_proxy_header(options.send_proxy)
    except BaseException:
        conn.close(graceful=False)
        raise
    if ready:
        conn.mark_open()
    return conn


def _dial(addresses: Sequence[IPAddress], port: int, *, connector: BatchConnector,
          slots: SocketSlots, clock: PhaseClock, options: ConnectOptions, target: str,
          deadline: float | None) -> BlockingConnection:
    """Happy eyeballs (RFC 8305) as ``core.connect.dial`` does it: the next address starts
    when an attempt fails, or after ``happy_eyeballs_delay`` while it is slow; each
    attempt holds a slot; the first to connect wins and the others are closed."""
    queue = list(addresses)
    pending: dict[int, _Attempt] = {}
    errors: list[BaseException] = []
    next_start = time.monotonic()
    selector = selectors.DefaultSelector()

    def failed(attempt: _Attempt, exc: BaseException) -> None:
        where = join_host_port(attempt.address, port)
        error = translate(exc, target=where, port=port, phase="connect")
        clock.end(attempt.phase, getattr(error, "kind", "error"))
        errors.append(error)
        slots.release(attempt.slot)
        attempt.sock.close()

    def won(attempt: _Attempt, lost: OSError | None) -> BlockingConnection:
        clock.end(attempt.phase)
        sock = attempt.sock
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if options.keepalive is not None:
            set_keepalive(sock, *options.keepalive)
        try:
            local = sock.getsockname()
            local_sockname: tuple[str, int] | None = (str(local[0]), int(local[1]))
        except OSError:
            local_sockname = None
        return BlockingConnection(sock, attempt.slot, slots, clock, target, port,
                                  (str(attempt.address), port), local_sockname, lost)

    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError
            if queue and (not pending or now >= next_start):
                slot = slots.try_acquire()
                if slot is not None:
                    address = queue.pop(0)
                    phase = clock.begin("connect", address=str(address), port=port)
                    try:
                        sock, code = connector.start_connect(
                            address, port, local_address=options.local_address)
                    except OSError as exc:  # no socket could be made (EMFILE...)
                        clock.end(phase, "error")
                        slots.release(slot)
                        errors.append(translate(exc, target=join_host_port(address, port),
                                                port=port, phase="connect"))
                        continue
                    attempt = _Attempt(sock, address, slot, phase)
                    if code in (0, errno.EISCONN):
                        return won(attempt, None)
                    if code not in CONNECT_UNDER_WAY:
                        failed(attempt, OSError(code, os.strerror(code)))
                        next_start = now  # a failed attempt starts the next at once
                        continue
                    pending[sock.fileno()] = attempt
                    selector.register(sock, selectors.EVENT_WRITE)
                    next_start = now + options.happy_eyeballs_delay
                    continue
            if not pending:
                if queue:  # the cap is full with other sockets: no dial can start here
                    raise RuntimeError("no socket slot free for a connection without a loop")
                raise best_error(errors, target, port)
            waits = [] if deadline is None else [deadline - now]
            if queue:
                waits.append(next_start - now)
            for key, _ in selector.select(max(0.0, min(waits)) if waits else None):
                attempt = pending.pop(key.fd)
                selector.unregister(attempt.sock)
                code = connect_error(attempt.sock)
                if code == 0 or code in LOST_AFTER_ESTABLISHED:
                    return won(attempt, OSError(code, os.strerror(code)) if code else None)
                failed(attempt, OSError(code, os.strerror(code)))
                next_start = time.monotonic()
    finally:
        for attempt in pending.values():  # the losers, or all on an error or Ctrl-C
            clock.end(attempt.phase, "cancelled")
            slots.release(attempt.slot)
            attempt.sock.close()
        selector.close()
