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
from dataclasses import dataclass

from tcpcli.protocols.base import check_token, printable
from tcpcli.protocols.errors import ProtocolError
from tcpcli.protocols.mysql import ServerError, parse_greeting, take_packet
from tcpcli.protocols.postgres import SSL_REQUEST
from tcpcli.protocols.telnet import IAC, SB, VERBS
from tcpcli.protocols.tlsrecord import client_hello, parse_tls_reply, record_header

#: Read at most this much for a banner.
MAX_BANNER = 4096


class Confidence(enum.StrEnum):
    HIGH = "high"  # the bytes are unmistakable (an SSH identification, +PONG, a ServerHello)
    MEDIUM = "medium"  # the usual greeting of the protocol, but others could send it
    LOW = "low"  # a guess from the port


@dataclass(frozen=True)
class ServiceGuess:
    name: str  # ssh, smtp, ftp, pop3, imap, redis, postgres, mysql, mqtt, http, tls, ...
    detail: str  # printable: the banner line, the status line, "TLS 1.3 server hello, ..."
    confidence: Confidence
    version: str | None = None  # server software and version where the bytes say


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

_SOFTWARE = re.compile(
    r"(Postfix|Exim [\d.]+|Sendmail [\w.+/-]+|OpenSMTPD|Microsoft ESMTP MAIL Service|"
    r"Dovecot|Cyrus [\w.-]+(?: v[\d.]+)?|Courier-IMAP|vsFTPd [\d.]+|ProFTPD(?: [\d.]+\w*)?|"
    r"Pure-FTPd|FileZilla Server(?: [\d.]+)?|INN [\d.]+|InterNetNews|Haraka|qmail)",
    re.IGNORECASE,
)
MQTT_CODES = {
    0: "connection accepted", 1: "unacceptable protocol version", 2: "identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorized",
    0x80: "unspecified error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x8A: "banned",
}


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
                                Confidence.HIGH)
        if data == b"N":
            return ServiceGuess("postgres", "SSLRequest answered N: TLS off", Confidence.HIGH)
        if data[:1] == b"E" and len(data) >= 5:
            return ServiceGuess("postgres", "SSLRequest answered with an error",
                                Confidence.MEDIUM)
    if probe == "redis":
        line = _first_line(data)
        if line.startswith("+PONG"):
            return ServiceGuess("redis", "PING answered +PONG", Confidence.HIGH)
        for prefix, what in (("-NOAUTH", "authentication required"),
                             ("-DENIED", "protected mode"), ("-WRONGPASS", "wrong password")):
            if line.startswith(prefix):
                return ServiceGuess("redis", f"{what}: {line}", Confidence.HIGH)
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


def _software(text: str) -> str | None:
    match = _SOFTWARE.search(text)
    return match.group(1) if match else None


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
            ident = printable(raw.rstrip(b"\r"), limit=255)
            software = ident[4:].partition("-")[2].split(" ", 1)[0] or None
            return ServiceGuess("ssh", ident, Confidence.HIGH, software)
    line = _first_line(data)
    upper = line.upper()
    software = _software(line)
    if upper.startswith("HTTP/"):
        server = re.search(rb"\r?\nServer:[ \t]*([^\r\n]*)", data, re.IGNORECASE)
        version = printable(server.group(1), limit=120) if server else None
        return ServiceGuess("http", line, Confidence.HIGH, version)
    if upper.startswith("+OK"):
        return ServiceGuess("pop3", line, Confidence.HIGH, software)
    if upper.startswith(("* OK", "* PREAUTH", "* BYE")):
        return ServiceGuess("imap", line, Confidence.HIGH, software)
    if upper.startswith("RFB "):
        return ServiceGuess("vnc", line, Confidence.HIGH, line[4:].strip() or None)
    if line.startswith('"IMPLEMENTATION"') or line.startswith('"SIEVE"'):
        return ServiceGuess("sieve", line, Confidence.HIGH, software)
    if upper[:3] == "220" and upper[3:4] in ("", " ", "-"):
        return _two_twenty(line, upper, port, software)
    if upper[:4] in ("200 ", "201 "):
        sure = any(word in upper for word in ("NNTP", "NEWS", "INN"))
        return ServiceGuess("nntp", line, Confidence.HIGH if sure else Confidence.MEDIUM,
                            software)
    if " NOTICE " in upper or upper.startswith(("NOTICE ", "ERROR :")):
        return ServiceGuess("irc", line, Confidence.HIGH)
    if upper.startswith(("+PONG", "-NOAUTH", "-DENIED", "-ERR")):
        return ServiceGuess("redis", line, Confidence.MEDIUM)
    if upper.startswith(("<?XML", "<STREAM:STREAM")):
        return ServiceGuess("xmpp", line, Confidence.MEDIUM)
    return None


def _two_twenty(line: str, upper: str, port: int | None,
                software: str | None) -> ServiceGuess:
    if "LMTP" in upper:
        return ServiceGuess("lmtp", line, Confidence.HIGH, software)
    if "FTP" in upper:
        return ServiceGuess("ftp", line, Confidence.HIGH, software)
    if "SMTP" in upper:
        return ServiceGuess("smtp", line, Confidence.HIGH, software)
    if port == 21:
        return ServiceGuess("ftp", line, Confidence.LOW, software)
    if port == 24:
        return ServiceGuess("lmtp", line, Confidence.LOW, software)
    return ServiceGuess("smtp", line, Confidence.LOW if port not in (25, 587) else (
        Confidence.MEDIUM), software)


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
    version = greeting.server_version
    flavor = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    if version.startswith("5.5.5-") and flavor == "MariaDB":
        version = version[6:]  # MariaDB's replication-compatibility prefix
    return ServiceGuess("mysql", f"{flavor} {version}", Confidence.HIGH, version)


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
