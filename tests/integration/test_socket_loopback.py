"""The socket core against real loopback peers: plain TCP, TLS (trustme) and start_tls."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

import tcpcli
from tcpcli.core.errors import (
    CertificateVerifyError,
    ConnectionLostError,
    ConnectRefusedError,
    ConnectTimeoutError,
    PolicyError,
    StreamClosedError,
)
from tcpcli.core.tls import TLSOptions
from tests.support.peers import answer_sha256, echo, recv_all, reset, serve

pytestmark = pytest.mark.anyio

LOOPBACK = tcpcli.Policy.parse("workers", allow=["127.0.0.1", "::1", "localhost"])


def loopback_invocation(**kwargs: object) -> tcpcli.Invocation:
    return tcpcli.Invocation(policy=LOOPBACK, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def socket_to(handler: Callable[[socket.socket], None],
                    server_context: ssl.SSLContext | None,
                    ca_file: str) -> AsyncIterator[tcpcli.Socket]:
    """A socket to a loopback peer running ``handler``, over TLS when it has a context."""
    with serve(handler, ssl_context=server_context) as server:
        async with loopback_invocation(options=tcpcli.ConnectOptions(
                tls=TLSOptions(ca_file=ca_file))):
            yield tcpcli.connect(f"localhost:{server.port}", family=socket.AF_INET,
                                 secure_transport="on" if server_context else "off")


async def read_exactly(sock: tcpcli.Socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await sock.readable.receive()
    return bytes(data)


async def test_plain_round_trip_is_byte_exact() -> None:
    payload = os.urandom(4 * 1024 * 1024)
    with serve(echo) as server:
        async with loopback_invocation():
            sock = tcpcli.connect(server.address)
            info = await sock.opened
            assert info.remote_address == server.address
            assert sock.peer_address == ("127.0.0.1", server.port)
            async with anyio.create_task_group() as tg:
                tg.start_soon(sock.writable.send, payload)
                echoed = await read_exactly(sock, len(payload))
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            await sock.close()
            await sock.closed
            names = [p.name for p in sock.clock.phases]
            assert names == ["connect", "first-byte", "close"]
            assert all((p.duration_ms or -1) >= 0 for p in sock.clock.phases)


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with serve(echo, host="::1") as server:
        async with loopback_invocation():
            async with tcpcli.connect(server.address) as sock:
                await sock.writable.send(b"six")
                assert await sock.readable.receive() == b"six"
            assert sock.peer_address == ("::1", server.port)


async def test_half_close_then_read_the_answer() -> None:
    def answer_after_eof(conn: socket.socket) -> None:
        request = recv_all(conn)
        conn.sendall(b"you said " + request)

    with serve(answer_after_eof) as server:
        async with loopback_invocation():
            sock = tcpcli.connect(server.address)
            await sock.writable.send(b"hello")
            await sock.writable.aclose()
            assert await read_exactly(sock, 14) == b"you said hello"
            with pytest.raises(anyio.EndOfStream):
                await sock.readable.receive()
            with anyio.fail_after(2):
                await sock.closed


async def test_refused_port() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    async with loopback_invocation():
        with pytest.raises(ConnectRefusedError, match="refused"):
            await tcpcli.connect(f"127.0.0.1:{port}").opened


async def test_loopback_is_blocked_by_default() -> None:
    with serve(echo) as server:
        async with tcpcli.Invocation():
            with pytest.raises(PolicyError) as exc:
                await tcpcli.connect(server.address).opened
        assert exc.value.rule == "loopback"
        assert server.connections == []


async def test_peer_reset_is_connection_lost() -> None:
    def greet_then_reset(conn: socket.socket) -> None:
        conn.sendall(b"bye")
        reset(conn)

    with serve(greet_then_reset) as server:
        async with loopback_invocation():
            sock = tcpcli.connect(server.address)
            with pytest.raises(ConnectionLostError):
                while True:
                    await sock.readable.receive()


async def test_reset_before_connect_is_noticed_is_still_opened_then_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The peer accepts and resets before our non-blocking connect looks at SO_ERROR (a race
    # that loopback under load wins often). The handshake did complete: `opened` resolves
    # and the loss is reported by the read, never as a failed connect.
    handler_done = threading.Event()

    def accept_then_reset(conn: socket.socket) -> None:
        reset(conn)
        handler_done.set()

    real_wait_writable = anyio.wait_writable

    async def wait_writable_after_reset(sock: socket.socket) -> None:
        await anyio.to_thread.run_sync(handler_done.wait, 5)
        await real_wait_writable(sock)

    with serve(accept_then_reset) as server:
        async with loopback_invocation():
            monkeypatch.setattr(anyio, "wait_writable", wait_writable_after_reset)
            sock = tcpcli.connect(server.address)
            info = await sock.opened
            monkeypatch.undo()
            assert handler_done.is_set()
            assert info.remote_address == server.address
            with pytest.raises(ConnectionLostError, match="reset"):
                await sock.readable.receive()


async def test_tls_on_verifies_against_the_name(
    server_ssl_context: ssl.SSLContext, ca_file: str
) -> None:
    with serve(echo, ssl_context=server_ssl_context) as server:
        async with loopback_invocation(options=tcpcli.ConnectOptions(
            tls=TLSOptions(ca_file=ca_file, alpn=("h2", "http/1.1"))
        )), tcpcli.connect(f"localhost:{server.port}", secure_transport="on",
                                  family=socket.AF_INET) as sock:
            await sock.writable.send(b"secret")
            assert await sock.readable.receive() == b"secret"
            report = sock.tls_report
            assert report is not None
            assert report.verification.verified
            assert report.version.startswith("TLSv1.")
            names = [p.name for p in sock.clock.phases if p.name != "tls-setup"]
            assert names[:3] == ["resolve", "connect", "tls"]


async def test_tls_setup_is_its_own_phase_when_a_context_is_built(
    server_ssl_context: ssl.SSLContext, ca_file: str
) -> None:
    # Options no earlier test used: this process has no context for them yet.
    options = tcpcli.ConnectOptions(tls=TLSOptions(ca_file=ca_file, alpn=(os.urandom(8).hex(),)))
    with serve(echo, ssl_context=server_ssl_context) as server:
        async with loopback_invocation(options=options):
            phases = []
            for _ in range(2):  # the second socket reuses the context
                async with tcpcli.connect(f"localhost:{server.port}", secure_transport="on",
                                          family=socket.AF_INET) as sock:
                    await sock.opened
                    phases.append([p for p in sock.clock.phases if p.name != "first-byte"])
    first, second = phases
    assert [p.name for p in first] == ["resolve", "connect", "tls-setup", "tls"]
    setup, handshake = first[2], first[3]
    assert setup.detail == {"trust": ca_file}
    # Back to back: the setup starts when the connect ends and the handshake when it ends.
    assert first[1].end_ns is not None and setup.end_ns is not None
    assert first[1].end_ns <= setup.start_ns <= setup.end_ns <= handshake.start_ns
    assert [p.name for p in second] == ["resolve", "connect", "tls"]


async def test_tls_wrong_name_fails_verification(
    server_ssl_context: ssl.SSLContext, ca_file: str
) -> None:
    with serve(echo, ssl_context=server_ssl_context) as server:
        async with loopback_invocation():
            sock = tcpcli.connect(
                f"127.0.0.1:{server.port}", secure_transport="on",
                tls=TLSOptions(ca_file=ca_file, server_name="db.example.com"),
            )
            with pytest.raises(CertificateVerifyError) as exc:
                await sock.opened
            assert exc.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
            assert exc.value.workers_message.startswith("proxy request failed")


async def test_tls_without_the_ca_is_unknown_issuer(server_ssl_context: ssl.SSLContext) -> None:
    with serve(echo, ssl_context=server_ssl_context) as server:
        async with loopback_invocation():
            with pytest.raises(CertificateVerifyError) as exc:
                await tcpcli.connect(f"127.0.0.1:{server.port}", secure_transport="on").opened
            assert exc.value.verify_code == 20  # unable to get local issuer certificate


async def test_start_tls_upgrades_after_the_dialogue(
    server_ssl_context: ssl.SSLContext, ca_file: str
) -> None:
    def starttls_server(conn: socket.socket) -> None:
        conn.sendall(b"220 ready\r\n")
        assert conn.recv(100) == b"STARTTLS\r\n"
        conn.sendall(b"220 go ahead\r\n")
        tls = server_ssl_context.wrap_socket(conn, server_side=True)
        echo(tls)
        tls.unwrap()

    with serve(starttls_server) as server:
        async with loopback_invocation():
            plain = tcpcli.connect(f"localhost:{server.port}", secure_transport="starttls",
                                   tls=TLSOptions(ca_file=ca_file), family=socket.AF_INET)
            assert await plain.readable.receive() == b"220 ready\r\n"
            await plain.writable.send(b"STARTTLS\r\n")
            assert await plain.readable.receive() == b"220 go ahead\r\n"
            secure = plain.start_tls()
            assert plain.upgraded
            assert not secure.upgraded
            assert secure.secure_transport == "on"
            with anyio.fail_after(2):
                await plain.closed
            info = await secure.opened
            assert info.remote_address == f"localhost:{server.port}"
            await secure.writable.send(b"inside tls")
            assert await secure.readable.receive() == b"inside tls"
            assert secure.tls_report is not None
            assert secure.tls_report.verification.verified
            with pytest.raises(StreamClosedError, match="locked to a reader"):
                await plain.readable.receive()
            await secure.close()
            inv = tcpcli.core.invocation.current_invocation()
            assert inv.slots.live == 0


async def test_source_address_is_used() -> None:
    peers: list[str] = []

    def record_peer(conn: socket.socket) -> None:
        peers.append(conn.getpeername()[0])
        echo(conn)

    with serve(record_peer) as server:
        async with loopback_invocation():
            async with tcpcli.connect(server.address, local_address="127.0.0.2") as sock:
                await sock.writable.send(b"x")
                assert await sock.readable.receive() == b"x"
            assert sock.local_sockname is not None and sock.local_sockname[0] == "127.0.0.2"
    assert peers == ["127.0.0.2"]


@pytest.mark.parametrize("tls", [False, True], ids=["recv_into", "tls-copies"])
async def test_receive_into_fills_the_callers_buffer_and_counts(
        tls: bool, server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 5)

    def send_and_close(conn: socket.socket) -> None:
        conn.sendall(payload)
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()

    async with socket_to(send_and_close, server_ssl_context if tls else None,
                         ca_file) as sock:
        buffer = memoryview(bytearray(256 * 1024))
        received = bytearray()
        with pytest.raises(anyio.EndOfStream):
            while True:
                count = await sock.readable.receive_into(buffer)
                assert 0 < count <= len(buffer)
                received += buffer[:count]
        assert bytes(received) == payload
        assert sock.bytes_received == len(payload)
        await sock.close()


def write_file(directory: Path, content: bytes) -> Path:
    path = directory / "data.bin"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("tls", [False, True], ids=["sendfile", "tls-reads"])
async def test_send_file_sends_from_the_current_position_to_the_end(
        tls: bool, tmp_path: Path, server_ssl_context: ssl.SSLContext, ca_file: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    kernel_copies: list[int] = []
    real_sendfile = os.sendfile

    def counted_sendfile(*args: int | None) -> int:
        kernel_copies.append(1)
        return real_sendfile(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "sendfile", counted_sendfile)
    content = os.urandom(5 * 1024 * 1024 + 3)
    path = write_file(tmp_path, content)
    async with socket_to(answer_sha256, server_ssl_context if tls else None,
                         ca_file) as sock:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.lseek(fd, 1000, os.SEEK_SET)  # where `head -c 1000` leaves a shell's stdin
            total = 0
            while sent := await sock.writable.send_file(fd, max_bytes=1024 * 1024):
                assert sent <= 1024 * 1024
                total += sent
            # The position advanced with the bytes.
            assert os.lseek(fd, 0, os.SEEK_CUR) == len(content)
        finally:
            os.close(fd)
        await sock.writable.aclose()
        assert await read_exactly(sock, 32) == hashlib.sha256(content[1000:]).digest()
        await sock.close()
    assert total == sock.bytes_sent == len(content) - 1000
    assert bool(kernel_copies) is not tls  # zero-copy on plain TCP; TLS must read


async def test_send_file_reads_and_sends_where_the_kernel_cannot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sendfile(*args: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", no_sendfile)
    content = os.urandom(300_000)
    path = write_file(tmp_path, content)
    with serve(answer_sha256) as server:
        async with loopback_invocation():
            sock = tcpcli.connect(server.address)
            fd = os.open(path, os.O_RDONLY)
            try:
                while await sock.writable.send_file(fd):
                    pass
            finally:
                os.close(fd)
            await sock.writable.aclose()
            assert await read_exactly(sock, 32) == hashlib.sha256(content).digest()
            await sock.close()


async def test_send_file_takes_only_regular_files() -> None:
    with serve(echo) as server:
        async with loopback_invocation():
            sock = tcpcli.connect(server.address)
            read_end, write_end = os.pipe()
            try:
                with pytest.raises(TypeError, match="regular file"):
                    await sock.writable.send_file(read_end)
            finally:
                os.close(read_end)
                os.close(write_end)
            await sock.close()


async def test_tls_handshake_timeout_alone_ends_a_silent_handshake() -> None:
    def accept_and_say_nothing(conn: socket.socket) -> None:
        time.sleep(3)

    options = tcpcli.ConnectOptions(tls_handshake_timeout=0.3)  # and no connect timeout
    with serve(accept_and_say_nothing) as server:
        async with loopback_invocation(options=options):
            sock = tcpcli.connect(server.address, secure_transport="on")
            started = time.monotonic()
            with pytest.raises(ConnectTimeoutError,
                               match="timed out after 0.3 s in the TLS handshake with"):
                await sock.opened
            assert time.monotonic() - started < 2
    assert [(p.name, p.outcome) for p in sock.clock.phases if p.name in ("connect", "tls")] \
        == [("connect", "ok"), ("tls", "cancelled")]
