"""The resolver seam against a real DNS server on loopback, on asyncio and trio.

Every DnsResolver here is given the loopback server explicitly (or a resolv.conf naming
it): no test asks the system's nameservers or sends a packet off the machine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tcpcli
from tcpcli.core.errors import (
    ConnectError,
    NameNotFoundError,
    NoAddressError,
    PolicyError,
    ResolveError,
    ResolverFailureError,
    ResolveTimeoutError,
)
from tcpcli.core.memory import MemoryConnector
from tcpcli.core.resolve import (
    DnsResolver,
    QueryTiming,
    Resolution,
    StaticResolver,
    parse_server,
    read_hosts,
    resolver_from_option,
)
from tests.support.dns_server import (
    NODATA,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    SILENT,
    ByTransport,
    ByType,
    Custom,
    Delayed,
    DnsServer,
    Raw,
    Records,
    Series,
    Spec,
    Truncated,
    serve_dns,
)

pytestmark = pytest.mark.anyio

ZONE: dict[str, Spec] = {
    "both.test": [("AAAA", "2001:db8::1"), ("A", "192.0.2.1"), ("AAAA", "2001:db8::2"),
                  ("A", "192.0.2.2")],
    "v4.test": [("A", "192.0.2.4")],
    "v6.test": [("AAAA", "2001:db8::6")],
    "alias.test": [("CNAME", "middle.test")],
    "middle.test": [("CNAME", "v4.test")],
    "dangling.test": [("CNAME", "nowhere.test")],
    "nodata.test": [("TXT", '"hello"')],
    "empty.test": NODATA,
    "servfail.test": SERVFAIL,
    "refused.test": REFUSED,
    "silent.test": SILENT,
    "big.test": [("A", f"192.0.2.{i}") for i in range(1, 120)],
    "forced-tc.test": Truncated([("A", "192.0.2.7")]),
    "v6-broken.test": ByType({"A": [("A", "192.0.2.8")], "AAAA": SERVFAIL}),
    "v6-silent.test": ByType({"A": [("A", "192.0.2.8")], "AAAA": SILENT}),
    "v4-refused.test": ByType({"AAAA": [("AAAA", "2001:db8::8")], "A": REFUSED}),
    "slow.test": Delayed(0.3, [("A", "192.0.2.5"), ("AAAA", "2001:db8::5")]),
    "rebind.test": [("A", "192.0.2.9"), ("A", "127.0.0.1")],
    "garbage-tcp.test": ByTransport(Truncated([]), Raw(b"\x00\x00garbage, not DNS", fix_id=True)),
    "garbage-udp.test": Raw(b"\x00\x00\x81\x80\x00\x01\x00\x09 not a question", fix_id=True),
}


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A fresh loopback server per test, loaded with ZONE (tests may change its zone)."""
    with serve_dns(ZONE) as server:
        yield server


def resolver(server: DnsServer, *, timeout: float = 2.0) -> DnsResolver:
    return DnsResolver([server.address], hosts_file=None, timeout=timeout)


def outcomes(result: Resolution) -> dict[str, str]:
    return {q.qtype: q.outcome for q in result.queries}


def ips(*texts: str) -> tuple[Any, ...]:
    return tuple(ip_address(t) for t in texts)


# -- answers ------------------------------------------------------------------------------


async def test_both_families_aaaa_first_in_answer_order(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("both.test")
    assert result.addresses == ips("2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2")
    assert result.name == "both.test" and result.source == "dns"
    assert result.cname_chain == ()
    assert [(q.qtype, q.outcome, q.answers) for q in result.queries] == [
        ("AAAA", "ok", 2), ("A", "ok", 2)]
    assert sorted(dns_server.log) == [("both.test", "A", "udp"), ("both.test", "AAAA", "udp")]


async def test_a_only(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("v4.test")
    assert result.addresses == ips("192.0.2.4")
    assert outcomes(result) == {"AAAA": "nodata", "A": "ok"}


async def test_aaaa_only(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("v6.test")
    assert result.addresses == ips("2001:db8::6")
    assert outcomes(result) == {"AAAA": "ok", "A": "nodata"}


async def test_timings_per_query_are_present_and_non_negative(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("both.test")
    assert len(result.queries) == 2
    for timing in result.queries:
        assert isinstance(timing, QueryTiming)
        assert 0 <= timing.elapsed_ms <= result.elapsed_ms
        assert timing.server == dns_server.address
    slow = await resolver(dns_server).resolve("slow.test")
    assert all(q.elapsed_ms >= 290 for q in slow.queries)


async def test_a_and_aaaa_are_asked_concurrently(dns_server: DnsServer) -> None:
    start = time.monotonic()
    result = await resolver(dns_server).resolve("slow.test")  # each answer takes 0.3 s
    assert time.monotonic() - start < 0.5  # one after the other would take 0.6 s
    assert len(result.addresses) == 2


@pytest.mark.parametrize(("family", "asked", "expected"), [
    (socket.AF_INET, ["A"], ("192.0.2.1", "192.0.2.2")),
    (socket.AF_INET6, ["AAAA"], ("2001:db8::1", "2001:db8::2")),
])
async def test_family_filter_asks_one_type(dns_server: DnsServer, family: int,
                                           asked: list[str], expected: tuple[str, ...]) -> None:
    result = await resolver(dns_server).resolve("both.test", family=family)
    assert result.addresses == ips(*expected)
    assert [q.qtype for q in result.queries] == asked
    assert [q.qtype for q in dns_server.log] == asked


async def test_family_filter_without_that_family_is_no_address(dns_server: DnsServer) -> None:
    with pytest.raises(NoAddressError, match=r"no AAAA records \(NODATA from 127\.0\.0\.1:"):
        await resolver(dns_server).resolve("v4.test", family=socket.AF_INET6)


async def test_unknown_family_is_rejected(dns_server: DnsServer) -> None:
    with pytest.raises(ValueError, match="family"):
        await resolver(dns_server).resolve("v4.test", family=socket.AF_UNIX)
    assert dns_server.log == []


async def test_cname_chain_two_hops_is_kept(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("alias.test", family=socket.AF_INET)
    assert result.cname_chain == ("middle.test", "v4.test")
    assert result.addresses == ips("192.0.2.4")
    unspec = await resolver(dns_server).resolve("ALIAS.test.")
    assert unspec.cname_chain == ("middle.test", "v4.test")
    assert outcomes(unspec) == {"AAAA": "nodata", "A": "ok"}


async def test_trailing_dot_and_case_are_ignored(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("V4.Test.")
    assert result.name == "v4.test" and result.addresses == ips("192.0.2.4")
    assert {q.name for q in dns_server.log} == {"v4.test"}


async def test_truncated_udp_answer_falls_back_to_tcp(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("big.test", family=socket.AF_INET)
    assert len(result.addresses) == 119  # > 512 bytes: the server set TC over UDP
    assert dns_server.log == [("big.test", "A", "udp"), ("big.test", "A", "tcp")]


async def test_tc_bit_alone_falls_back_to_tcp(dns_server: DnsServer) -> None:
    result = await resolver(dns_server).resolve("forced-tc.test", family=socket.AF_INET)
    assert result.addresses == ips("192.0.2.7")
    assert dns_server.queries(transport="tcp") == [("forced-tc.test", "A", "tcp")]


async def test_each_resolve_asks_again(dns_server: DnsServer) -> None:
    """No cache: a name is resolved once per connect, and a rebinding server is seen."""
    dns_server.zone["flip.test"] = Series([("A", "192.0.2.10")], [("A", "127.0.0.1")])
    dns = resolver(dns_server)
    first = await dns.resolve("flip.test", family=socket.AF_INET)
    second = await dns.resolve("flip.test", family=socket.AF_INET)
    assert (first.addresses, second.addresses) == (ips("192.0.2.10"), ips("127.0.0.1"))


async def test_answers_from_a_second_server_when_the_first_refuses() -> None:
    with serve_dns({"v4.test": REFUSED}) as bad, serve_dns(ZONE) as good:
        dns = DnsResolver([bad.address, good.address], hosts_file=None, timeout=2.0)
        result = await dns.resolve("v4.test", family=socket.AF_INET)
        assert result.addresses == ips("192.0.2.4")
        assert result.queries[0].server == good.address
        assert bad.log == [("v4.test", "A", "udp")]


async def test_ipv6_loopback_server() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        context = serve_dns(ZONE, host="::1")
        server = context.__enter__()
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        assert server.address.startswith("[::1]:")
        result = await DnsResolver([server.address], hosts_file=None).resolve("v6.test")
        assert result.addresses == ips("2001:db8::6")
        assert result.queries[0].server == server.address
    finally:
        context.__exit__(None, None, None)


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "error", "message"), [
    ("missing.test", NameNotFoundError,
     "cannot resolve missing.test: no such name (NXDOMAIN from {server})"),
    ("dangling.test", NameNotFoundError,
     "cannot resolve dangling.test: no such name (NXDOMAIN from {server})"),
    ("nodata.test", NoAddressError,
     "cannot resolve nodata.test: the name has no AAAA or A records (NODATA from {server})"),
    ("empty.test", NoAddressError,
     "cannot resolve empty.test: the name has no AAAA or A records (NODATA from {server})"),
    ("servfail.test", ResolverFailureError,
     "cannot resolve servfail.test: the DNS server failed (SERVFAIL from {server})"),
    ("refused.test", ResolverFailureError,
     "cannot resolve refused.test: the DNS server refused the query (REFUSED from {server})"),
])
async def test_failures_are_distinct(dns_server: DnsServer, name: str,
                                     error: type[ResolveError], message: str) -> None:
    with pytest.raises(error) as caught:
        await resolver(dns_server).resolve(name)
    assert str(caught.value) == message.format(server=dns_server.address)
    assert type(caught.value) is error  # exactly that class, not a sibling
    assert caught.value.target == name and caught.value.kind == "dns"
    assert isinstance(caught.value, ConnectError)


async def test_failed_outcomes_are_recorded(dns_server: DnsServer) -> None:
    dns = resolver(dns_server)
    cases = {"servfail.test": "servfail", "refused.test": "refused", "nodata.test": "nodata",
             "missing.test": "nxdomain"}
    for name, outcome in cases.items():  # AAAA fails that way, A answers
        dns_server.zone["mixed.test"] = ByType({"A": [("A", "192.0.2.3")],
                                                "AAAA": ZONE.get(name, NXDOMAIN)})
        result = await dns.resolve("mixed.test")
        assert outcomes(result) == {"AAAA": outcome, "A": "ok"}, name
        assert result.addresses == ips("192.0.2.3")


async def test_timeout(dns_server: DnsServer) -> None:
    start = time.monotonic()
    with pytest.raises(ResolveTimeoutError) as caught:
        await resolver(dns_server, timeout=0.3).resolve("silent.test")
    assert time.monotonic() - start < 1.5
    assert str(caught.value) == (
        f"cannot resolve silent.test: no answer from {dns_server.address} in 0.3 s")
    assert caught.value.kind == "dns-timeout"
    assert isinstance(caught.value, ResolveError)


async def test_per_call_timeout_overrides_the_default(dns_server: DnsServer) -> None:
    start = time.monotonic()
    with pytest.raises(ResolveTimeoutError, match="in 0.2 s"):
        await resolver(dns_server, timeout=30).resolve("silent.test", timeout=0.2)
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize(("name", "family", "addresses", "failed"), [
    ("v6-broken.test", socket.AF_UNSPEC, ("192.0.2.8",), ("AAAA", "servfail")),
    ("v6-silent.test", socket.AF_UNSPEC, ("192.0.2.8",), ("AAAA", "timeout")),
    ("v4-refused.test", socket.AF_UNSPEC, ("2001:db8::8",), ("A", "refused")),
])
async def test_one_family_failing_while_the_other_answers(
        dns_server: DnsServer, name: str, family: int, addresses: tuple[str, ...],
        failed: tuple[str, str]) -> None:
    result = await resolver(dns_server, timeout=0.3).resolve(name, family=family)
    assert result.addresses == ips(*addresses)
    assert failed in [(q.qtype, q.outcome) for q in result.queries]
    assert all(q.answers == 0 for q in result.queries if q.outcome != "ok")


async def test_the_failing_family_alone_is_an_error(dns_server: DnsServer) -> None:
    with pytest.raises(ResolverFailureError, match=r"\(SERVFAIL from 127\.0\.0\.1:\d+\)"):
        await resolver(dns_server).resolve("v6-broken.test", family=socket.AF_INET6)


@pytest.mark.parametrize(("aaaa", "a", "error"), [
    (NXDOMAIN, SILENT, NameNotFoundError),  # the name does not exist: say so
    (SERVFAIL, SILENT, ResolverFailureError),  # a failure says more than silence
    (NODATA, SILENT, ResolveTimeoutError),  # A might have had an answer
    (NODATA, REFUSED, ResolverFailureError),
])
async def test_mixed_failures_pick_the_most_telling(
        dns_server: DnsServer, aaaa: Spec, a: Spec, error: type[ResolveError]) -> None:
    dns_server.zone["mixed.test"] = ByType({"AAAA": aaaa, "A": a})
    with pytest.raises(error, match="cannot resolve mixed.test: "):
        await resolver(dns_server, timeout=0.3).resolve("mixed.test")


async def test_garbage_over_tcp_is_a_resolver_failure(dns_server: DnsServer) -> None:
    with pytest.raises(ResolverFailureError) as caught:
        await resolver(dns_server).resolve("garbage-tcp.test", family=socket.AF_INET)
    message = str(caught.value)
    assert message.startswith("cannot resolve garbage-tcp.test: no usable answer (")
    assert f"{dns_server.address} over TCP: " in message and "\n" not in message
    assert dns_server.queries(transport="tcp")


async def test_garbage_over_udp_is_ignored_like_a_spoof(dns_server: DnsServer) -> None:
    """dnspython drops unparseable datagrams (off-path spoofing defence) and waits."""
    with pytest.raises(ResolveTimeoutError):
        await resolver(dns_server, timeout=0.3).resolve("garbage-udp.test",
                                                        family=socket.AF_INET)


async def test_an_answer_for_another_name_is_no_answer(dns_server: DnsServer) -> None:
    def elsewhere(query: dns.message.Message, transport: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text("other.test.", 60, "IN", "A", "127.0.0.1"))
        return response

    dns_server.zone["odd.test"] = Custom(elsewhere)
    with pytest.raises(NoAddressError):
        await resolver(dns_server).resolve("odd.test", family=socket.AF_INET)


async def test_an_oversized_tcp_answer_still_resolves(dns_server: DnsServer) -> None:
    dns_server.zone["huge.test"] = Records(
        [("A", f"10.{i // 256}.{i % 256}.1") for i in range(3000)], ttl=0)
    result = await resolver(dns_server).resolve("huge.test", family=socket.AF_INET)
    assert len(result.addresses) == 3000


async def test_nothing_listening_names_the_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dns = DnsResolver([f"127.0.0.1:{port}"], hosts_file=None, timeout=0.3)
    with pytest.raises((ResolveTimeoutError, ResolverFailureError), match=f"127.0.0.1:{port}"):
        await dns.resolve("v4.test")


@pytest.mark.parametrize(("name", "problem"), [
    ("x" * 64 + ".test", "a label is longer than 63 octets"),
    (".".join(["abcdefghij"] * 30), "the name is longer than 255 octets"),
    ("a..b.test", "the name has an empty label"),
    ("a.test..", "the name has an empty label"),
    ("", "the name is empty"),
    (".", "the name is empty"),
])
async def test_invalid_names_send_nothing(dns_server: DnsServer, name: str,
                                          problem: str) -> None:
    with pytest.raises(ResolverFailureError, match=f"invalid DNS name \\({problem}\\)") as caught:
        await resolver(dns_server).resolve(name)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
    assert dns_server.log == []


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=st.binary(max_size=600), fix_id=st.booleans())
async def test_any_tcp_reply_resolves_or_raises_a_resolve_error(
        dns_server: DnsServer, reply: bytes, fix_id: bool) -> None:
    dns_server.zone["fuzz.test"] = Truncated(Raw(reply, fix_id=fix_id))
    message = ""
    try:
        result = await resolver(dns_server, timeout=0.5).resolve("fuzz.test",
                                                                  family=socket.AF_INET)
    except ResolveError as exc:
        message = str(exc)
    else:
        assert all(ip.version == 4 for ip in result.addresses)
    assert "\n" not in message and ("fuzz.test" in message or not message)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=300))
async def test_any_name_resolves_or_raises_a_resolve_error(dns_server: DnsServer,
                                                           name: str) -> None:
    message = ""
    try:
        await resolver(dns_server, timeout=0.5).resolve(name, family=socket.AF_INET)
    except ResolveError as exc:
        message = str(exc)
    assert "\n" not in message and len(message) < 400


# -- the hosts file -----------------------------------------------------------------------


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "# a comment\n"
        "192.0.2.77  db.internal db   # trailing comment\n"
        "2001:db8::77 DB.Internal.\n"
        "192.0.2.77  db.internal\n"  # a duplicate line: one address
        "fe80::1%lo  scoped.internal\n"
        "not-an-ip   broken.internal\n"
        "192.0.2.78\n"
        "192.0.2.79  v4.test\n"
    )
    return hosts


async def test_hosts_file_hit_comes_first(dns_server: DnsServer, hosts_file: Path) -> None:
    dns = DnsResolver([dns_server.address], hosts_file=str(hosts_file))
    hit = await dns.resolve("DB.internal.")
    assert hit.source == "hosts" and hit.name == "db.internal"
    assert hit.addresses == ips("192.0.2.77", "2001:db8::77")
    assert [(q.qtype, q.server, q.outcome, q.answers) for q in hit.queries] == [
        ("hosts", "hosts", "ok", 2)]
    assert hit.queries[0].elapsed_ms >= 0 and hit.cname_chain == ()
    shadowed = await dns.resolve("v4.test")  # the hosts file wins over DNS
    assert shadowed.addresses == ips("192.0.2.79") and shadowed.source == "hosts"
    assert dns_server.log == []


async def test_hosts_file_miss_asks_dns(dns_server: DnsServer, hosts_file: Path) -> None:
    dns = DnsResolver([dns_server.address], hosts_file=str(hosts_file))
    miss = await dns.resolve("v6.test")
    assert miss.source == "dns" and miss.addresses == ips("2001:db8::6")
    assert {q.name for q in dns_server.log} == {"v6.test"}
    with pytest.raises(NameNotFoundError):
        await dns.resolve("db.internal.example")  # exact match only: no suffixes


async def test_hosts_file_family_filter(dns_server: DnsServer, hosts_file: Path) -> None:
    dns = DnsResolver([dns_server.address], hosts_file=str(hosts_file))
    v6 = await dns.resolve("db.internal", family=socket.AF_INET6)
    assert v6.addresses == ips("2001:db8::77") and v6.source == "hosts"
    # v4.test has no IPv6 line in the hosts file: DNS is asked for AAAA.
    with pytest.raises(NoAddressError):
        await dns.resolve("v4.test", family=socket.AF_INET6)
    assert dns_server.log == [("v4.test", "AAAA", "udp")]


async def test_hosts_file_edits_are_seen(dns_server: DnsServer, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 moving.internal\n")
    dns = DnsResolver([dns_server.address], hosts_file=str(hosts))
    assert (await dns.resolve("moving.internal")).addresses == ips("192.0.2.1")
    hosts.write_text("192.0.2.222 moving.internal\n")
    assert (await dns.resolve("moving.internal")).addresses == ips("192.0.2.222")
    hosts.unlink()
    with pytest.raises(NameNotFoundError):
        await dns.resolve("moving.internal")


async def test_disabled_or_missing_hosts_file_asks_dns(dns_server: DnsServer,
                                                       tmp_path: Path) -> None:
    for hosts in (None, str(tmp_path / "absent")):
        dns = DnsResolver([dns_server.address], hosts_file=hosts)
        assert (await dns.resolve("v4.test")).source == "dns"


def test_read_hosts(hosts_file: Path) -> None:
    table = read_hosts(str(hosts_file))
    assert table["db.internal"] == ips("192.0.2.77", "2001:db8::77")
    assert table["db"] == ips("192.0.2.77")
    assert table["scoped.internal"] == ips("fe80::1")
    assert "broken.internal" not in table
    assert read_hosts(str(hosts_file.parent / "absent")) == {}


# -- the system configuration (a resolv.conf naming the loopback server) ------------------


async def test_system_configuration_is_read(dns_server: DnsServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\noptions timeout:1\n")
    real = dns.asyncresolver.Resolver

    class LoopbackSystem(real):  # type: ignore[misc, valid-type]
        def __init__(self, filename: str = "", configure: bool = True) -> None:
            super().__init__(filename=str(conf), configure=configure)
            self.port = dns_server.port  # resolv.conf has no ports

    monkeypatch.setattr(dns.asyncresolver, "Resolver", LoopbackSystem)
    dns_resolver = DnsResolver(hosts_file=None)
    assert dns_resolver.servers is None
    result = await dns_resolver.resolve("v4.test")
    assert result.addresses == ips("192.0.2.4")
    assert {q.server for q in result.queries} == {dns_server.address}
    assert dns_resolver.server_label == dns_server.address


async def test_no_system_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# no nameserver lines\n")
    real = dns.asyncresolver.Resolver

    class Unconfigured(real):  # type: ignore[misc, valid-type]
        def __init__(self, filename: str = "", configure: bool = True) -> None:
            super().__init__(filename=str(conf), configure=configure)

    monkeypatch.setattr(dns.asyncresolver, "Resolver", Unconfigured)
    with pytest.raises(ResolverFailureError, match="cannot resolve v4.test: no DNS server is"):
        await DnsResolver(hosts_file=None).resolve("v4.test")


# -- the policy sees every answer before a dial -------------------------------------------


async def test_rebinding_answer_is_blocked_before_any_dial(dns_server: DnsServer) -> None:
    """One public and one loopback answer: the name is refused, nothing is dialed."""
    async with MemoryConnector() as net, tcpcli.Invocation(connector=net,
                                                           resolver=resolver(dns_server)):
        with pytest.raises(PolicyError, match="127.0.0.1"):
            await tcpcli.connect("rebind.test:443").opened
    assert net.dialed == []


# -- StaticResolver -----------------------------------------------------------------------


async def test_static_resolver() -> None:
    static = StaticResolver({
        "A.test.": ["192.0.2.1", "2001:db8::1", "192.0.2.1"],
        "one.test": "192.0.2.5",
        "b.test": OSError("boom"),
        "c.test": ResolveTimeoutError("cannot resolve c.test: no answer", target="c.test"),
    })
    both = await static.resolve("a.TEST.")
    assert both.addresses == ips("192.0.2.1", "2001:db8::1")  # table order, deduplicated
    assert both.source == "static" and both.name == "a.test"
    assert [(q.qtype, q.server, q.outcome, q.answers) for q in both.queries] == [
        ("AAAA", "static", "ok", 1), ("A", "static", "ok", 1)]
    v4 = await static.resolve("a.test", family=socket.AF_INET)
    assert v4.addresses == ips("192.0.2.1") and [q.qtype for q in v4.queries] == ["A"]
    assert (await static.resolve("one.test")).addresses == ips("192.0.2.5")
    with pytest.raises(OSError, match="boom"):
        await static.resolve("b.test")
    with pytest.raises(ResolveTimeoutError):
        await static.resolve("c.test")
    with pytest.raises(NameNotFoundError, match=r"cannot resolve d.test: no such name"):
        await static.resolve("d.test")
    with pytest.raises(NoAddressError, match="no AAAA records"):
        await static.resolve("one.test", family=socket.AF_INET6)
    assert static.asked == ["a.test", "a.test", "one.test", "b.test", "c.test", "d.test",
                            "one.test"]


def test_static_resolver_rejects_bad_addresses() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        StaticResolver({"a.test": ["not-an-ip"]})


# -- --resolver and construction ----------------------------------------------------------


@pytest.mark.parametrize(("text", "parsed"), [
    ("127.0.0.1", ("127.0.0.1", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)),
    ("[::1]", ("::1", 53)),
    ("[::1]:5353", ("::1", 5353)),
    ("[2001:db8::53]:65535", ("2001:db8::53", 65535)),
])
def test_parse_server(text: str, parsed: tuple[str, int]) -> None:
    assert parse_server(text) == parsed


@pytest.mark.parametrize("bad", [
    "", "dns.google", "localhost:53", "1.2.3.4:", ":53", "1.2.3.4:0", "1.2.3.4:65536",
    "1.2.3.4:+53", "1.2.3.4:٥٣", "[::1]x", "[::1]:", "[::1", "[1.2.3.4]:53", " 1.2.3.4",
    "1.2.3.4:53:53", "999.1.1.1", "https://dns.example/dns-query",
])
def test_parse_server_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid resolver"):
        parse_server(bad)


def test_resolver_from_option() -> None:
    system = resolver_from_option(None)
    assert isinstance(system, DnsResolver) and system.servers is None
    assert system.hosts_file == "/etc/hosts"
    one = resolver_from_option("127.0.0.1:5353")
    assert isinstance(one, DnsResolver) and one.servers == (("127.0.0.1", 5353),)
    assert one.hosts_file is None  # a named server is asked, as dig @SERVER asks it
    two = resolver_from_option("127.0.0.1:5353, [::1]:53")
    assert isinstance(two, DnsResolver)
    assert two.servers == (("127.0.0.1", 5353), ("::1", 53))
    assert two.server_label == "127.0.0.1:5353, [::1]:53"


@pytest.mark.parametrize("bad", ["", " ", ",", "dns.google", "127.0.0.1:99999",
                                 "127.0.0.1,nonsense"])
def test_resolver_from_option_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid resolver"):
        resolver_from_option(bad)


def test_dns_resolver_construction() -> None:
    assert DnsResolver("127.0.0.1:5353").servers == (("127.0.0.1", 5353),)  # one string
    with pytest.raises(ValueError, match="no nameservers"):
        DnsResolver([])
    for timeout in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout"):
            DnsResolver(["127.0.0.1"], timeout=timeout)


async def test_dns_resolver_rejects_a_bad_call_timeout(dns_server: DnsServer) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await resolver(dns_server).resolve("v4.test", timeout=-1)
    assert dns_server.log == []


# -- the test server itself is bounded ----------------------------------------------------


def _ask(server: DnsServer, name: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=server.port,
                         timeout=0.3)


def test_the_server_stops_itself_after_its_lifetime() -> None:
    with serve_dns({"v4.test": [("A", "192.0.2.4")]}, lifetime=0.2) as server:
        assert _ask(server, "v4.test").answer
        time.sleep(0.4)
        assert server.stopped
        with pytest.raises((dns.exception.Timeout, OSError)):
            _ask(server, "v4.test")


def test_the_server_answers_at_most_max_queries() -> None:
    with serve_dns({"v4.test": [("A", "192.0.2.4")]}, max_queries=1) as server:
        assert _ask(server, "v4.test").answer
        with pytest.raises(dns.exception.Timeout):
            _ask(server, "v4.test")
        assert server.log == [("v4.test", "A", "udp")]


def test_stopping_wakes_a_delayed_answer() -> None:
    start = time.monotonic()
    with serve_dns({"late.test": Delayed(30, [("A", "192.0.2.4")])}) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(dns.message.make_query("late.test", "A").to_wire(),
                      ("127.0.0.1", server.port))
        while not server.log:
            time.sleep(0.01)
    assert time.monotonic() - start < 2


def test_the_server_is_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"), serve_dns(host="0.0.0.0"):
        pass


async def test_a_named_resolver_skips_the_hosts_file_and_says_who_answered(
        dns_server: DnsServer, hosts_file: Path) -> None:
    dns_server.zone["db.internal"] = [("A", "192.0.2.7")]
    named = resolver_from_option(dns_server.address)
    asked = await named.resolve("db.internal", family=socket.AF_INET)
    assert [str(ip) for ip in asked.addresses] == ["192.0.2.7"]
    assert (asked.source, asked.server) == ("dns", dns_server.address)
    with_hosts = DnsResolver([dns_server.address], hosts_file=str(hosts_file))
    local = await with_hosts.resolve("db.internal", family=socket.AF_INET)
    assert (local.source, local.server) == ("hosts", "hosts")
