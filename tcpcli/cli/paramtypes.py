"""The types of tcpcli's option values, defined once: flags, ``TCPCLI_*`` variables, the
configuration file and shell completion all go through these.

Each type checks a value with the parser the core uses for it (ports with
``core.address.parse_port``, pins with ``core.tlsoptions.parse_pin``, allow/deny entries
with ``core.policy``), so a bad value is a usage error before anything runs: exit 2, one
line naming the option and the form it takes. The core's parsers are imported on use:
``--help`` and a plain run must not pay for ``ssl`` or the policy tables.

Each type also says which TOML values the configuration file may give it
(``toml_types``, ``toml_form``), so :mod:`tcpcli.cli.configcheck` needs no list of them.
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, ClassVar

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

__all__ = [
    "DURATION",
    "MAX_SOCKETS",
    "PIN",
    "PORT",
    "PORT_LIST",
    "PROXY_URL",
    "RESOLVER",
    "SOURCE_ADDRESS",
    "TLS_VERSION",
    "TLS_VERSIONS",
    "ByteSize",
    "Count",
    "Duration",
    "MaxSockets",
    "Number",
    "OutputFile",
    "PolicyEntry",
    "TcpcliType",
    "parse_duration",
    "parse_size",
]

TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
PROXY_SCHEMES = ("socks5", "socks5h", "socks4", "socks4a", "http")
#: Above this a "number of things" is a typo, not a wish (and overflows some kernels' APIs).
MAX_COUNT = 1_000_000_000
#: The longest duration any option takes: a year. Longer is a typo (or "forever", which
#: every option that has it spells by leaving the option out).
MAX_SECONDS = 366 * 86400.0


class TcpcliType(click.ParamType):  # type: ignore[type-arg]
    """A value type whose parse errors are ValueErrors saying what is wrong and what would
    be accepted; :meth:`convert` turns them into click's usage error."""

    #: The TOML value types the configuration file may give (bool is never an int here).
    toml_types: ClassVar[tuple[type, ...]] = (str,)
    #: How the configuration file's error describes the wanted TOML value.
    toml_form: ClassVar[str] = "a string"

    def parse(self, value: object) -> object:
        raise NotImplementedError

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> object:
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _text(value: object) -> str:
    """A value from the command line, a variable or the file (TOML int/float too)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a value this option takes")
    return value if isinstance(value, str) else str(value)


# -- ports --------------------------------------------------------------------------------


class Port(TcpcliType):
    """A TCP port, 1-65535, in ASCII digits (``int()`` would take "+25" and "２５")."""

    name = "port"
    toml_types = (int, str)
    toml_form = "a port number (1-65535)"

    def parse(self, value: object) -> int:
        from tcpcli.core.address import parse_port

        return parse_port(_text(value))

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "PORT"


class PortList(TcpcliType):
    """probe's ``--ports``: ``22,80-90,ssh,redis`` or ``-``; kept as typed (the scan
    expands it), checked here so a typo fails before the scan starts."""

    name = "ports"
    toml_form = 'a port list ("22,80-90,ssh")'

    def parse(self, value: object) -> str:
        from tcpcli.engines.scan_targets import parse_ports

        text = _text(value)
        parse_ports(text)
        return text

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        """Service names for the last item (``--ports ssh,red<TAB>``); the ones before
        it are kept as typed."""
        from click.shell_completion import CompletionItem

        from tcpcli.data.services import SERVICES

        head, comma, last = incomplete.rpartition(",")
        return [CompletionItem(head + comma + name, help=f"port {port}")
                for name, port in sorted(SERVICES.items()) if name.startswith(last.lower())]


# -- numbers ------------------------------------------------------------------------------

#: Patterns are compiled on first use (re caches them): declaring a command matches nothing.
_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"


def _number(text: str) -> float:
    """A plain decimal number; no nan, inf, signs, underscores or non-ASCII digits."""
    if not re.fullmatch(_NUMBER, text.strip()):
        raise ValueError(f"{text!r} is not a number")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text!r} is too large")
    return number


class Number(TcpcliType):
    """A finite decimal number in a range (rates, percentiles)."""

    name = "number"
    toml_types = (int, float, str)
    toml_form = "a number"

    def __init__(self, low: float = 0.0, high: float = float(MAX_COUNT), *,
                 low_open: bool = True, unit: str = "") -> None:
        self.low, self.high, self.low_open, self.unit = low, high, low_open, unit

    def describe(self) -> str:
        low = f"above {self.low:g}" if self.low_open else f"from {self.low:g}"
        return f"a number {low} up to {self.high:g}{' ' + self.unit if self.unit else ''}"

    def parse(self, value: object) -> float:
        if isinstance(value, float | int) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = _number(_text(value))
            except ValueError as exc:
                raise ValueError(f"{exc}: give {self.describe()}") from None
        too_low = number <= self.low if self.low_open else number < self.low
        if too_low or number > self.high or not math.isfinite(number):
            raise ValueError(f"{value} is out of range: give {self.describe()}")
        return number


class Count(TcpcliType):
    """A whole number in a range, in ASCII digits."""

    name = "integer"
    toml_types = (int, str)
    toml_form = "an integer"

    def __init__(self, low: int = 1, high: int = MAX_COUNT) -> None:
        self.low, self.high = low, high

    def parse(self, value: object) -> int:
        wanted = f"give a whole number from {self.low} to {self.high:,}"
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = _text(value).strip()
            if not (text.isascii() and text.isdigit()):
                raise ValueError(f"{text!r} is not a whole number: {wanted}")
            if len(text.lstrip("0")) > len(str(self.high)):
                raise ValueError(f"{text} is out of range: {wanted}")
            number = int(text)
        if not self.low <= number <= self.high:
            raise ValueError(f"{number} is out of range: {wanted}")
        return number


_DURATION = r"(?P<number>[0-9.eE+-]+)\s*(?P<unit>ms|s|m|h)?"
_SECONDS_PER = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``2.5`` or ``2.5s``, ``300ms``, ``5m``, ``1h`` -> seconds (> 0, at most a year)."""
    form = "give seconds (2.5) or a number with ms, s, m or h (300ms, 5m)"
    match = re.fullmatch(_DURATION, text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration: {form}")
    try:
        number = _number(match["number"])
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: {form}") from None
    return _seconds(number * _SECONDS_PER[match["unit"]], repr(text))


def _seconds(seconds: float, shown: str) -> float:
    form = "give seconds (2.5) or a number with ms, s, m or h (300ms, 5m)"
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"{shown} is longer than a year: {form}")
    if seconds <= 0:
        raise ValueError(f"{shown} is not above zero: {form}")
    return seconds


class Duration(TcpcliType):
    """How long, in seconds; units allowed (``300ms``, ``5m``)."""

    name = "seconds"
    toml_types = (int, float, str)
    toml_form = 'seconds (a number, or a string such as "300ms" or "5m")'

    def parse(self, value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _seconds(float(value), repr(value))
        return parse_duration(_text(value))


#: Size suffixes: K/M/G/T (and KiB, ...) count in 1024s, as iperf3 and dd; KB/MB/GB/TB
#: count in 1000s.
_SIZE = r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>(?:[kmgt](?:i?b)?)|b)?"
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}
#: The largest size any option takes (a terabyte per connection is plenty for a test).
MAX_SIZE = 1024 ** 4


def parse_size(text: str) -> int:
    """``65536``, ``64K``/``64KiB`` (1024s), ``64KB`` (1000s), ``1.5M`` -> bytes."""
    match = re.fullmatch(_SIZE, text.strip(), re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a size (use e.g. 65536, 64K, 10M, 1G or 10MB)")
    number = float(match["number"])
    unit = (match["unit"] or "").lower()
    if unit in ("", "b"):
        if "." in match["number"]:
            raise ValueError(f"{text!r} is not a whole number of bytes")
    else:
        base = 1000 if unit.endswith("b") and not unit.endswith("ib") else 1024
        number *= base ** _POWERS[unit[0]]
    if number < 1:
        raise ValueError(f"{text!r} is less than one byte")
    if number > MAX_SIZE:
        raise ValueError(f"{text!r} is more than 1T (1024 GiB)")
    return int(number)


class ByteSize(TcpcliType):
    """A number of bytes: ``65536``, ``64K``, ``10M``, ``1G`` or ``10MB``."""

    name = "size"
    toml_types = (int, str)
    toml_form = 'a size (an integer of bytes, or a string such as "64K")'

    def parse(self, value: object) -> int:
        return parse_size(_text(value))


class MaxSockets(TcpcliType):
    """``--max-sockets``: how many sockets may be open at once; ``unlimited`` (the one
    spelling) lifts the cap. 0 is an error rather than a silent "no limit"."""

    name = "N|unlimited"
    toml_types = (int, str)
    toml_form = 'an integer or "unlimited"'

    def parse(self, value: object) -> int | None:
        if value is None:
            return 6
        if isinstance(value, str) and value.strip().lower() == "unlimited":
            return None
        try:
            return Count(1, MAX_COUNT).parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number of sockets: give 1 or more, or "
                             "'unlimited'") from None

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(word) for word in ("6", "unlimited") if word.startswith(incomplete)]


# -- TLS ----------------------------------------------------------------------------------


class Pin(TcpcliType):
    """An SPKI SHA-256 pin as ``--pin`` takes it: ``sha256/BASE64`` (curl's
    ``sha256//BASE64`` and 64 hex digits too; several joined by ``;``)."""

    name = "pin"
    toml_form = 'a pin string ("sha256/BASE64")'

    def parse(self, value: object) -> str:
        from tcpcli.core.errors import SocketOptionError
        from tcpcli.core.tlsoptions import parse_pin

        text = _text(value)
        parts = [part for part in text.split(";") if part.strip()]
        if not parts:
            raise ValueError("empty pin: give sha256/BASE64 (the SPKI SHA-256 digest)")
        for part in parts:
            try:
                parse_pin(part)
            except SocketOptionError as exc:
                raise ValueError(str(exc).removeprefix("invalid public key pin ")) from None
        return text


TLS_VERSION = click.Choice(TLS_VERSIONS)


# -- addresses ----------------------------------------------------------------------------


class PolicyEntry(TcpcliType):
    """An ``--allow``/``--deny`` entry: a host, ``*.suffix``, an IP address, a CIDR or
    ``port:N``, checked by the policy's own parser."""

    name = "entry"
    toml_form = 'an entry string ("*.example.com", "10.0.0.0/8", "port:25")'

    def __init__(self, option: str) -> None:
        self.option = option

    def parse(self, value: object) -> str:
        from tcpcli.core.policy import Policy

        text = _text(value)
        # (A host with a typo, 300.1.1.1, is refused there: core.address.normalize_host.)
        Policy.parse("workers", **{self.option: [text]})
        return text


class ProxyURL(TcpcliType):
    """``socks5://``, ``socks4://`` or ``http://`` (CONNECT), with a host and a port."""

    name = "url"
    toml_form = 'a proxy URL ("socks5://127.0.0.1:1080")'

    def parse(self, value: object) -> str:
        text = _text(value)
        for hop in text.split(","):  # a chain: the first proxy, then the next through it
            self._hop(hop.strip())
        return text

    def _hop(self, text: str) -> None:
        from urllib.parse import urlsplit

        form = ("give socks5://HOST:PORT (socks5h:// to let the proxy resolve names), "
                "socks4://HOST:PORT (socks4a://) or http://HOST:PORT; a chain as "
                "URL,URL (a comma in credentials as %2C)")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ValueError(f"{text!r} is not a proxy URL: {form}") from None
        if parts.scheme.lower() not in PROXY_SCHEMES:
            scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise ValueError(f"{text!r} has {scheme}: {form}")
        if not parts.hostname or port is None or not 0 < port < 65536:
            raise ValueError(f"{text!r} needs a host and a port: {form}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{text!r} has a path: {form}")

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(f"{scheme}://") for scheme in PROXY_SCHEMES
                if f"{scheme}://".startswith(incomplete)]


class Resolver(TcpcliType):
    """``--resolver``: DNS servers, comma-separated: ``IP``, ``IP:PORT`` or ``[V6]:PORT``."""

    name = "server"
    toml_form = 'a DNS server string ("127.0.0.53" or "[::1]:5353")'

    def parse(self, value: object) -> str:
        from tcpcli.core.resolve import parse_server

        text = _text(value)
        servers = [server.strip() for server in text.split(",")]
        if not any(servers):
            raise ValueError(f"{text!r} names no server: give an IP address, ip:port or "
                             "[v6]:port")
        for server in servers:
            if server:
                parse_server(server)
        return text


class SourceAddress(TcpcliType):
    """``--source``: the local IP address to connect from (a literal: bind() would
    otherwise look a name up with a blocking call)."""

    name = "address"
    toml_form = 'an IP address string ("127.0.0.1")'

    def parse(self, value: object) -> str:
        from ipaddress import ip_address

        text = _text(value).strip()
        try:
            return str(ip_address(text))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address: give this machine's "
                             "IPv4 or IPv6 address") from None


class Endpoint(TcpcliType):
    """An IP address and port, ``IP:PORT`` or ``[V6]:PORT`` (``--proxy-source``): a
    literal, since it is written into a header, never dialed or resolved."""

    name = "endpoint"
    toml_form = 'an "IP:PORT" string ("203.0.113.7:4242")'

    def parse(self, value: object) -> tuple[str, int]:
        from ipaddress import ip_address

        from tcpcli.core.address import split_target

        text = _text(value).strip()
        try:
            host, port = split_target(text)
            return str(ip_address(host)), port
        except (ValueError, TypeError):
            raise ValueError(f"{text!r} is not IP:PORT: give an address and a port, e.g. "
                             "203.0.113.7:4242 or [2001:db8::7]:4242") from None

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "IP:PORT"


class EntryPointText(TcpcliType):
    """``--via``: a tunnel entry point, ``HOST:PORT`` or ``[V6]:PORT``."""

    name = "entry point"
    toml_form = 'a "HOST:PORT" string ("127.0.0.1:15432")'

    def parse(self, value: object) -> str:
        from tcpcli.core.entrypoint import parse_entry_point

        return str(parse_entry_point(_text(value)))

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "HOST:PORT"


class ViaMap(TcpcliType):
    """probe's ``--via-map``: ``PORT=HOST:PORT[,PORT=HOST:PORT...]``, each port of the
    target behind its own entry point; parsed to {port: "host:port"}."""

    name = "via map"
    toml_form = 'a "PORT=HOST:PORT,..." string ("5432=127.0.0.1:15432")'

    def parse(self, value: object) -> dict[int, str]:
        from tcpcli.core.address import parse_port
        from tcpcli.core.entrypoint import parse_entry_point

        text = _text(value)
        form = "give PORT=HOST:PORT pairs, e.g. 5432=127.0.0.1:15432,6379=127.0.0.1:16379"
        entries: dict[int, str] = {}
        for pair in text.split(","):
            port_text, equals, entry = pair.strip().partition("=")
            if not equals:
                raise ValueError(f"{pair.strip()!r} is not PORT=HOST:PORT: {form}")
            port = parse_port(port_text.strip())
            if port in entries:
                raise ValueError(f"port {port} has two entry points: {form}")
            entries[port] = str(parse_entry_point(entry))
        return entries

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "PORT=HOST:PORT,..."


class KeepaliveType(TcpcliType):
    """``--keepalive IDLE[,INTERVAL[,COUNT]]``: whole seconds, seconds, probes."""

    name = "keepalive"
    toml_types = (int, str)
    toml_form = 'seconds ("60", or "60,10,5": idle, interval, probes)'

    def parse(self, value: object) -> tuple[int, int, int]:
        text = _text(value).strip()
        form = ("give IDLE[,INTERVAL[,COUNT]] in whole seconds and probes, e.g. 60 or "
                "60,10,5")
        parts = [part.strip() for part in text.split(",")]
        if not 1 <= len(parts) <= 3 or not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError(f"{text!r} is not a keepalive: {form}")
        numbers = [int(part) for part in parts]
        idle = numbers[0]
        interval = numbers[1] if len(numbers) > 1 else min(idle, 10)
        count = numbers[2] if len(numbers) > 2 else 5
        # Linux's limits: idle and interval 1-32767 s, count 1-127.
        if not (1 <= idle <= 32767 and 1 <= interval <= 32767 and 1 <= count <= 127):
            raise ValueError(f"{text!r}: idle and interval 1-32767 s, count 1-127")
        return idle, interval, count

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "IDLE[,INTERVAL,COUNT]"


class Text(TcpcliType):
    """Free text that must not be empty and, for names sent on the wire, be short."""

    name = "text"

    def __init__(self, what: str, max_bytes: int = 255) -> None:
        self.what, self.max_bytes = what, max_bytes

    def parse(self, value: object) -> str:
        text = _text(value)
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:  # argv bytes that are not UTF-8 (surrogateescape)
            raise ValueError(f"{text!r} is not UTF-8 text: give {self.what}") from None
        if not 0 < len(encoded) <= self.max_bytes:
            raise ValueError(f"{text!r}: give {self.what} of 1-{self.max_bytes} bytes")
        if "\0" in text:  # it would end the name early on the wire
            raise ValueError(f"{text!r}: {self.what} cannot hold a NUL character")
        return text


class OutputFile(click.Path):
    """A file tcpcli writes (``--events``, ``--transcript``, ``--save``): not a directory,
    and in a directory that exists, so a typo fails now rather than after the run."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, writable=True)

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> str | bytes | os.PathLike[str]:
        from pathlib import Path

        checked = super().convert(value, param, ctx)  # type: ignore[arg-type]
        if os.fsdecode(checked).endswith("/"):  # the system reads it as a directory's name
            self.fail(f"{os.fsdecode(checked)!r} names a directory (it ends with '/'): give "
                      "a file name", param, ctx)
        parent = Path(os.fsdecode(checked)).parent
        if not parent.is_dir():
            self.fail(f"{os.fsdecode(checked)!r}: no directory {str(parent)!r} to write it in",
                      param, ctx)
        return checked


PORT = Port()
PORT_LIST = PortList()
DURATION = Duration()
MAX_SOCKETS = MaxSockets()
PIN = Pin()
PROXY_URL = ProxyURL()
RESOLVER = Resolver()
SOURCE_ADDRESS = SourceAddress()
ENDPOINT = Endpoint()
ENTRY_POINT = EntryPointText()
KEEPALIVE = KeepaliveType()
ALPN = Text("an ALPN protocol name")
#: PostgreSQL's identifiers are at most 63 bytes (NAMEDATALEN - 1).
PG_NAME = Text("a PostgreSQL user or database name", max_bytes=63)


class Processes(TcpcliType):
    """``--processes`` (bench, probe): a number of processes, or ``auto`` (None: decided
    per run)."""

    name = "N|auto"
    toml_types = (int, str)
    toml_form = 'an integer or "auto"'

    def parse(self, value: object) -> int | None:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return None
        try:
            return Count(1).parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number of processes: give 1 or more, or "
                             "'auto'") from None


PROCESSES = Processes()
