"""Targets: Workers address validation, host normalization, and CLI target parsing.

Three jobs, kept apart on purpose:

* :func:`parse_address` is ``connect()``'s synchronous validation, with the exact checks,
  order and texts of workerd's ``connectImpl`` (spec §3.2, §4 rows 1–4 and 6, §9). The
  string form is parsed the way the WHATWG URL parser parses ``"fake://" + address``; the
  subset that can make it fail is written out below (no URL library needed).
* :func:`normalize_host` turns a host into what the operating system would really dial —
  IDNA, case, one trailing dot, and every IPv4 spelling ``inet_aton`` accepts — so the
  destination policy judges the real destination, not its spelling.
* :func:`parse_port` and :func:`split_target` read command-line targets strictly.
"""

from __future__ import annotations

import math
import numbers
import re
from ipaddress import IPv4Address, IPv6Address
from typing import Literal, NamedTuple

from tcpcli.core.errors import AddressError, SocketOptionError
from tcpcli.record import Record

# Workers texts (spec §4): one place each.
PARSE_FAILED = "Specified address could not be parsed."
MISSING_HOSTNAME = "Specified address is missing hostname."
MISSING_PORT = "Specified address is missing port."
INVALID_HOST = (
    "Specified address is empty string, contains unsupported characters or is too long."
)
PORT_NOT_INTEGER = "The value cannot be converted because it is not an integer."
PORT_NEGATIVE = (
    "The value cannot be converted because it is negative and this API expects a positive number."
)
PORT_TOO_LARGE = "Value out of range. Must be less than or equal to 65535."
SECURE_TRANSPORT_UNSUPPORTED = "Unsupported value in secureTransport socket option: "

#: workerd's isValidHost: the whole ``host:port`` string is 1–255 of these characters.
_VALID_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._[]:"
)
MAX_ADDRESS_LENGTH = 255
MAX_PORT = 65535

_ASCII_DIGITS = frozenset("0123456789")
_ASCII_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: WHATWG "forbidden host code points": any of them makes an opaque host unparsable.
_FORBIDDEN_HOST_CODE_POINTS = frozenset("\x00\t\n\r #/:<>?@[\\]^|")
#: What ends the authority (non-special URL: a backslash is an ordinary character).
_AUTHORITY_END = frozenset(("", "/", "?", "#"))
_EOF = ""

SecureTransport = Literal["off", "on", "starttls"]
_SECURE_TRANSPORTS: tuple[SecureTransport, ...] = ("off", "on", "starttls")


class SocketAddress(Record, frozen=True):
    """Workers' ``SocketAddress``: a host name (or IP literal) and a port, joined unparsed."""

    hostname: str
    port: int


class ParsedAddress(NamedTuple):
    """An address that passed Workers validation.

    ``hostname`` is the host as given (IPv6 without brackets, not normalized); ``address_str``
    is what Workers reports as ``remoteAddress``: the original string for the string form,
    ``hostname:port`` (IPv6 bracketed) for a :class:`SocketAddress`.
    """

    hostname: str
    port: int
    address_str: str

    def __str__(self) -> str:
        return self.address_str


# ------------------------------------------------------------------ Workers validation


def parse_address(address: str | SocketAddress) -> ParsedAddress:
    """Validate ``address`` exactly as Workers' ``connect()`` does, or raise AddressError.

    Port 0 passes: Workers only fails it when connecting (the proxy error).
    """
    if isinstance(address, SocketAddress):
        return _parse_socket_address(address)
    if not isinstance(address, str):
        raise AddressError(
            f"address must be a 'host:port' string or a SocketAddress, not {type(address).__name__}"
        )
    parsed = _parse_fake_url(address)
    if parsed is None:
        raise AddressError(PARSE_FAILED)
    host, port = parsed
    if host == "":
        raise AddressError(MISSING_HOSTNAME)
    if port is None:
        raise AddressError(MISSING_PORT)
    if not _is_valid_host(address):
        raise AddressError(INVALID_HOST)
    # A string that passed isValidHost has no credentials, path, query or fragment, and no
    # tab or newline, so the parsed host is the text before the port, exactly as written.
    return ParsedAddress(hostname=_strip_brackets(host), port=port, address_str=address)


def _parse_socket_address(address: SocketAddress) -> ParsedAddress:
    # jsg converts the struct's port (JS number -> uint16_t) before connectImpl runs.
    port = _port_from_number(address.port)
    hostname = address.hostname
    if not isinstance(hostname, str):
        raise AddressError(f"SocketAddress.hostname must be a str, not {type(hostname).__name__}")
    # workerd joins the two without parsing and validates that string.
    if not _is_valid_host(f"{hostname}:{port}"):
        raise AddressError(INVALID_HOST)
    bare = _strip_brackets(hostname)
    # "::1" + ":80" would be ambiguous; Workers leaves it so, we bracket it (spec §7.8).
    shown = f"[{bare}]" if _is_ipv6_literal(bare) else hostname
    return ParsedAddress(hostname=bare, port=port, address_str=f"{shown}:{port}")


def _port_from_number(value: object) -> int:
    """Workers' JS number -> uint16_t conversion (jsg/value.h), for Python values.

    ints and floats as in JS (fractions truncate); a str is read the way JS ``Number()``
    reads it; bool is not a number here, nor is None (JS ``undefined``).
    """
    number: float
    if isinstance(value, bool) or value is None:
        raise AddressError(PORT_NOT_INTEGER)
    if isinstance(value, numbers.Integral):
        integer = int(value)
        if integer < 0:
            raise AddressError(PORT_NEGATIVE)
        if integer > MAX_PORT:
            raise AddressError(PORT_TOO_LARGE)
        return integer
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        number = _js_string_to_number(value)
    else:
        raise AddressError(PORT_NOT_INTEGER)
    if not math.isfinite(number):
        raise AddressError(PORT_NOT_INTEGER)
    if number < 0:
        raise AddressError(PORT_NEGATIVE)
    if number > MAX_PORT:
        raise AddressError(PORT_TOO_LARGE)
    return int(number)


class _Pattern:
    """A regular expression compiled on first use: compiling this module's four costs
    every run's start-up as much as the rest of the module, and most runs need none."""

    __slots__ = ("_compiled", "_source")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def fullmatch(self, text: str) -> re.Match[str] | None:
        if self._compiled is None:
            self._compiled = re.compile(self._source, re.ASCII)
        return self._compiled.fullmatch(text)


_JS_DECIMAL = _Pattern(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_JS_PREFIXED = _Pattern(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")


def _js_string_to_number(text: str) -> float:
    """JavaScript ``Number(text)``: what a Worker's ``{port: "80"}`` becomes."""
    stripped = text.strip(" \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                          "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
    if stripped == "":
        return 0.0
    if _JS_PREFIXED.fullmatch(stripped):
        return float(int(stripped, 0))
    if _JS_DECIMAL.fullmatch(stripped):
        return float(stripped.replace("Infinity", "inf"))
    return math.nan


def _is_valid_host(address_str: str) -> bool:
    """workerd's isValidHost, run on the whole ``host:port`` string (UTF-8 length)."""
    size = len(address_str.encode("utf-8", "surrogatepass"))
    return 0 < size <= MAX_ADDRESS_LENGTH and all(ch in _VALID_HOST_CHARS for ch in address_str)


def _parse_fake_url(address: str) -> tuple[str, int | None] | None:
    """The WHATWG URL parser on ``"fake://" + address``, reduced to what Workers reads.

    Returns ``(host, port)`` — host as written (brackets kept), port None when absent —
    or None where the URL parser fails. "fake" is not a special scheme, so the host is an
    opaque host (no IDNA, no IPv4 parsing) unless bracketed, and a backslash is ordinary.
    """
    # Input preprocessing: trim trailing C0 controls and spaces (the leading side is
    # "fake://"), then remove every tab and newline.
    text = address.rstrip("".join(map(chr, range(0x21))))
    text = text.replace("\t", "").replace("\n", "").replace("\r", "")

    def char(index: int) -> str:
        return text[index] if index < len(text) else _EOF

    # Authority state: credentials end at the last "@" before the authority ends.
    host_start, index, at_sign_seen, buffer_length = 0, 0, False, 0
    while True:
        c = char(index)
        if c == "@":
            at_sign_seen, buffer_length = True, 0
            host_start = index + 1
        elif c in _AUTHORITY_END:
            if at_sign_seen and buffer_length == 0:
                return None  # "user@" with no host
            break
        else:
            buffer_length += 1
        index += 1

    # Host state: a ":" outside brackets starts the port.
    index, inside_brackets = host_start, False
    while True:
        c = char(index)
        if c == ":" and not inside_brackets:
            host = text[host_start:index]
            if host == "" or not _is_whatwg_host(host):
                return None
            index += 1
            break
        if c in _AUTHORITY_END:
            host = text[host_start:index]
            return (host, None) if _is_whatwg_host(host) else None
        if c == "[":
            inside_brackets = True
        elif c == "]":
            inside_brackets = False
        index += 1

    # Port state: ASCII digits up to the end of the authority.
    port_start = index
    while char(index) in _ASCII_DIGITS and char(index) != _EOF:
        index += 1
    if char(index) not in _AUTHORITY_END:
        return None
    digits = text[port_start:index]
    if digits == "":
        return host, None
    port = int(digits.lstrip("0") or "0") if len(digits.lstrip("0")) <= 5 else MAX_PORT + 1
    if port > MAX_PORT:
        return None
    return host, port


def _is_whatwg_host(host: str) -> bool:
    """WHATWG host parsing for a non-special URL: an IPv6 literal or an opaque host."""
    if host.startswith("["):
        return host.endswith("]") and _is_whatwg_ipv6(host[1:-1])
    return not any(ch in _FORBIDDEN_HOST_CODE_POINTS for ch in host)


def _is_whatwg_ipv6(text: str) -> bool:
    """The WHATWG IPv6 parser, reduced to accept/reject (no zone ids, strict dotted quad)."""

    def char(index: int) -> str:
        return text[index] if index < len(text) else _EOF

    piece_index, compress, index = 0, False, 0
    if char(0) == ":":
        if char(1) != ":":
            return False
        index, piece_index, compress = 2, 1, True
    while char(index) != _EOF:
        if piece_index == 8:
            return False
        if char(index) == ":":
            if compress:
                return False
            index, piece_index, compress = index + 1, piece_index + 1, True
            continue
        length = 0
        while length < 4 and char(index) in _ASCII_HEX_DIGITS and char(index) != _EOF:
            index, length = index + 1, length + 1
        if char(index) == ".":
            if length == 0 or piece_index > 6:
                return False
            # The dotted quad ends the address and fills two pieces.
            return _is_whatwg_embedded_ipv4(text[index - length:]) and (
                compress or piece_index + 2 == 8)
        if char(index) == ":":
            index += 1
            if char(index) == _EOF:
                return False
        elif char(index) != _EOF:
            return False
        piece_index += 1
    return compress or piece_index == 8


def _is_whatwg_embedded_ipv4(text: str) -> bool:
    """The dotted quad at the end of an IPv6 literal: four decimal parts, no leading zeros."""
    parts = text.split(".")
    return len(parts) == 4 and all(
        part != "" and all(ch in _ASCII_DIGITS for ch in part)
        and (part == "0" or not part.startswith("0")) and int(part) <= 255
        for part in parts
    )


def validate_secure_transport(value: object) -> SecureTransport:
    """Workers' secureTransport check: exactly "off", "on" or "starttls" (case-sensitive)."""
    if isinstance(value, str) and value in _SECURE_TRANSPORTS:
        return value
    raise SocketOptionError(SECURE_TRANSPORT_UNSUPPORTED + _js_string(value))


def _js_string(value: object) -> str:
    """How JavaScript would print a value in the error text (``true``, ``null``, ``1``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer():
            return str(int(value))
    return str(value)


# ------------------------------------------------------------------ normalization


class NormalizedHost(NamedTuple):
    """A host as the operating system would dial it. (NamedTuples here: every run makes
    these, and building a frozen dataclass costs start-up more than all of their uses.)

    ``name`` is lowercase ASCII (IDNA A-labels) without the one trailing dot, or the
    canonical text of ``literal``; ``literal`` is set when the host is an IP address in any
    spelling the resolver would dial as one (``127.1``, ``0x7f.1``, ``[::1]``, ...).
    """

    name: str
    literal: IPv4Address | IPv6Address | None = None


#: A host name label after IDNA: letters, digits, hyphens and underscores (which DNS allows).
_LABEL = _Pattern(r"[a-z0-9_-]{1,63}")
MAX_NAME_LENGTH = 253


def normalize_host(hostname: str) -> NormalizedHost:
    """Normalize a host name or IP literal, or raise AddressError for garbage.

    Mapping uses Python's own ``idna`` codec (IDNA 2003 nameprep), the one
    ``socket.getaddrinfo`` applies to str hosts: fullwidth digits, ideographic full stops,
    capitals and ignorable characters map exactly as they would when dialed.
    """
    if not isinstance(hostname, str):
        raise AddressError(f"host must be a str, not {type(hostname).__name__}")
    if hostname == "":
        raise AddressError("the host is empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in hostname):
        raise AddressError(f"host {hostname!r} contains control characters (such as NUL)")
    text = _to_ascii(hostname).lower()
    if text.startswith("[") or text.endswith("]"):
        if not (text.startswith("[") and text.endswith("]")):
            raise AddressError(f"host {hostname!r} has unbalanced brackets")
        return _ipv6_host(text[1:-1], hostname)
    if ":" in text:
        return _ipv6_host(text, hostname)
    if text.endswith("."):
        text = text[:-1]  # one trailing dot: the root; a second one is an empty label
    ipv4 = inet_aton(text)
    if ipv4 is not None:
        return NormalizedHost(str(ipv4), ipv4)
    labels = text.split(".")
    if len(text) > MAX_NAME_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        raise AddressError(
            f"host {hostname!r} is not a valid host name: labels of 1-63 letters, digits, "
            f"'-' or '_' separated by dots, {MAX_NAME_LENGTH} characters at most"
        )
    if _is_number(labels[-1]):
        # An address with a typo (300.1.1.1), not a name to look up: the URL standard
        # refuses a host whose last label is a number and is no IPv4 address, and so do
        # the library and the CLI, for targets and policy entries alike.
        raise AddressError(f"host {hostname!r} is not an IP address (four numbers of 0-255) "
                           "and not a host name (its last label is a number)")
    return NormalizedHost(text)



def tls_name(hostname: str, server_name: str | None) -> str:
    """The name a TLS handshake with ``hostname`` sends and verifies: ``server_name``
    when one was given, else the host as the policy reads it (an IP literal as its
    address, a name normalized)."""
    if server_name:
        return server_name
    host = normalize_host(hostname)
    return str(host.literal) if host.literal is not None else host.name

def _is_number(label: str) -> bool:
    """Decimal digits, or 0x and hex digits: what makes a label a number to the URL
    standard's IPv4 parser."""
    if label[:2] in ("0x", "0X"):
        return all(ch in "0123456789abcdefABCDEF" for ch in label[2:])
    return label.isascii() and label.isdigit()


def _to_ascii(hostname: str) -> str:
    if hostname.isascii():
        return hostname
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        cause = exc.__cause__ or exc
        raise AddressError(
            f"host {hostname!r} is not a valid internationalized name ({cause})"
        ) from None


def _ipv6_host(text: str, original: str) -> NormalizedHost:
    literal = ipv6_literal(text)
    if literal is None:
        raise AddressError(f"host {original!r} is not a valid IPv6 address")
    return NormalizedHost(str(literal), literal)


def ipv6_literal(text: str) -> IPv6Address | None:
    """An IPv6 literal, with any zone id (``fe80::1%eth0``) dropped; None if it is not one."""
    address, percent, zone = text.partition("%")
    if percent and not re.fullmatch(r"[A-Za-z0-9_.-]+", zone, re.ASCII):
        return None
    try:
        return IPv6Address(address)
    except ValueError:
        return None


def _is_ipv6_literal(text: str) -> bool:
    return ":" in text and ipv6_literal(text) is not None


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


#: inet_aton's limit for the last part, by the number of parts (a, a.b, a.b.c, a.b.c.d).
_LAST_PART_LIMIT = {1: 0xFFFFFFFF, 2: 0xFFFFFF, 3: 0xFFFF, 4: 0xFF}
_INET_ATON_PART = _Pattern(r"0[xX](?P<hex>[0-9a-fA-F]+)|(?P<octal>0[0-7]*)|(?P<decimal>[1-9]\d*)")


def inet_aton(text: str) -> IPv4Address | None:
    """The IPv4 address glibc's ``inet_aton`` reads from ``text``, or None.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes: ``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``. Beware
    ``0127.0.0.1``: octal, so 87.0.0.1. Unlike inet_aton, trailing text is never accepted
    (getaddrinfo's exact parse).
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        match = _INET_ATON_PART.fullmatch(part)
        if match is None:
            return None
        if match["hex"] is not None:
            values.append(int(match["hex"], 16))
        elif match["octal"] is not None:
            values.append(int(match["octal"], 8))
        else:
            values.append(int(match["decimal"]))
    *leading, last = values
    if any(value > 0xFF for value in leading) or last > _LAST_PART_LIMIT[len(values)]:
        return None
    number = last
    for position, value in enumerate(leading):
        number |= value << (24 - 8 * position)
    return IPv4Address(number)


# ------------------------------------------------------------------ command-line targets


def parse_port(text: str) -> int:
    """A port typed by a person: ASCII digits only, 1-65535, or ValueError saying so.

    ``int()`` would also take "２５", "2_5", "+25" and " 25"; none of them is a port here.
    """
    if text == "":
        raise ValueError("the port is empty: give a number from 1 to 65535")
    if not all(ch in _ASCII_DIGITS for ch in text):
        raise ValueError(f"port {text!r} is not a number: give digits only, 1 to 65535")
    significant = text.lstrip("0")
    if significant == "" or len(significant) > 5 or int(significant) > MAX_PORT:
        raise ValueError(f"port {text} is out of range: give a number from 1 to 65535")
    return int(significant)


def split_target(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split a command-line target into host and port.

    Accepts ``host:port`` and ``[v6]:port``; ``host``, ``[v6]`` and a bare IPv6 address
    only when there is a default port. The host is returned without brackets.
    """
    if text == "":
        raise ValueError("the target is empty: give HOST:PORT")
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise ValueError(f"target {text!r} has no closing ']': write [IPv6]:PORT")
        host, rest = text[1:close], text[close + 1:]
        if not _is_ipv6_literal(host):
            raise ValueError(f"{host!r} in brackets is not an IPv6 address: brackets are for IPv6")
        if rest == "":
            return host, _default_port(text, default_port)
        if not rest.startswith(":"):
            raise ValueError(f"target {text!r}: expected ':PORT' after ']'")
        return host, parse_port(rest[1:])
    if text.count(":") > 1:
        if not _is_ipv6_literal(text):
            raise ValueError(f"target {text!r} has more than one ':': write [IPv6]:PORT for IPv6")
        if default_port is None:
            raise ValueError(f"IPv6 target {text!r} needs brackets and a port: [{text}]:PORT")
        return text, default_port
    host, colon, port_text = text.partition(":")
    if host == "":
        raise ValueError(f"target {text!r} has no host: give HOST:PORT")
    if not colon:
        return host, _default_port(text, default_port)
    return host, parse_port(port_text)


def join_host_port(host: object, port: object) -> str:
    """``host:port`` for showing or dialing, with IPv6 literals in brackets."""
    text = str(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _default_port(text: str, default_port: int | None) -> int:
    if default_port is None:
        raise ValueError(f"target {text!r} has no port: give HOST:PORT")
    return default_port


__all__ = [
    "NormalizedHost",
    "ParsedAddress",
    "SecureTransport",
    "SocketAddress",
    "inet_aton",
    "ipv6_literal",
    "join_host_port",
    "normalize_host",
    "parse_address",
    "parse_port",
    "split_target",
    "validate_secure_transport",
]

