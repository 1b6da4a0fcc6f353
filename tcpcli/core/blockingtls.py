"""TLS over a :class:`~tcpcli.core.blocking.BlockingConnection`: ``connect --tls`` without
an event loop.

The session is :class:`~tcpcli.core.tlssession.ClientTLS`, the one the event-loop core's
``TLSStream`` drives, so the verdict, the report, the named handshake failures and the
close_notify rules are the same code; this module only moves its bytes over a
non-blocking socket polled with ``select``. The handshake blocks (bounded by the connect
and handshake timeouts, as ``Socket`` bounds it); afterwards reads and writes never
block, and ciphertext the kernel did not take yet waits in :attr:`unsent` for the caller's
poller to say the socket is writable, so a peer that writes while we write cannot
deadlock the relay.
"""

from __future__ import annotations

import contextlib
import select
import ssl
import time
from typing import TYPE_CHECKING

from tcpcli.core.address import tls_name
from tcpcli.core.blocking import BlockingConnection, open_now
from tcpcli.core.errors import (
    ConnectionLostError,
    ConnectTimeoutError,
    TcpcliError,
    TLSHandshakeError,
    map_exceptions,
)
from tcpcli.core.tlssession import (
    CLOSE_NOTIFY_TIMEOUT,
    TRANSPORT_READ_SIZE,
    WRITE_CHUNK,
    ClientTLS,
)

if TYPE_CHECKING:
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.timing import Phase, PhaseClock
    from tcpcli.core.tlsreport import TLSReport, Verification
    from tcpcli.core.tlssession import _Begun

__all__ = ["BlockingTLS", "handshake_now", "open_tls_now"]


#: How long shutdown_write() waits for a TLS 1.3 server's first records when nothing has
#: come since the handshake (see BlockingTLS._hear_the_server_out).
SERVER_FIRST_WAIT = 0.1


class _PeerClosed(Exception):
    """The transport ended (EOF or reset) during the handshake."""


class _TimedOut(BaseException):
    """A deadline passed during the handshake. A BaseException, as the event loop's
    cancellation is, so that the phase it ends is "cancelled" there too."""


def open_tls_now(invocation: Invocation, hostname: str, port: int, *, target: str,
                 options: ConnectOptions, clock: PhaseClock) -> BlockingTLS | None:
    """``core.blocking.open_now``, then the TLS handshake within the same connect timeout,
    with the name ``Socket`` would use (``--sni``, else the host); None (having done
    nothing) when the event-loop core is needed. Dial and handshake failures raise the
    same errors as ``Socket.opened`` rejects with."""
    started = time.monotonic()
    conn = open_now(invocation, hostname, port, target=target, options=options, clock=clock,
                    ready=False)
    if conn is None:
        return None
    timeout = options.connect_timeout
    tls = handshake_now(conn, hostname=tls_name(hostname, options.tls.server_name),
                        options=options,
                        deadline=None if timeout is None else started + timeout)
    tls.mark_open()
    return tls


def handshake_now(conn: BlockingConnection, *, hostname: str, options: ConnectOptions,
                  deadline: float | None, timeout: float | None = None) -> BlockingTLS:
    """The TLS session over ``conn``, its handshake done, timed and judged as
    ``Socket._handshake`` does it: ``tls-setup`` when a context was built, then ``tls``.
    On failure ``conn`` is closed (with no close phase: it never opened, as in Socket)
    and the same error as the event-loop core's is raised. ``deadline``
    (``time.monotonic()``, None without one) is when ``timeout`` seconds end, the connect
    timeout's unless given: the message names them."""
    from tcpcli.core.tlscontext import client_context, contexts_built

    clock, tls_options = conn.clock, options.tls
    try:
        setup_start = time.perf_counter_ns()
        built = contexts_built()
        client_context(tls_options, hostname=hostname)
        if contexts_built() > built:
            clock.record("tls-setup", setup_start, trust=tls_options.ca_file or "certifi")
        limit = options.tls_handshake_timeout
        bounded = None if limit is None else time.monotonic() + limit
        ends = min((d for d in (deadline, bounded) if d is not None), default=None)
        try:
            with clock.phase("tls", server_name=hostname) as phase:
                begun = ClientTLS.begin(hostname, tls_options, None)
                tls = BlockingTLS(conn, begun)
                tls._certificate_given = tls_options.cert_file is not None
                tls._handshake_now(ends)
                tls._finish_handshake(begun, tls_options)
                phase.detail["resumed"] = tls.session_reused
        except _TimedOut:
            by_limit = bounded is not None and (deadline is None or bounded <= deadline)
            seconds = limit if by_limit else (
                options.connect_timeout if timeout is None else timeout)
            assert seconds is not None
            raise ConnectTimeoutError(  # worded as Socket words it
                f"timed out after {seconds:g} s in the TLS handshake with {conn.target}",
                target=conn.target, port=conn.port) from None
    except BaseException:
        conn.discard()
        raise
    return tls


class BlockingTLS(ClientTLS):
    """A TLS connection with the interface of ``BlockingConnection`` (what ``connect``'s
    relay and reports read), counting plaintext bytes as ``Socket`` does over TLS."""

    secure_transport = "on"
    via = None
    judged_by_name = None

    def __init__(self, conn: BlockingConnection, begun: _Begun) -> None:
        super().__init__(begun.ssl_object, begun.incoming, begun.outgoing,
                         target=conn.target, port=conn.port)
        self.conn, self.clock = conn, conn.clock
        self.target, self.port = conn.target, conn.port
        self.peer_address, self.local_sockname = conn.peer_address, conn.local_sockname
        self.bytes_sent = self.bytes_received = 0
        self._unsent = bytearray()  # ciphertext the kernel has not taken yet
        self._fin_when_sent = False  # shutdown_write(): a TCP FIN once _unsent is out
        self._raw = memoryview(bytearray(TRANSPORT_READ_SIZE))
        self._first_byte: Phase | None = None
        self._heard = False  # the socket gave us something (or EOF) after the handshake
        self._closed = False

    @property
    def tls_report(self) -> TLSReport:
        return self.report

    @property
    def tls_verification(self) -> Verification:
        return self.verification

    def fileno(self) -> int:
        return self.conn.fileno()

    def tcp_info(self) -> dict[str, object] | None:
        return None if self._closed else self.conn.tcp_info()

    def mark_open(self) -> None:
        """Open for the caller's bytes: the first-byte phase (of plaintext) runs from here."""
        self._first_byte = self.clock.begin("first-byte")

    # ------------------------------------------------------------- handshake

    def _handshake_now(self, deadline: float | None) -> None:
        with map_exceptions(target=self.target, port=self.port, phase="tls"):
            try:
                self._handshake_steps(deadline)
            except (ssl.SSLError, _PeerClosed) as exc:
                named = self._named_failure(exc)
                if named is not None:
                    raise named from exc
                if isinstance(exc, _PeerClosed):
                    where = self.target or "the peer"
                    raise TLSHandshakeError(  # as translate() words a closed transport
                        f"TLS handshake with {where} failed: the peer closed the connection",
                        target=self.target, port=self.port) from exc.__cause__
                raise

    def _handshake_steps(self, deadline: float | None) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_all(deadline)
                chunk = self._receive_some(deadline)
                self._keep_handshake_bytes(chunk)
                self._incoming.write(chunk)
            except ssl.SSLError:
                # Deliver our alert (bad certificate, protocol version, ...) so the server
                # logs the real reason; never let that hide our error (as TLSStream does).
                with contextlib.suppress(_PeerClosed, _TimedOut):
                    self._send_all(time.monotonic() + CLOSE_NOTIFY_TIMEOUT)
                raise
        self._send_all(deadline)  # our Finished (and, in TLS 1.3, the end of our flight)

    def _wait(self, readable: bool, deadline: float | None) -> None:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        sock = self.conn.sock
        ready = select.select([sock] if readable else [], [] if readable else [sock], [],
                              timeout)
        if not any(ready):
            raise _TimedOut

    def _send_all(self, deadline: float | None) -> None:
        """What OpenSSL wrote, all of it, waiting for room (the handshake's flights, a
        closing close_notify); _PeerClosed when the connection is lost."""
        self._queue_outgoing()
        try:
            self.flush()
            while self._unsent:
                self._wait(False, deadline)
                self.flush()
        except (TcpcliError, OSError) as exc:  # (flush translates what the socket raised)
            raise _PeerClosed from exc

    def _receive_some(self, deadline: float | None) -> bytes:
        """The server's next bytes, waiting for them; _PeerClosed at EOF or a reset."""
        if self.conn.lost is not None:
            raise _PeerClosed from self.conn.lost
        while True:
            try:
                count = self.conn.sock.recv_into(self._raw)
            except BlockingIOError:
                self._wait(True, deadline)
                continue
            except OSError as exc:
                raise _PeerClosed from exc
            if not count:
                raise _PeerClosed
            return bytes(self._raw[:count])

    # ------------------------------------------------------------- data

    def _queue_outgoing(self) -> None:
        if self._outgoing.pending:
            self._unsent += self._outgoing.read()

    @property
    def unsent(self) -> bool:
        """Ciphertext waits for the socket to be writable (then call :meth:`flush`)."""
        return bool(self._unsent)

    def flush(self) -> None:
        """Send what the kernel takes of the waiting ciphertext, without blocking; the FIN
        that ``shutdown_write`` asked for follows the last of it."""
        while self._unsent:
            try:
                sent = self.conn.sock.send(self._unsent)
            except BlockingIOError:
                return
            except OSError as exc:
                self._write_broken = True  # the records' sequence numbers are spent
                raise self.conn._lost(exc) from exc
            del self._unsent[:sent]
        if self._fin_when_sent:
            self._fin_when_sent = False
            # The peer closed (and reset, finding our close_notify unread): what it sent
            # is still read, and a loss is the reading side's to report, as the event
            # loop's transport leaves it.
            with contextlib.suppress(ConnectionLostError):
                self.conn.shutdown_write()

    def recv_into(self, buffer: memoryview) -> int | None:
        """Plaintext read into ``buffer``; 0 at the peer's close_notify or EOF (then
        ``truncated`` says which); None when none is there yet."""
        with map_exceptions(target=self.target, port=self.port, phase="stream"):
            while True:
                if self._pending:  # decrypted ahead by shutdown_write()
                    data = bytes(self._pending[:len(buffer)])
                    del self._pending[:len(data)]
                elif self._read_broken:
                    where = self.target or "the peer"
                    raise ConnectionLostError(f"connection to {where} was lost",
                                              target=self.target, port=self.port)
                else:
                    data = self._read_available(len(buffer))
                if self._outgoing.pending and not self._write_broken:
                    # Post-handshake replies (KeyUpdate, a client certificate asked for).
                    self._queue_outgoing()
                    self.flush()
                if data:
                    count = len(data)
                    buffer[:count] = data
                    if self._first_byte is not None:
                        self.clock.end(self._first_byte, bytes=count)
                        self._first_byte = None
                    self.bytes_received += count
                    return count
                if self._read_eof:
                    if self._first_byte is not None:
                        self.clock.end(self._first_byte, outcome="eof")
                        self._first_byte = None
                    return 0
                if self._take_arrived() is None:
                    return None

    def send(self, data: memoryview) -> int:
        """Plaintext of ``data`` taken (encrypted, and sent as far as the kernel takes it);
        0 while earlier ciphertext still waits for room."""
        if self._unsent:
            self.flush()
            if self._unsent:
                return 0
        chunk = data[:WRITE_CHUNK]
        with map_exceptions(target=self.target, port=self.port, phase="stream"):
            try:
                self._ssl.write(chunk)
            except ssl.SSLError:
                self._write_broken = True
                raise
        self._queue_outgoing()
        self.flush()
        self.bytes_sent += len(chunk)
        return len(chunk)

    def send_file(self, fd: int, max_bytes: int) -> int | None:
        raise NotImplementedError("a file goes through TLS as read bytes")

    def shutdown_write(self) -> None:
        """close_notify, then a TCP FIN once it is out; the peer's bytes still come."""
        if self.close_notify_sent:
            return
        self._hear_the_server_out()
        peer_done = self._read_eof
        try:
            with map_exceptions(target=self.target, port=self.port, phase="stream"):
                self._shutdown()
            self._queue_outgoing()
            self._fin_when_sent = True
            self.flush()
        except ConnectionLostError:
            # The peer already ended its side and may have closed its socket: a reset in
            # answer to our close_notify/FIN says nothing about the data, which is all in.
            if not peer_done:
                raise

    def _hear_the_server_out(self) -> None:
        """In TLS 1.3 a server judges our (empty) client certificate after our handshake
        is done: when our input ends before anything came back, wait briefly for its first
        records. Its alert then names the missing certificate; a close_notify sent first
        would meet a closed socket, whose reset discards that alert. A server that took us
        sends its session tickets at once, which ends the wait as soon."""
        if self._heard or self._ssl.version() != "TLSv1.3":
            return
        with contextlib.suppress(_TimedOut, OSError):
            self._wait(True, time.monotonic() + SERVER_FIRST_WAIT)
        # Into the session, where shutdown's drain decrypts it (an alert raises there).
        with contextlib.suppress(ConnectionLostError):
            while self._take_arrived():
                pass

    def _take_arrived(self) -> int | None:
        """What the socket holds, into the session: the bytes taken, 0 at its EOF, None
        when nothing is there (as ``BlockingConnection.recv_into``)."""
        arrived = self.conn.recv_into(self._raw)
        if arrived is not None:
            self._heard = True
            if arrived:
                self._incoming.write(bytes(self._raw[:arrived]))
            else:
                self._incoming.write_eof()
        return arrived

    def close(self, *, graceful: bool = True) -> None:
        """close_notify (bounded by CLOSE_NOTIFY_TIMEOUT, inside the close phase, as
        ``Socket`` does), then the socket's close (again is harmless)."""
        if self._closed:
            return
        self._closed = True
        if self._first_byte is not None:
            self.clock.end(self._first_byte, outcome="none")
            self._first_byte = None
        self.conn.close(graceful=graceful,
                        first=self._deliver_close_notify if graceful else None)

    def _deliver_close_notify(self) -> None:
        try:
            if not self._write_broken:
                if not self.close_notify_sent:
                    self._shutdown()
                self._send_all(time.monotonic() + CLOSE_NOTIFY_TIMEOUT)
        except (ssl.SSLError, OSError, _PeerClosed, _TimedOut):
            pass

