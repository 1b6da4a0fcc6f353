"""The loopback peers both runtimes talk to, and what each of them received.

Every peer listens on 127.0.0.1 and ::1 with the same port, inside the suite's isolated
namespace. The harness runs a scenario on workerd, collects what the peers saw, resets them,
then runs it on tcpcli: both runs meet the very same peers at the very same addresses, so
``remoteAddress`` strings compare as given.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

#: What the greeting peer sends before it half-closes.
GREETING = b"hello from peer\n"
#: The line the STARTTLS peer waits for, and its answer before the handshake.
STARTTLS_COMMAND = b"STARTTLS\r\n"
STARTTLS_READY = b"GO\r\n"
#: A connection still open this long after its side-run ends is cut off.
SETTLE_SECONDS = 3.0
#: Time for the listener to accept connections the kernel has already completed.
ACCEPT_GRACE_SECONDS = 0.01


@dataclass
class Connection:
    received: bytearray = field(default_factory=bytearray)
    done: anyio.Event = field(default_factory=anyio.Event)


Handler = Callable[["Peer", anyio.abc.SocketStream, Connection], Awaitable[None]]


class Peer:
    """One listening endpoint (both address families, one port) with a handler."""

    def __init__(self, name: str, handler: Handler | None, *, record_bytes: bool = True,
                 ssl_context: ssl.SSLContext | None = None, blackhole: bool = False) -> None:
        self.name = name
        self.handler = handler
        self.record_bytes = record_bytes
        self.ssl_context = ssl_context
        self.blackhole = blackhole
        self.port = 0
        self.connections: list[Connection] = []
        self._sockets: list[socket.socket] = []  # a refusing peer's bound sockets
        self._scopes: list[anyio.CancelScope] = []

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Take one free port on both 127.0.0.1 and ::1 and serve it. A peer without a
        handler binds without listening, so every connection to it is refused."""
        for _ in range(50):
            try:
                if self.handler is None:
                    self._sockets = _bind_pair()
                    self.port = self._sockets[0].getsockname()[1]
                    if self.blackhole:
                        self._fill_accept_queue()
                else:
                    v4 = await anyio.create_tcp_listener(local_host="127.0.0.1")
                    self.port = v4.extra(anyio.abc.SocketAttribute.local_port)
                    try:
                        v6 = await anyio.create_tcp_listener(local_host="::1",
                                                             local_port=self.port)
                    except OSError:
                        await v4.aclose()
                        raise
                    for listener in (v4, v6):
                        task_group.start_soon(listener.serve, self._accepted, task_group)
                return
            except OSError:
                continue
        raise RuntimeError(f"no port free on both 127.0.0.1 and ::1 for peer {self.name}")

    def _fill_accept_queue(self) -> None:
        """Listen with a backlog of 0 and never accept; once the queue holds a connection,
        further SYNs are dropped, so connecting hangs as with a filtered port."""
        for listener in list(self._sockets):
            listener.listen(0)
            host = listener.getsockname()[0]
            for _ in range(2):
                filler = socket.socket(listener.family, socket.SOCK_STREAM)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect((host, self.port))
                self._sockets.append(filler)

    async def _accepted(self, stream: anyio.abc.SocketStream) -> None:
        record = Connection()
        self.connections.append(record)
        assert self.handler is not None
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            try:
                await self.handler(self, stream, record)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream,
                    ssl.SSLError, OSError):
                pass
            finally:
                await anyio.aclose_forcefully(stream)
                record.done.set()

    def reset(self) -> None:
        self.connections = []
        self._scopes = []

    async def collect(self) -> dict[str, Any]:
        """Wait for this side-run's connections to end (including any the listener has
        yet to accept); report what arrived."""
        with anyio.move_on_after(SETTLE_SECONDS):
            while True:
                seen = list(self.connections)
                for record in seen:
                    await record.done.wait()
                await anyio.sleep(ACCEPT_GRACE_SECONDS)
                if len(self.connections) == len(seen):
                    break
        for scope in self._scopes:
            scope.cancel()
        result: dict[str, Any] = {"connections": len(self.connections)}
        if self.record_bytes:
            result["received"] = sorted(
                bytes(record.received).decode("latin-1") for record in self.connections
            )
        return result


async def _pump(stream: anyio.abc.ByteStream, record: Connection, *, echo: bool) -> None:
    """Record (and optionally echo) until the client's EOF."""
    while True:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            return
        record.received += data
        if echo:
            await stream.send(data)


async def echo(peer: Peer, stream: anyio.abc.SocketStream, record: Connection) -> None:
    """Echo everything; answer the client's FIN with ours."""
    await _pump(stream, record, echo=True)
    await stream.send_eof()
    await _pump(stream, record, echo=False)


async def greet(peer: Peer, stream: anyio.abc.SocketStream, record: Connection) -> None:
    """Send a greeting and half-close at once; keep recording what the client sends."""
    await stream.send(GREETING)
    await stream.send_eof()
    await _pump(stream, record, echo=False)


async def silent(peer: Peer, stream: anyio.abc.SocketStream, record: Connection) -> None:
    """Record, never answer, never close first."""
    await _pump(stream, record, echo=False)


async def reset(peer: Peer, stream: anyio.abc.SocketStream, record: Connection) -> None:
    """Accept, then abort the connection with a RST (SO_LINGER 0)."""
    await anyio.sleep(0.1)
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def not_tls(peer: Peer, stream: anyio.abc.SocketStream, record: Connection) -> None:
    """A plaintext server: whatever arrives (a ClientHello) gets a text line and a close."""
    record.received += await stream.receive()
    await stream.send(b"220 plaintext service, not TLS\r\n")


async def tls_echo(peer: Peer, stream: anyio.abc.SocketStream, record: Connection) -> None:
    """Implicit TLS, then echo; close_notify is answered with close_notify."""
    assert peer.ssl_context is not None
    tls = await TLSStream.wrap(stream, server_side=True, ssl_context=peer.ssl_context,
                               standard_compatible=True)
    await _pump(tls, record, echo=True)
    await tls.aclose()


async def starttls(peer: Peer, stream: anyio.abc.SocketStream, record: Connection) -> None:
    """Plaintext lines until STARTTLS; then a TLS handshake and an echo service."""
    assert peer.ssl_context is not None
    buffer = b""
    while STARTTLS_COMMAND not in buffer:
        data = await stream.receive()
        record.received += data
        buffer += data
    await stream.send(STARTTLS_READY)
    record.received += b"<tls>"
    tls = await TLSStream.wrap(stream, server_side=True, ssl_context=peer.ssl_context,
                               standard_compatible=True)
    await _pump(tls, record, echo=True)
    await tls.aclose()


def _bind_pair() -> list[socket.socket]:
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v4.bind(("127.0.0.1", 0))
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        v6.bind(("::1", v4.getsockname()[1]))
    except OSError:
        v4.close()
        v6.close()
        raise
    return [v4, v6]
