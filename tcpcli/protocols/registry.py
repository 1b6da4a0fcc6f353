"""The dialogue registry and protocol auto-detection (by port, confirmed by the greeting).

A run speaks one protocol: the registry knows each one's ports and whether its server
speaks first without importing it, and imports a dialogue's module only when that dialogue
is asked for: a one-shot ``tcpcli starttls`` loads one, not all fourteen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from tcpcli.protocols.base import Dialogue
from tcpcli.protocols.errors import LocalProtocolError, ProtocolError
from tcpcli.record import Record

#: Dialogue class -> the module that defines it, imported on first use (as the package's
#: own ``_EXPORTS``, whose form tests/protocols/test_purity.py reads).
_EXPORTS: dict[str, str] = {
    "SmtpDialogue": "tcpcli.protocols.smtp",
    "Pop3Dialogue": "tcpcli.protocols.pop3",
    "ImapDialogue": "tcpcli.protocols.imap",
    "FtpDialogue": "tcpcli.protocols.ftp",
    "XmppDialogue": "tcpcli.protocols.xmpp",
    "XmppServerDialogue": "tcpcli.protocols.xmpp",
    "TelnetDialogue": "tcpcli.protocols.telnet",
    "IrcDialogue": "tcpcli.protocols.irc",
    "MysqlDialogue": "tcpcli.protocols.mysql",
    "PostgresDialogue": "tcpcli.protocols.postgres",
    "LmtpDialogue": "tcpcli.protocols.smtp",
    "NntpDialogue": "tcpcli.protocols.nntp",
    "SieveDialogue": "tcpcli.protocols.sieve",
    "LdapDialogue": "tcpcli.protocols.ldap",
}


class _Entry(NamedTuple):
    """A dialogue class, and what detection reads of it before importing it (a test holds
    these to the class's own ``default_ports`` and ``server_speaks_first``)."""

    cls: str
    default_ports: tuple[int, ...]
    server_speaks_first: bool


#: The dialogues by name: openssl s_client -starttls's list, in its order.
_ENTRIES: dict[str, _Entry] = {
    "smtp": _Entry("SmtpDialogue", (25, 587), True),
    "pop3": _Entry("Pop3Dialogue", (110,), True),
    "imap": _Entry("ImapDialogue", (143,), True),
    "ftp": _Entry("FtpDialogue", (21,), True),
    "xmpp": _Entry("XmppDialogue", (5222,), False),
    "xmpp-server": _Entry("XmppServerDialogue", (5269,), False),
    "telnet": _Entry("TelnetDialogue", (23,), True),
    "irc": _Entry("IrcDialogue", (6667,), False),
    "mysql": _Entry("MysqlDialogue", (3306,), True),
    "postgres": _Entry("PostgresDialogue", (5432,), False),
    "lmtp": _Entry("LmtpDialogue", (24,), True),
    "nntp": _Entry("NntpDialogue", (119,), True),
    "sieve": _Entry("SieveDialogue", (4190,), True),
    "ldap": _Entry("LdapDialogue", (389,), False),
}


class _Dialogues(Mapping[str, type[Dialogue]]):
    """Name -> dialogue class, each module imported on first use."""

    def __getitem__(self, name: str) -> type[Dialogue]:
        entry = _ENTRIES[name]
        # __import__ rather than importlib.import_module: only an import through it is
        # reported by ``python -X importtime``, which the import-set tests read.
        module = __import__(_EXPORTS[entry.cls], fromlist=[entry.cls])
        cls: type[Dialogue] = getattr(module, entry.cls)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(_ENTRIES)

    def __len__(self) -> int:
        return len(_ENTRIES)

    def __contains__(self, name: object) -> bool:
        return name in _ENTRIES


#: Name -> dialogue class, in ``_ENTRIES``' order; a class is imported when looked up.
DIALOGUES: Mapping[str, type[Dialogue]] = _Dialogues()

ALIASES = {
    "postgresql": "postgres", "pgsql": "postgres", "managesieve": "sieve", "pop": "pop3",
    "mariadb": "mysql", "xmpp-client": "xmpp", "submission": "smtp", "news": "nntp",
}

#: Ports commonly used for a protocol beyond its dialogue's default ports.
EXTRA_PORTS = {2525: "smtp", 6668: "irc", 6669: "irc", 2000: "sieve", 433: "nntp"}

#: Telnet's "interpret as command" byte (``tcpcli.protocols.telnet.IAC``): only a greeting
#: that starts with it needs that module to tell.
_IAC = 255


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
    for name, entry in _ENTRIES.items():
        if port in entry.default_ports:
            return name
    return EXTRA_PORTS.get(port)


def detect_by_greeting(first_bytes: bytes) -> str | None:
    """The protocol whose greeting ``first_bytes`` looks like; None when it is not clear."""
    if not first_bytes:
        return None
    if first_bytes[0] == _IAC and len(first_bytes) > 1:
        from tcpcli.protocols.telnet import SB, VERBS

        if first_bytes[1] in VERBS or first_bytes[1] == SB:
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
    if len(data) < 4 or data[3] != 0:
        return False  # no whole packet header, or not the first packet: not a greeting
    from tcpcli.protocols.mysql import parse_greeting, take_packet

    buffer = bytearray(data)
    try:
        packet = take_packet(buffer, 1 << 16)
        if packet is None or packet.sequence != 0:
            return False
        parse_greeting(packet)
    except ProtocolError:  # any parse failure means "not MySQL"
        return False
    return True


class Detection(Record, frozen=True):
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
    if first_bytes and not _ENTRIES[by_port].server_speaks_first:
        return Detection(by_port, "port", f"port {port}; the server spoke first, unexpectedly")
    if first_bytes:
        return Detection(by_port, "port", f"port {port}; the greeting was not recognised")
    if _ENTRIES[by_port].server_speaks_first:
        return Detection(by_port, "port", f"port {port}; no greeting yet")
    return Detection(by_port, "port", f"port {port}; the server waits for the client")
