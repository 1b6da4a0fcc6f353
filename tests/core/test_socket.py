"""The socket core over the connector seam: Workers semantics without a real socket."""

from __future__ import annotations

import contextlib
import errno
import random
import socket as socketlib

import anyio
import anyio.lowlevel
import pytest

import tcpcli
from tcpcli.core.errors import (
    PROXY_FAILED,
    ConnectionLostError,
    ConnectRefusedError,
    ConnectTimeoutError,
    PolicyError,
    SocketCanceledError,
    StartTlsError,
    StreamCancelledError,
    StreamClosedError,
    UnreachableError,
)
from tcpcli.core.memory import MemoryByteStream, MemoryConnector
from tcpcli.core.resolve import StaticResolver

pytestmark = pytest.mark.anyio

PEER = "203.0.113.10"  # a documentation address: only ever "dialed" through the memory seam
NAMES = {"db.example": [PEER], "dual.example": ["2001:db8::10", PEER]}


def invocation(net: MemoryConnector, **kwargs: object) -> tcpcli.Invocation:
    kwargs.setdefault("policy", "workers")
    return tcpcli.Invocation(connector=net, resolver=StaticResolver(NAMES), **kwargs)  # type: ignore[arg-type]


async def echo(stream: MemoryByteStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive())
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def send_and_close(stream: MemoryByteStream) -> None:
    await stream.send(b"hello")
    await stream.send_eof()
    try:  # keep reading: the test checks what arrives after our EOF
        while data := await stream.receive():
            received.append(data)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        received.append(b"<EOF>")


received: list[bytes] = []


async def test_round_trip_by_name_dials_the_resolved_literal() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, echo)
        sock = tcpcli.connect("db.example:7")
        info = await sock.opened
        assert info == tcpcli.SocketInfo(remote_address="db.example:7", local_address=None)
        await sock.writable.send(b"ping")
        assert await sock.readable.receive() == b"ping"
        await sock.close()
        await sock.closed
        assert net.dialed == [(PEER, 7)]
        assert sock.peer_address == (PEER, 7)
        assert [p.name for p in sock.clock.phases][:2] == ["resolve", "connect"]


async def test_writes_before_open_are_delivered_in_order() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, echo)
        sock = tcpcli.connect(f"{PEER}:7")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sock.writable.send, b"a")
            await anyio.lowlevel.checkpoint()
            tg.start_soon(sock.writable.send, b"b")
        data = b""
        while len(data) < 2:
            data += await sock.readable.receive()
        assert data == b"ab"
        await sock.close()


async def test_refused_rejects_opened_and_closed_with_workers_text() -> None:
    async with MemoryConnector() as net, invocation(net):
        sock = tcpcli.connect(f"{PEER}:9")
        with pytest.raises(ConnectRefusedError) as opened:
            await sock.opened
        with pytest.raises(ConnectRefusedError):
            await sock.closed
        assert opened.value.workers_message == PROXY_FAILED
        await sock.close()  # resolves even though the connection failed


async def test_fetch_hint_on_http_ports() -> None:
    async with MemoryConnector() as net, invocation(net):
        sock = tcpcli.connect(f"{PEER}:443")
        with pytest.raises(ConnectRefusedError) as exc:
            await sock.opened
        assert exc.value.workers_message.endswith("consider using fetch instead")


async def test_unreachable_keeps_errno() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.fail(PEER, 7, OSError(errno.EHOSTUNREACH, "No route to host"))
        with pytest.raises(UnreachableError) as exc:
            await tcpcli.connect(f"{PEER}:7").opened
        assert exc.value.errno == errno.EHOSTUNREACH


async def test_connect_timeout() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.hang(PEER, 7)
        sock = tcpcli.connect(f"{PEER}:7", connect_timeout=0.05)
        with pytest.raises(ConnectTimeoutError, match="timed out after 0.05 s"):
            await sock.opened


async def test_blocked_destination_sends_nothing() -> None:
    async with MemoryConnector() as net, invocation(net):
        for target in ("127.0.0.1:7", "localhost:7", f"{PEER}:25", "[::1]:7", "1.1.1.1:53"):
            with pytest.raises(PolicyError) as exc:
                await tcpcli.connect(target).opened
            assert exc.value.rule
            assert "--allow" in str(exc.value) or "--policy" in str(exc.value)
        assert net.dialed == []


async def test_port_25_gets_the_workers_port_message() -> None:
    async with MemoryConnector() as net, invocation(net):
        with pytest.raises(PolicyError) as exc:
            await tcpcli.connect(f"{PEER}:25").opened
        assert exc.value.workers_message == "Connections to port 25 are prohibited"


async def test_any_blocked_answer_blocks_the_name() -> None:
    resolver = StaticResolver({"rebind.example": [PEER, "127.0.0.1"]})
    async with MemoryConnector() as net, tcpcli.Invocation(connector=net, resolver=resolver):
        net.serve(PEER, 7, echo)
        with pytest.raises(PolicyError, match="127.0.0.1"):
            await tcpcli.connect("rebind.example:7").opened
        assert net.dialed == []


async def test_allow_half_open_false_closes_write_side_on_peer_eof() -> None:
    received.clear()
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, send_and_close)
        sock = tcpcli.connect(f"{PEER}:7")
        assert await sock.readable.receive() == b"hello"
        with pytest.raises(anyio.EndOfStream):
            await sock.readable.receive()
        with pytest.raises(StreamClosedError, match="This WritableStream has been closed."):
            await sock.writable.send(b"late")
        with anyio.fail_after(1):
            await sock.closed
        await anyio.sleep(0.01)
        assert received == [b"<EOF>"]


async def test_allow_half_open_true_keeps_writing_after_peer_eof() -> None:
    received.clear()
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, send_and_close)
        sock = tcpcli.connect(f"{PEER}:7", allow_half_open=True)
        assert await sock.readable.receive() == b"hello"
        with pytest.raises(anyio.EndOfStream):
            await sock.readable.receive()
        await sock.writable.send(b"after")
        with anyio.move_on_after(0.05) as scope:
            await sock.closed
        assert scope.cancelled_caught, "closed must stay pending while we may still write"
        await sock.writable.aclose()
        with anyio.fail_after(1):
            await sock.closed
        await anyio.sleep(0.01)
        assert received == [b"after", b"<EOF>"]


async def test_close_flushes_pending_writes() -> None:
    got = bytearray()

    async def slow_reader(stream: MemoryByteStream) -> None:
        try:
            while True:
                await anyio.sleep(0.001)
                got.extend(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, slow_reader)
        sock = tcpcli.connect(f"{PEER}:7")
        issued = 0

        async def issue(i: int) -> None:
            nonlocal issued
            issued += 1  # send() runs synchronously to its first await: it is now queued
            await sock.writable.send(bytes([i]) * 10)

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(issue, i)
            while issued < 100:
                await anyio.sleep(0.001)
            assert sock._pending_writes > 0
            await sock.close()
        await anyio.sleep(0.3)
        assert len(got) == 1000


async def test_writable_close_is_a_half_close_and_reading_goes_on() -> None:
    async def answer_after_eof(stream: MemoryByteStream) -> None:
        request = b""
        try:
            while True:
                request += await stream.receive()
        except anyio.EndOfStream:
            await stream.send(b"got " + request)
            await stream.send_eof()

    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, answer_after_eof)
        sock = tcpcli.connect(f"{PEER}:7")
        await sock.writable.send(b"question")
        await sock.writable.aclose()
        assert await sock.readable.receive() == b"got question"
        with pytest.raises(anyio.EndOfStream):
            await sock.readable.receive()
        with anyio.fail_after(1):
            await sock.closed


async def test_peer_reset_mid_stream() -> None:
    async def reset(stream: MemoryByteStream) -> None:
        await stream.send(b"partial")
        await stream.reset()

    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, reset)
        sock = tcpcli.connect(f"{PEER}:7")
        await sock.opened
        await anyio.sleep(0.01)
        with pytest.raises(ConnectionLostError) as exc:
            while True:
                await sock.readable.receive()
        assert exc.value.workers_message == "Network connection lost."
        with anyio.fail_after(1):
            await sock.closed  # the read reports the loss; `closed` resolves (as workerd)


async def test_start_tls_misuse_texts() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, echo)
        off = tcpcli.connect(f"{PEER}:7")
        with pytest.raises(StartTlsError, match="must be set to 'starttls'"):
            off.start_tls()
        on = tcpcli.connect(f"{PEER}:7", secure_transport="on")
        with pytest.raises(StartTlsError, match="Cannot startTls on a TLS socket."):
            on.start_tls()
        plain = tcpcli.connect(f"{PEER}:7", secure_transport="starttls")
        upgraded = plain.start_tls()
        assert plain.upgraded
        assert upgraded.secure_transport == "on"
        with pytest.raises(StartTlsError, match="startTls has already been called"):
            plain.start_tls()  # workerd, before the connection has moved to `upgraded`
        with pytest.raises(StartTlsError, match="Cannot startTls on a TLS socket."):
            upgraded.start_tls()
        closed = tcpcli.connect(f"{PEER}:7", secure_transport="starttls")
        await closed.opened
        await closed.close()
        with pytest.raises(StartTlsError, match="closed before startTls could be started"):
            closed.start_tls()
        with pytest.raises(StartTlsError, match="expectedServerHostname"):
            tcpcli.connect(f"{PEER}:7", secure_transport="starttls").start_tls(
                expected_server_hostname="x"
            )
        for sock in (off, on, upgraded):
            await sock.close()


async def test_seventh_socket_queues_until_a_slot_frees() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, echo)
        inv = tcpcli.core.invocation.current_invocation()
        socks = [tcpcli.connect(f"{PEER}:7") for _ in range(6)]
        for sock in socks:
            await sock.opened
        assert inv.slots.live == 6
        seventh = tcpcli.connect(f"{PEER}:7")
        opened_at: list[float] = []

        async def open_seventh() -> None:
            await seventh.opened
            opened_at.append(anyio.current_time())

        async def keep_busy(sock: tcpcli.Socket) -> None:
            # A read in progress on every open socket: no deadlock, so nothing is evicted.
            with anyio.move_on_after(1), contextlib.suppress(anyio.ClosedResourceError):
                await sock.readable.receive()  # close() elsewhere ends the read

        async with anyio.create_task_group() as tg:
            for sock in socks:
                tg.start_soon(keep_busy, sock)
            await anyio.sleep(0.01)
            tg.start_soon(open_seventh)
            await anyio.sleep(0.1)
            assert opened_at == [], "the seventh socket must wait for a free slot"
            closed_at = anyio.current_time()
            await socks[0].close()
            with anyio.fail_after(1):
                while not opened_at:
                    await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
        assert opened_at[0] >= closed_at
        waits = seventh.clock.find("slot-wait")
        assert len(waits) == 1
        assert (waits[0].duration_ms or 0) >= 90
        assert inv.slots.live <= 6
        assert inv.slots.peak == 6
        for sock in [*socks, seventh]:
            await sock.close()
        assert inv.slots.live == 0


async def test_deadlock_rule_cancels_the_least_recently_used_idle_socket() -> None:
    async with MemoryConnector() as net, invocation(net, max_sockets=2):
        net.serve(PEER, 7, echo)
        first, second = tcpcli.connect(f"{PEER}:7"), tcpcli.connect(f"{PEER}:7")
        await first.opened
        await second.opened
        await second.writable.send(b"x")  # `first` is now the least recently used
        third = tcpcli.connect(f"{PEER}:7")
        with anyio.fail_after(1):
            await third.opened
        with pytest.raises(SocketCanceledError):
            await first.closed
        with pytest.raises(SocketCanceledError):
            await first.writable.send(b"y")
        await second.close()
        await third.close()


async def test_slots_are_released_on_every_failure_path() -> None:
    rng = random.Random(1234)
    async with MemoryConnector() as net, invocation(net, max_sockets=3):
        net.serve(PEER, 7, echo)
        net.fail(PEER, 8, OSError(errno.ENETUNREACH, "Network is unreachable"))
        net.hang(PEER, 9)
        inv = tcpcli.core.invocation.current_invocation()

        async def one(kind: int) -> None:
            port = {0: 6, 1: 7, 2: 8, 3: 9}[kind]  # refused / ok / unreachable / hang
            sock = tcpcli.connect(f"{PEER}:{port}", connect_timeout=0.02)
            with anyio.move_on_after(rng.choice([0.001, 0.01, 1])):
                try:
                    await sock.opened
                    await sock.writable.send(b"z")
                    if rng.random() < 0.5:
                        await sock.close()
                    else:
                        await sock.readable.receive()
                        await sock.close()
                except tcpcli.TcpcliError:
                    pass

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one, rng.randrange(4))
        for sock in list(inv.sockets):
            await sock.close()
        assert inv.slots.live == 0


async def test_happy_eyeballs_falls_back_and_times_each_attempt() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.hang("2001:db8::10", 7)  # IPv6 is tried first and stalls
        net.serve(PEER, 7, echo)
        sock = tcpcli.connect("dual.example:7")
        await sock.opened
        attempts = sock.clock.find("connect")
        assert [a.detail["address"] for a in attempts] == ["2001:db8::10", PEER]
        assert attempts[0].outcome == "cancelled"
        assert attempts[1].outcome == "ok"
        assert sock.peer_address == (PEER, 7)
        assert attempts[1].start_ns - attempts[0].start_ns >= 0.2e9
        await sock.close()


async def test_family_filter() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, echo)
        sock = tcpcli.connect("dual.example:7", family=socketlib.AF_INET)
        await sock.opened
        assert [a.detail["address"] for a in sock.clock.find("connect")] == [PEER]
        await sock.close()


async def test_async_with_closes() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, echo)
        async with tcpcli.connect(f"{PEER}:7") as sock:
            await sock.writable.send(b"x")
        await sock.closed
        with pytest.raises(StreamClosedError):
            await sock.writable.send(b"y")


async def test_invocation_end_closes_open_sockets() -> None:
    async with MemoryConnector() as net:
        async with invocation(net) as inv:
            net.serve(PEER, 7, echo)
            sock = tcpcli.connect(f"{PEER}:7")
            await sock.opened
        assert inv.slots.live == 0
        with pytest.raises(StreamClosedError):
            await sock.closed


async def test_write_rejects_non_bytes() -> None:
    async with MemoryConnector() as net, invocation(net):
        net.serve(PEER, 7, echo)
        sock = tcpcli.connect(f"{PEER}:7")
        with pytest.raises(TypeError, match="non-ArrayBuffer/ArrayBufferView type"):
            await sock.writable.send(42)  # type: ignore[arg-type]
        await sock.writable.send("é")  # type: ignore[arg-type]  # workerd: UTF-8
        assert await sock.readable.receive() == b"\xc3\xa9"
        await sock.close()
        with pytest.raises(StreamClosedError, match="belongs to an object that is closing"):
            await sock.writable.send(b"late")
        with pytest.raises(StreamClosedError, match="belongs to an object that is closing"):
            await sock.readable.receive()
        with pytest.raises(StreamClosedError, match="This socket has been closed."):
            await sock.writable.aclose()


async def test_read_on_a_failed_connection_is_cancelled() -> None:
    async with MemoryConnector() as net, invocation(net):
        sock = tcpcli.connect(f"{PEER}:9")
        with pytest.raises(StreamCancelledError, match="Stream was cancelled.") as exc:
            await sock.readable.receive()
        assert isinstance(exc.value.__cause__, ConnectRefusedError)
