"""Service identification probes (``probe --banner``): safe, bounded, sans-IO dialogues.

Each probe is one connection's conversation, driven like the STARTTLS dialogues: bytes
from the server go in (:meth:`ServiceProbe.receive_data`, ``b""`` for EOF or the
driver's time running out), and :meth:`ServiceProbe.next_event` says what to do —
:class:`~tcpcli.protocols.base.Send` these bytes, wait (:data:`NEED_DATA`), or
:class:`Finished`: the service named (or not), a goodbye to send, and perhaps a
follow-up probe for a fresh connection. Nothing here touches a socket or a clock.

The probes::

    greeting    waits for what the server says first (SSH, SMTP, FTP, POP3, IMAP, NNTP,
                sieve, MySQL/MariaDB, IRC notices, ...), then asks the protocol's own
                capability question (EHLO, FEAT, CAPABILITY and ID, CAPA, CAPABILITIES)
    tls         a ClientHello; the ServerHello names TLS (the driver then shakes hands)
    http        HEAD /: the status and the Server header
    http-get    GET /, for a server that ignores HEAD (openssl s_server -www)
    redis       PING, then INFO server (the NOAUTH answer when a password is set)
    postgres    SSLRequest (S or N); then a startup packet of protocol 4.0, which the server
                refuses naming the protocol versions it speaks (PostgreSQL discloses no
                version before authentication)
    mqtt        CONNECT (MQTT 5, no credentials); if the broker lets anyone in, a read
                of $SYS/broker/version (its retained version), then DISCONNECT; a 3.x
                broker's refusal leads to mqtt-3, a CONNECT at protocol level 4 (3.1.1)
    ldap        an anonymous search of the root DSE (no bind), then an unbind
    xmpp        a stream header; the server's header and stream features
    irc         CAP LS 302; the capabilities (vendor-named ones name the server)

The rules every probe keeps (tests/protocols/test_service_probes.py checks each against
the bytes it sends):

* no authentication attempt and no credential of any kind, ever: no USER, PASS, AUTH,
  LOGIN, BIND with a name, no MQTT user name or password, no PostgreSQL user;
* nothing that changes the server's state: read-only questions, then the protocol's
  goodbye (QUIT, LOGOUT, DISCONNECT, unbind, ``</stream:stream>``) — MQTT's read is a
  subscription to one topic that lives as long as the clean session, milliseconds;
* bounded: at most ``max_bytes`` are read (:data:`MAX_PROBE_BYTES`) and at most
  :data:`MAX_SENDS` messages sent; the driver bounds the time (a wait per reply and a cap
  per probe) and feeds ``b""`` when it runs out, which finishes the probe with what it
  learned.

Malformed or unexpected bytes never raise: they finish the probe, naming what they can
(a late greeting from a slow server is still read as one).
"""

from __future__ import annotations

import re
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

import tcpcli.protocols.ber as ber
from tcpcli.protocols.banner import (
    MQTT_CODES,
    REDIS_PING,
    Confidence,
    ServiceGuess,
    http_guess,
    http_head_probe,
    identify,
    mqtt_connect_probe,
    mqtt_disconnect,
    product_in,
    wants_more,
)
from tcpcli.protocols.base import NEED_DATA, NeedData, Send, check_token, printable
from tcpcli.protocols.errors import LocalProtocolError, ProtocolError
from tcpcli.protocols.ldap import (
    KNOWN_OIDS,
    NOTICE_OF_DISCONNECTION_OID,
    SEARCH_DONE,
    SEARCH_ENTRY,
    STARTTLS_OID,
    parse_message,
)
from tcpcli.protocols.lines import CodedReply, CodedReplyFramer, LineReader
from tcpcli.protocols.postgres import SSL_REQUEST
from tcpcli.protocols.tlsrecord import client_hello, parse_tls_reply, record_header
from tcpcli.protocols.xmlstream import STREAMS_NS, Element, StreamOpen, XmlStreamParser

#: At most this many bytes are read by one probe; more finishes it with what it learned.
MAX_PROBE_BYTES: Final = 16384
#: At most this many messages are sent by one probe (its goodbye included).
MAX_SENDS: Final = 5
#: Our name in EHLO/LHLO (``.invalid``: it names nobody, RFC 2606).
HELLO_NAME: Final = "tcpcli.invalid"
#: A line longer than this ends a text probe (a greeting is a line, not a document).
MAX_LINE: Final = 2048


@dataclass(frozen=True)
class Finished:
    """The probe is over: ``guess`` (None: not a service we know), ``farewell`` to send
    before closing (the protocol's goodbye), and ``follow_up``, a probe worth running on
    a fresh connection to learn more (its answer adds to this one's: :func:`merge`).

    ``by_the_way`` is True when the answer was not to this probe's protocol but named
    another service anyway (an HTTP 400, an IRC numeric, a late greeting): a good guess,
    which that service's own probe, ``suggests``, can make certain and complete.
    """

    guess: ServiceGuess | None
    farewell: bytes = b""
    follow_up: str | None = None
    by_the_way: bool = False
    suggests: str | None = None


ProbeEvent = Send | NeedData | Finished


class ServiceProbe(ABC):
    """One connection's identification dialogue. See the module docstring."""

    name: ClassVar[str]
    #: True when the probe speaks first (all but ``greeting``).
    client_first: ClassVar[bool] = True

    def __init__(self, *, host: str | None = None, port: int | None = None,
                 max_bytes: int = MAX_PROBE_BYTES, address: str | None = None) -> None:
        if max_bytes < 256:
            raise LocalProtocolError("a probe needs max_bytes >= 256")
        #: The target's name (None for a literal address): TLS's server name, the XMPP
        #: domain; ``address``, the literal dialed, goes in the HTTP Host header without it.
        self.server_name = host if host and _is_host_token(host) and not _is_ip(host) else None
        literal = address if address and _is_host_token(address) else None
        self.host = self.server_name or literal or "localhost"
        self.port = port
        self.max_bytes = max_bytes
        self.guess: ServiceGuess | None = None
        self.sent = b""  # everything sent, for echo detection
        self._buffer = bytearray()
        self._received = 0
        self._eof = False
        self._sends = 0
        self._started = False
        self._finished: Finished | None = None

    # Public API ----------------------------------------------------------------------------

    @property
    def finished(self) -> Finished | None:
        return self._finished

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` when it closed, or when the time is up."""
        if self._finished is not None:
            return  # late bytes change nothing
        if not data:
            self._eof = True
            return
        room = self.max_bytes - self._received
        self._received += len(data)
        if room > 0:
            self._buffer += data[:room]
        if self._received >= self.max_bytes:
            self._eof = True  # enough: finish with what the bytes so far say

    def next_event(self) -> ProbeEvent:
        """What to do now. Never raises for anything the server sent."""
        if self._finished is not None:
            return self._finished
        if not self._started:
            self._started = True
            opening = self._opening()
            if opening is not None:
                return self._send(opening, self.name)
        try:
            event = self._checked_advance()
        except ProtocolError:
            event = self._finish() if self.guess is not None else self._not_ours()
        if event is None:
            if not self._eof:
                return NEED_DATA
            event = self._at_end()
        if isinstance(event, Finished):
            self._finished = event
        elif self._sends > MAX_SENDS:  # a bug, not the server's doing
            raise LocalProtocolError(f"{self.name}: more than {MAX_SENDS} messages")
        return event

    def give_up(self) -> Finished:
        """The driver's time is up: finish now with what the bytes so far say (its
        goodbye included, where the probe has one), whatever step it was at."""
        if self._finished is None:
            self._eof = True
            self._finished = self._at_end()
        return self._finished

    # For subclasses ------------------------------------------------------------------------

    def _opening(self) -> bytes | None:
        """What the probe sends first (None: it listens first)."""
        return None

    @abstractmethod
    def _advance(self) -> Send | Finished | None:
        """Read ``self._buffer``; an event, or None when more bytes are needed."""

    def _at_end(self) -> Finished:
        """The server closed (or time ran out) while the probe waited: what we know."""
        if self.guess is None and self._buffer:
            return self._not_ours()
        return self._finish()

    def _send(self, data: bytes, step: str) -> Send:
        self._sends += 1
        self.sent += data
        return Send(data, step)

    def _finish(self, farewell: bytes = b"", follow_up: str | None = None) -> Finished:
        return Finished(self.guess, farewell, follow_up)

    def _not_ours(self) -> Finished:
        """The reply is not this probe's protocol: perhaps a late greeting, or an answer
        another protocol gives to anything (HTTP's 400, an IRC numeric)."""
        data = bytes(self._buffer)
        self.guess = identify(data, port=self.port) if data else None
        if self.guess is None:
            return self._finish()
        suggests = PROBE_FOR_SERVICE.get(self.guess.name)
        return Finished(self.guess, by_the_way=True,
                        suggests=suggests if suggests != self.name else None)

    def _checked_advance(self) -> Send | Finished | None:
        if not self._buffer:
            return None  # nothing new to read (at EOF, _at_end decides)
        if self.client_first and self.sent:
            head = bytes(self._buffer[: len(self.sent)])
            if self.sent.startswith(head):
                if len(head) < len(self.sent) and not self._eof:
                    return None  # the start of our own bytes, or of a similar answer: wait
                self.guess = ServiceGuess("echo", f"returned our {self.name} probe unchanged",
                                          Confidence.HIGH)
                return self._finish()
        return self._advance()

    def _line(self) -> bytes | None:
        """One line out of the buffer (without its ending), or None."""
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise _NotOurs
            return None
        line = bytes(self._buffer[:end]).rstrip(b"\r")
        del self._buffer[: end + 1]
        return line


class _NotOurs(ProtocolError):
    """Raised inside a probe: the bytes are not what the protocol sends."""


def _is_host_token(host: str) -> bool:
    try:
        check_token(host, "host")
    except LocalProtocolError:
        return False
    return True


# -- The greeting ------------------------------------------------------------------------------


class GreetingProbe(ServiceProbe):
    """For a server that speaks first: name it from its greeting, then ask the protocol's
    capability question, where it has one that needs no login."""

    name = "greeting"
    client_first = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._step: Callable[[], Send | Finished | None] = self._greeting
        self._reader = LineReader("greeting", MAX_LINE, MAX_PROBE_BYTES)
        self._framer: CodedReplyFramer | None = None
        self._lines: list[str] = []
        self._ambiguous = False

    def _advance(self) -> Send | Finished | None:
        return self._step()

    def _greeting(self) -> Send | Finished | None:
        data = bytes(self._buffer)
        if not data or (wants_more(data) and not self._eof):
            return None
        if _CODED_CONTINUED.match(data) and not _CODED_LAST.search(data) and not self._eof:
            return None  # a multi-line "220-" greeting: wait for its last line
        self.guess = identify(data, port=self.port)
        if self.guess is None:
            return self._finish()
        name, text = self.guess.name, self.guess.detail.upper()
        if name in ("smtp", "lmtp", "ftp", "nntp"):
            self._drop_greeting()
        if name == "smtp" or name == "lmtp":
            self._ambiguous = not any(word in text for word in ("SMTP", "LMTP"))
            verb = "LHLO" if name == "lmtp" and not self._ambiguous else "EHLO"
            return self._coded(self._hello_reply, f"{verb} {HELLO_NAME}\r\n".encode(), verb)
        if name == "ftp":
            return self._coded(self._feat_reply, b"FEAT\r\n", "FEAT", ftp_style=True)
        if name == "imap":
            self._drop_greeting()
            self._step = self._imap_capability
            return self._send(b"a1 CAPABILITY\r\n", "CAPABILITY")
        if name == "pop3":
            self._drop_greeting()
            self._step = self._pop3_capa
            return self._send(b"CAPA\r\n", "CAPA")
        if name == "nntp":
            self._step = self._nntp_capabilities
            return self._send(b"CAPABILITIES\r\n", "CAPABILITIES")
        if name == "sieve":
            self._step = self._sieve_listing
            return self._step()
        if name == "irc":
            self._drop_greeting()
            self._step = self._irc_cap
            return self._send(b"CAP LS 302\r\n", "CAP LS")
        return self._finish()

    def _drop_greeting(self) -> None:
        """The greeting's lines are read: what follows answers our question (a line
        still arriving stays, it belongs to what comes next)."""
        del self._buffer[: self._buffer.rfind(b"\n") + 1]

    # SMTP, LMTP and a bare "220": EHLO; if refused, LHLO; if refused too, FEAT ------------

    def _coded(self, then: Callable[[CodedReply], Send | Finished | None], command: bytes,
               step: str, *, ftp_style: bool = False) -> Send:
        self._framer = CodedReplyFramer(LineReader(self.name, MAX_LINE, MAX_PROBE_BYTES),
                                        ftp_style=ftp_style)
        self._step = lambda: self._next_coded(then)
        return self._send(command, step)

    def _next_coded(self, then: Callable[[CodedReply], Send | Finished | None]
                    ) -> Send | Finished | None:
        assert self._framer is not None
        reply = self._framer.next(self._buffer)
        return None if reply is None else then(reply)

    def _hello_reply(self, reply: CodedReply) -> Send | Finished | None:
        assert self.guess is not None
        verb_was_lhlo = self.sent.rstrip().split(b"\r\n")[-1].startswith(b"LHLO")
        if reply.code == 250:
            extensions = tuple(line.upper() for line in reply.lines[1:])
            name, verb = ("lmtp", "LHLO") if verb_was_lhlo else ("smtp", "EHLO")
            facts = [("starttls", "offered" if "STARTTLS" in extensions else "not offered")]
            facts += [("auth", line[5:].strip()) for line in extensions
                      if line.startswith("AUTH ")][:1]
            self.guess = _confirmed(self.guess, name, f"{verb} answered 250").with_facts(*facts)
            return self._finish(b"QUIT\r\n")
        if not self._ambiguous or reply.code == 421:
            return self._finish(b"QUIT\r\n")
        if not verb_was_lhlo:
            return self._coded(self._hello_reply, f"LHLO {HELLO_NAME}\r\n".encode(), "LHLO")
        return self._coded(self._feat_reply, b"FEAT\r\n", "FEAT", ftp_style=True)

    def _feat_reply(self, reply: CodedReply) -> Finished:
        assert self.guess is not None
        if reply.code == 211:
            features = tuple(line.strip().upper() for line in reply.lines[1:-1])
            self.guess = _confirmed(self.guess, "ftp", "FEAT answered 211").with_facts(
                ("starttls", "offered" if any(f.startswith("AUTH TLS") for f in features)
                 else "not offered"))
        return self._finish(b"QUIT\r\n")

    # IMAP: CAPABILITY, then ID where it is listed ------------------------------------------

    def _imap_capability(self) -> Send | Finished | None:
        assert self.guess is not None
        while (line := self._line()) is not None:
            text = printable(line, limit=MAX_LINE)
            if text.upper().startswith("* CAPABILITY "):
                self._lines = text[13:].upper().split()
            elif text.startswith("a1 "):
                capabilities = self._lines
                self.guess = self.guess.with_facts(
                    ("starttls", "offered" if "STARTTLS" in capabilities else "not offered"))
                if "ID" in capabilities:
                    self._step = self._imap_id
                    return self._send(b"a2 ID NIL\r\n", "ID")
                return self._finish(b"a3 LOGOUT\r\n")
        return None

    def _imap_id(self) -> Finished | None:
        assert self.guess is not None
        while (line := self._line()) is not None:
            text = printable(line, limit=MAX_LINE)
            if text.upper().startswith("* ID ("):
                pairs = re.findall(r'"([^"]*)"\s+(?:"([^"]*)"|NIL)', text[6:])
                fields = {key.lower(): value for key, value in pairs}
                if fields.get("name"):
                    self.guess = _with_product(self.guess, fields["name"],
                                               fields.get("version") or None)
            elif text.startswith("a2 "):
                return self._finish(b"a3 LOGOUT\r\n")
        return None

    # POP3 CAPA, NNTP CAPABILITIES: dot-ended listings with IMPLEMENTATION ----------------

    def _pop3_capa(self) -> Finished | None:
        return self._listing(ok=b"+OK", stls=("STLS",), quit_=b"QUIT\r\n")

    def _nntp_capabilities(self) -> Finished | None:
        return self._listing(ok=b"101", stls=("STARTTLS",), quit_=b"QUIT\r\n")

    def _listing(self, *, ok: bytes, stls: tuple[str, ...], quit_: bytes) -> Finished | None:
        assert self.guess is not None
        while (line := self._line()) is not None:
            if not self._lines:
                if not line.startswith(ok):
                    return self._finish(quit_)  # no listing before login: the greeting said it
                self._lines.append(printable(line))
                continue
            if line == b".":
                items = [item.upper() for item in self._lines[1:]]
                self.guess = self.guess.with_facts(
                    ("starttls", "offered" if any(i in stls for i in items) else "not offered"))
                for item in self._lines[1:]:
                    if item.upper().startswith("IMPLEMENTATION "):
                        found = product_in(item[15:]) or _product_words(item[15:])
                        if found:
                            self.guess = _with_product(self.guess, *found)
                return self._finish(quit_)
            self._lines.append(printable(line))
        return None

    # ManageSieve: the greeting is the capability listing, ended by OK -------------------

    def _sieve_listing(self) -> Finished | None:
        assert self.guess is not None
        while (line := self._line()) is not None:
            text = printable(line, limit=MAX_LINE)
            self._lines.append(text)
            if text.upper().startswith(("OK", "NO", "BYE")):
                upper = [item.upper() for item in self._lines]
                self.guess = self.guess.with_facts(
                    ("starttls", "offered" if '"STARTTLS"' in upper else "not offered"))
                return self._finish(b"LOGOUT\r\n")
        return None

    # IRC that greeted with a NOTICE: CAP LS names the server by its vendor capabilities ---

    def _irc_cap(self) -> Finished | None:
        assert self.guess is not None
        guess = _irc_lines(self, self.guess)
        if guess is None:
            return None
        self.guess = guess
        return self._finish(b"QUIT\r\n")


_CODED_CONTINUED = re.compile(rb"\d{3}-")
_CODED_LAST = re.compile(rb"(?:^|\n)\d{3}(?: [^\n]*)?\r?\n")


def _confirmed(guess: ServiceGuess, name: str, why: str) -> ServiceGuess:
    """``guess`` renamed ``name`` and made certain by an answer only that protocol gives."""
    return ServiceGuess(name, guess.detail, Confidence.HIGH, guess.version, guess.product,
                        guess.info, (*guess.facts, ("confirmed", why)))


def _with_product(guess: ServiceGuess, product: str, version: str | None) -> ServiceGuess:
    """``guess`` with the product (and version) an answer disclosed, unless it knew a
    version already."""
    if guess.version and not version:
        return guess
    return ServiceGuess(guess.name, guess.detail, guess.confidence, version, product,
                        guess.info, guess.facts)


def _product_words(text: str) -> tuple[str, str | None] | None:
    """``"INN 2.7.1"`` or ``"Dovecot"``: a product name and the version after it."""
    words = text.split()
    if not words:
        return None
    version = next((w for w in words[1:] if w[:1].isdigit()), None)
    return printable(words[0], limit=60), version


# -- Client-first probes -----------------------------------------------------------------------


class TlsProbe(ServiceProbe):
    """A TLS ClientHello; a ServerHello (or an alert) names TLS and its version."""

    name = "tls"

    def _opening(self) -> bytes:
        return client_hello(self.server_name)

    def _advance(self) -> Finished | None:
        data = bytes(self._buffer)
        if len(data) < 5:
            return None
        header = record_header(data)
        if header is None:
            return self._not_ours()
        if len(data) < 5 + header[2]:
            return None  # the record (its ServerHello's extensions) is not all here yet
        reply = parse_tls_reply(data)
        if reply is None:
            return self._not_ours()
        self.guess = ServiceGuess("tls", reply.detail, Confidence.HIGH, None, None, None,
                                  tuple((k, v) for k, v in (("tls_version", reply.version),
                                                            ("cipher", reply.cipher)) if v))
        return self._finish()


class HttpProbe(ServiceProbe):
    """``HEAD /``: the status line and the Server header."""

    name = "http"

    def _opening(self) -> bytes:
        return http_head_probe(self.host)

    def _advance(self) -> Finished | None:
        data = bytes(self._buffer)
        if len(data) >= 5 and not data.startswith(b"HTTP/"):
            return self._not_ours()
        if b"\r\n\r\n" not in data and b"\n\n" not in data:
            return None
        self.guess = http_guess(data)
        return self._finish()

    def _at_end(self) -> Finished:
        if self._buffer.startswith(b"HTTP/"):
            self.guess = http_guess(bytes(self._buffer))
            return self._finish()
        return super()._at_end()


class HttpGetProbe(HttpProbe):
    """``GET / HTTP/1.0``, for servers that do not answer HEAD; reads the start of the
    page too (bounded), where a server without a Server header may still name itself."""

    name = "http-get"
    BODY: ClassVar[int] = 512

    def _opening(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"GET / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tcpcli-probe\r\n\r\n"
                ).encode()

    def _advance(self) -> Finished | None:
        data = bytes(self._buffer)
        if len(data) >= 5 and not data.startswith(b"HTTP/"):
            return self._not_ours()
        end = data.find(b"\r\n\r\n")
        if end < 0 or len(data) < end + 4 + self.BODY:
            return None
        self.guess = http_guess(data)
        return self._finish()


class RedisProbe(ServiceProbe):
    """``PING``; on ``+PONG``, ``INFO server`` for the version. With a password set the
    server answers NOAUTH, which names it; no password is ever sent."""

    name = "redis"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._asked_info = False

    def _opening(self) -> bytes:
        return REDIS_PING

    def _advance(self) -> Send | Finished | None:
        if not self._asked_info:
            line = self._line()
            if line is None:
                return None
            if not line.startswith((b"+", b"-")):
                self._buffer[:0] = line + b"\r\n"
                return self._not_ours()
            text = printable(line, limit=200)
            guess = identify(line + b"\r\n", probe="redis")
            if guess is None or guess.name != "redis":
                self._buffer[:0] = line + b"\r\n"
                return self._not_ours()
            self.guess = ServiceGuess("redis", text, guess.confidence, product="Redis",
                                      info=guess.info)
            if not text.startswith("+PONG"):
                if guess.info == "authentication required":
                    self.guess = self.guess.with_facts(("auth", "required"))
                    self.guess = ServiceGuess(
                        "redis", text, Confidence.HIGH, product="Redis",
                        info="authentication required: the version is not disclosed",
                        facts=self.guess.facts)
                return self._finish(b"QUIT\r\n")
            self._asked_info = True
            return self._send(b"INFO server\r\n", "INFO server")
        return self._info()

    def _info(self) -> Finished | None:
        assert self.guess is not None
        data = bytes(self._buffer)
        if data.startswith(b"-"):
            line = self._line()
            if line is None:
                return None
            self.guess = ServiceGuess("redis", self.guess.detail, Confidence.HIGH,
                                      product="Redis", info=f"INFO refused: "
                                      f"{printable(line, limit=120)}")
            return self._finish(b"QUIT\r\n")
        end = data.find(b"\r\n")
        if end < 0:
            return None
        if not data.startswith(b"$") or not data[1:end].isdigit():
            return self._finish(b"QUIT\r\n")
        size = int(data[1:end])
        body = data[end + 2 : end + 2 + size]
        if len(body) < size and not self._eof:
            return None
        fields = {key: printable(value, limit=120) for key, _, value in (
            line.partition(":") for line in body.decode("latin-1").splitlines())
            if value}
        product = "Valkey" if fields.get("server_name") == "valkey" else "Redis"
        version = fields.get("valkey_version") if product == "Valkey" else None
        version = version or fields.get("redis_version") or None
        facts = tuple((key.removeprefix("redis_"), fields[key])
                      for key in ("redis_mode", "os") if fields.get(key))
        self.guess = ServiceGuess("redis", self.guess.detail, Confidence.HIGH, version, product,
                                  None, (("auth", "none"), *facts))
        return self._finish(b"QUIT\r\n")


#: A startup packet of protocol 4.0 and no user: refused at once, with the range of
#: protocol versions the server speaks.
POSTGRES_V4_STARTUP = struct.pack("!II", 9, 4 << 16) + b"\x00"
_PG_RANGE = re.compile(rb"server supports (\d+\.\d+) to (\d+\.\d+)")
_PG_FACT = "PostgreSQL discloses its version only after authentication"


class PostgresProbe(ServiceProbe):
    """SSLRequest: S or N names PostgreSQL (TLS available or off). After N the same
    connection asks for the protocol range; after S that is a follow-up's job."""

    name = "postgres"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._asked_range = False

    def _opening(self) -> bytes:
        return SSL_REQUEST

    def _advance(self) -> Send | Finished | None:
        if self._asked_range:
            return _postgres_range(self)
        answer = bytes(self._buffer[:1])
        if answer not in (b"S", b"N"):
            return self._not_ours() if answer != b"E" else _postgres_range(self)
        if len(self._buffer) > 1:
            return self._not_ours()  # S or N comes alone
        del self._buffer[:1]
        self.guess = ServiceGuess(
            "postgres", f"SSLRequest answered {answer.decode()}", Confidence.HIGH,
            product="PostgreSQL", info=_PG_FACT,
            facts=(("tls", "available" if answer == b"S" else "off"),))
        if answer == b"S":
            return self._finish(follow_up="postgres-protocol")
        self._asked_range = True
        return self._send(POSTGRES_V4_STARTUP, "startup 4.0")


class PostgresProtocolProbe(ServiceProbe):
    """A startup packet of protocol 4.0, no user: PostgreSQL refuses it naming the range."""

    name = "postgres-protocol"

    def _opening(self) -> bytes:
        return POSTGRES_V4_STARTUP

    def _advance(self) -> Finished | None:
        return _postgres_range(self)


def _postgres_range(probe: ServiceProbe) -> Finished | None:
    """An ErrorResponse to the 4.0 startup: only the protocol range is taken from it (its
    text is the server's, unauthenticated, and is not shown)."""
    data = bytes(probe._buffer)
    if data[:1] != b"E":
        return probe._not_ours()
    if len(data) < 5:
        return None
    length = int.from_bytes(data[1:5], "big")
    if length < 4 or length > MAX_PROBE_BYTES:
        return probe._not_ours()
    if len(data) < 1 + length:
        return None
    if data[5:6] not in tuple(bytes([c]) for c in b"SVCMDHPpqWsFLR"):
        return probe._not_ours()  # an ErrorResponse's fields are typed by these letters
    found = _PG_RANGE.search(data[: 1 + length])
    guess = probe.guess or ServiceGuess("postgres", "answered with an ErrorResponse",
                                        Confidence.HIGH if found else Confidence.MEDIUM,
                                        product="PostgreSQL", info=_PG_FACT)
    if found:
        low, high = found.group(1).decode(), found.group(2).decode()
        guess = guess.with_facts(("protocol", low if low == high else f"{low}-{high}"))
    probe.guess = guess
    return probe._finish()


def mqtt5_connect_probe(client_id: str = "tcpcli-probe") -> bytes:
    """An MQTT 5 CONNECT: clean start, no credentials, no will, 10 s keep-alive, no
    properties (so the session expires at once)."""
    ident = check_token(client_id, "MQTT client id", max_length=23).encode()
    variable = b"\x00\x04MQTT\x05\x02\x00\x0a\x00" + len(ident).to_bytes(2, "big") + ident
    return b"\x10" + bytes([len(variable)]) + variable


class MqttProbe(ServiceProbe):
    """CONNECT at protocol level 5 (no credentials); a CONNACK names MQTT. A broker that
    refuses level 5 answers as 3.x does: the follow-up asks at level 4 (3.1.1). A broker
    that accepts an anonymous client is asked for ``$SYS/broker/version`` (a subscription
    for the few milliseconds before DISCONNECT, which ends the clean session and it): the
    retained message names the broker (mosquitto publishes it)."""

    name = "mqtt"
    LEVEL: ClassVar[str] = "5.0"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._subscribed = False

    def _opening(self) -> bytes:
        return mqtt5_connect_probe()

    def _advance(self) -> Send | Finished | None:
        if self._subscribed:
            return self._version()
        if self._buffer[:1] != b"\x20":
            return self._not_ours()  # not a CONNACK
        packet = _mqtt_packet(self._buffer)
        if packet is None:
            return None
        kind, body = packet
        if kind != 0x20 or len(body) < 2:
            raise _NotOurs
        code = body[1]
        accepted = code == 0
        refused_level = code in (1, 0x84)
        what = MQTT_CODES.get(code, f"code {code}")
        facts = [("connect", "anonymous accepted" if accepted else what)]
        if not refused_level:
            facts.insert(0, ("protocol", self.LEVEL))
        self.guess = ServiceGuess("mqtt", f"CONNACK: {what}", Confidence.HIGH,
                                  facts=tuple(facts),
                                  info=f"refused protocol {self.LEVEL}" if refused_level
                                  else None)
        if accepted:
            self._subscribed = True
            return self._send(self._subscribe(), "SUBSCRIBE $SYS/broker/version")
        follow_up = "mqtt-3" if refused_level and self.name == "mqtt" else None
        return self._finish(follow_up=follow_up)

    def _subscribe(self) -> bytes:
        topic = MQTT_VERSION_TOPIC.encode()
        properties = b"\x00" if self.LEVEL == "5.0" else b""
        body = (b"\x00\x01" + properties + len(topic).to_bytes(2, "big") + topic + b"\x00")
        return b"\x82" + bytes([len(body)]) + body

    def _version(self) -> Finished | None:
        while (packet := _mqtt_packet(self._buffer)) is not None:
            kind, body = packet
            if kind == 0x90 and body[-1:] >= b"\x80":  # SUBACK: the subscription refused
                return self._finish(mqtt_disconnect())
            if kind & 0xF0 == 0x30 and len(body) >= 2:  # PUBLISH
                size = int.from_bytes(body[:2], "big")
                topic = body[2 : 2 + size]
                rest = body[2 + size + (2 if kind & 0x06 else 0):]
                if self.LEVEL == "5.0":
                    length, used = _varint(rest)
                    rest = rest[used + (length or 0):]
                if topic == MQTT_VERSION_TOPIC.encode() and self.guess is not None:
                    text = printable(rest, limit=120)
                    found = re.match(r"(.+?) version (\d[\w.-]*)", text)
                    product, version = (found.groups() if found
                                        else _product_words(text) or (None, None))
                    if product:
                        self.guess = _with_product(self.guess, product, version)
                    return self._finish(mqtt_disconnect())
        return None

    def _at_end(self) -> Finished:
        if self._subscribed:
            return self._finish(mqtt_disconnect())
        return super()._at_end()


#: The retained topic a broker's version is published on (mosquitto's $SYS tree).
MQTT_VERSION_TOPIC: Final = "$SYS/broker/version"


def _mqtt_packet(buffer: bytearray) -> tuple[int, bytes] | None:
    """One MQTT control packet out of ``buffer``: its first byte and its body."""
    if len(buffer) < 2:
        return None
    length, used = _varint(bytes(buffer[1:5]))
    if length is None:
        if len(buffer) >= 5:
            raise _NotOurs
        return None
    if length > MAX_PROBE_BYTES:
        raise _NotOurs
    if len(buffer) < 1 + used + length:
        return None
    kind = buffer[0]
    body = bytes(buffer[1 + used : 1 + used + length])
    del buffer[: 1 + used + length]
    return kind, body


class Mqtt3Probe(MqttProbe):
    """CONNECT at protocol level 4 (MQTT 3.1.1), no credentials."""

    name = "mqtt-3"
    LEVEL = "3.1.1"

    def _opening(self) -> bytes:
        return mqtt_connect_probe()


def _varint(data: bytes) -> tuple[int | None, int]:
    """MQTT's remaining length (1-4 bytes, 7 bits each): value and bytes used."""
    value = 0
    for index, byte in enumerate(data[:4]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, index + 1
    return None, 0


#: What the root DSE is asked for: enough to name the vendor and the LDAP it speaks.
ROOT_DSE_QUERY = ("objectClass", "vendorName", "vendorVersion", "supportedLDAPVersion",
                  "supportedExtension", "supportedSASLMechanisms", "supportedCapabilities",
                  "isGlobalCatalogReady", "forestFunctionality")
#: supportedCapabilities OID of Active Directory (LDAP_CAP_ACTIVE_DIRECTORY_OID).
ACTIVE_DIRECTORY_OID = "1.2.840.113556.1.4.800"
UNBIND = ber.sequence(ber.integer(2), b"\x42\x00")


def root_dse_search(message_id: int = 1) -> bytes:
    """An anonymous base search of the root DSE (no bind is sent before it)."""
    present = ber.octets("objectClass", tag=0x87)
    attributes = ber.sequence(*(ber.octets(name) for name in ROOT_DSE_QUERY))
    request = ber.sequence(
        ber.octets(""), ber.integer(0, ber.ENUMERATED), ber.integer(0, ber.ENUMERATED),
        ber.integer(0), ber.integer(10), ber.boolean(False), present, attributes, tag=0x63)
    return ber.sequence(ber.integer(message_id), request)


class LdapProbe(ServiceProbe):
    """The root DSE, read anonymously: vendor, LDAP versions, StartTLS; then unbind."""

    name = "ldap"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._attributes: dict[str, tuple[str, ...]] = {}

    def _opening(self) -> bytes:
        return root_dse_search()

    def _advance(self) -> Finished | None:
        while self._buffer:
            if self._buffer[0] != ber.SEQUENCE:
                return self._not_ours()
            head = ber.header(self._buffer)
            if head is None:
                return None
            _, start, length = head
            if start + length > self.max_bytes:
                return self._not_ours()
            if len(self._buffer) < start + length:
                return None
            message = parse_message(bytes(self._buffer[start : start + length]))
            del self._buffer[: start + length]
            if message.message_id == 0 and message.response_name == (
                    NOTICE_OF_DISCONNECTION_OID):
                self.guess = ServiceGuess("ldap", "notice of disconnection", Confidence.HIGH)
                return self._finish()
            if message.message_id != 1:
                return self._not_ours()
            if message.op == SEARCH_ENTRY:
                self._attributes.update(
                    (name.lower(), values) for name, values in message.attributes)
            elif message.op == SEARCH_DONE:
                self.guess = self._named(message.result_code or 0, message.diagnostic)
                return self._finish(UNBIND)
        return None

    def _named(self, code: int, diagnostic: str) -> ServiceGuess:
        attributes = self._attributes
        product = version = None
        if attributes.get("vendorname"):
            product = attributes["vendorname"][0]
            version = (attributes.get("vendorversion") or (None,))[0]
        elif "openldaprootdse" in {c.lower() for c in attributes.get("objectclass", ())}:
            product = "OpenLDAP"
        elif ACTIVE_DIRECTORY_OID in attributes.get("supportedcapabilities", ()):
            product = "Microsoft Active Directory"
        facts: list[tuple[str, str]] = []
        if attributes.get("supportedldapversion"):
            facts.append(("ldap_versions", ",".join(attributes["supportedldapversion"])))
        extensions = attributes.get("supportedextension")
        if extensions is not None:
            facts.append(("starttls", "offered" if STARTTLS_OID in extensions
                          else "not offered"))
        if attributes.get("supportedsaslmechanisms"):
            facts.append(("sasl", " ".join(attributes["supportedsaslmechanisms"])))
        detail = "root DSE read anonymously" if not code else (
            f"root DSE search refused ({code}{': ' + diagnostic if diagnostic else ''})")
        if extensions:
            named = [KNOWN_OIDS[oid] for oid in extensions if oid in KNOWN_OIDS]
            if named:
                detail += f"; extensions: {', '.join(named)}"
        return ServiceGuess("ldap", detail, Confidence.HIGH, version, product, None,
                            tuple(facts))


class XmppProbe(ServiceProbe):
    """A client stream header to the host's domain; the server's header (its namespace
    tells a server-to-server port) and stream features."""

    name = "xmpp"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._parser = XmlStreamParser("xmpp", max_tag=MAX_LINE, max_element=8192)
        self._header: StreamOpen | None = None

    def _opening(self) -> bytes:
        domain = self.server_name or "localhost"
        return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
                f" xmlns:stream='{STREAMS_NS}' to='{domain}' version='1.0'>").encode()

    def _advance(self) -> Finished | None:
        if not self._buffer.lstrip().startswith(b"<") and self._buffer.strip():
            return self._not_ours()
        while (event := self._parser.next(self._buffer)) is not None:
            if isinstance(event, StreamOpen):
                self._header = event
                self.guess = self._from_header(event)
            elif isinstance(event, Element) and self.guess is not None:
                self.guess = _xmpp_element(self.guess, event)
                return self._finish(b"</stream:stream>")
            else:
                return self._finish(b"</stream:stream>")
        return None

    def _at_end(self) -> Finished:
        return self._finish(b"</stream:stream>") if self.guess else super()._at_end()

    def _from_header(self, header: StreamOpen) -> ServiceGuess:
        namespace = header.default_namespace
        name = "xmpp-server" if namespace == "jabber:server" else "xmpp"
        attrs = header.attributes
        facts = [(key, printable(attrs[key], limit=120)) for key in ("version", "from")
                 if attrs.get(key)]
        if "db" in {key.partition(":")[2] for key in attrs if key.startswith("xmlns:")}:
            facts.append(("dialback", "yes"))
        renamed = {"from": "domain"}
        return ServiceGuess(name, f"stream header in {printable(namespace, limit=60)}",
                            Confidence.HIGH,
                            facts=tuple((renamed.get(k, k), v) for k, v in facts))


def _xmpp_element(guess: ServiceGuess, element: Element) -> ServiceGuess:
    if (element.namespace, element.local) == (STREAMS_NS, "error"):
        condition = next((child.local for child in element.children), "")
        return guess.with_facts(("stream_error", printable(condition, limit=60)))
    if (element.namespace, element.local) != (STREAMS_NS, "features"):
        return guess
    features: list[str] = []
    starttls = "not offered"
    for feature in element.children:
        if feature.local == "starttls":
            starttls = "required" if feature.child(feature.namespace, "required") else "offered"
        elif feature.local == "mechanisms":
            features += [f"SASL {m.text}" for m in feature.children if m.text]
        else:
            features.append(printable(feature.local, limit=40))
    facts = [("starttls", starttls)]
    if features:
        facts.append(("features", printable(", ".join(features), limit=200)))
    return guess.with_facts(*facts)


#: IRCv3 vendor capability prefixes -> the server software that lists them.
IRC_VENDORS = {"inspircd.org": "InspIRCd", "unrealircd.org": "UnrealIRCd",
               "solanum.chat": "Solanum", "ergo.chat": "Ergo", "oragono.io": "Ergo",
               "znc.in": "ZNC", "charybdis.io": "Charybdis", "ircv3.net": ""}


class IrcProbe(ServiceProbe):
    """``CAP LS 302`` before registration: a CAP listing (or the numerics of a server
    without CAP) names IRC; vendor-named capabilities name the server."""

    name = "irc"

    def _opening(self) -> bytes:
        return b"CAP LS 302\r\n"

    def _advance(self) -> Finished | None:
        guess = _irc_lines(self, self.guess)
        if guess is None:
            return None
        self.guess = guess
        return self._finish(b"QUIT\r\n")

    def _at_end(self) -> Finished:
        return self._finish(b"QUIT\r\n") if self.guess else super()._at_end()


def _irc_lines(probe: ServiceProbe, guess: ServiceGuess | None) -> ServiceGuess | None:
    """Read IRC lines until the CAP LS listing ends (or CAP is refused); None: not yet.
    Other lines (NOTICEs) name IRC on the way, kept in ``probe.guess``."""
    while (line := probe._line()) is not None:
        if not line.strip():
            continue
        text = printable(line, limit=MAX_LINE)
        parts = text.split(" ")
        if not text.startswith((":", "@", "NOTICE", "ERROR", "PING")):
            raise _NotOurs
        command = parts[1] if text.startswith(":") and len(parts) > 1 else parts[0]
        if guess is None:
            guess = ServiceGuess("irc", text[:200], Confidence.HIGH)
            probe.guess = guess
        if command == "CAP" and len(parts) > 3 and parts[3] == "LS":
            more = len(parts) > 4 and parts[4] == "*"
            listed = text.partition(" :")[2].split()
            caps = [cap.partition("=")[0] for cap in listed]
            vendors = {cap.partition("/")[0] for cap in caps if "/" in cap}
            product = next((IRC_VENDORS[v] for v in sorted(vendors) if IRC_VENDORS.get(v)),
                           None)
            guess = guess.with_facts(
                ("cap", " ".join([*(guess.fact("cap") or "").split(), *caps])[:300]))
            if product and not guess.product:
                guess = _with_product(guess, product, None)
            probe.guess = guess
            if not more:
                return guess
        elif command in ("421", "451", "ERROR"):
            return guess
    return None


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[\d.]+|\[?[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\]?", host))


#: A service named by the way (:attr:`Finished.by_the_way`) -> the probe that asks it.
PROBE_FOR_SERVICE = {"http": "http", "redis": "redis", "irc": "irc", "xmpp": "xmpp",
                     "xmpp-server": "xmpp", "postgres": "postgres", "mqtt": "mqtt",
                     "ldap": "ldap", "tls": "tls"}

#: Every probe by name.
PROBES: dict[str, type[ServiceProbe]] = {
    cls.name: cls for cls in (
        GreetingProbe, TlsProbe, HttpProbe, HttpGetProbe, RedisProbe, PostgresProbe,
        PostgresProtocolProbe, MqttProbe, Mqtt3Probe, LdapProbe, XmppProbe, IrcProbe)
}

#: Client-first probes in the order tried on a silent port with no usual service: the
#: commonest first, GET last (only servers that ignore HEAD need it).
CLIENT_FIRST_ORDER = ("tls", "http", "redis", "postgres", "mqtt", "ldap", "xmpp", "irc",
                      "http-get")

#: Port -> the probe most likely to name what listens there (tried first; the others
#: follow, since a service is found by what it answers, not by its number).
USUAL_PROBE = {
    6379: "redis", 6380: "redis", 5432: "postgres", 5433: "postgres", 1883: "mqtt",
    389: "ldap", 3268: "ldap", 5222: "xmpp", 5269: "xmpp", 6667: "irc", 6668: "irc",
    6669: "irc", 194: "irc",
    80: "http", 81: "http", 3000: "http", 5000: "http", 8000: "http", 8008: "http",
    8080: "http", 8081: "http", 8888: "http", 9000: "http",
    443: "tls", 465: "tls", 636: "tls", 853: "tls", 993: "tls", 995: "tls", 5671: "tls",
    6443: "tls", 6697: "tls", 8443: "tls", 8883: "tls", 9443: "tls", 5223: "tls",
    3269: "tls",
}


def client_first_probes(port: int | None) -> list[str]:
    """The client-first probes for a silent port, the usual one for ``port`` first."""
    first = USUAL_PROBE.get(port) if port is not None else None
    return ([first] if first else []) + [name for name in CLIENT_FIRST_ORDER if name != first]


def make_probe(name: str, *, host: str | None = None, port: int | None = None,
               max_bytes: int = MAX_PROBE_BYTES, address: str | None = None) -> ServiceProbe:
    """A fresh probe by name (a key of :data:`PROBES`): ``host`` is the target's name
    (None for a literal address), ``address`` the literal dialed."""
    cls = PROBES.get(name)
    if cls is None:
        raise LocalProtocolError(f"unknown service probe {name!r}; known: {', '.join(PROBES)}")
    return cls(host=host, port=port, max_bytes=max_bytes, address=address)


def merge(first: ServiceGuess, more: ServiceGuess | None) -> ServiceGuess:
    """A follow-up's findings added to the first probe's (same service, more facts)."""
    if more is None or more.name != first.name:
        return first
    merged = first.with_facts(*more.facts)
    if more.version or (more.product and not first.product):
        merged = _with_product(merged, more.product or first.product or "", more.version)
    if more.info and not first.info:
        merged = ServiceGuess(merged.name, merged.detail, merged.confidence, merged.version,
                              merged.product, more.info, merged.facts)
    return merged
