"""POP3 STLS (RFC 2595 §4, CAPA per RFC 2449), sans-IO.

    S: +OK Dovecot (Debian) ready.
    C: CAPA
    S: +OK / TOP / UIDL / STLS / USER / SASL PLAIN / .
    C: STLS
    S: +OK Begin TLS negotiation now.          <- nothing may follow this in the buffer
    -- TLS --
    C: CAPA                                     <- RFC 2595 §4: discard, SHOULD re-issue
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
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
from tcpcli.protocols.lines import PLAINTEXT_MECHANISMS, DotBlockFramer, LineReader


class Step(enum.Enum):
    GREETING = "greeting"
    CAPA = "capa"
    STLS = "stls"
    TLS_CAPA = "tls-capa"


@dataclass(frozen=True)
class Pop3Reply:
    """One POP3 reply: +OK or -ERR, its text, and a multi-line block where one follows."""

    ok: bool
    text: str  # the status line without "+OK " / "-ERR "
    block: tuple[str, ...] | None = None  # the multi-line part (CAPA)


class Pop3Dialogue(TableDialogue[Pop3Reply]):
    """POP3 STARTTLS (the STLS command)."""

    name = "pop3"
    default_ports = (110,)
    server_speaks_first = True

    FIRST = Step.GREETING
    AFTER_TLS = Step.TLS_CAPA
    TABLE: ClassVar[Table] = {
        # Rule 1 — the greeting: +OK → CAPA; -ERR → the session is refused.
        (Step.GREETING, Outcome.OK): Step.CAPA,
        (Step.GREETING, Outcome.NO): Goal.SESSION_REFUSED,
        # Rule 2 — CAPA: STLS listed → STLS; not listed → not offered. -ERR (a server
        # older than RFC 2449 has no CAPA) → try STLS anyway; its answer decides.
        (Step.CAPA, Outcome.OFFERED): Step.STLS,
        (Step.CAPA, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.CAPA, Outcome.UNKNOWN): Step.STLS,
        # Rule 3 — STLS: +OK → upgrade (the buffer must be empty); -ERR → refused.
        (Step.STLS, Outcome.OK): Goal.UPGRADE,
        (Step.STLS, Outcome.NO): Goal.REFUSED,
        # Rule 4 — over TLS: CAPA again; any answer ends the dialogue.
        (Step.TLS_CAPA, Outcome.OK): Goal.DONE,
        (Step.TLS_CAPA, Outcome.UNKNOWN): Goal.DONE,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._reader = LineReader(self.name, max_line, max_reply)
        self._block = DotBlockFramer(self._reader)
        self._status: str | None = None  # a +OK line whose block is still coming

    def _partial(self) -> bool:
        return self._status is not None or self._reader.reply_size > 0

    def _next_reply(self) -> Pop3Reply | None:
        if self._status is None:
            line = self._reader.take(self._buffer)
            if line is None:
                return None
            if line == b"+OK" or line.startswith(b"+OK "):
                ok, text = True, printable(line[4:])
            elif line == b"-ERR" or line.startswith(b"-ERR "):
                ok, text = False, printable(line[5:])
            else:
                raise RemoteProtocolError(f"{self.name}: not a status line: {printable(line)}")
            if not (ok and self._step in (Step.CAPA, Step.TLS_CAPA)):
                self._reader.end_reply()
                return Pop3Reply(ok, text)
            self._status = text
        block = self._block.next(self._buffer)
        if block is None:
            return None
        reply = Pop3Reply(True, self._status, block)
        self._status = None
        return reply

    def _command(self, step: enum.Enum) -> Send | None:
        if step in (Step.CAPA, Step.TLS_CAPA):
            return Send(b"CAPA\r\n", "CAPA")
        if step is Step.STLS:
            return Send(b"STLS\r\n", "STLS")
        return None

    def _classify(self, step: enum.Enum, reply: Pop3Reply) -> Outcome:
        self._last_text = ("+OK " if reply.ok else "-ERR ") + reply.text
        if step is Step.GREETING:
            if reply.ok:
                self._greeting(reply.text)
                if "<" in reply.text and "@" in reply.text:
                    self._detail("apop", "offered (challenge in the greeting)")
            return Outcome.OK if reply.ok else Outcome.NO
        if step in (Step.CAPA, Step.TLS_CAPA):
            if reply.block is None:
                return Outcome.UNKNOWN
            self._capabilities(reply.block)
            if step is Step.TLS_CAPA:
                return Outcome.OK
            words = [item.upper().split() for item in reply.block]
            self._plaintext_login(any(
                w[:1] == ["USER"] or (w[:1] == ["SASL"] and bool(PLAINTEXT_MECHANISMS & set(w)))
                for w in words
            ))
            offered = ["STLS"] in words
            self._update(starttls_offered=offered)
            return Outcome.OFFERED if offered else Outcome.ABSENT
        return Outcome.OK if reply.ok else Outcome.NO
