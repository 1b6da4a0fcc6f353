"""Proxies: the policy judges the final destination, and the proxy is handed the checked
literal (never the name, which it could resolve to something else)."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import pytest

import tcpcli
from tcpcli.core.connect import SystemConnector
from tcpcli.core.errors import PolicyError, ProxyError
from tcpcli.core.resolve import StaticResolver
from tests.support.peers import echo, serve

pytestmark = pytest.mark.anyio


def _relay(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join(5)


class Socks5:
    """A minimal no-auth SOCKS5 CONNECT proxy that records what it was asked to reach."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []

    def __call__(self, conn: socket.socket) -> None:
        conn.recv(2 + 255)  # greeting: VER NMETHODS METHODS
        conn.sendall(b"\x05\x00")
        head = conn.recv(4)
        atyp = head[3]
        if atyp == 1:
            host = socket.inet_ntop(socket.AF_INET, conn.recv(4))
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, conn.recv(16))
        else:
            host = conn.recv(conn.recv(1)[0]).decode()
        (port,) = struct.unpack("!H", conn.recv(2))
        self.requests.append((host, port))
        upstream = socket.create_connection((host, port))
        conn.sendall(b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00")
        _relay(conn, upstream)


def http_connect(requests: list[str]) -> object:
    def handler(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(1024)
        target = head.split()[1].decode()
        requests.append(target)
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host.strip("[]"), int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _relay(conn, upstream)
    return handler


async def test_socks5_gets_the_checked_literal_and_the_phase_is_timed() -> None:
    socks = Socks5()
    with serve(echo) as target, serve(socks) as proxy:
        async with tcpcli.Invocation(
            policy=tcpcli.Policy.parse("workers", allow=["service.test"]),
            resolver=StaticResolver({"service.test": ["127.0.0.1"]}),
        ):
            sock = tcpcli.connect(f"service.test:{target.port}",
                                  proxy=f"socks5://127.0.0.1:{proxy.port}")
            await sock.writable.send(b"through the proxy")
            assert await sock.readable.receive() == b"through the proxy"
            await sock.close()
    assert socks.requests == [("127.0.0.1", target.port)]
    # The proxy hop has its own timing: the TCP connect to the proxy (through the
    # connector, like any dial), then the proxy's answer for the target.
    hops = [(p.name, p.detail.get("address"), p.detail.get("port")) for p in sock.clock.phases
            if p.name in ("connect", "proxy")]
    assert hops == [("connect", "127.0.0.1", proxy.port), ("proxy", "127.0.0.1", target.port)]


async def test_a_chain_reaches_the_target_through_each_proxy_in_turn() -> None:
    first, second = Socks5(), Socks5()
    with serve(echo) as target, serve(first) as a, serve(second) as b:
        async with tcpcli.Invocation(policy=tcpcli.Policy.parse("workers",
                                                                allow=["127.0.0.1"])):
            sock = tcpcli.connect(target.address, proxy=f"socks5://127.0.0.1:{a.port},"
                                                        f"socks5h://127.0.0.1:{b.port}")
            await sock.writable.send(b"two hops")
            assert await sock.readable.receive() == b"two hops"
            await sock.close()
    # A is asked for B; B (socks5h: it resolves names) is asked for the target itself.
    assert first.requests == [("127.0.0.1", b.port)]
    assert second.requests == [("127.0.0.1", target.port)]
    hops = [(p.name, p.detail.get("port")) for p in sock.clock.phases
            if p.name in ("connect", "proxy")]
    assert hops == [("connect", a.port), ("proxy", b.port), ("proxy", target.port)]


async def test_the_first_proxy_is_dialed_through_the_connector() -> None:
    dialed: list[tuple[str, int]] = []

    class Recording(SystemConnector):
        async def connect_tcp(self, host: Any, port: int, *,
                              local_address: str | None = None) -> Any:
            dialed.append((str(host), port))
            return await super().connect_tcp(host, port, local_address=local_address)

    socks = Socks5()
    with serve(echo) as target, serve(socks) as proxy:
        async with tcpcli.Invocation(policy=tcpcli.Policy.parse("workers",
                                                                allow=["127.0.0.1"]),
                                     connector=Recording()), tcpcli.connect(target.address,
                                  proxy=f"socks5://localhost:{proxy.port}") as sock:
            await sock.writable.send(b"x")
            assert await sock.readable.receive() == b"x"
    # (localhost may be tried as ::1 first, where nothing listens)
    assert ("127.0.0.1", proxy.port) in dialed and {port for _, port in dialed} == {proxy.port}


async def test_http_connect_proxy() -> None:
    requests: list[str] = []
    with serve(echo) as target, serve(http_connect(requests)) as proxy:
        policy = tcpcli.Policy.parse("workers", allow=["127.0.0.1"])
        async with tcpcli.Invocation(policy=policy), \
                tcpcli.connect(target.address, proxy=f"http://127.0.0.1:{proxy.port}") as sock:
            await sock.writable.send(b"hi")
            assert await sock.readable.receive() == b"hi"
    assert requests == [target.address]


async def test_policy_judges_the_destination_not_the_proxy() -> None:
    socks = Socks5()
    with serve(socks) as proxy:
        async with tcpcli.Invocation():  # workers policy: loopback destinations are refused
            sock = tcpcli.connect("127.0.0.1:22", proxy=f"socks5://127.0.0.1:{proxy.port}")
            with pytest.raises(PolicyError):
                await sock.opened
    assert socks.requests == [] and proxy.connections == []


async def test_unreachable_proxy_is_a_proxy_error() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    async with tcpcli.Invocation(policy="open"):
        with pytest.raises(ProxyError, match="cannot reach proxy"):
            await tcpcli.connect("127.0.0.1:9", proxy=f"socks5://127.0.0.1:{port}").opened
