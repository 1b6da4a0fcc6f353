"""Name a service from its first bytes (``probe --banner``), sans-IO.

Two ways in: a service that speaks first (SSH, SMTP, FTP, POP3, IMAP, MySQL, ...) is
named from what it sent unasked; a silent one is sent a harmless probe
(:func:`probes_for_silent_service`) on its own connection, and named from the answer:
``identify(reply, probe="redis")``. Nothing here touches a socket.

Harmless means: no state change on the server beyond a connection, nothing that could
authenticate, write or trigger work — a Redis ``PING``, a PostgreSQL SSLRequest, an MQTT
CONNECT without credentials (then :func:`mqtt_disconnect`), an HTTP ``HEAD /``, a TLS
ClientHello.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from tcpcli.protocols.base import check_token, printable
from tcpcli.protocols.errors import ProtocolError
from tcpcli.protocols.mysql import (
    CLIENT_SSL,
    ServerError,
    ServerGreeting,
    parse_greeting,
    take_packet,
)
from tcpcli.protocols.postgres import SSL_REQUEST
from tcpcli.protocols.telnet import IAC, SB, VERBS
from tcpcli.protocols.tlsrecord import client_hello, parse_tls_reply, record_header

#: Read at most this much for a banner.
MAX_BANNER = 4096


class Confidence(enum.StrEnum):
    HIGH = "high"  # the bytes are unmistakable (an SSH identification, +PONG, a ServerHello)
    MEDIUM = "medium"  # the usual greeting of the protocol, but others could send it
    LOW = "low"  # a guess from the port


class How(enum.StrEnum):
    """How a service was named, in the words a report uses."""

    VERSION = "version from banner"  # the server disclosed its version (greeting, INFO, ...)
    ANSWER = "matched by answer"  # named from what it said or answered, no version disclosed
    PORT = "port default only"  # nothing told: the service usually found on that port


@dataclass(frozen=True)
class ServiceGuess:
    """What speaks on a port, as far as its bytes tell.

    ``product`` and ``version`` are the server software's, where the server discloses
    them ("OpenSSH" "9.2p1", "Redis" "7.0.15"); ``info`` is a further printable note (an
    SSH comment, "authentication required"); ``facts`` are short named findings ("tls":
    "offered", "protocol": "5.0", ...), in the order found.
    """

    name: str  # ssh, smtp, ftp, pop3, imap, redis, postgres, mysql, mqtt, http, tls, ...
    detail: str  # printable: the banner line, the status line, "TLS 1.3 server hello, ..."
    confidence: Confidence
    version: str | None = None
    product: str | None = None
    info: str | None = None
    facts: tuple[tuple[str, str], ...] = ()

    @property
    def how(self) -> How:
        return How.VERSION if self.version else How.ANSWER

    def with_facts(self, *pairs: tuple[str, str]) -> ServiceGuess:
        """This guess with ``pairs`` added (a fact already known is replaced)."""
        keys = {key for key, _ in pairs}
        return replace(self, facts=tuple(f for f in self.facts if f[0] not in keys) + pairs)

    def fact(self, key: str) -> str | None:
        return next((value for name, value in self.facts if name == key), None)


# -- Probes -----------------------------------------------------------------------------------

REDIS_PING = b"PING\r\n"


def mqtt_connect_probe(client_id: str = "tcpcli-probe") -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, no credentials, 10 s keep-alive."""
    ident = check_token(client_id, "MQTT client id", max_length=23).encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(ident).to_bytes(2, "big") + ident
    return b"\x10" + bytes([len(variable)]) + variable


def mqtt_disconnect() -> bytes:
    """Send after an accepted CONNECT, so the broker logs a clean goodbye."""
    return b"\xe0\x00"


def http_head_probe(host: str = "localhost") -> bytes:
    """``HEAD / HTTP/1.1`` with a Host header (an IPv6 literal gets its brackets)."""
    host = check_token(host, "HTTP host")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return (
        f"HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tcpcli-probe\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


#: Port -> the probe most likely to get an answer there.
PROBE_BY_PORT = {
    6379: "redis", 6380: "redis", 5432: "postgres", 1883: "mqtt",
    80: "http", 81: "http", 3000: "http", 5000: "http", 8000: "http", 8008: "http",
    8080: "http", 8081: "http", 8888: "http", 9000: "http",
    443: "tls", 465: "tls", 636: "tls", 853: "tls", 993: "tls", 995: "tls", 5671: "tls",
    6443: "tls", 8443: "tls", 8883: "tls", 9443: "tls",
}
PROBE_ORDER = ("tls", "http", "redis", "postgres", "mqtt")


def probes_for_silent_service(port: int | None, *,
                              host: str = "localhost") -> list[tuple[str, bytes]]:
    """Harmless probes for a service that said nothing, the likeliest for ``port`` first.

    Send each on a fresh connection (a probe spoils the session for the next one) and
    stop at the first reply :func:`identify` names. ``host`` goes into the HTTP Host
    header and the TLS SNI.
    """
    first = PROBE_BY_PORT.get(port) if port is not None else None
    order = ([first] if first else []) + [name for name in PROBE_ORDER if name != first]
    payloads = {
        "tls": lambda: client_hello(host),
        "http": lambda: http_head_probe(host),
        "redis": lambda: REDIS_PING,
        "postgres": lambda: SSL_REQUEST,
        "mqtt": lambda: mqtt_connect_probe(),
    }
    return [(name, payloads[name]()) for name in order]


# -- Identification ---------------------------------------------------------------------------

#: Server software named in greetings: (pattern, product); a pattern's group, when it
#: matched, is the version. The first pattern that matches wins, so the specific come first.
PRODUCTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), product) for pattern, product in (
        (r"\bPostfix\b", "Postfix"),
        (r"\bExim (\d[\w.]*)", "Exim"),
        (r"\bSendmail (\d[\w.+]*)", "Sendmail"),
        (r"\bOpenSMTPD\b", "OpenSMTPD"),
        (r"\bMicrosoft ESMTP MAIL Service(?:, Version: (\d[\d.]*))?", "Microsoft ESMTP"),
        (r"\bHaraka(?:/(\d[\w.]*))?", "Haraka"),
        (r"\bqmail\b", "qmail"),
        (r"\bDovecot\b", "Dovecot"),
        (r"\bCyrus(?: IMAP| POP3)?(?: v(\d[\w.-]*))?", "Cyrus"),
        (r"\bCourier-IMAP\b", "Courier-IMAP"),
        (r"\bvsFTPd (\d[\w.]*)", "vsftpd"),
        (r"\bProFTPD(?: (\d[\w.]*))?", "ProFTPD"),
        (r"\bPure-FTPd\b", "Pure-FTPd"),
        (r"\bFileZilla Server(?: (?:version )?v?(\d[\w.]*))?", "FileZilla Server"),
        (r"\bINN (\d[\w.]*)", "INN"),
        (r"\bInterNetNews\b", "INN"),
        (r"\bInspIRCd-?(\d[\w.]*)?", "InspIRCd"),
        (r"\bUnrealIRCd-?(\d[\w.]*)?", "UnrealIRCd"),
    ))
MQTT_CODES = {
    0: "connection accepted", 1: "unacceptable protocol version", 2: "identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorized",
    0x80: "unspecified error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x8A: "banned",
}


def product_in(text: str) -> tuple[str, str | None] | None:
    """The server software a greeting names, and its version where it says:
    ``"220 (vsFTPd 3.0.3)"`` -> ``("vsftpd", "3.0.3")``."""
    for pattern, product in PRODUCTS:
        match = pattern.search(text)
        if match:
            version = match.group(1) if match.groups() else None
            return product, version or None
    return None


_SOFTWARE_VERSION = re.compile(r"^(?P<product>[A-Za-z][\w.+-]*?)[/_-]v?(?P<version>\d[\w.+~:-]*)$")


def split_software(software: str) -> tuple[str, str | None]:
    """``"OpenSSH_9.2p1"``, ``"nginx/1.22.1"``, ``"Cisco-1.25"`` -> product and version;
    a name without a version (``"Go"``, ``"nginx"``) is all product."""
    match = _SOFTWARE_VERSION.match(software)
    if match:
        return match.group("product"), match.group("version")
    return software, None


def identify(first_bytes: bytes, *, probe: str | None = None, sent: bytes | None = None,
             port: int | None = None) -> ServiceGuess | None:
    """Name the service from its first bytes; None when they say nothing we know.

    ``probe`` names what we sent first (a key of :func:`probes_for_silent_service`, or
    None for a banner sent unasked) and ``sent`` its bytes; ``port`` breaks ties such as a
    bare "220".
    """
    data = first_bytes[:MAX_BANNER]
    if not data:
        return None
    if sent and sent.startswith(data):
        # Our own probe, back unchanged (or its start): an echo service, not the protocol
        # we spoke to it. An echoed TLS ClientHello must not read as a TLS server.
        return ServiceGuess("echo", f"returned our {probe or 'first'} probe unchanged",
                            Confidence.HIGH)
    if probe is not None:
        guess = _answer_to_probe(data, probe)
        if guess is not None:
            return guess
    return _banner(data, port)


def _answer_to_probe(data: bytes, probe: str) -> ServiceGuess | None:
    if probe == "postgres":
        if data == b"S":
            return ServiceGuess("postgres", "SSLRequest answered S: TLS available",
                                Confidence.HIGH, product="PostgreSQL",
                                facts=(("tls", "available"),))
        if data == b"N":
            return ServiceGuess("postgres", "SSLRequest answered N: TLS off", Confidence.HIGH,
                                product="PostgreSQL", facts=(("tls", "off"),))
        if data[:1] == b"E" and len(data) >= 5:
            return ServiceGuess("postgres", "SSLRequest answered with an error",
                                Confidence.MEDIUM, product="PostgreSQL")
    if probe == "redis":
        line = _first_line(data)
        if line.startswith("+PONG"):
            return ServiceGuess("redis", "PING answered +PONG", Confidence.HIGH)
        for prefix, what in (("-NOAUTH", "authentication required"),
                             ("-DENIED", "protected mode"), ("-WRONGPASS", "wrong password")):
            if line.startswith(prefix):
                return ServiceGuess("redis", f"{what}: {line}", Confidence.HIGH, info=what)
        if line.startswith("-ERR"):
            return ServiceGuess("redis", line, Confidence.MEDIUM)
    if probe == "mqtt":
        return _connack(data)
    if probe == "tls":
        reply = parse_tls_reply(data)
        if reply is not None:
            return ServiceGuess("tls", reply.detail, Confidence.HIGH, reply.version)
    return None


def _connack(data: bytes) -> ServiceGuess | None:
    if len(data) < 4 or data[0] != 0x20 or data[1] < 2 or data[1] & 0x80:
        return None
    code = data[3]
    return ServiceGuess("mqtt", f"CONNACK: {MQTT_CODES.get(code, f'code {code}')}",
                        Confidence.HIGH)


def _first_line(data: bytes) -> str:
    return printable(data.split(b"\n", 1)[0].rstrip(b"\r"), limit=200)


def ssh_guess(ident: str) -> ServiceGuess:
    """``SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3``: protocol 2.0, OpenSSH 9.2p1, and the
    comment after the space as info."""
    _, _, rest = ident.partition("-")
    protocol, _, software_and_comment = rest.partition("-")
    software, _, comment = software_and_comment.partition(" ")
    product, version = split_software(software) if software else (None, None)
    return ServiceGuess("ssh", ident, Confidence.HIGH, version, product, comment or None,
                        (("protocol", protocol),) if protocol else ())


def http_guess(data: bytes) -> ServiceGuess:
    """An HTTP response: its status line, and the server software from ``Server:``."""
    line = _first_line(data)
    server = re.search(rb"\r?\nServer:[ \t]*([^\r\n]*)", data, re.IGNORECASE)
    product = version = info = None
    if server:
        first, _, rest = printable(server.group(1), limit=120).strip().partition(" ")
        product, version = split_software(first)
        info = rest.strip() or None
    elif _S_SERVER_PAGE in data:
        product = "OpenSSL s_server"
    status = line.split(" ", 2)
    facts = (("status", status[1]),) if len(status) > 1 and status[1].isdigit() else ()
    return ServiceGuess("http", line, Confidence.HIGH, version, product, info, facts)


#: The status page of ``openssl s_server -www`` (it sends no Server header).
_S_SERVER_PAGE = b'<HTML><BODY BGCOLOR="#ffffff">\n<pre>\n\ns_server '
#: An IRC server's numeric reply: ``:irc.example.net 451 * :You have not registered``.
_IRC_NUMERIC = re.compile(r"^(?:@\S+ )?:\S+ \d{3} ")


def _named(name: str, line: str, confidence: Confidence) -> ServiceGuess:
    """A text greeting's guess, with the product and version it names."""
    found = product_in(line)
    product, version = found if found else (None, None)
    return ServiceGuess(name, line, confidence, version, product)


def _banner(data: bytes, port: int | None) -> ServiceGuess | None:
    tls = parse_tls_reply(data)
    if tls is not None:
        return ServiceGuess("tls", tls.detail, Confidence.HIGH, tls.version)
    if data[0] == IAC and len(data) > 1 and (data[1] in VERBS or data[1] == SB):
        return ServiceGuess("telnet", "telnet option negotiation", Confidence.HIGH)
    mysql = _mysql(data)
    if mysql is not None:
        return mysql
    for raw in data.split(b"\n")[:8]:  # SSH may send other lines before its identification
        if raw.startswith(b"SSH-"):
            return ssh_guess(printable(raw.rstrip(b"\r"), limit=255))
    line = _first_line(data)
    upper = line.upper()
    if upper.startswith("HTTP/"):
        return http_guess(data)
    if upper.startswith("+OK"):
        return _named("pop3", line, Confidence.HIGH)
    if upper.startswith(("* OK", "* PREAUTH", "* BYE")):
        return _named("imap", line, Confidence.HIGH)
    if upper.startswith("RFB "):
        return ServiceGuess("vnc", line, Confidence.HIGH, line[4:].strip() or None)
    if line.startswith('"IMPLEMENTATION"') or line.startswith('"SIEVE"'):
        return _named("sieve", line, Confidence.HIGH)
    if upper[:3] == "220" and upper[3:4] in ("", " ", "-"):
        return _two_twenty(line, upper, port)
    if upper[:4] in ("200 ", "201 "):
        sure = any(word in upper for word in ("NNTP", "NEWS", "INN"))
        return _named("nntp", line, Confidence.HIGH if sure else Confidence.MEDIUM)
    if " NOTICE " in upper or upper.startswith(("NOTICE ", "ERROR :")) or _IRC_NUMERIC.match(
            line):
        return _named("irc", line, Confidence.HIGH)
    if upper.startswith(("+PONG", "-NOAUTH", "-DENIED", "-ERR")):
        return ServiceGuess("redis", line, Confidence.MEDIUM)
    if upper.startswith(("<?XML", "<STREAM:STREAM")):
        return ServiceGuess("xmpp", line, Confidence.MEDIUM)
    return None


def _two_twenty(line: str, upper: str, port: int | None) -> ServiceGuess:
    if "LMTP" in upper:
        return _named("lmtp", line, Confidence.HIGH)
    if "FTP" in upper:
        return _named("ftp", line, Confidence.HIGH)
    if "SMTP" in upper:
        return _named("smtp", line, Confidence.HIGH)
    if port == 21:
        return _named("ftp", line, Confidence.LOW)
    if port == 24:
        return _named("lmtp", line, Confidence.LOW)
    return _named("smtp", line, Confidence.MEDIUM if port in (25, 587) else Confidence.LOW)


def mysql_guess(greeting: ServerGreeting) -> ServiceGuess:
    """A MySQL or MariaDB handshake: the flavour, its version, and whether TLS is offered."""
    version = greeting.server_version
    flavor = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    if version.startswith("5.5.5-") and flavor == "MariaDB":
        version = version[6:]  # MariaDB's replication-compatibility prefix
    number = re.match(r"\d+(?:\.\d+)*", version)
    facts = [("tls", "offered" if greeting.capabilities & CLIENT_SSL else "not offered")]
    if greeting.auth_plugin:
        facts.append(("auth_plugin", greeting.auth_plugin))
    return ServiceGuess("mysql", f"{flavor} {version}", Confidence.HIGH,
                        number.group(0) if number else None, flavor,
                        version if number and number.group(0) != version else None,
                        tuple(facts))


def _mysql(data: bytes) -> ServiceGuess | None:
    buffer = bytearray(data)
    try:
        packet = take_packet(buffer, MAX_BANNER)
        if packet is None or packet.sequence != 0:
            return None
        greeting = parse_greeting(packet)
    except ProtocolError:
        return None
    if isinstance(greeting, ServerError):
        return ServiceGuess("mysql", f"error {greeting.code}: {greeting.message}",
                            Confidence.MEDIUM)
    return mysql_guess(greeting)


def wants_more(first_bytes: bytes, *, probe: str | None = None) -> bool:
    """True while ``first_bytes`` is a known message cut short: keep reading (briefly).

    A hint for the reader's short banner wait: an SSH or SMTP line without its newline,
    a TLS record or MySQL packet shorter than its header says, HTTP headers not yet ended.
    """
    data = first_bytes
    if not data:
        return True
    if len(data) >= MAX_BANNER:
        return False
    header = record_header(data)
    if header is not None:
        return len(data) < 5 + header[2]
    if data[:1] in (b"\x15", b"\x16") and len(data) < 5:
        return True
    if probe == "postgres":
        return False
    if probe == "mqtt":
        return data[:1] == b"\x20" and len(data) < 4
    if data[0] == IAC:
        return False
    if len(data) >= 4 and data[3] == 0 and data[4:5] in (b"\x0a", b"\xff", b""):
        return len(data) < 4 + int.from_bytes(data[:3], "little")
    if data.startswith(b"HTTP/"):
        return b"\r\n\r\n" not in data and b"\n\n" not in data
    return b"\n" not in data
