"""Address validation (Workers rules and texts), host normalization, CLI targets.

Pure functions only: a fixture makes any attempt to open a socket or resolve a name fail.
The expected Workers outcomes were checked against workerd (tests/conformance) and, for the
URL-parsing part, against the WHATWG parser in Node (ada, the parser workerd uses).
"""

from __future__ import annotations

import socket
import sys
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given, strategies as st

from tcpcli.core.address import (
    INVALID_HOST,
    MISSING_HOSTNAME,
    MISSING_PORT,
    PARSE_FAILED,
    PORT_NEGATIVE,
    PORT_NOT_INTEGER,
    PORT_TOO_LARGE,
    NormalizedHost,
    ParsedAddress,
    SocketAddress,
    inet_aton,
    normalize_host,
    parse_address,
    parse_port,
    split_target,
    validate_secure_transport,
)
from tcpcli.core.errors import AddressError, SocketOptionError


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to use the network")

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)


def test_workers_texts_are_exact() -> None:
    assert PARSE_FAILED == "Specified address could not be parsed."
    assert MISSING_HOSTNAME == "Specified address is missing hostname."
    assert MISSING_PORT == "Specified address is missing port."
    assert INVALID_HOST == (
        "Specified address is empty string, contains unsupported characters or is too long."
    )
    assert PORT_NOT_INTEGER == "The value cannot be converted because it is not an integer."
    assert PORT_NEGATIVE == ("The value cannot be converted because it is negative and this "
                             "API expects a positive number.")
    assert PORT_TOO_LARGE == "Value out of range. Must be less than or equal to 65535."


# ------------------------------------------------------------------ string addresses

NAME_253 = ".".join(["a" * 63] * 3 + ["b" * 61])
assert len(NAME_253) == 253

#: (address, hostname, port) for strings a Worker's connect() accepts.
ACCEPTED = [
    ("127.0.0.1:80", "127.0.0.1", 80),
    ("localhost:8080", "localhost", 8080),
    ("LOCALHOST:1", "LOCALHOST", 1),
    ("localhost.:1", "localhost.", 1),
    ("host:080", "host", 80),
    ("host:00443", "host", 443),
    ("host:0", "host", 0),  # passes validation; fails when connecting, as in Workers
    ("host:65535", "host", 65535),
    ("[::1]:80", "::1", 80),
    ("[0:0:0:0:0:0:0:1]:80", "0:0:0:0:0:0:0:1", 80),
    ("[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80),
    ("[::FFFF:7F00:1]:80", "::FFFF:7F00:1", 80),
    ("[1:2:3:4:5:6:7::]:1", "1:2:3:4:5:6:7::", 1),
    ("0.0.0.0:1", "0.0.0.0", 1),
    ("127.1:1", "127.1", 1),  # Workers does not interpret the host; normalize_host does
    ("0x7f.0.0.1:1", "0x7f.0.0.1", 1),
    ("2130706433:1", "2130706433", 1),
    ("xn--bcher-kva.example:443", "xn--bcher-kva.example", 443),
    ("under_score.example:1", "under_score.example", 1),
    ("-leading.example:1", "-leading.example", 1),
    ("host.example.:1", "host.example.", 1),
    (NAME_253 + ":9", NAME_253, 9),  # 255 characters in all
]

#: (address, Workers error text) for strings a Worker's connect() refuses.
REFUSED = [
    ("host", MISSING_PORT),
    ("host:", MISSING_PORT),
    ("localhost", MISSING_PORT),
    ("[::1]", MISSING_PORT),
    ("[::1]:", MISSING_PORT),
    ("http://127.0.0.1:80", MISSING_PORT),  # host "http", then a path
    ("tcp://127.0.0.1:80", MISSING_PORT),
    ("bücher.example", MISSING_PORT),
    ("user@host", MISSING_PORT),
    ("", MISSING_HOSTNAME),
    ("/path", MISSING_HOSTNAME),
    ("?x=1", MISSING_HOSTNAME),
    ("#top", MISSING_HOSTNAME),
    (":80", PARSE_FAILED),
    ("a b:80", PARSE_FAILED),
    (" 127.0.0.1:80", PARSE_FAILED),
    ("host:70000", PARSE_FAILED),
    ("host:65536", PARSE_FAILED),
    ("host:99999999999", PARSE_FAILED),
    ("host:-1", PARSE_FAILED),
    ("host:+80", PARSE_FAILED),
    ("host: 80", PARSE_FAILED),
    ("host:http", PARSE_FAILED),
    ("host:８０", PARSE_FAILED),
    ("host:80:90", PARSE_FAILED),
    ("[127.0.0.1]:80", PARSE_FAILED),
    ("::1:80", PARSE_FAILED),
    ("[::1:80", PARSE_FAILED),
    ("[::1]x:80", PARSE_FAILED),
    ("[fe80::1%25lo]:80", PARSE_FAILED),
    ("[1:2:3:4:5:6::7:8]:1", PARSE_FAILED),
    ("[::ffff:127.0.0.01]:1", PARSE_FAILED),
    ("[1::2::3]:1", PARSE_FAILED),
    ("[]:1", PARSE_FAILED),
    ("local\x00host:80", PARSE_FAILED),
    ("127.0.0.1\\:80", PARSE_FAILED),
    ("a[b]:1", PARSE_FAILED),
    ("a|b:1", PARSE_FAILED),
    ("user@:80", PARSE_FAILED),
    ("user@", PARSE_FAILED),
    ("host:80\x7f", PARSE_FAILED),
    ("bücher.example:80", INVALID_HOST),
    ("１２７.０.０.１:80", INVALID_HOST),
    ("user@127.0.0.1:80", INVALID_HOST),
    ("user:pass@127.0.0.1:80", INVALID_HOST),
    ("127.0.0.1:80/path", INVALID_HOST),
    ("127.0.0.1:80?x=1", INVALID_HOST),
    ("127.0.0.1:80#top", INVALID_HOST),
    ("%31%32%37.0.0.1:80", INVALID_HOST),
    ("*:80", INVALID_HOST),
    ("local\thost:80", INVALID_HOST),  # the URL parser drops the tab; isValidHost does not
    ("localhost:80\n", INVALID_HOST),
    ("localhost:80 ", INVALID_HOST),
    ("host:80\x01", INVALID_HOST),
    ("\x01host:80", INVALID_HOST),
    ("c" + NAME_253 + ":9", INVALID_HOST),  # 256 characters
    ("a" * 300 + ":1", INVALID_HOST),
]


@pytest.mark.parametrize(("address", "hostname", "port"), ACCEPTED)
def test_accepted_address_strings(address: str, hostname: str, port: int) -> None:
    parsed = parse_address(address)
    assert parsed == ParsedAddress(hostname=hostname, port=port, address_str=address)
    assert str(parsed) == address  # remoteAddress is the string exactly as given


@pytest.mark.parametrize(("address", "message"), REFUSED)
def test_refused_address_strings(address: str, message: str) -> None:
    with pytest.raises(AddressError) as raised:
        parse_address(address)
    assert str(raised.value) == message
    assert isinstance(raised.value, TypeError)  # Workers throws TypeError synchronously


def test_enough_address_strings_are_covered() -> None:
    assert len(ACCEPTED) + len(REFUSED) >= 40


def test_address_must_be_a_string_or_socket_address() -> None:
    with pytest.raises(AddressError, match="SocketAddress"):
        parse_address(("host", 80))  # type: ignore[arg-type]


# ------------------------------------------------------------------ SocketAddress

SOCKET_ADDRESSES = [
    (SocketAddress("127.0.0.1", 80), ParsedAddress("127.0.0.1", 80, "127.0.0.1:80")),
    (SocketAddress("::1", 80), ParsedAddress("::1", 80, "[::1]:80")),
    (SocketAddress("[::1]", 80), ParsedAddress("::1", 80, "[::1]:80")),
    (SocketAddress("localhost", 0), ParsedAddress("localhost", 0, "localhost:0")),
    (SocketAddress("a", 80.9), ParsedAddress("a", 80, "a:80")),  # type: ignore[arg-type]
    (SocketAddress("a", -0.0), ParsedAddress("a", 0, "a:0")),  # type: ignore[arg-type]
    (SocketAddress("a", "80"), ParsedAddress("a", 80, "a:80")),  # type: ignore[arg-type]
    (SocketAddress("a", " 0x50 "), ParsedAddress("a", 80, "a:80")),  # type: ignore[arg-type]
    (SocketAddress("a", ""), ParsedAddress("a", 0, "a:0")),  # type: ignore[arg-type]
    # Joined without parsing, as workerd does; these fail later, when connecting.
    (SocketAddress("", 80), ParsedAddress("", 80, ":80")),
    (SocketAddress("127.0.0.1:80", 1), ParsedAddress("127.0.0.1:80", 1, "127.0.0.1:80:1")),
]


@pytest.mark.parametrize(("address", "expected"), SOCKET_ADDRESSES)
def test_socket_address_is_joined_unparsed(address: SocketAddress,
                                           expected: ParsedAddress) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize(("port", "message"), [
    (float("nan"), PORT_NOT_INTEGER),
    (float("inf"), PORT_NOT_INTEGER),
    (float("-inf"), PORT_NOT_INTEGER),
    (True, PORT_NOT_INTEGER),  # bool is not a port here
    (None, PORT_NOT_INTEGER),
    ("http", PORT_NOT_INTEGER),
    ([80], PORT_NOT_INTEGER),
    (-1, PORT_NEGATIVE),
    (-0.5, PORT_NEGATIVE),
    ("-1", PORT_NEGATIVE),
    (65536, PORT_TOO_LARGE),
    (65535.5, PORT_TOO_LARGE),
    (10**30, PORT_TOO_LARGE),
])
def test_socket_address_bad_ports(port: object, message: str) -> None:
    with pytest.raises(AddressError) as raised:
        parse_address(SocketAddress("127.0.0.1", port))  # type: ignore[arg-type]
    assert str(raised.value) == message


@pytest.mark.parametrize("hostname", ["a b", "bücher.example", "host/path", "x" * 253,
                                      "fe80::1%eth0"])
def test_socket_address_bad_hostnames(hostname: str) -> None:
    with pytest.raises(AddressError) as raised:
        parse_address(SocketAddress(hostname, 80))
    assert str(raised.value) == INVALID_HOST


def test_socket_address_port_is_checked_before_the_host() -> None:
    with pytest.raises(AddressError) as raised:
        parse_address(SocketAddress("a b", -1))
    assert str(raised.value) == PORT_NEGATIVE


# ------------------------------------------------------------------ secureTransport


@pytest.mark.parametrize("value", ["off", "on", "starttls"])
def test_secure_transport_values(value: str) -> None:
    assert validate_secure_transport(value) == value


@pytest.mark.parametrize(("value", "shown"), [
    ("ON", "ON"), ("Off", "Off"), ("StartTLS", "StartTLS"), ("tls", "tls"), ("", ""),
    (" on", " on"), (True, "true"), (None, "null"), (1.0, "1"), (2, "2"),
])
def test_secure_transport_is_case_sensitive_and_strict(value: object, shown: str) -> None:
    with pytest.raises(SocketOptionError) as raised:
        validate_secure_transport(value)
    assert str(raised.value) == f"Unsupported value in secureTransport socket option: {shown}"
    assert isinstance(raised.value, TypeError)


# ------------------------------------------------------------------ parse_port


@pytest.mark.parametrize(("text", "port"), [
    ("1", 1), ("22", 22), ("443", 443), ("080", 80), ("65535", 65535), ("000025", 25),
])
def test_parse_port_accepts_ascii_digits(text: str, port: int) -> None:
    assert parse_port(text) == port


@pytest.mark.parametrize("text", [
    "２５",  # fullwidth digits: int() accepts them
    "٢٥",  # Arabic-Indic digits
    "2_5",  # int() accepts underscores
    "+25", "-25", " 25", "25 ", "25\n", "\t25",
    "0x19", "25.0", "2e1", "25a", "port", "",
])
def test_parse_port_refuses_what_int_would_take(text: str) -> None:
    with pytest.raises(ValueError, match="port") as raised:
        parse_port(text)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("text", ["0", "00", "65536", "99999", "1" * 5000])
def test_parse_port_range(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_port(text)


# ------------------------------------------------------------------ split_target


@pytest.mark.parametrize(("text", "default", "expected"), [
    ("example.com:443", None, ("example.com", 443)),
    ("127.0.0.1:5432", None, ("127.0.0.1", 5432)),
    ("[::1]:22", None, ("::1", 22)),
    ("[fe80::1%eth0]:22", None, ("fe80::1%eth0", 22)),
    ("example.com", 443, ("example.com", 443)),
    ("[::1]", 80, ("::1", 80)),
    ("::1", 80, ("::1", 80)),
    ("2001:db8::1", 25, ("2001:db8::1", 25)),
    ("example.com:080", 443, ("example.com", 80)),
])
def test_split_target(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert split_target(text, default) == expected


@pytest.mark.parametrize(("text", "default", "fragment"), [
    ("example.com", None, "no port"),
    ("", None, "empty"),
    (":80", None, "no host"),
    ("::1", None, "brackets"),
    ("::1:80", None, "brackets"),
    ("[::1]", None, "no port"),
    ("[::1", 80, "closing"),
    ("[::1]80", 80, "':PORT'"),
    ("[127.0.0.1]:80", None, "IPv6"),
    ("a:b:c", 80, "more than one"),
    ("example.com:２５", None, "not a number"),
    ("example.com:+25", None, "not a number"),
    ("example.com:0", None, "out of range"),
    ("example.com:", None, "empty"),
])
def test_split_target_errors(text: str, default: int | None, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        split_target(text, default)


# ------------------------------------------------------------------ normalize_host


@pytest.mark.parametrize(("host", "literal"), [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F.1", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0x0.0.01", "127.0.0.1"),
    ("127.000.000.001", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0127.0.0.1", "87.0.0.1"),  # octal: a public address, not loopback
    ("0", "0.0.0.0"),
    ("0x0", "0.0.0.0"),
    ("4294967295", "255.255.255.255"),
    ("169.254.43518", "169.254.169.254"),
    ("１２７．０．０．１", "127.0.0.1"),  # fullwidth digits and full stops
    ("127。0。0。1", "127.0.0.1"),  # ideographic full stops
    ("127｡0｡0｡1", "127.0.0.1"),  # halfwidth ideographic full stops
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("::FFFF:7F00:1", "::ffff:7f00:1"),
    ("fe80::1%eth0", "fe80::1"),
    ("[fe80::1%25lo]", "fe80::1"),
    ("［：：１］", "::1"),  # fullwidth brackets and colons map to ASCII too
])
def test_normalize_host_finds_every_literal_spelling(host: str, literal: str) -> None:
    normalized = normalize_host(host)
    assert normalized.literal == ip_address(literal)
    assert normalized.name == str(ip_address(literal))


@pytest.mark.parametrize(("host", "name"), [
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example.", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("ＬＯＣＡＬＨＯＳＴ", "localhost"),
    ("localhost。", "localhost"),
    ("\u200blocalhost", "localhost"),  # nameprep drops zero-width space, as dialing would
    ("under_score.example", "under_score.example"),
    ("127.0.0.1.nip.io", "127.0.0.1.nip.io"),
])
def test_normalize_host_names(host: str, name: str) -> None:
    assert normalize_host(host) == NormalizedHost(name, None)


@pytest.mark.parametrize(("host", "fragment"), [
    ("", "empty"),
    ("local\x00host", "control"),
    ("127.0.0.1\x00.evil.com", "control"),
    ("example.com\r\n", "control"),
    ("exa mple.com", "not a valid host name"),
    ("a..b", "internationalized|not a valid host name"),
    ("example.com..", "not a valid host name"),
    (".", "not a valid host name"),
    ("a" * 64 + ".com", "not a valid host name"),
    (".".join(["a" * 60] * 5), "not a valid host name"),
    ("ex/ample.com", "not a valid host name"),
    ("user@host", "not a valid host name"),
    ("%31%32%37.0.0.1", "not a valid host name"),
    ("[::1", "brackets"),
    ("::1]", "brackets"),
    ("[127.0.0.1]", "IPv6"),
    ("1::2::3", "IPv6"),
    ("::ffff:0127.0.0.1", "IPv6"),
    ("fe80::1%", "IPv6"),
    ("fe80::1%eth 0", "IPv6"),
    ("host:80", "IPv6"),
    # An address with a typo is no name for DNS (the URL standard: the last label is a
    # number, so it must be an IPv4 address, and it is none).
    ("999.1.1.1", "last label is a number"),
    ("300.1.1.1", "last label is a number"),
    ("1.2.3.4.5", "last label is a number"),
    ("db.internal.0x1f", "last label is a number"),
    ("0x", "last label is a number"),
])
def test_normalize_host_rejects_garbage(host: str, fragment: str) -> None:
    with pytest.raises(AddressError, match=fragment):
        normalize_host(host)


def _spell(value: int, parts: int, bases: list[int]) -> str:
    """``value`` written the way inet_aton reads ``parts`` numbers in the given bases."""
    numbers = [(value >> shift) & 0xFF for shift in (24, 16, 8)][:parts - 1]
    numbers.append(value & (0xFFFFFFFF >> (8 * (parts - 1))))
    spelled = []
    for number, base in zip(numbers, bases, strict=False):
        spelled.append({10: str(number), 8: "0" + format(number, "o"),
                        16: "0x" + format(number, "x")}[base])
    return ".".join(spelled)


@given(value=st.integers(0, 0xFFFFFFFF), parts=st.integers(1, 4),
       bases=st.lists(st.sampled_from([8, 10, 16]), min_size=4, max_size=4))
def test_every_legacy_spelling_normalizes_to_the_address(value: int, parts: int,
                                                         bases: list[int]) -> None:
    spelled = _spell(value, parts, bases)
    assert normalize_host(spelled).literal == IPv4Address(value), spelled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with glibc")
@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=24))
def test_inet_aton_agrees_with_glibc(text: str) -> None:
    try:
        expected: IPv4Address | None = IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    assert inet_aton(text) == expected


def test_literal_types() -> None:
    assert isinstance(normalize_host("127.1").literal, IPv4Address)
    assert isinstance(normalize_host("::1").literal, IPv6Address)
    assert normalize_host("example.com").literal is None
