"""The destination policy as a pure function: the classic SSRF bypasses, profiles, entries.

No test here opens a socket or resolves a name (a fixture makes both fail): the hostile
inputs include public addresses, and DESIGN §4 forbids sending them anything.
"""

from __future__ import annotations

import json
import socket
from importlib import resources
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given, strategies as st

from tcpcli.core.address import normalize_host
from tcpcli.core.errors import (
    FETCH_HINT,
    PORT_25_PROHIBITED,
    PROXY_FAILED,
    AddressError,
    PolicyError,
)
from tcpcli.core.policy import (
    Decision,
    Policy,
    Profile,
    blocked_ranges,
    embedded_ipv4,
    raise_for,
)

OWN_HOST_NAME = "build-box.corp.example"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to use the network")

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket, "gethostname", lambda: OWN_HOST_NAME)


def judge(host: str, port: int = 443, policy: Policy | None = None) -> Decision:
    return (policy or Policy()).check_name(normalize_host(host), port)


def teredo(client: str, server: str = "65.54.227.120") -> str:
    """A Teredo address whose (obfuscated) client is ``client``."""
    value = (0x20010000 << 96) | (int(IPv4Address(server)) << 64) | (0x8000_63BF << 32) \
        | (~int(IPv4Address(client)) & 0xFFFFFFFF)
    return str(IPv6Address(value))


# ------------------------------------------------------------------ hostile inputs

#: (host, port, profile, rule it must be blocked by).
HOSTILE: list[tuple[str, int, str, str]] = [
    # IPv4 loopback, in every spelling inet_aton reads
    ("127.0.0.1", 80, "workers", "loopback"),
    ("127.1", 80, "workers", "loopback"),
    ("127.0.1", 80, "workers", "loopback"),
    ("0177.0.0.1", 80, "workers", "loopback"),
    ("0x7f.0.0.1", 80, "workers", "loopback"),
    ("0x7f.1", 80, "workers", "loopback"),
    ("0X7F.0X0.0X0.0X1", 80, "workers", "loopback"),
    ("2130706433", 80, "workers", "loopback"),
    ("017700000001", 80, "workers", "loopback"),
    ("0x7f000001", 80, "workers", "loopback"),
    ("127.000.000.001", 80, "workers", "loopback"),
    ("0000000177.0.0.1", 80, "workers", "loopback"),
    ("127.0x0.00.1", 80, "workers", "loopback"),
    ("127.0.0.1.", 80, "workers", "loopback"),
    ("127.0.1.1", 80, "workers", "loopback"),
    ("127.255.255.254", 80, "workers", "loopback"),
    ("１２７．０．０．１", 80, "workers", "loopback"),
    ("127。0。0。1", 80, "workers", "loopback"),
    ("127｡0｡0｡1", 80, "workers", "loopback"),
    ("１２７.０.０.１", 80, "workers", "loopback"),
    # unspecified ("this network": Linux dials this machine)
    ("0", 80, "workers", "unspecified"),
    ("0.0.0.0", 80, "workers", "unspecified"),
    ("0x0", 80, "workers", "unspecified"),
    ("0.0", 80, "workers", "unspecified"),
    ("0.1.2.3", 80, "workers", "unspecified"),
    ("::", 80, "workers", "unspecified"),
    ("[::]", 80, "workers", "unspecified"),
    ("0:0:0:0:0:0:0:0", 80, "workers", "unspecified"),
    ("::ffff:0.0.0.0", 80, "workers", "unspecified"),
    # IPv6 loopback
    ("::1", 80, "workers", "loopback"),
    ("[::1]", 80, "workers", "loopback"),
    ("0:0:0:0:0:0:0:1", 80, "workers", "loopback"),
    ("[0000::0001]", 80, "workers", "loopback"),
    ("::1%lo", 80, "workers", "loopback"),
    ("［：：１］", 80, "workers", "loopback"),
    # IPv4 embedded in IPv6
    ("[::ffff:127.0.0.1]", 80, "workers", "loopback"),
    ("::ffff:7f00:1", 80, "workers", "loopback"),
    ("::FFFF:7F00:1", 80, "workers", "loopback"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", 80, "workers", "loopback"),
    ("::ffff:0:127.0.0.1", 80, "workers", "loopback"),  # IPv4-translated (SIIT)
    ("::127.0.0.1", 80, "workers", "loopback"),  # IPv4-compatible
    ("[::7f00:1]", 80, "workers", "loopback"),
    ("64:ff9b::7f00:1", 80, "workers", "loopback"),  # NAT64
    ("64:ff9b::127.0.0.1", 80, "workers", "loopback"),
    ("64:ff9b:1::7f00:1", 80, "workers", "loopback"),  # local-use NAT64
    ("2002:7f00:1::", 80, "workers", "loopback"),  # 6to4
    ("2002:7f00:0001::1", 80, "workers", "loopback"),
    (teredo("127.0.0.1"), 80, "workers", "loopback"),
    (teredo("8.8.8.8", server="127.0.0.1"), 80, "workers", "loopback"),
    (teredo("104.16.0.1"), 80, "workers", "cloudflare"),
    (teredo("8.8.8.8"), 80, "workers", "reserved"),  # 2001::/23, KJ's always-denied list
    ("::ffff:1.1.1.1", 53, "workers", "cloudflare-dns"),
    ("::ffff:104.16.0.1", 443, "workers", "cloudflare"),
    ("64:ff9b::1.1.1.1", 53, "workers", "cloudflare-dns"),
    ("2002:6810:1::1", 443, "workers", "cloudflare"),
    # loopback names, before any DNS
    ("localhost", 80, "workers", "loopback-name"),
    ("localhost.", 80, "workers", "loopback-name"),
    ("LOCALHOST", 80, "workers", "loopback-name"),
    ("LocalHost.", 80, "workers", "loopback-name"),
    ("ｌｏｃａｌｈｏｓｔ", 80, "workers", "loopback-name"),
    ("localhost。", 80, "workers", "loopback-name"),
    ("\u200blocalhost", 80, "workers", "loopback-name"),
    ("local\u00adhost", 80, "workers", "loopback-name"),
    ("foo.localhost", 80, "workers", "loopback-name"),
    ("a.b.LOCALHOST.", 80, "workers", "loopback-name"),
    ("localhost.localdomain", 80, "workers", "loopback-name"),
    ("ip6-localhost", 80, "workers", "loopback-name"),
    ("ip6-loopback", 80, "workers", "loopback-name"),
    ("localhost6", 80, "workers", "loopback-name"),
    ("localhost6.localdomain6", 80, "workers", "loopback-name"),
    (OWN_HOST_NAME, 80, "workers", "loopback-name"),
    ("BUILD-BOX.corp.example.", 80, "workers", "loopback-name"),
    ("build-box", 80, "workers", "loopback-name"),
    # Cloudflare
    ("1.1.1.1", 53, "workers", "cloudflare-dns"),
    ("1.0.0.1", 53, "workers", "cloudflare-dns"),
    ("16843009", 53, "workers", "cloudflare-dns"),
    ("0x01010101", 53, "workers", "cloudflare-dns"),
    ("104.16.0.1", 443, "workers", "cloudflare"),
    ("104.23.255.255", 443, "workers", "cloudflare"),
    ("162.158.1.1", 443, "workers", "cloudflare"),
    ("172.64.0.1", 443, "workers", "cloudflare"),
    ("173.245.48.1", 443, "workers", "cloudflare"),
    ("131.0.72.1", 443, "workers", "cloudflare"),
    ("2606:4700::1", 443, "workers", "cloudflare"),
    ("[2606:4700:4700::1111]", 53, "workers", "cloudflare"),
    ("2a06:98c0::1", 443, "workers", "cloudflare"),
    ("2c0f:f248::1", 443, "workers", "cloudflare"),
    # multicast, broadcast, reserved
    ("224.0.0.1", 80, "workers", "multicast"),
    ("239.255.255.250", 1900, "workers", "multicast"),
    ("0xe0000001", 80, "workers", "multicast"),
    ("ff02::1", 80, "workers", "multicast"),
    ("[ff05::fb]", 5353, "workers", "multicast"),
    ("255.255.255.255", 80, "workers", "broadcast"),
    ("0xffffffff", 80, "workers", "broadcast"),
    ("4294967295", 80, "workers", "broadcast"),
    ("240.0.0.1", 80, "workers", "reserved"),
    ("255.255.255.254", 80, "workers", "reserved"),
    ("192.0.0.1", 80, "workers", "reserved"),
    ("2001:2::1", 80, "workers", "reserved"),
    # ports
    ("8.8.8.8", 25, "workers", "port-25"),
    ("example.com", 25, "workers", "port-25"),
    ("[::1]", 25, "workers", "port-25"),
    ("mail.example.com", 25, "workers-strict", "port-25"),
    ("example.com", 0, "workers", "port-0"),
    ("8.8.8.8", 0, "workers-strict", "port-0"),
    # what Workers' public runtime refuses without a VPC path
    ("10.0.0.1", 5432, "workers-strict", "private"),
    ("172.16.0.1", 5432, "workers-strict", "private"),
    ("192.168.1.1", 80, "workers-strict", "private"),
    ("012.0.0.1", 80, "workers-strict", "private"),  # octal 10.0.0.1
    ("::ffff:10.0.0.1", 80, "workers-strict", "private"),
    ("64:ff9b::a00:1", 80, "workers-strict", "private"),
    ("100.64.0.1", 80, "workers-strict", "cgnat"),
    # Cloud metadata: its own rule, under the default profile too, in every spelling
    ("169.254.169.254", 80, "workers", "cloud-metadata"),
    ("169.254.169.254", 80, "workers-strict", "cloud-metadata"),
    ("0xa9fea9fe", 80, "workers", "cloud-metadata"),
    ("2852039166", 80, "workers", "cloud-metadata"),
    ("0251.0376.0251.0376", 80, "workers", "cloud-metadata"),
    ("169.254.43518", 80, "workers", "cloud-metadata"),
    ("::ffff:169.254.169.254", 80, "workers", "cloud-metadata"),
    ("64:ff9b::a9fe:a9fe", 80, "workers", "cloud-metadata"),
    ("fd00:ec2::254", 80, "workers", "cloud-metadata"),
    ("[fd00:ec2::254]", 80, "workers", "cloud-metadata"),
    ("169.254.170.2", 80, "workers", "cloud-metadata"),
    ("100.100.100.200", 80, "workers", "cloud-metadata"),
    ("168.63.129.16", 80, "workers", "cloud-metadata"),
    ("metadata.google.internal", 80, "workers", "cloud-metadata"),
    ("METADATA.google.internal.", 80, "workers", "cloud-metadata"),
    ("instance-data", 80, "workers", "cloud-metadata"),
    ("169.254.1.1", 80, "workers-strict", "link-local"),
    ("::ffff:169.254.1.1", 80, "workers-strict", "link-local"),
    ("fe80::1", 80, "workers-strict", "link-local"),
    ("fe80::1%lo", 80, "workers-strict", "link-local"),
    ("fd00::1", 80, "workers-strict", "ula"),
    ("fc00::1", 80, "workers-strict", "ula"),
    ("fec0::1", 80, "workers-strict", "site-local"),
    ("192.0.2.1", 80, "workers-strict", "documentation"),
    ("198.51.100.7", 80, "workers-strict", "documentation"),
    ("203.0.113.10", 80, "workers-strict", "documentation"),
    ("2001:db8::1", 80, "workers-strict", "documentation"),
    ("198.18.0.1", 80, "workers-strict", "benchmarking"),
    ("127.0.0.1", 80, "workers-strict", "loopback"),
    ("localhost", 80, "workers-strict", "loopback-name"),
    ("1.1.1.1", 53, "workers-strict", "cloudflare-dns"),
]


@pytest.mark.parametrize(("host", "port", "profile", "rule"), HOSTILE)
def test_hostile_input_is_blocked(host: str, port: int, profile: str, rule: str) -> None:
    decision = judge(host, port, Policy.parse(profile))
    assert not decision.allowed, decision
    assert decision.rule == rule, decision
    assert decision.lift and decision.reason
    assert decision.profile == profile


def test_the_hostile_list_is_long_enough() -> None:
    assert len(HOSTILE) >= 80


@pytest.mark.parametrize(("host", "port"), [(host, port) for host, port, _, _ in HOSTILE])
def test_the_open_profile_blocks_none_of_them(host: str, port: int) -> None:
    decision = judge(host, port, Policy.parse("open"))
    assert decision.allowed, decision
    assert decision.rule == "profile-open"


@pytest.mark.parametrize("host", [
    "local\x00host", "127.0.0.1\x00.evil.com", "localhost\x00", "[127.0.0.1]", "::ffff:0127.0.0.1",
    "1::2::3", "fe80::1%", "[::1", "exa mple.com", "a" * 64 + ".com", "%31%32%37.0.0.1",
    "user@localhost",
])
def test_garbage_never_reaches_the_policy(host: str) -> None:
    with pytest.raises(AddressError):
        normalize_host(host)


#: (host, port, profile) that stay allowed: the checks must not block the ordinary.
CONTROLS: list[tuple[str, int, str]] = [
    ("93.184.216.34", 80, "workers"),
    ("8.8.8.8", 53, "workers"),
    ("example.com", 443, "workers"),
    ("2001:4860:4860::8888", 53, "workers"),
    ("[::ffff:8.8.8.8]", 53, "workers"),
    ("64:ff9b::808:808", 53, "workers"),
    ("2002:808:808::1", 53, "workers"),
    ("0127.0.0.1", 80, "workers"),  # octal: 87.0.0.1, a public address
    ("10.0.0.1", 5432, "workers"),  # private ranges: blocked by workers-strict only
    ("192.168.1.1", 80, "workers"),
    ("169.254.1.1", 80, "workers"),  # link-local, but no metadata service
    ("fd00::1", 80, "workers"),
    ("metadata.example.com", 80, "workers"),
    ("203.0.113.10", 80, "workers"),
    ("1.1.2.1", 80, "workers"),
    ("104.15.255.255", 80, "workers"),
    ("104.32.0.0", 80, "workers"),
    ("localhost.example.com", 80, "workers"),  # a DNS name: its answers are judged later
    ("notlocalhost", 80, "workers"),
    ("localhostx", 80, "workers"),
    ("127.0.0.1.nip.io", 80, "workers"),
    ("bücher.example", 443, "workers"),
    ("under_score.example", 443, "workers"),
    ("build-box.other.example", 80, "workers"),
    ("example.com", 587, "workers"),
    ("example.com", 465, "workers"),
    ("93.184.216.34", 443, "workers-strict"),
    ("example.com", 5432, "workers-strict"),
    ("example.com", 25, "open"),
    ("127.0.0.1", 25, "open"),
    ("example.com", 0, "open"),
]


@pytest.mark.parametrize(("host", "port", "profile"), CONTROLS)
def test_controls_stay_allowed(host: str, port: int, profile: str) -> None:
    decision = judge(host, port, Policy.parse(profile))
    assert decision.allowed, decision
    assert decision.lift == ""


def test_0127_is_judged_as_the_public_address_it_is() -> None:
    host = normalize_host("0127.0.0.1")
    assert host.literal == IPv4Address("87.0.0.1")
    decision = Policy().check_name(host, 80)
    assert decision.allowed
    assert decision.address == "87.0.0.1"


@given(st.integers(0x7F000000, 0x7FFFFFFF), st.integers(0, 2**80 - 1),
       st.integers(0, 2**32 - 1), st.sampled_from(["mapped", "translated", "compatible",
                                                   "nat64", "nat64-local", "6to4", "teredo"]))
def test_loopback_in_any_ipv6_wrapping_is_blocked(inner: int, noise: int, server: int,
                                                  form: str) -> None:
    value = {
        "mapped": (0xFFFF << 32) | inner,
        "translated": (0xFFFF << 48) | inner,
        "compatible": inner,
        "nat64": (0x0064FF9B << 96) | inner,
        "nat64-local": (0x0064FF9B0001 << 80) | inner,
        "6to4": (0x2002 << 112) | (inner << 80) | noise,
        "teredo": (0x20010000 << 96) | (server << 64) | ((noise & 0xFFFFFFFF) << 32)
        | (~inner & 0xFFFFFFFF),
    }[form]
    ip = IPv6Address(value)
    for decision in (Policy().check_address(ip, 443), judge(str(ip)), judge(f"[{ip}]"),
                     Policy.parse("workers-strict").check_address(ip, 443)):
        assert not decision.allowed
        assert decision.rule == "loopback", decision
        assert "127." in decision.reason


@given(st.integers(0, 2**32 - 1))
def test_mapped_form_is_judged_like_the_ipv4_address(value: int) -> None:
    ipv4 = IPv4Address(value)
    mapped = IPv6Address((0xFFFF << 32) | value)
    for profile in Profile:
        policy = Policy(profile)
        direct, wrapped = policy.check_address(ipv4, 443), policy.check_address(mapped, 443)
        assert (direct.allowed, direct.rule) == (wrapped.allowed, wrapped.rule)


# ------------------------------------------------------------------ reasons and lifts


def test_reason_names_what_matched() -> None:
    decision = judge("127.1", 80)
    assert decision == Decision(
        allowed=False, rule="loopback", reason="127.0.0.1 is a loopback address (127.0.0.0/8)",
        address="127.0.0.1", lift="--allow 127.0.0.1 or --policy open", profile=Profile.WORKERS)


def test_reason_says_when_an_ipv4_address_is_embedded() -> None:
    decision = judge("::ffff:127.0.0.1", 80)
    assert decision.reason == ("::ffff:127.0.0.1 embeds 127.0.0.1 (IPv4-mapped), a loopback "
                               "address (127.0.0.0/8)")
    assert decision.address == "::ffff:127.0.0.1"
    assert decision.lift == "--allow ::ffff:127.0.0.1 or --policy open"


def test_cloudflare_reason_gives_the_range_and_the_date_of_the_list() -> None:
    decision = judge("104.16.0.1")
    assert decision.reason == ("104.16.0.1 is a Cloudflare address (104.16.0.0/13, "
                               "Cloudflare's published list of 2026-02-11)")


def test_an_address_a_leading_row_matches_never_reads_cloudflares_list() -> None:
    """Loopback and metadata refusals come before Cloudflare's rows: judging them must not
    load the list (the json and pkgutil imports and the parse are a one-shot run's cost)."""
    from tcpcli.core.policy import blocked_ranges, cloudflare_ranges

    cloudflare_ranges.cache_clear()
    blocked_ranges.cache_clear()
    for host in ("127.0.0.1", "::1", "169.254.169.254", "224.0.0.1"):
        assert not judge(host, 80).allowed
    assert cloudflare_ranges.cache_info().currsize == 0
    assert judge("104.16.0.1").rule == "cloudflare"  # and past them, it is read
    assert cloudflare_ranges.cache_info().currsize == 1


def test_strict_only_rules_suggest_the_workers_profile() -> None:
    decision = judge("10.0.0.1", 5432, Policy.parse("workers-strict"))
    assert decision.lift == "--allow 10.0.0.1 or --policy workers"


def test_loopback_name_and_port_lifts() -> None:
    assert judge("localhost").lift == "--allow localhost or --policy open"
    assert judge("example.com", 25).lift == "--allow port:25 or --policy open"
    assert judge("example.com", 0).lift == "--policy open"


# ------------------------------------------------------------------ entries and precedence


def test_allow_entry_lifts_the_profile_for_what_it_names() -> None:
    policy = Policy.parse("workers", allow=["127.0.0.1"])
    assert judge("127.0.0.1", 80, policy).rule == "allow-entry"
    assert judge("127.1", 80, policy).allowed  # the same address, spelled otherwise
    assert judge("::ffff:127.0.0.1", 80, policy).allowed  # the same destination
    assert not judge("127.0.0.2", 80, policy).allowed
    assert not judge("64:ff9b::7f00:1", 80, policy).allowed  # via a translator: not named
    assert not judge("localhost", 80, policy).allowed  # a name is not its address


def test_allow_entry_does_not_lift_port_25() -> None:
    policy = Policy.parse("workers", allow=["127.0.0.1", "example.com"])
    assert judge("127.0.0.1", 25, policy).rule == "port-25"
    assert judge("example.com", 25, policy).rule == "port-25"


def test_port_entry_lifts_only_the_port_rule() -> None:
    policy = Policy.parse("workers", allow=["port:25"])
    assert judge("example.com", 25, policy).allowed
    assert judge("127.0.0.1", 25, policy).rule == "loopback"
    assert judge("example.com", 0, policy).rule == "port-0"


def test_deny_beats_allow_and_profile() -> None:
    policy = Policy.parse("open", allow=["10.0.0.0/8"], deny=["10.0.0.0/24"])
    decision = judge("10.0.0.1", 80, policy)
    assert (decision.allowed, decision.rule) == (False, "deny-entry")
    assert decision.lift == "remove --deny 10.0.0.0/24"
    assert judge("10.0.1.1", 80, policy).rule == "allow-entry"


def test_deny_matches_ipv4_embedded_in_ipv6() -> None:
    policy = Policy.parse("open", deny=["10.0.0.0/8"])
    for host in ("::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::", teredo("10.0.0.1")):
        decision = judge(host, 80, policy)
        assert decision.rule == "deny-entry", host
        assert "10.0.0.1" in decision.reason


def test_deny_entries_for_names_ports_and_wildcards() -> None:
    policy = Policy.parse("open", deny=["evil.example", "*.corp.example", "port:6379"])
    assert judge("EVIL.example.", 80, policy).rule == "deny-entry"
    assert judge("db.corp.example", 80, policy).rule == "deny-entry"
    assert judge("a.b.corp.example", 80, policy).rule == "deny-entry"
    assert judge("corp.example", 80, policy).allowed  # *.suffix: names below it only
    assert judge("notcorp.example", 80, policy).allowed
    assert judge("8.8.8.8", 6379, policy).rule == "deny-entry"
    resolved = policy.check_resolved("db.corp.example", [ip_address("8.8.8.8")], 80)
    assert resolved.rule == "deny-entry"


def test_allowed_name_lifts_checks_on_its_answers_and_its_loopback_rule() -> None:
    policy = Policy.parse("workers", allow=["db.internal.company.net", "*.localhost"])
    assert judge("db.internal.company.net", 5432, policy).rule == "allow-entry"
    assert judge("app.localhost", 80, policy).rule == "allow-entry"
    resolved = policy.check_resolved("db.internal.company.net", [ip_address("127.0.0.1")], 5432)
    assert resolved.allowed and resolved.rule == "allow-entry"
    other = policy.check_resolved("other.example", [ip_address("127.0.0.1")], 5432)
    assert other.rule == "loopback"


def test_denied_address_wins_over_an_allowed_name() -> None:
    policy = Policy.parse("workers", allow=["db.example"], deny=["127.0.0.0/8"])
    decision = policy.check_resolved("db.example", [ip_address("127.0.0.1")], 80)
    assert decision.rule == "deny-entry"


def test_cidr_and_ipv6_entries() -> None:
    policy = Policy.parse("workers-strict", allow=["10.1.0.0/16", "[fd00::1]", "fe80::/10"])
    assert judge("10.1.2.3", 80, policy).allowed
    assert judge("10.2.0.1", 80, policy).rule == "private"
    assert judge("fd00::1", 80, policy).allowed
    assert judge("fd00::2", 80, policy).rule == "ula"
    assert judge("fe80::1%eth0", 80, policy).allowed


@pytest.mark.parametrize(("entry", "fragment"), [
    ("", "empty"),
    ("   ", "empty"),
    ("port:", "port"),
    ("port:0", "out of range"),
    ("port:65536", "out of range"),
    ("port:２５", "not a number"),
    ("port:+25", "not a number"),
    ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
    ("10.0.0.0/33", "invalid --allow entry"),
    ("exa mple.com", "invalid --allow entry"),
    ("*.", "invalid --allow entry"),
    ("*", "invalid --allow entry"),
    ("*.*.example", "invalid --allow entry"),
    ("*.10.0.0.1", "CIDR"),
    ("local\x00host", "control"),
    ("[::1", "brackets"),
])
def test_bad_entries_are_refused_clearly(entry: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as raised:
        Policy.parse("workers", allow=[entry])
    assert "\n" not in str(raised.value)


def test_bad_deny_entry_names_the_option() -> None:
    with pytest.raises(ValueError, match="--deny"):
        Policy.parse("workers", deny=["not a host"])


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="workers, workers-strict, open"):
        Policy.parse("permissive")


def test_policy_value_semantics() -> None:
    assert Policy.parse() == Policy() == Policy(Profile.WORKERS)
    assert Policy.parse("open", allow=["x.example"]).allow == ("x.example",)
    assert Policy("workers-strict").profile is Profile.WORKERS_STRICT  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid --allow entry"):
        Policy(allow=("bad entry",))


# ------------------------------------------------------------------ resolution


def test_one_blocked_answer_blocks_the_name() -> None:
    answers = [ip_address("93.184.216.34"), ip_address("127.0.0.1")]
    decision = Policy().check_resolved("rebind.example", answers, 443)
    assert not decision.allowed
    assert decision.rule == "loopback"
    assert decision.address == "127.0.0.1"
    assert decision.reason == ("rebind.example resolves to 127.0.0.1, a loopback address "
                               "(127.0.0.0/8)")
    assert decision.lift == "--allow rebind.example or --policy open"


def test_embedded_answer_is_explained() -> None:
    decision = Policy().check_resolved("x.example", [ip_address("::ffff:127.0.0.1")], 443)
    assert decision.reason == ("x.example resolves to ::ffff:127.0.0.1, which embeds 127.0.0.1 "
                               "(IPv4-mapped), a loopback address (127.0.0.0/8)")


def test_the_first_blocked_answer_is_named() -> None:
    answers = [ip_address("8.8.8.8"), ip_address("1.1.1.1"), ip_address("::1")]
    decision = Policy().check_resolved("X.Example.", answers, 443)
    assert (decision.rule, decision.address) == ("cloudflare-dns", "1.1.1.1")
    assert decision.reason.startswith("x.example resolves to 1.1.1.1")


def test_all_public_answers_are_allowed() -> None:
    answers = [ip_address("93.184.216.34"), ip_address("2606:2800:220:1::1")]
    decision = Policy().check_resolved("example.com", answers, 443)
    assert decision.allowed and decision.rule == "default"
    assert decision.lift == ""


def test_proxied_name_resolving_into_cloudflare_is_blocked() -> None:
    decision = Policy().check_resolved("proxied.example", [ip_address("172.67.1.1")], 443)
    assert decision.rule == "cloudflare"


def test_port_rules_apply_to_resolved_answers_too() -> None:
    decision = Policy().check_resolved("example.com", [ip_address("8.8.8.8")], 25)
    assert decision.rule == "port-25"


def test_private_answer_blocked_only_by_strict() -> None:
    answers = [ip_address("10.0.0.5")]
    assert Policy().check_resolved("db.example", answers, 5432).allowed
    strict = Policy.parse("workers-strict").check_resolved("db.example", answers, 5432)
    assert strict.rule == "private"
    assert strict.lift == "--allow db.example or --policy workers"


# ------------------------------------------------------------------ embedded_ipv4


@pytest.mark.parametrize(("ip", "expected"), [
    ("::ffff:1.2.3.4", [("IPv4-mapped", "1.2.3.4")]),
    ("::ffff:0:1.2.3.4", [("IPv4-translated", "1.2.3.4")]),
    ("::1.2.3.4", [("IPv4-compatible", "1.2.3.4")]),
    ("::2", [("IPv4-compatible", "0.0.0.2")]),
    ("::", []),
    ("::1", []),
    ("64:ff9b::1.2.3.4", [("NAT64", "1.2.3.4")]),
    ("64:ff9b:1::1.2.3.4", [("NAT64", "1.2.3.4")]),
    ("2002:102:304::1", [("6to4", "1.2.3.4")]),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", [("Teredo", "192.0.2.45"),
                                              ("Teredo server", "65.54.227.120")]),
    ("2001:db8::1", []),
    ("2606:4700::1", []),
])
def test_embedded_ipv4(ip: str, expected: list[tuple[str, str]]) -> None:
    found = embedded_ipv4(IPv6Address(ip))
    assert found == [(how, IPv4Address(inner)) for how, inner in expected]


# ------------------------------------------------------------------ raise_for


def test_raise_for_builds_the_whole_message() -> None:
    with pytest.raises(PolicyError) as raised:
        raise_for(judge("127.0.0.1", 5432), target="127.0.0.1:5432", port=5432)
    error = raised.value
    assert str(error) == (
        'blocked by policy "workers" (rule loopback): 127.0.0.1 is a loopback address '
        "(127.0.0.0/8); a Worker would get: proxy request failed, cannot connect to the "
        "specified address; to allow it: --allow 127.0.0.1 or --policy open"
    )
    assert (error.rule, error.lift, error.target, error.port, error.address) == (
        "loopback", "--allow 127.0.0.1 or --policy open", "127.0.0.1:5432", 5432, "127.0.0.1")
    assert error.workers_message == PROXY_FAILED
    assert error.kind == "blocked"


def test_raise_for_uses_the_port_25_and_fetch_texts() -> None:
    with pytest.raises(PolicyError) as raised:
        raise_for(judge("example.com", 25), target="example.com:25", port=25)
    assert f"a Worker would get: {PORT_25_PROHIBITED};" in str(raised.value)
    assert raised.value.workers_message == PORT_25_PROHIBITED
    with pytest.raises(PolicyError) as raised:
        raise_for(judge("localhost", 443), target="localhost:443", port=443)
    assert f"a Worker would get: {PROXY_FAILED}{FETCH_HINT};" in str(raised.value)


def test_raise_for_names_the_profile() -> None:
    decision = judge("10.0.0.1", 80, Policy.parse("workers-strict"))
    with pytest.raises(PolicyError, match='^blocked by policy "workers-strict" \\(rule private\\)'):
        raise_for(decision, target="10.0.0.1:80", port=80)


def test_raise_for_is_silent_when_allowed() -> None:
    raise_for(judge("example.com"), target="example.com:443", port=443)


# ------------------------------------------------------------------ bundled data


def test_cloudflare_data_is_dated_and_complete() -> None:
    text = resources.files("tcpcli.data").joinpath("cloudflare-ips.json").read_text("utf-8")
    data = json.loads(text)
    assert data["retrieved"] == "2026-02-11"
    assert "cloudflare.com/ips" in data["source"]
    assert len(data["ipv4"]) == 15 and len(data["ipv6"]) == 7
    for cidr in data["ipv4"] + data["ipv6"]:
        ip_network(cidr)  # strict: no host bits set
    networks = {str(entry.network) for entry in blocked_ranges() if entry.rule == "cloudflare"}
    assert networks == set(data["ipv4"] + data["ipv6"])


def test_range_table_rules_are_the_documented_ones() -> None:
    rules = {entry.rule for entry in blocked_ranges()}
    assert rules == {"loopback", "unspecified", "broadcast", "multicast", "reserved",
                     "cloudflare-dns", "cloudflare", "private", "cgnat", "link-local", "ula",
                     "site-local", "documentation", "benchmarking", "cloud-metadata"}


def test_cloud_metadata_names_its_rule_and_its_lift() -> None:
    decision = judge("169.254.169.254", 80)
    assert decision.reason == ("169.254.169.254 is a cloud instance-metadata endpoint "
                               "(169.254.169.254/32)")
    assert decision.lift == "--allow 169.254.169.254 or --policy open"
    assert judge("169.254.169.254", 80, Policy.parse("workers", allow=["169.254.169.254"])).allowed
    by_name = judge("metadata.google.internal", 80)
    assert by_name.lift == "--allow metadata.google.internal or --policy open"
    assert judge("metadata.google.internal", 80,
                 Policy.parse("workers", allow=["metadata.google.internal"])).allowed


def test_a_name_resolving_to_a_metadata_endpoint_is_refused() -> None:
    decision = Policy().check_resolved("evil.example", [ip_address("169.254.169.254")], 80)
    assert not decision.allowed and decision.rule == "cloud-metadata"
    assert decision.lift == "--allow evil.example or --policy open"


# ------------------------------------------------------------------ the bindings profile

BOUND = Policy.parse("bindings", bindings=["db.internal:5432", "127.0.0.1:6379", "[::1]:443"])


@pytest.mark.parametrize(("host", "port"), [("db.internal", 5432), ("DB.Internal.", 5432),
                                            ("127.0.0.1", 6379), ("::1", 443)])
def test_bindings_reach_what_is_declared(host: str, port: int) -> None:
    decision = BOUND.check_name(normalize_host(host), port)
    assert decision.allowed and decision.rule == "binding"


@pytest.mark.parametrize(("host", "port"), [("db.internal", 5433), ("db2.internal", 5432),
                                            ("127.0.0.1", 6380), ("169.254.169.254", 80),
                                            ("example.com", 443)])
def test_bindings_refuse_everything_else_naming_the_declared(host: str, port: int) -> None:
    decision = BOUND.check_name(normalize_host(host), port)
    assert not decision.allowed and decision.rule == "not-a-binding"
    assert "db.internal:5432" in decision.reason and "[targets.NAME]" in decision.lift


def test_a_bound_name_is_judged_by_its_binding_not_its_addresses() -> None:
    # The declaration names the host: where it resolves (loopback here) is what was meant.
    decision = BOUND.check_resolved("db.internal", [ip_address("127.0.0.1")], 5432)
    assert decision.allowed and decision.rule == "binding"


def test_deny_still_beats_a_binding() -> None:
    policy = Policy.parse("bindings", deny=["10.0.0.0/8"], bindings=["db.internal:5432"])
    decision = policy.check_resolved("db.internal", [ip_address("10.1.2.3")], 5432)
    assert not decision.allowed and decision.rule == "deny-entry"


def test_bindings_without_declarations_reach_nothing_and_need_well_formed_ones() -> None:
    decision = Policy.parse("bindings").check_name(normalize_host("db.internal"), 5432)
    assert not decision.allowed and "declares none" in decision.reason
    with pytest.raises(ValueError, match="invalid binding 'db.internal'"):
        Policy.parse("bindings", bindings=["db.internal"])
