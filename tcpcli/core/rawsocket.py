"""A TCP stream straight on a non-blocking socket, polled by the event loop.

anyio's asyncio SocketStream goes through a transport and protocol that copy every chunk
into buffers and wake a future per write; for bulk transfers (connect's stdin pump) and
connect storms (bench, probe) that overhead dominates. Here ``recv``/``send`` are called
directly and the loop is only asked to wait when the kernel would block — the way trio
works on both backends.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import sys
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer as WritableBuffer

T = TypeVar("T")

# sendfile errors that are about the file, not the connection: read and send instead.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})
# Linux's sendfile reads from, and advances, the file's own position (offset None), as a
# read would; the BSDs' and macOS's need an explicit offset, so those read and send.
_SENDFILE_FROM_POSITION = sys.platform.startswith("linux")

# SO_ERROR values after a non-blocking connect that mean the handshake completed and the
# connection died afterwards (the peer accepted and reset before we looked). The connect
# succeeded; the loss belongs to the first read or write, as it would had we looked sooner.
_LOST_AFTER_ESTABLISHED = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


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
        if not _SENDFILE_FROM_POSITION:
            raise NotImplementedError("sendfile() cannot read from the file's position here")
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sent = os.sendfile(sock.fileno(), fd, None, max_bytes)
            except BlockingIOError:
                await anyio.wait_writable(sock)
                continue
            except OSError as exc:
                if exc.errno in _NO_SENDFILE:
                    raise NotImplementedError(exc.strerror) from exc
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


_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
#: An address's text, cached: a full scan dials one address 65,535 times.
_address_text = functools.lru_cache(maxsize=4096)(str)


def start_connect(host: IPv4Address | IPv6Address, port: int, local_address: str | None = None,
                  reuse: socket.socket | None = None) -> tuple[socket.socket, int]:
    """Start a non-blocking connect and return the socket with connect()'s errno (0,
    EINPROGRESS, ECONNREFUSED, ...), for callers that poll many at once. ``reuse`` is a
    socket whose previous connect failed: Linux lets it connect again. OSError only when
    no socket can be made (EMFILE...)."""
    if reuse is not None:
        return reuse, reuse.connect_ex((_address_text(host), port))
    sock = socket.socket(socket.AF_INET6 if host.version == 6 else socket.AF_INET,
                         socket.SOCK_STREAM | _NONBLOCK)
    if not _NONBLOCK:
        sock.setblocking(False)
    try:
        if local_address:
            sock.bind((local_address, 0))
        code = sock.connect_ex((_address_text(host), port))
    except OSError as exc:
        code = exc.errno or errno.EINVAL
    return sock, code


def connect_status(sock: socket.socket, address: tuple[str, int]) -> int:
    """Ask connect() again on a socket :func:`start_connect` started, to learn without
    waiting how it went: 0 or EISCONN once connected, EALREADY/EINPROGRESS while under way,
    the error once it failed (after which Linux lets the socket connect anew). ``address``
    must be the one it was started to: this reads an outcome, it dials nothing new."""
    return sock.connect_ex(address)


async def open_tcp(host: IPv4Address | IPv6Address, port: int,
                   local_address: str | None = None) -> RawSocketStream:
    """Non-blocking connect to a literal address; OSError (with errno) on failure."""
    family = socket.AF_INET6 if host.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if local_address:
            sock.bind((local_address, 0))
        try:
            sock.connect((str(host), port))
        except BlockingIOError:
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error in _LOST_AFTER_ESTABLISHED:
                return RawSocketStream(sock, peer=(str(host), port),
                                       lost=OSError(error, os.strerror(error)))
            if error:
                raise OSError(error, os.strerror(error)) from None
        else:
            await anyio.lowlevel.checkpoint()
    except BaseException:
        sock.close()
        raise
    return RawSocketStream(sock, peer=(str(host), port))
