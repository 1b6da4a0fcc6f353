"""The scan engine: port and target parsing, states through the connector seam, the cap,
and TCP self-connect provoked on loopback."""

from __future__ import annotations

import errno
import itertools
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network

import anyio
import pytest

from tcpcli.core.connect import SystemConnector
from tcpcli.core.errors import AddressError
from tcpcli.core.invocation import Invocation
from tcpcli.core.memory import MemoryByteStream, MemoryConnector
from tcpcli.engines import scan_batch
from tcpcli.engines.scan import Scanner
from tcpcli.engines.scan_limits import Pacer
from tcpcli.engines.scan_results import (
    PortState,
    ProbeResult,
    ScanOptions,
    connect_failure,
    is_self_connect,
)
from tcpcli.engines.scan_targets import (
    choose_ports,
    guard,
    parse_ports,
    parse_target,
    read_target_lines,
)

pytestmark = pytest.mark.timeout(30)


def test_parse_ports_lists_ranges_names_and_dedupe() -> None:
    assert parse_ports("22,ssh,80-82,81,redis") == [22, 80, 81, 82, 6379]
    assert parse_ports("-") == list(range(1, 65536))
    assert parse_ports("65530-") == list(range(65530, 65536))
    assert parse_ports("-3") == [1, 2, 3]
    for bad in ("0", "70000", "9-1", "nosuchservice", "1,,2"):
        with pytest.raises(ValueError, match=r"port|service|empty"):
            parse_ports(bad)


def test_choose_ports_top_and_union() -> None:
    assert choose_ports([], 3) == sorted([80, 23, 443])
    assert len(choose_ports([], None)) == 100
    assert choose_ports(["22"], 1) == [22, 80]
    assert len(choose_ports([], 500)) == 500


def test_parse_target_forms() -> None:
    assert parse_target("db.internal:5432").port == 5432
    assert parse_target("db.internal").host == "db.internal"
    assert parse_target("[::1]:22").literal is not None
    assert parse_target("::1").literal is not None
    assert parse_target("127.1").literal == IPv4Address("127.0.0.1")
    cidr = parse_target("10.0.0.0/30")
    assert cidr.network == IPv4Network("10.0.0.0/30") and cidr.address_count == 4
    for bad in ("", "fe80::1%eth0", "a b", "10.0.0.0/40", "host:99999"):
        with pytest.raises(AddressError):
            parse_target(bad)


def test_targets_file_comments_and_guard() -> None:
    lines = ["# hosts\n", "a.example  b.example # two\n", "\n", "10.0.0.0/8\n"]
    assert list(read_target_lines(lines)) == ["a.example", "b.example", "10.0.0.0/8"]
    assert guard([parse_target("10.0.0.0/8")], 1) is not None
    assert guard([parse_target("10.0.0.0/24")], 65535) is not None  # 16.7 M probes
    assert guard([parse_target("10.0.0.0/24")], 100) is None


def test_self_connect_is_recognized_on_a_real_socket() -> None:
    """Binding to a free port and connecting to it is a TCP simultaneous open with itself."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.connect(("127.0.0.1", port))
    try:
        assert is_self_connect(probe.getsockname(), probe.getpeername())
    finally:
        probe.close()
    assert not is_self_connect(("127.0.0.1", 1), ("127.0.0.1", 2))


@pytest.mark.parametrize(("code", "state", "reason"), [
    (errno.ECONNREFUSED, PortState.CLOSED, "refused"),
    (errno.ETIMEDOUT, PortState.FILTERED, "timeout (kernel)"),
    (errno.ECONNRESET, PortState.OPEN, "accepted, then ECONNRESET"),
    (errno.EHOSTUNREACH, PortState.UNREACHABLE, "EHOSTUNREACH: No route to host"),
    (errno.EACCES, PortState.UNREACHABLE, "EACCES: Permission denied"),
    (errno.EIO, PortState.UNREACHABLE, "EIO: Input/output error"),
])
def test_a_failed_connects_errno_names_the_state_and_the_reason(
        code: int, state: PortState, reason: str) -> None:
    assert connect_failure(code) == (state, reason)


async def _silent(stream: MemoryByteStream) -> None:
    await anyio.sleep(10)


async def _ssh(stream: MemoryByteStream) -> None:
    await stream.send(b"SSH-2.0-OpenSSH_9.6\r\n")
    await anyio.sleep(10)


@pytest.mark.anyio
async def test_states_through_the_connector_seam() -> None:
    async with MemoryConnector() as net:
        net.serve("198.51.100.7", 22, _ssh)
        net.serve("198.51.100.7", 80, _silent)
        net.hang("198.51.100.7", 81)
        net.fail("198.51.100.7", 82, OSError(errno.ENETUNREACH, "Network is unreachable"))
        # Reset is only possible after the handshake (a refused SYN is ECONNREFUSED).
        net.fail("198.51.100.7", 84, OSError(errno.ECONNRESET, "Connection reset by peer"))
        invocation = Invocation(policy="open", connector=net, max_sockets=6)
        rows: list[ProbeResult] = []
        scanner = Scanner(invocation, ScanOptions(timeout=0.2, retries=1, banner=True,
                                                  banner_wait=0.2), rows.append)
        async with invocation:
            summary = await scanner.run([parse_target("198.51.100.7")], [22, 25, 80, 81, 82, 83, 84])
    by_port = {row.port: row for row in rows}
    assert by_port[22].state is PortState.OPEN and by_port[22].identified == "ssh"
    assert by_port[80].state is PortState.OPEN and by_port[80].banner is None
    assert by_port[81].state is PortState.FILTERED and by_port[81].attempts == 2
    assert by_port[82].state is PortState.UNREACHABLE and by_port[82].errno == errno.ENETUNREACH
    assert by_port[83].state is PortState.CLOSED and by_port[83].reason == "refused"
    assert by_port[84].state is PortState.OPEN
    assert by_port[84].reason == "accepted, then ECONNRESET"
    assert by_port[25].state is PortState.OPEN or by_port[25].state is PortState.CLOSED
    # The Worker's view is computed with the workers profile whatever --policy says.
    assert not by_port[25].workers_allowed and by_port[25].workers_rule == "port-25"
    assert by_port[22].workers_allowed
    assert summary.peak_sockets <= 6
    assert summary.counts[PortState.OPEN] == 3


@pytest.mark.anyio
async def test_blocked_sends_nothing() -> None:
    async with MemoryConnector() as net:
        invocation = Invocation(connector=net)  # the workers profile
        rows: list[ProbeResult] = []
        async with invocation:
            await Scanner(invocation, ScanOptions(timeout=0.2), rows.append).run(
                [parse_target("127.0.0.1"), parse_target("localhost"),
                 parse_target("203.0.113.9:25")], [26])
        assert net.dialed == []
    assert {row.state for row in rows} == {PortState.BLOCKED}
    assert {row.rule for row in rows} == {"loopback", "loopback-name", "port-25"}


@pytest.mark.anyio
async def test_fast_path_on_loopback_respects_the_cap() -> None:
    listeners = []
    for _ in range(3):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listeners.append(listener)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: refused
    open_ports = sorted(listener.getsockname()[1] for listener in listeners)
    closed_port = closed.getsockname()[1]
    try:
        invocation = Invocation(policy="open", max_sockets=6)
        rows: list[ProbeResult] = []
        scanner = Scanner(invocation, ScanOptions(timeout=1.0), rows.append)
        async with invocation:
            summary = await scanner.run([parse_target("127.0.0.1")],
                                        [*open_ports, closed_port, *range(1, 200)])
    finally:
        for sock in (*listeners, closed):
            sock.close()
    assert scanner.fast
    assert sorted(r.port for r in rows if r.state is PortState.OPEN) == open_ports
    assert next(r for r in rows if r.port == closed_port).state is PortState.CLOSED
    assert all(r.latency_ms is not None for r in rows if r.state is PortState.OPEN)
    assert summary.peak_sockets <= 6


def _listeners(count: int) -> list[socket.socket]:
    listeners = []
    for _ in range(count):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listeners.append(listener)
    return listeners


async def _scan_loopback(ports: list[int],
                         connector: SystemConnector | None = None) -> list[ProbeResult]:
    invocation = Invocation(policy="open", max_sockets=None, connector=connector)
    rows: list[ProbeResult] = []
    scanner = Scanner(invocation, ScanOptions(timeout=1.0), rows.append,
                      report=frozenset({PortState.OPEN}))
    async with invocation:
        summary = await scanner.run([parse_target("127.0.0.1")], ports)
    assert summary.probes == len(ports)
    return rows


@pytest.mark.anyio
@pytest.mark.skipif(not scan_batch.RECYCLE_SOCKETS, reason="socket reuse is Linux-only")
async def test_refused_sockets_are_reused_and_results_stay_exact(
        monkeypatch: pytest.MonkeyPatch) -> None:
    created = 0

    class Counting(SystemConnector):
        """Counts the sockets made (a reused one is passed back in as ``reuse``)."""

        def start_connect(self, host, port, *, local_address=None, reuse=None):  # type: ignore[no-untyped-def]
            nonlocal created
            created += reuse is None
            return super().start_connect(host, port, local_address=local_address, reuse=reuse)

    listeners = _listeners(5)
    open_ports = sorted(listener.getsockname()[1] for listener in listeners)
    try:
        # Mostly closed ports around the listeners: refused sockets go round again.
        ports = sorted({*open_ports, *range(20000, 22000)})
        rows = await _scan_loopback(ports, Counting())
    finally:
        for listener in listeners:
            listener.close()
    assert sorted(row.port for row in rows) == open_ports
    assert created < len(ports) / 4, f"{created} sockets for {len(ports)} ports"


@pytest.mark.anyio
async def test_a_kernel_that_will_not_reconnect_falls_back_to_fresh_sockets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend every reconnect answers something unexpected (as EINVAL would elsewhere).
    monkeypatch.setattr(scan_batch, "RECYCLE_SOCKETS", True)
    monkeypatch.setattr(scan_batch, "NONBLOCKING_CONNECT_ANSWERS", frozenset())
    listeners = _listeners(3)
    open_ports = sorted(listener.getsockname()[1] for listener in listeners)
    try:
        rows = await _scan_loopback(sorted({*open_ports, *range(22000, 22500)}))
    finally:
        for listener in listeners:
            listener.close()
    assert sorted(row.port for row in rows) == open_ports


class _TimedConnector(MemoryConnector):
    """Records when each connect started, by address."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: dict[str, list[float]] = {}

    async def connect_tcp(self, host, port, *, local_address=None):  # type: ignore[no-untyped-def]
        self.starts.setdefault(str(host), []).append(time.monotonic())
        return await super().connect_tcp(host, port, local_address=local_address)


def _gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def _assert_paced(starts: list[float], rate: float) -> None:
    """Never ahead of a 1/rate schedule. The pacer spaces its own start times; the
    connector stamps each start a little later, by a delay that varies on a busy machine,
    so one gap may look a few ms short after a late one: allow that jitter, no burst."""
    interval, jitter = 1 / rate, 0.005
    for index, start in enumerate(starts):
        assert start - starts[0] >= index * interval - jitter, _gaps(starts)
    assert min(_gaps(starts)) >= interval - 2 * jitter, _gaps(starts)


@pytest.mark.anyio
@pytest.mark.parametrize(("rate", "host_rate"), [(50.0, None), (None, 50.0)])
async def test_rates_space_connect_starts(rate: float | None, host_rate: float | None) -> None:
    hosts = ["198.51.100.7", "198.51.100.8"]
    async with _TimedConnector() as net:
        for host in hosts:
            for port in range(1000, 1006):
                net.serve(host, port, _silent)
        invocation = Invocation(policy="open", connector=net, max_sockets=None)
        async with invocation:
            await Scanner(invocation, ScanOptions(timeout=0.5, rate=rate, host_rate=host_rate),
                          lambda row: None).run([parse_target(h) for h in hosts],
                                                list(range(1000, 1006)))
    for host in hosts:
        assert len(net.starts[host]) == 6
        _assert_paced(net.starts[host], 50.0)
    if rate is not None:
        _assert_paced(sorted(t for times in net.starts.values() for t in times), 50.0)


def test_the_pacer_keeps_hosts_apart_and_forgets_old_ones() -> None:
    pacer = Pacer(rate=None, host_rate=10.0)
    pacer.started("a", now=100.0)
    assert pacer.ready_at("a") == pytest.approx(100.1)
    assert pacer.ready_at("b") == 0.0  # another host is not held back by a's pace
    for index in range(Pacer.PRUNE_AT + 1):
        pacer.started(f"h{index}", now=200.0 + index)
    assert len(pacer._next_by_host) < Pacer.PRUNE_AT


@pytest.mark.anyio
@pytest.mark.parametrize("all_addresses", [False, True], ids=["first", "all"])
async def test_a_name_with_several_addresses(all_addresses: bool) -> None:
    from tcpcli.core.resolve import StaticResolver

    async with MemoryConnector() as net:
        net.serve("198.51.100.7", 22, _silent)  # .8 refuses
        resolver = StaticResolver({"db.example": ["198.51.100.7", "198.51.100.8"]})
        invocation = Invocation(policy="open", connector=net, resolver=resolver)
        rows: list[ProbeResult] = []
        scanner = Scanner(invocation, ScanOptions(timeout=0.2, all_addresses=all_addresses),
                          rows.append)
        async with invocation:
            summary = await scanner.run([parse_target("db.example")], [22])
    seen = sorted((str(row.address), row.state) for row in rows)
    if all_addresses:
        assert seen == [("198.51.100.7", PortState.OPEN), ("198.51.100.8", PortState.CLOSED)]
        assert summary.unprobed == {}
    else:  # the first address only, and the others said
        assert seen == [("198.51.100.7", PortState.OPEN)]
        assert summary.unprobed == {"db.example": ["198.51.100.8"]}


def test_the_descriptor_budget_follows_the_soft_limit() -> None:
    """fd_budget reads the soft RLIMIT_NOFILE without the resource module: the budget is
    that limit less the descriptors open and the reserve, or unbounded without a limit."""
    code = ("import resource, sys\n"
            "from tcpcli.engines import scan_limits\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit("
            "resource.RLIMIT_NOFILE)[1]))\n"
            "print(scan_limits.fd_budget() + scan_limits._open_fds() + scan_limits.FD_RESERVE)")
    for soft in (300, 1000):
        found = subprocess.run([sys.executable, "-c", code, str(soft)], capture_output=True,
                               text=True, check=True).stdout
        assert float(found) == soft
