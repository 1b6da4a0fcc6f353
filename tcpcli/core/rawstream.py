"""A TCP stream straight on a non-blocking socket, polled by the event loop.

anyio's asyncio SocketStream goes through a transport and protocol that copy every chunk
into buffers and wake a future per write; for bulk transfers (connect's stdin pump) and
connect storms (bench, probe) that overhead dominates. Here ``recv``/``send`` are called
directly and the loop is only asked to wait when the kernel would block — the way trio
works on both backends. The sockets come from ``rawsocket``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from tcpcli.core.rawsocket import (
    CONNECT_UNDER_WAY,
    LOST_AFTER_ESTABLISHED,
    connect_error,
    sendfile_from_position,
    start_connect,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer as WritableBuffer

T = TypeVar("T")


class RawSocketStream(anyio.abc.SocketStream):
    def __init__(self, sock: socket.socket, *, peer: tuple[str, int] | None = None,
                 lost: OSError | None = None) -> None:
        self._socket = sock
        self._peer = peer
        self._closed = False
        # Reading SO_ERROR cleared the kernel's copy of the error, so it is kept here.
        self._lost = lost

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise anyio.BrokenResourceError from self._lost

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._when_readable(lambda sock: sock.recv(max_bytes))
        if not data:
            raise anyio.EndOfStream
        return data

    async def receive_into(self, buffer: WritableBuffer) -> int:
        """``receive`` into the caller's buffer: no allocation per chunk (bulk pulls)."""
        count = await self._when_readable(lambda sock: sock.recv_into(buffer))
        if not count:
            raise anyio.EndOfStream
        return count

    async def _when_readable(self, read: Callable[[socket.socket], T]) -> T:
        """``read`` the socket, waiting in the event loop while the kernel has nothing."""
        self._raise_if_lost()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                return read(self._socket)
            except BlockingIOError:
                await anyio.wait_readable(self._socket)
            except OSError as exc:
                raise anyio.BrokenResourceError from exc

    async def send(self, item: bytes) -> None:
        sock = self._socket
        self._raise_if_lost()
        view = memoryview(item)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(sock)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            view = view[sent:]
        await anyio.lowlevel.checkpoint()

    async def send_file(self, fd: int, max_bytes: int) -> int:
        """Up to ``max_bytes`` from a regular file's current position, copied by the kernel
        (``sendfile``); 0 at its end. NotImplementedError: this file cannot be sent so."""
        sock = self._socket
        self._raise_if_lost()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = sendfile_from_position(sock, fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_writable(sock)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            await anyio.lowlevel.checkpoint()
            return sent

    async def send_eof(self) -> None:
        self._raise_if_lost()
        try:
            self._socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(RuntimeError):  # no running loop: nobody waits
                anyio.notify_closing(self._socket)
            self._socket.close()
        await anyio.lowlevel.checkpoint()

    def _peer_name(self) -> Any:
        # A reset connection forgets its peer (ENOTCONN); the dialed address is still true.
        try:
            return self._socket.getpeername()
        except OSError:
            if self._peer is None:
                raise
            return self._peer

    @property
    def _raw_socket(self) -> socket.socket:
        return self._socket

    @property
    def extra_attributes(self) -> dict[Any, Callable[[], Any]]:
        sock = self._socket
        return {
            anyio.abc.SocketAttribute.family: lambda: sock.family,
            anyio.abc.SocketAttribute.local_address: sock.getsockname,
            anyio.abc.SocketAttribute.local_port: lambda: sock.getsockname()[1],
            anyio.abc.SocketAttribute.raw_socket: lambda: sock,
            anyio.abc.SocketAttribute.remote_address: self._peer_name,
            anyio.abc.SocketAttribute.remote_port: lambda: self._peer_name()[1],
        }


async def open_tcp(host: IPv4Address | IPv6Address, port: int,
                   local_address: str | None = None) -> RawSocketStream:
    """Non-blocking connect to a literal address, polled by the event loop; OSError (with
    errno) on failure."""
    sock, code = start_connect(host, port, local_address)
    try:
        if code in CONNECT_UNDER_WAY:
            await anyio.wait_writable(sock)
            code = connect_error(sock)
        else:
            await anyio.lowlevel.checkpoint()
        if code in LOST_AFTER_ESTABLISHED:
            return RawSocketStream(sock, peer=(str(host), port),
                                   lost=OSError(code, os.strerror(code)))
        if code and code != errno.EISCONN:
            raise OSError(code, os.strerror(code))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return RawSocketStream(sock, peer=(str(host), port))
