"""The dialogue registry and protocol auto-detection (by port, confirmed by the greeting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tcpcli.protocols.base import Dialogue
from tcpcli.protocols.errors import LocalProtocolError, ProtocolError
from tcpcli.protocols.ftp import FtpDialogue
from tcpcli.protocols.imap import ImapDialogue
from tcpcli.protocols.irc import IrcDialogue
from tcpcli.protocols.ldap import LdapDialogue
from tcpcli.protocols.mysql import MysqlDialogue, parse_greeting, take_packet
from tcpcli.protocols.nntp import NntpDialogue
from tcpcli.protocols.pop3 import Pop3Dialogue
from tcpcli.protocols.postgres import PostgresDialogue
from tcpcli.protocols.sieve import SieveDialogue
from tcpcli.protocols.smtp import LmtpDialogue, SmtpDialogue
from tcpcli.protocols.telnet import IAC, SB, VERBS, TelnetDialogue
from tcpcli.protocols.xmpp import XmppDialogue, XmppServerDialogue

#: openssl s_client -starttls's list, in its order.
DIALOGUES: dict[str, type[Dialogue]] = {
    cls.name: cls
    for cls in (
        SmtpDialogue, Pop3Dialogue, ImapDialogue, FtpDialogue, XmppDialogue,
        XmppServerDialogue, TelnetDialogue, IrcDialogue, MysqlDialogue, PostgresDialogue,
        LmtpDialogue, NntpDialogue, SieveDialogue, LdapDialogue,
    )
}

ALIASES = {
    "postgresql": "postgres", "pgsql": "postgres", "managesieve": "sieve", "pop": "pop3",
    "mariadb": "mysql", "xmpp-client": "xmpp", "submission": "smtp", "news": "nntp",
}

#: Ports commonly used for a protocol beyond its dialogue's default ports.
EXTRA_PORTS = {2525: "smtp", 6668: "irc", 6669: "irc", 2000: "sieve", 433: "nntp"}


def get_dialogue(name: str, **options: Any) -> Dialogue:
    """A fresh dialogue for ``name`` (or an alias) with protocol options, e.g.
    ``get_dialogue("smtp", ehlo_name="client.example.org")``,
    ``get_dialogue("xmpp", to="example.com")``, ``get_dialogue("ldap", root_dse=False)``.
    """
    key = ALIASES.get(name.lower(), name.lower())
    cls = DIALOGUES.get(key)
    if cls is None:
        raise LocalProtocolError(
            f"unknown STARTTLS protocol {name!r}; known: {', '.join(DIALOGUES)}"
        )
    try:
        return cls(**options)
    except TypeError as exc:
        raise LocalProtocolError(f"{key}: {exc}") from None


def detect_by_port(port: int | None) -> str | None:
    """The protocol usually spoken on ``port`` (a STARTTLS port, not an implicit-TLS one)."""
    if port is None:
        return None
    for name, cls in DIALOGUES.items():
        if port in cls.default_ports:
            return name
    return EXTRA_PORTS.get(port)


def detect_by_greeting(first_bytes: bytes) -> str | None:
    """The protocol whose greeting ``first_bytes`` looks like; None when it is not clear."""
    if not first_bytes:
        return None
    if first_bytes[0] == IAC and len(first_bytes) > 1 and (
        first_bytes[1] in VERBS or first_bytes[1] == SB
    ):
        return "telnet"
    if _looks_like_mysql(first_bytes):
        return "mysql"
    line = first_bytes.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
    upper = line.upper()
    if upper.startswith("+OK"):
        return "pop3"
    if upper.startswith(("* OK", "* PREAUTH", "* BYE")):
        return "imap"
    if line.startswith('"'):
        return "sieve"
    if upper[:3].isdigit() and upper[3:4] in ("", " ", "-"):
        # A coded reply: 220 (or a 554/421 refusal) names its protocol, if at all, in words.
        for word, name in (("LMTP", "lmtp"), ("FTP", "ftp"), ("SMTP", "smtp")):
            if word in upper:
                return name
        return "nntp" if upper[:4] in ("200 ", "201 ") else None
    if " NOTICE " in upper or upper.startswith("NOTICE "):
        return "irc"
    return None


def _looks_like_mysql(data: bytes) -> bool:
    buffer = bytearray(data)
    try:
        packet = take_packet(buffer, 1 << 16)
        if packet is None or packet.sequence != 0:
            return False
        parse_greeting(packet)
    except ProtocolError:  # any parse failure means "not MySQL"
        return False
    return True


@dataclass(frozen=True)
class Detection:
    """The outcome of ``--protocol auto``: which dialogue, decided by what, and why."""

    protocol: str | None
    by: str  # "port+greeting", "greeting", "port" or "none"
    note: str


def auto_detect(port: int | None, first_bytes: bytes) -> Detection:
    """Pick by port, confirm (or override) by the greeting.

    ``first_bytes`` is what the server sent in a short wait before we said anything
    (b"" for a silent server: PostgreSQL, LDAP and XMPP wait for the client).
    """
    by_port = detect_by_port(port)
    by_greeting = detect_by_greeting(first_bytes)
    if by_greeting is not None:
        if by_greeting == by_port:
            return Detection(by_greeting, "port+greeting", f"port {port} and its greeting")
        note = "the greeting" if by_port is None else (
            f"the greeting (port {port} usually speaks {by_port})"
        )
        return Detection(by_greeting, "greeting", note)
    if by_port is None:
        return Detection(None, "none", "neither the port nor the greeting names a protocol")
    if first_bytes and not DIALOGUES[by_port].server_speaks_first:
        return Detection(by_port, "port", f"port {port}; the server spoke first, unexpectedly")
    if first_bytes:
        return Detection(by_port, "port", f"port {port}; the greeting was not recognised")
    if DIALOGUES[by_port].server_speaks_first:
        return Detection(by_port, "port", f"port {port}; no greeting yet")
    return Detection(by_port, "port", f"port {port}; the server waits for the client")
