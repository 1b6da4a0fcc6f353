"""IRC STARTTLS (the IRCv3 ``STARTTLS`` extension: 670 / 691), sans-IO.

    C: CAP LS 302                                 <- the client may speak first
    S: :irc.example.net NOTICE * :*** Looking up your hostname...   (skipped)
    S: :irc.example.net CAP * LS :multi-prefix sasl=PLAIN,EXTERNAL tls
    C: CAP END                                    <- so registration is not held
    C: STARTTLS
    S: :irc.example.net 670 * :STARTTLS successful, proceed with TLS handshake
    -- TLS --                                     <- nothing may follow 670 in the buffer

NOTICE lines, other numerics and PINGs (answered with PONG) may come at any time. IRCv3
deprecated the ``tls`` capability, so its absence is not taken as "not offered"; a 421
(unknown command) or 451 (not registered) answer to STARTTLS is.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar

from tcpcli.protocols.base import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_REPLY,
    Goal,
    Outcome,
    Send,
    Table,
    TableDialogue,
    printable,
)
from tcpcli.protocols.errors import RemoteProtocolError
from tcpcli.protocols.lines import PLAINTEXT_MECHANISMS, LineReader


class Step(enum.Enum):
    CAP_LS = "cap-ls"
    CAP_END = "cap-end"
    STARTTLS = "starttls"


Message = tuple[str, list[str]]  # (COMMAND, params)


def parse_message(line: bytes, name: str = "irc") -> Message:
    """``b":srv 670 * :go"`` -> ``("670", ["*", "go"])``; tags and prefix dropped."""
    text = line.decode("utf-8", "replace")
    if text.startswith("@"):
        text = text.partition(" ")[2]
    text = text.lstrip(" ")
    if text.startswith(":"):
        text = text.partition(" ")[2]
    head, colon, trailing = text.partition(" :")
    if head.startswith(":"):  # no middle params: "CMD :trailing" lost its space split
        head, colon, trailing = "", ":", head[1:]
    params = head.split() + ([trailing] if colon else [])
    if not params:
        raise RemoteProtocolError(f"{name}: a message without a command: {printable(line)}")
    return params[0].upper(), [printable(p) for p in params[1:]]


class IrcDialogue(TableDialogue[Message]):
    """IRC STARTTLS."""

    name = "irc"
    default_ports = (6667,)
    server_speaks_first = False
    LOCKSTEP = False  # NOTICEs and PINGs arrive whenever the server likes

    FIRST = Step.CAP_LS
    AFTER_TLS = Goal.DONE
    NO_REPLY: ClassVar[Mapping[enum.Enum, enum.Enum]] = {Step.CAP_END: Step.STARTTLS}
    TABLE: ClassVar[Table] = {
        # Rule 1 — CAP LS: a listing → CAP END, then STARTTLS (CAP END has no answer).
        # 421/451 (CAP not understood) → STARTTLS directly. ERROR → the session is refused.
        (Step.CAP_LS, Outcome.OK): Step.CAP_END,
        (Step.CAP_LS, Outcome.UNKNOWN): Step.STARTTLS,
        (Step.CAP_LS, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — STARTTLS: 670 → upgrade (the buffer must be empty); 691 → refused;
        # 421/451 naming STARTTLS (unknown, or not before registration) → not offered;
        # ERROR → refused. (Some ircds say nothing at all: the driver's timeout decides.)
        (Step.STARTTLS, Outcome.OK): Goal.UPGRADE,
        (Step.STARTTLS, Outcome.NO): Goal.REFUSED,
        (Step.STARTTLS, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.STARTTLS, Outcome.CLOSING): Goal.REFUSED,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._reader = LineReader(self.name, max_line, max_reply)
        self._caps: list[str] = []

    def _partial(self) -> bool:
        return self._reader.reply_size > 0

    def _next_reply(self) -> Message | None:
        while (line := self._reader.take(self._buffer)) is not None:
            self._reader.end_reply()
            if line.strip():
                return parse_message(line, self.name)
        return None

    def _command(self, step: enum.Enum) -> Send | None:
        if step is Step.CAP_LS:
            return Send(b"CAP LS 302\r\n", "CAP LS")
        if step is Step.CAP_END:
            return Send(b"CAP END\r\n", "CAP END")
        return Send(b"STARTTLS\r\n", "STARTTLS")

    def _classify(self, step: enum.Enum, reply: Message) -> Outcome:
        command, params = reply
        self._last_text = printable(" ".join([command, *params]))
        if command == "ERROR":
            return Outcome.CLOSING
        if command == "PING":
            # Answered before STARTTLS only: once STARTTLS is sent, a PONG would land in
            # the server's TLS handshake.
            if step is Step.CAP_LS and params:
                token = params[-1].encode("utf-8", "replace")
                if b"\r" not in token and b"\n" not in token:
                    self._emit(Send(b"PONG :" + token + b"\r\n", "PONG"))
            return Outcome.WAIT
        if command == "NOTICE":
            if self._report.greeting is None and params:
                self._greeting(params[-1])
            return Outcome.WAIT
        if step is Step.CAP_LS:
            if command == "CAP" and len(params) >= 3 and params[1].upper() == "LS":
                self._caps += params[-1].split()
                if params[2] == "*" and len(params) >= 4:
                    return Outcome.WAIT  # a 302 multi-line listing continues
                self._listed()
                return Outcome.OK
            if command in ("421", "451"):
                return Outcome.UNKNOWN
            return Outcome.WAIT
        if command == "670":
            return Outcome.OK
        if command == "691":
            return Outcome.NO
        if command in ("421", "451") and "STARTTLS" in (p.upper() for p in params):
            # 421 unknown command; 451 "You have not registered": no STARTTLS before
            # registration. openssl reads both as "not supported".
            self._why = ("STARTTLS is an unknown command here" if command == "421" else
                         "the server accepts STARTTLS only after registration")
            return Outcome.ABSENT
        return Outcome.WAIT

    def _listed(self) -> None:
        self._capabilities(self._caps)
        names = {cap.partition("=")[0].lower(): cap.partition("=")[2] for cap in self._caps}
        if "tls" in names:
            self._update(starttls_offered=True)
        if "sasl" in names:
            mechanisms = {m.upper() for m in names["sasl"].split(",") if m}
            # "sasl" without values means "ask AUTHENTICATE"; with values we know.
            if mechanisms:
                self._plaintext_login(bool(PLAINTEXT_MECHANISMS & mechanisms))
