"""Loopback peers for integration tests: real sockets, one thread per connection.

Threads (not the test's event loop) keep the peers independent of the anyio backend under
test, and let a peer block, stall or reset exactly as a real server would.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

Handler = Callable[[socket.socket], None]


class LoopbackServer:
    """Listen on a free loopback port; run ``handler(conn)`` for each connection."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 64) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))  # (port 0: a free one)
        except OSError:
            self.listener.close()
            raise
        self.listener.listen(backlog)
        self.listener.settimeout(0.05)
        self.host = host
        self.port: int = self.listener.getsockname()[1]
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections: list[socket.socket] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.listener.close()
        for conn in self.connections:
            with suppress(OSError):
                conn.close()
        self._thread.join(timeout=2)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            conn.settimeout(10)
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.ssl_context is not None:
                # (wrap_socket closes the descriptor when its handshake fails: a handshake
                # of our own keeps it, to linger on)
                tls = self.ssl_context.wrap_socket(conn, server_side=True,
                                                   do_handshake_on_connect=False)
                try:
                    tls.do_handshake()
                except (OSError, ssl.SSLError):
                    _linger(socket.socket(fileno=tls.detach()))
                    raise
                conn = tls
                self.connections.append(conn)
            self.handler(conn)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(exc)
        finally:
            with suppress(OSError):
                conn.close()


def _linger(conn: socket.socket, seconds: float = 2.0) -> None:
    """After a failed handshake, as a web server's lingering close does: end our side and
    read what the client still sends until it closes. Closing at once with its records
    unread would reset the connection, and Linux drops the alert we just sent from the
    client's receive queue when that reset arrives (a TLS 1.3 client sends its last
    handshake records before the server judges its certificate)."""
    with conn, suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(seconds)
        while conn.recv(65536):
            pass


@contextmanager
def serve(handler: Handler, **kwargs: object) -> Iterator[LoopbackServer]:
    with LoopbackServer(handler, **kwargs) as server:  # type: ignore[arg-type]
        yield server


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def answer_sha256(conn: socket.socket) -> None:
    """Read to EOF, then answer with the SHA-256 digest (32 bytes) of what arrived."""
    conn.sendall(hashlib.sha256(recv_all(conn)).digest())


def recv_all(conn: socket.socket) -> bytes:
    chunks = []
    while data := conn.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def reset(conn: socket.socket) -> None:
    """Close with RST instead of FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@contextmanager
def filtered_port() -> Iterator[int]:
    """A listener whose accept queue is full: further SYNs are dropped, nothing answers,
    as with a firewalled port (without sending anything off the machine)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()
