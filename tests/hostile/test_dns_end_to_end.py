"""Hostile DNS, end to end: the real CLI, a real DNS server on loopback (UDP and TCP).

Every case runs ``tcpcli connect NAME:PORT --resolver 127.0.0.1:DNS`` (or ``probe``) where
PORT belongs to a loopback listener that counts accepts: a blocked destination must send
no packet, and a name must be resolved once and the checked literal dialed (DESIGN §4).
The answers name public addresses, so these tests run only inside a loopback-only network
namespace (``test_in_namespace.py`` starts them there): a policy bug cannot leak a packet,
and a dialed public address fails with "Network is unreachable" (exit 5).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.message
import dns.rrset
import pytest

from tests.hostile.harness import assert_clean_exit, run_cli
from tests.support.dns_server import (
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    SILENT,
    Custom,
    DnsServer,
    Raw,
    Series,
    Spec,
    Truncated,
    serve_dns,
)

pytestmark = [pytest.mark.isolated, pytest.mark.timeout(60)]

PUBLIC = "93.184.216.34"  # unreachable inside the namespace: dialing it exits 5
PUBLIC6 = "2a00:1450:4001::1"
#: 199 documentation addresses: about 3 KB, past the 512-byte UDP limit (TC, then TCP).
MANY = [("A", f"198.51.100.{i}") for i in range(1, 200)]
#: 5,000 addresses: past what one DNS message over TCP can hold (64 KiB).
TOO_MANY = [("A", f"198.{18 + i // 65000}.{i // 250 % 256}.{i % 250 + 1}") for i in range(5000)]


def _spoofed(query: dns.message.Message, transport: str) -> bytes:
    """A loopback answer under the wrong message ID: a resolver must ignore it."""
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                               "127.0.0.1"))
    response.id = (query.id + 1) % 65536
    return response.to_wire()


def _oversized_datagram(query: dns.message.Message, transport: str) -> bytes:
    """An answer far past the client's 512-byte UDP limit, sent anyway (no TC bit), with
    the blocked address last."""
    response = dns.message.make_response(query)
    if query.question[0].rdtype == 1:  # A
        values = [value for _, value in MANY] + ["127.0.0.1"]
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                   *values))
    return response.to_wire()


@dataclass
class Case:
    name: str
    spec: Spec
    code: int
    says: list[str]
    args: list[str] = field(default_factory=list)
    #: (qtype, transport) -> how many queries the server must have seen for the name
    queries: dict[tuple[str, str], int] = field(default_factory=dict)


CONNECT_CASES = [
    # Answers mixing allowed and blocked addresses: any blocked answer blocks the name.
    Case("mixed.test", [("A", PUBLIC), ("A", "127.0.0.1")], 3,
         ["(rule loopback)", "mixed.test resolves to 127.0.0.1", "--allow mixed.test"]),
    Case("mixed-families.test", [("AAAA", "::1"), ("A", PUBLIC)], 3,
         ["(rule loopback)", "resolves to ::1"]),
    Case("mixed-private.test", [("A", PUBLIC), ("A", "10.1.2.3")], 3,
         ['policy "workers-strict" (rule private)', "10.1.2.3"], ["--policy", "workers-strict"]),
    # CNAME chains into blocked space.
    Case("chain.test", [("CNAME", "hop1.test")], 3, ["(rule loopback)", "chain.test"]),
    Case("metadata.test", [("CNAME", "hop-meta.test")], 3,
         ["(rule cloud-metadata)", "169.254.169.254", "--allow metadata.test"]),
    # AAAA-only names, including IPv4 embedded in IPv6.
    Case("v6-loopback.test", [("AAAA", "::1")], 3, ["(rule loopback)", "::1"]),
    Case("v6-mapped.test", [("AAAA", "::ffff:127.0.0.1")], 3,
         ["(rule loopback)", "IPv4-mapped"]),
    Case("v6-nat64.test", [("AAAA", "64:ff9b::7f00:1")], 3, ["(rule loopback)", "127.0.0.1"]),
    Case("v6-public.test", [("AAAA", PUBLIC6)], 5, ["unreachable", PUBLIC6]),
    Case("v6-only-asked-v4.test", [("AAAA", PUBLIC6)], 4, ["no A records"], ["-4"],
         {("A", "udp"): 1, ("AAAA", "udp"): 0}),
    # Failures: each its own line, exit 4.
    Case("nxdomain.test", NXDOMAIN, 4, ["cannot resolve nxdomain.test: no such name",
                                        "NXDOMAIN from 127.0.0.1:"]),
    Case("servfail.test", SERVFAIL, 4, ["the DNS server failed", "SERVFAIL"]),
    Case("refused.test", REFUSED, 4, ["refused"]),
    Case("nodata.test", [("TXT", '"no address here"')], 4, ["no AAAA or A records"]),
    Case("silent.test", SILENT, 4, ["cannot resolve silent.test", "1 s"], ["--timeout", "1"]),
    Case("garbage.test", Raw(b"\x00\x00\xff\xffgarbage", fix_id=True), 4,
         ["cannot resolve garbage.test"], ["--timeout", "1"]),
    Case("spoofed-id.test", Custom(_spoofed), 4, ["cannot resolve spoofed-id.test"],
         ["--timeout", "1"]),
    # Truncated answers fall back to TCP; the TCP answer is the one judged.
    Case("truncated.test", Truncated([("A", "127.0.0.1")]), 3, ["(rule loopback)"], [],
         {("A", "udp"): 1, ("A", "tcp"): 1}),
    Case("truncated-public.test", Truncated([("A", PUBLIC)]), 5, [PUBLIC], [],
         {("A", "udp"): 1, ("A", "tcp"): 1}),
    # Oversized answers: the blocked address is the last of 200 (TC, then TCP) ...
    Case("many.test", [*MANY, ("A", "127.0.0.1")], 3, ["(rule loopback)", "127.0.0.1"], [],
         {("A", "tcp"): 1}),
    # ... or arrives in one datagram far past 512 bytes ...
    Case("oversized-udp.test", Custom(_oversized_datagram), 3, ["(rule loopback)"]),
    # ... or cannot fit in a DNS message at all (the server fails it over TCP).
    Case("too-many.test", TOO_MANY, 4, ["SERVFAIL", "over TCP"], [], {("A", "tcp"): 1}),
]

EXTRA_ZONE: dict[str, Spec] = {
    "hop1.test": [("CNAME", "hop2.test")],
    "hop2.test": [("A", PUBLIC), ("A", "127.0.0.1")],
    "hop-meta.test": [("A", "169.254.169.254")],
}


@dataclass
class World:
    dns: DnsServer
    listener: socket.socket
    port: int
    accepts: list[socket.socket]

    def accepted(self) -> int:
        """Connections that reached the loopback listener (none may, ever)."""
        self.listener.setblocking(False)
        try:
            while True:
                self.accepts.append(self.listener.accept()[0])
        except BlockingIOError:
            pass
        return len(self.accepts)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    zone: dict[str, Spec] = {case.name: case.spec for case in CONNECT_CASES}
    zone.update(EXTRA_ZONE)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    with serve_dns(zone, lifetime=300) as server:
        world = World(server, listener, listener.getsockname()[1], [])
        yield world
    for sock in (listener, *world.accepts):
        sock.close()


def connect(world: World, name: str, *args: str) -> tuple[int, str]:
    run = run_cli("connect", f"{name}:{world.port}", "--resolver", world.dns.address,
                  "--no-stdin", *args, timeout=20)
    assert not run.killed, run.stderr
    assert_clean_exit(run)
    assert len(run.lines) == 1, run.stderr  # one line a person can act on
    return run.returncode, run.stderr


@pytest.mark.parametrize("case", CONNECT_CASES, ids=[c.name for c in CONNECT_CASES])
def test_connect_case(world: World, case: Case) -> None:
    code, stderr = connect(world, case.name, *case.args)
    assert code == case.code, stderr
    for text in case.says:
        assert text in stderr, (text, stderr)
    for (qtype, transport), count in case.queries.items():
        assert len(world.dns.queries(case.name, qtype, transport)) == count, world.dns.log
    assert world.accepted() == 0


def test_rebinding_is_resolved_once_and_the_checked_address_dialed(world: World) -> None:
    """Public first, loopback second: the first resolution's public answer is what gets
    dialed (unreachable here), never a second lookup that now says 127.0.0.1."""
    world.dns.zone["rebind.test"] = Series([("A", PUBLIC)], [("A", "127.0.0.1")])
    first, first_err = connect(world, "rebind.test")
    assert first == 5 and PUBLIC in first_err, first_err
    assert len(world.dns.queries("rebind.test", "A")) == 1
    # The server really rebinds: the next resolution gets loopback and is blocked.
    second, second_err = connect(world, "rebind.test")
    assert second == 3 and "(rule loopback)" in second_err, second_err
    assert len(world.dns.queries("rebind.test", "A")) == 2
    assert world.accepted() == 0


def test_probe_resolves_once_and_judges_every_answer(world: World) -> None:
    world.dns.zone["probe-rebind.test"] = Series([("A", PUBLIC)], [("A", "127.0.0.1")])
    rebind = run_cli("probe", "probe-rebind.test", "-p", f"{world.port},{world.port + 1}",
                     "--resolver", world.dns.address, "--timeout", "0.5", stdout="capture")
    assert rebind.returncode == 0, rebind.stderr  # completed: unreachable is a result
    rows = rebind.stdout.decode().splitlines()
    assert len(rows) == 2 and all(f"address={PUBLIC}" in row for row in rows), rows
    assert len(world.dns.queries("probe-rebind.test", "A")) == 1  # once for all ports

    mixed = run_cli("probe", "mixed.test", "-p", str(world.port), "--resolver",
                    world.dns.address, stdout="capture")
    assert mixed.returncode == 3, mixed.stderr
    assert "blocked" in mixed.stdout.decode() and "rule=loopback" in mixed.stdout.decode()

    gone = run_cli("probe", "nxdomain.test", "-p", str(world.port), "--resolver",
                   world.dns.address, stdout="capture")
    assert gone.returncode == 4, gone.stderr
    assert "cannot resolve nxdomain.test: no such name" in gone.stderr

    silent = run_cli("probe", "silent.test", "-p", str(world.port), "--resolver",
                     world.dns.address, "--timeout", "0.2", stdout="capture")
    assert silent.returncode == 4, silent.stderr
    assert "no answer from" in silent.stderr
    for run in (rebind, mixed, gone, silent):
        assert_clean_exit(run)
    assert world.accepted() == 0


def test_an_allowed_name_does_connect(world: World) -> None:
    """The control: the same listener, name and resolver reach it once allowed."""
    world.dns.zone["allowed.test"] = [("A", "127.0.0.1")]
    code, stderr = connect(world, "allowed.test", "--allow", "allowed.test",
                           "--idle-timeout", "0.2")
    assert code == 6, stderr  # connected, then idle: the listener never speaks
    assert world.accepted() == 1
