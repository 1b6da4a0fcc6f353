"""The resolver seam against a real DNS server on loopback (never the system's servers)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import dns.rcode
import pytest

import tcpcli
from tcpcli.core.errors import (
    NameNotFoundError,
    NoAddressError,
    PolicyError,
    ResolverFailureError,
    ResolveTimeoutError,
)
from tcpcli.core.memory import MemoryConnector
from tcpcli.core.resolve import DnsResolver, StaticResolver, parse_server, resolver_from_option
from tests.support.dns_server import DnsServer, Zone, dns_server

pytestmark = pytest.mark.anyio

ZONE = Zone(
    records={
        "both.test": [("A", "192.0.2.1"), ("AAAA", "2001:db8::1"), ("A", "192.0.2.2")],
        "v4.test": [("A", "192.0.2.4")],
        "v6.test": [("AAAA", "2001:db8::6")],
        "alias.test": [("CNAME", "middle.test.")],
        "middle.test": [("CNAME", "v4.test.")],
        "nodata.test": [("TXT", '"hello"')],
        "rebind.test": [("A", "192.0.2.9"), ("A", "127.0.0.1")],
        "big.test": [("A", f"192.0.2.{i}") for i in range(1, 60)],
    },
    rcode={"servfail.test": dns.rcode.SERVFAIL, "refused.test": dns.rcode.REFUSED},
    silent={"silent.test"},
    truncate={"big.test"},
)


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with dns_server(ZONE) as running:
        yield running


def resolver(server: DnsServer, **kwargs: object) -> DnsResolver:
    return DnsResolver([server.address], hosts_file=None, **kwargs)  # type: ignore[arg-type]


async def test_both_families_in_one_resolution(server: DnsServer) -> None:
    result = await resolver(server).resolve("Both.Test.")
    assert set(result.addresses) == {ip_address("192.0.2.1"), ip_address("192.0.2.2"),
                                     ip_address("2001:db8::1")}
    assert result.source == "dns" and result.name == "both.test"
    assert sorted(q.qtype for q in result.queries) == ["A", "AAAA"]
    assert all(q.elapsed_ms >= 0 and q.server == server.address for q in result.queries)


async def test_family_filter_asks_one_type(server: DnsServer) -> None:
    result = await resolver(server).resolve("both.test", family=socket.AF_INET6)
    assert result.addresses == (ip_address("2001:db8::1"),)
    assert [q for _, q, _ in server.log] == ["AAAA"]


async def test_one_family_missing_still_answers(server: DnsServer) -> None:
    result = await resolver(server).resolve("v6.test")
    assert result.addresses == (ip_address("2001:db8::6"),)
    outcomes = {q.qtype: q.outcome for q in result.queries}
    assert outcomes == {"AAAA": "ok", "A": "nodata"}


async def test_cname_chain_is_kept(server: DnsServer) -> None:
    result = await resolver(server).resolve("alias.test", family=socket.AF_INET)
    assert result.cname_chain == ("middle.test", "v4.test")
    assert result.addresses == (ip_address("192.0.2.4"),)


@pytest.mark.parametrize(("name", "error", "text"), [
    ("missing.test", NameNotFoundError, r"no such name \(NXDOMAIN"),
    ("nodata.test", NoAddressError, "no address records"),
    ("servfail.test", ResolverFailureError, "the resolver failed"),
    ("refused.test", ResolverFailureError, "the resolver failed"),
])
async def test_failures_are_distinct(server: DnsServer, name: str, error: type[Exception],
                                     text: str) -> None:
    with pytest.raises(error, match=text) as exc:
        await resolver(server).resolve(name)
    assert name in str(exc.value) and server.address in str(exc.value)


async def test_timeout(server: DnsServer) -> None:
    with pytest.raises(ResolveTimeoutError, match="no answer"):
        await resolver(server, timeout=0.3).resolve("silent.test")


async def test_truncated_answer_falls_back_to_tcp(server: DnsServer) -> None:
    result = await resolver(server).resolve("big.test", family=socket.AF_INET)
    assert len(result.addresses) == 59
    assert ("big.test", "A", "udp") in server.log and ("big.test", "A", "tcp") in server.log


async def test_hosts_file_first(server: DnsServer, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n192.0.2.77  db.internal db  # alias\n2001:db8::77 db.internal\n")
    dns = DnsResolver([server.address], hosts_file=str(hosts))
    hit = await dns.resolve("DB.internal.")
    assert hit.source == "hosts"
    assert hit.addresses == (ip_address("192.0.2.77"), ip_address("2001:db8::77"))
    assert [q.qtype for q in hit.queries] == ["hosts"]
    assert server.log == []
    miss = await dns.resolve("v4.test")
    assert miss.source == "dns"


async def test_rebinding_answer_is_blocked_before_any_dial(server: DnsServer) -> None:
    """One public and one loopback answer: the name is refused, nothing is dialed."""
    async with MemoryConnector() as net, tcpcli.Invocation(connector=net,
                                                           resolver=resolver(server)):
        with pytest.raises(PolicyError, match="127.0.0.1"):
            await tcpcli.connect("rebind.test:443").opened
    assert net.dialed == []


async def test_static_resolver() -> None:
    static = StaticResolver({"a.test": ["192.0.2.1", "2001:db8::1"], "b.test": OSError("x")})
    assert (await static.resolve("a.test", family=socket.AF_INET)).addresses == (
        ip_address("192.0.2.1"),)
    with pytest.raises(OSError, match="x"):
        await static.resolve("b.test")
    with pytest.raises(NameNotFoundError):
        await static.resolve("c.test")


def test_resolver_option_parsing() -> None:
    assert parse_server("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert isinstance(resolver_from_option("127.0.0.1:5353"), DnsResolver)
    for bad in ("dns.google", "1.2.3.4:0", "1.2.3.4:99999", "[::1]x", "1.2.3.4:+53"):
        with pytest.raises(ValueError, match="invalid resolver"):
            parse_server(bad)
