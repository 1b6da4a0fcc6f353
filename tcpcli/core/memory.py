"""The in-memory side of the connector seam: byte streams and a fake network for tests.

``MemoryConnector`` routes ``(address, port)`` to handlers running in its own task group,
so the socket core (and the commands above it) can be exercised without a socket: peers
that answer, refuse, hang, reset or close half-way, all deterministic.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tcpcli.core.connect import IPAddress


def _reset_error() -> ConnectionResetError:
    return ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


@dataclass
class _Link:
    """What two in-memory streams share: whether one end reset the connection."""

    reset: bool = False


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory TCP-like connection with half-close (FIN) and reset (RST)."""

    def __init__(
        self,
        send_stream: MemoryObjectSendStream[bytes],
        receive_stream: MemoryObjectReceiveStream[bytes],
        link: _Link,
        local: tuple[str, int],
        remote: tuple[str, int],
    ) -> None:
        self._send_stream = send_stream
        self._receive_stream = receive_stream
        self._link = link
        self._pending = b""
        self._local = local
        self._remote = remote

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._link.reset:
            raise anyio.BrokenResourceError from _reset_error()
        if not self._pending:
            try:
                self._pending = await self._receive_stream.receive()
            except anyio.EndOfStream:
                if self._link.reset:
                    raise anyio.BrokenResourceError from _reset_error()
                raise
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        if self._link.reset:
            raise anyio.BrokenResourceError from _reset_error()
        if item:
            await self._send_stream.send(bytes(item))

    async def send_eof(self) -> None:
        await self._send_stream.aclose()

    async def aclose(self) -> None:
        await self._send_stream.aclose()
        await self._receive_stream.aclose()

    async def reset(self) -> None:
        """Abort the connection: the peer's next read or write fails as if it got an RST."""
        self._link.reset = True
        await self.aclose()

    @property
    def extra_attributes(self) -> dict[Any, Callable[[], Any]]:
        from anyio.abc import SocketAttribute

        return {
            SocketAttribute.local_address: lambda: self._local,
            SocketAttribute.remote_address: lambda: self._remote,
        }


def memory_stream_pair(
    client: tuple[str, int] = ("198.51.100.1", 40000),
    server: tuple[str, int] = ("198.51.100.2", 7),
    buffer: float = 64,
) -> tuple[MemoryByteStream, MemoryByteStream]:
    """A connected (client, server) pair; ``buffer`` chunks may be in flight each way."""
    c2s_send, c2s_receive = anyio.create_memory_object_stream[bytes](buffer)
    s2c_send, s2c_receive = anyio.create_memory_object_stream[bytes](buffer)
    link = _Link()
    return (
        MemoryByteStream(c2s_send, s2c_receive, link, client, server),
        MemoryByteStream(s2c_send, c2s_receive, link, server, client),
    )


Handler = Callable[[MemoryByteStream], Awaitable[None]]


class MemoryConnector:
    """A fake network for the connector seam. Use as ``async with MemoryConnector() as net``.

    Unrouted destinations are refused (ECONNREFUSED), as a closed port would be.
    ``dialed`` records every attempt, so a test can prove that nothing was dialed.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str, int], Handler | BaseException | None] = {}
        self.dialed: list[tuple[str, int]] = []
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> MemoryConnector:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(exc_type, exc, tb)

    def serve(self, host: str, port: int, handler: Handler) -> None:
        """Accept connections to host:port, each handled by ``handler(server_stream)``."""
        self._routes[(host, port)] = handler

    def fail(self, host: str, port: int, error: BaseException) -> None:
        """Make connects to host:port raise ``error`` (e.g. an OSError with ENETUNREACH)."""
        self._routes[(host, port)] = error

    def hang(self, host: str, port: int) -> None:
        """Connects to host:port never complete (a filtered port)."""
        self._routes[(host, port)] = None

    async def connect_tcp(
        self, host: IPAddress, port: int, *, local_address: str | None = None
    ) -> anyio.abc.ByteStream:
        key = (str(host), port)
        self.dialed.append(key)
        if key not in self._routes:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        route = self._routes[key]
        if route is None:
            await anyio.sleep(math.inf)
        if isinstance(route, BaseException):
            raise route
        assert route is not None
        assert self._tg is not None
        client, server = memory_stream_pair(
            client=(local_address or "198.51.100.1", 40000 + len(self.dialed)), server=key
        )

        async def run(handler: Handler = route) -> None:
            async with server:
                await handler(server)

        self._tg.start_soon(run)
        return client
