"""The only place tcpcli makes sockets: non-blocking TCP connects, started, polled and
read back without an event loop.

The stream on such a socket (``rawstream.RawSocketStream``) lives apart, so that a run
without an event loop (``core.blocking``, the scanner's batches) does not load anyio's
stream classes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from ipaddress import IPv4Address, IPv6Address

# sendfile errors that are about the file, not the connection: read and send instead.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})
# Linux's sendfile reads from, and advances, the file's own position (offset None), as a
# read would; the BSDs' and macOS's need an explicit offset, so those read and send.
_SENDFILE_FROM_POSITION = sys.platform.startswith("linux")

# SO_ERROR values after a non-blocking connect that mean the handshake completed and the
# connection died afterwards (the peer accepted and reset before we looked). The connect
# succeeded; the loss belongs to the first read or write, as it would had we looked sooner.
LOST_AFTER_ESTABLISHED = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


#: connect()'s answers while a non-blocking connect is still under way.
CONNECT_UNDER_WAY = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY})

_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
#: The address dialed last and its text: a scan dials each address object once per port
#: (65,535 times in a full scan), and an identity test costs less than hashing it.
_last_text: tuple[IPv4Address | IPv6Address | None, str] = (None, "")


def _address_text(host: IPv4Address | IPv6Address) -> str:
    global _last_text
    if host is not _last_text[0]:
        _last_text = (host, str(host))
    return _last_text[1]


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


def sendfile_from_position(sock: socket.socket, fd: int, max_bytes: int) -> int:
    """Up to ``max_bytes`` from a regular file's current position to a non-blocking
    socket, copied by the kernel; 0 at the file's end. BlockingIOError when the socket's
    buffer is full; NotImplementedError when this file or system cannot send so."""
    if not _SENDFILE_FROM_POSITION:
        raise NotImplementedError("sendfile() cannot read from the file's position here")
    try:
        return os.sendfile(sock.fileno(), fd, None, max_bytes)
    except OSError as exc:
        if exc.errno in _NO_SENDFILE:
            raise NotImplementedError(exc.strerror) from exc
        raise


def set_keepalive(sock: socket.socket, idle: int, interval: int, count: int) -> None:
    """TCP keepalive on ``sock``: the first probe after ``idle`` seconds without traffic,
    then every ``interval`` seconds, ``count`` unanswered probes ending the connection.
    (Linux names the three; macOS has TCP_KEEPALIVE for the idle time.)"""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle_option = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None))
    for option, value in ((idle_option, idle),
                          (getattr(socket, "TCP_KEEPINTVL", None), interval),
                          (getattr(socket, "TCP_KEEPCNT", None), count)):
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def connect_error(sock: socket.socket) -> int:
    """How a non-blocking connect ended, once the socket polled writable: 0, or its errno
    (one of ``LOST_AFTER_ESTABLISHED`` means it connected and was lost at once)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def connect_status(sock: socket.socket, address: tuple[str, int]) -> int:
    """Ask connect() again on a socket :func:`start_connect` started, to learn without
    waiting how it went: 0 or EISCONN once connected, EALREADY/EINPROGRESS while under way,
    the error once it failed (after which Linux lets the socket connect anew). ``address``
    must be the one it was started to: this reads an outcome, it dials nothing new."""
    return sock.connect_ex(address)


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def ack_promptly(sock: socket.socket) -> None:
    """ACK what arrives next at once, not up to 40 ms later (Linux ``TCP_QUICKACK``; the
    kernel returns to delayed ACKs by itself). Called after a request, before its reply:
    a server that wrote something we have not ACKed yet (TLS 1.3's session tickets) and
    then writes its reply under Nagle's algorithm holds the reply until our ACK comes, and
    a dialogue's waterfall would show our delayed-ACK timer as the server's time."""
    if _QUICKACK is not None:
        # (OSError: not a TCP socket, as a test's socketpair: nothing to hurry.)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
