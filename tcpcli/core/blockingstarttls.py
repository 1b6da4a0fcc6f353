"""A STARTTLS dialogue over a :class:`~tcpcli.core.blocking.BlockingConnection`: ``tcpcli
starttls`` without an event loop.

The rules are ``core.dialoguedriver``'s, the same coroutine the event-loop path runs; over
this channel it blocks in ``select`` instead of suspending, so
``core.waits.run_without_loop`` finishes it in one step. The connection behaves as the
event loop's Socket does where a dialogue can tell: the peer's EOF closes our side too
(Workers' ``allowHalfOpen: false``) and a later write is refused as there; a failed read
or write closes it at once, not gracefully. The upgrade is ``core.blockingtls``'s
handshake over the same connection.
"""

from __future__ import annotations

import select
import time
from typing import TYPE_CHECKING

from tcpcli.core.address import tls_name
from tcpcli.core.blocking import BlockingConnection
from tcpcli.core.blockingtls import BlockingTLS, handshake_now
from tcpcli.core.errors import TcpcliError
from tcpcli.core.rawsocket import ack_promptly

if TYPE_CHECKING:
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.timing import PhaseClock

__all__ = ["BlockingChannel"]


class BlockingChannel:
    """A blocking connection (plaintext, or TLS once upgraded) as ``core.dialoguedriver``
    reads and writes it. Every method blocks and returns without suspending."""

    def __init__(self, conn: BlockingConnection | BlockingTLS, *, hostname: str,
                 options: ConnectOptions) -> None:
        self.conn = conn
        # What the upgrade needs: the host as given, and the options open_now dialed with.
        self.hostname, self.options = hostname, options
        self._ended = False  # the peer's EOF closed the connection
        self._upgraded: BlockingChannel | None = None  # start_tls()'s channel

    @property
    def socket(self) -> BlockingTLS:
        """The TLS connection (of the channel :meth:`start_tls` returned)."""
        assert isinstance(self.conn, BlockingTLS)
        return self.conn

    @property
    def _tcp(self) -> BlockingConnection:
        """The TCP connection, under TLS or not."""
        conn = self.conn
        return conn.conn if isinstance(conn, BlockingTLS) else conn

    @property
    def target(self) -> str:
        return self.conn.target

    @property
    def port(self) -> int:
        return self.conn.port

    @property
    def clock(self) -> PhaseClock:
        return self.conn.clock

    async def receive(self, max_bytes: int, timeout: float) -> bytes:
        if self._ended:
            return b""
        if timeout <= 0:
            raise TimeoutError  # (as anyio's deadline already past: not even a look)
        conn = self.conn
        buffer = memoryview(bytearray(max_bytes))
        deadline = time.monotonic() + timeout
        while True:
            try:
                count = conn.recv_into(buffer)
            except TcpcliError:
                conn.close(graceful=False)
                raise
            if count is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([conn.fileno()], [], [], remaining)[0]:
                    raise TimeoutError
                continue
            if not count:
                self._ended = True
                conn.close()
                return b""
            return bytes(buffer[:count])

    async def send(self, data: bytes) -> None:
        if self._ended:
            from tcpcli.core.errors import StreamClosedError  # (loads anyio: only here)

            raise StreamClosedError()
        conn = self.conn
        view = memoryview(data)
        try:
            while view or conn.unsent:
                if view:
                    view = view[conn.send(view):]
                if view or conn.unsent:
                    select.select([], [conn.fileno()], [])
                    conn.flush()
        except TcpcliError:
            conn.close(graceful=False)
            raise
        ack_promptly(self._tcp.sock)  # a reply comes next

    async def start_tls(self, timeout: float) -> BlockingChannel:
        conn = self.conn
        assert isinstance(conn, BlockingConnection)
        # Bounded as the upgraded Socket is: by this reply's timeout and by a fresh
        # connect timeout (and the handshake's own limit, which handshake_now applies).
        seconds = min(timeout, self.options.connect_timeout or timeout)
        tls = handshake_now(conn, hostname=tls_name(self.hostname, self.options.tls.server_name),
                            options=self.options, deadline=time.monotonic() + seconds,
                            timeout=seconds)
        tls.mark_open()
        self._upgraded = BlockingChannel(tls, hostname=self.hostname, options=self.options)
        return self._upgraded

    def abort(self) -> None:
        """Close the connection not gracefully, over TLS once upgraded (again is harmless):
        what the end of an invocation does to the event loop's sockets still open."""
        (self._upgraded or self).conn.close(graceful=False)

