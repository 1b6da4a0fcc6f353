"""Running out of file descriptors: ``probe`` backs off on EMFILE and reports every port
right (an fd shortage says nothing about a port).

The CLI runs with RLIMIT_NOFILE far below the concurrency asked for; the engine's
back-off itself is driven in-process, where the shortage can be made exact.
"""

from __future__ import annotations

import errno
import json
import resource
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import anyio.abc
import pytest

from tcpcli.core.connect import SystemConnector
from tcpcli.core.invocation import Invocation
from tcpcli.core.memory import MemoryByteStream, MemoryConnector
from tcpcli.engines.scan import Scanner
from tcpcli.engines.scan_results import PortState, ProbeResult, ScanOptions
from tcpcli.engines.scan_targets import parse_target
from tests.hostile.harness import assert_clean_exit, run_cli

pytestmark = pytest.mark.timeout(60)

OPEN_PORTS = 40
CLOSED_PORTS = 300
#: Far below the concurrency asked for (500) and the open ports held for banners.
FD_LIMIT = 32


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[list[int], list[int]]]:
    """Listeners (open: the kernel completes handshakes) and bound, non-listening sockets
    (closed: refused), all ours, so every state reported can be checked."""
    listeners, bound = [], []
    for _ in range(OPEN_PORTS):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        listeners.append(sock)
    for _ in range(CLOSED_PORTS):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        bound.append(sock)
    yield ([s.getsockname()[1] for s in listeners], [s.getsockname()[1] for s in bound])
    for sock in (*listeners, *bound):
        sock.close()


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.mark.parametrize("inspect", [[], ["--banner", "--banner-wait", "0.2"],
                                     ["--tls-detect", "--timeout", "0.3",
                                      "--banner-wait", "0.1"]],
                         ids=["connect-only", "banner", "tls-detect"])
def test_probe_backs_off_on_emfile(ports: tuple[list[int], list[int]],
                                   inspect: list[str]) -> None:
    open_ports, closed_ports = ports
    everything = sorted(open_ports + closed_ports)
    run = run_cli("probe", "127.0.0.1", "-p", ",".join(map(str, everything)), "--allow",
                  "127.0.0.1", "--max-sockets", "unlimited", "--concurrency", "500",
                  "--show", "all", "--json", *inspect, stdout="capture", timeout=40,
                  preexec_fn=_low_fd_limit)
    assert not run.killed
    assert_clean_exit(run)
    assert run.returncode == 0, run.stderr  # completed: closed ports are results
    events = [json.loads(line) for line in run.stdout.splitlines()]
    states = {e["port"]: e["state"] for e in events if e["event"] == "probe_result"}
    assert states == {**dict.fromkeys(open_ports, "open"), **dict.fromkeys(closed_ports, "closed")}
    summary = events[-1]
    assert summary["event"] == "summary" and summary["probes"] == len(everything)


@pytest.mark.anyio
async def test_fast_path_waits_for_a_descriptor(monkeypatch: pytest.MonkeyPatch,
                                                ports: tuple[list[int], list[int]]) -> None:
    """socket() fails with EMFILE whenever 3 of the scan's sockets are open (banners keep
    open ports' sockets a while): every port is still reported, and right."""
    made: list[socket.socket] = []

    class Scarce(SystemConnector):
        def start_connect(self, host: IPv4Address | IPv6Address, port: int, *,
                          local_address: str | None = None,
                          reuse: socket.socket | None = None) -> tuple[socket.socket, int]:
            if reuse is None and sum(1 for sock in made if sock.fileno() != -1) >= 3:
                raise OSError(errno.EMFILE, "Too many open files")
            sock, code = super().start_connect(host, port, local_address=local_address,
                                               reuse=reuse)
            made.append(sock)
            return sock, code

    open_ports, closed_ports = ports
    chosen = sorted(open_ports[:8] + closed_ports[:40])
    rows: list[ProbeResult] = []
    invocation = Invocation(policy="open", max_sockets=None, connector=Scarce())
    scanner = Scanner(invocation, ScanOptions(concurrency=500, banner=True, banner_wait=0.05),
                      rows.append)
    async with invocation:
        summary = await scanner.run([parse_target("127.0.0.1")], chosen)
    assert {row.port: row.state for row in rows} == {
        **dict.fromkeys(open_ports[:8], PortState.OPEN),
        **dict.fromkeys(closed_ports[:40], PortState.CLOSED)}
    assert summary.socket_backoffs > 0
    assert all(sock.fileno() == -1 for sock in made)  # nothing leaked


class ScarceConnector:
    """Every port's first two connects fail with EMFILE, then the real one runs."""

    def __init__(self, inner: MemoryConnector) -> None:
        self.inner = inner
        self.refusals: dict[int, int] = {}

    async def connect_tcp(self, host: IPv4Address | IPv6Address, port: int, *,
                          local_address: str | None = None) -> anyio.abc.ByteStream:
        if self.refusals.get(port, 0) < 2:
            self.refusals[port] = self.refusals.get(port, 0) + 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await self.inner.connect_tcp(host, port, local_address=local_address)


async def _greet(stream: MemoryByteStream) -> None:
    await stream.send(b"SSH-2.0-test\r\n")
    await anyio.sleep(5)


@pytest.mark.anyio
async def test_connector_path_retries_emfile_without_judging_the_port() -> None:
    async with MemoryConnector() as net:
        net.serve("198.51.100.7", 22, _greet)
        connector = ScarceConnector(net)
        invocation = Invocation(policy="open", connector=connector, max_sockets=None)
        rows: list[ProbeResult] = []
        scanner = Scanner(invocation, ScanOptions(timeout=0.5, banner=True, banner_wait=0.2),
                          rows.append)
        async with invocation:
            summary = await scanner.run([parse_target("198.51.100.7")], [22, 23])
    by_port = {row.port: row for row in rows}
    assert by_port[22].state is PortState.OPEN and by_port[22].identified == "ssh"
    assert by_port[23].state is PortState.CLOSED and by_port[23].reason == "refused"
    assert summary.socket_backoffs == 4
