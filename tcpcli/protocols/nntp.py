"""NNTP STARTTLS (RFC 4642, CAPABILITIES per RFC 3977 §5.2), sans-IO.

    S: 200 news.example.com InterNetNews NNRP server INN 2.7.1 ready (posting ok)
    C: CAPABILITIES
    S: 101 Capability list: / VERSION 2 / ... / STARTTLS / .
    C: STARTTLS
    S: 382 Continue with TLS negotiation        <- nothing may follow this in the buffer
    -- TLS --
    C: CAPABILITIES                              <- RFC 4642 §2.2.2: discard, ask again
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
)
from tcpcli.protocols.lines import (
    PLAINTEXT_MECHANISMS,
    CodedReply,
    CodedReplyFramer,
    DotBlockFramer,
    LineReader,
    code_outcome,
)


class Step(enum.Enum):
    GREETING = "greeting"
    CAPABILITIES = "capabilities"
    STARTTLS = "starttls"
    TLS_CAPABILITIES = "tls-capabilities"


#: 400: service temporarily unavailable — the server is closing the connection.
CLOSING = frozenset({400})


@dataclass(frozen=True)
class NntpReply:
    """One NNTP reply: its status line, and the multi-line block that follows some."""

    status: CodedReply
    block: tuple[str, ...] | None = None


class NntpDialogue(TableDialogue[NntpReply]):
    """NNTP STARTTLS."""

    name = "nntp"
    default_ports = (119,)
    server_speaks_first = True

    FIRST = Step.GREETING
    AFTER_TLS = Step.TLS_CAPABILITIES
    TABLE: ClassVar[Table] = {
        # Rule 1 — the greeting: 200/201 → CAPABILITIES; 400/502 → the session is refused.
        (Step.GREETING, Outcome.OK): Step.CAPABILITIES,
        (Step.GREETING, Outcome.NO): Goal.SESSION_REFUSED,
        (Step.GREETING, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — CAPABILITIES: STARTTLS listed → STARTTLS; not listed → not offered;
        # CAPABILITIES not understood (an RFC 977 server) → try STARTTLS anyway.
        (Step.CAPABILITIES, Outcome.OFFERED): Step.STARTTLS,
        (Step.CAPABILITIES, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.CAPABILITIES, Outcome.UNKNOWN): Step.STARTTLS,
        (Step.CAPABILITIES, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 3 — STARTTLS: 382 → upgrade (the buffer must be empty); 580, 502, 483 → refused.
        (Step.STARTTLS, Outcome.OK): Goal.UPGRADE,
        (Step.STARTTLS, Outcome.NO): Goal.REFUSED,
        (Step.STARTTLS, Outcome.CLOSING): Goal.REFUSED,
        # Rule 4 — over TLS: CAPABILITIES again; any answer ends the dialogue.
        (Step.TLS_CAPABILITIES, Outcome.OK): Goal.DONE,
        (Step.TLS_CAPABILITIES, Outcome.UNKNOWN): Goal.DONE,
        (Step.TLS_CAPABILITIES, Outcome.CLOSING): Goal.SESSION_REFUSED,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._reader = LineReader(self.name, max_line, max_reply)
        self._framer = CodedReplyFramer(self._reader)
        self._block = DotBlockFramer(self._reader)
        self._status: CodedReply | None = None  # a 101 whose block is still coming

    def _partial(self) -> bool:
        return self._status is not None or self._reader.reply_size > 0

    def _next_reply(self) -> NntpReply | None:
        if self._status is None:
            status = self._framer.next(self._buffer)
            if status is None:
                return None
            if status.code != 101:
                return NntpReply(status)
            self._status = status
        block = self._block.next(self._buffer)
        if block is None:
            return None
        reply = NntpReply(self._status, block)
        self._status = None
        return reply

    def _command(self, step: enum.Enum) -> Send | None:
        if step in (Step.CAPABILITIES, Step.TLS_CAPABILITIES):
            return Send(b"CAPABILITIES\r\n", "CAPABILITIES")
        if step is Step.STARTTLS:
            return Send(b"STARTTLS\r\n", "STARTTLS")
        return None

    def _classify(self, step: enum.Enum, reply: NntpReply) -> Outcome:
        status = reply.status
        self._last_text = status.text
        if step is Step.GREETING:
            if status.code in (200, 201):
                self._greeting(" ".join(status.lines))
                self._detail("posting", "allowed" if status.code == 200 else "prohibited")
                return Outcome.OK
            return code_outcome(status, 200, self.name, closing=CLOSING)
        if step in (Step.CAPABILITIES, Step.TLS_CAPABILITIES):
            if reply.block is None:
                if status.code in CLOSING:
                    return Outcome.CLOSING
                return Outcome.UNKNOWN
            self._capabilities(reply.block)
            if step is Step.TLS_CAPABILITIES:
                return Outcome.OK
            words = [item.upper().split() for item in reply.block]
            self._plaintext_login(any(
                (w[:1] == ["AUTHINFO"] and "USER" in w[1:])
                or (w[:1] == ["SASL"] and bool(PLAINTEXT_MECHANISMS & set(w[1:])))
                for w in words
            ))
            offered = any(w[:1] == ["STARTTLS"] for w in words)
            self._update(starttls_offered=offered)
            return Outcome.OFFERED if offered else Outcome.ABSENT
        return code_outcome(status, 382, self.name, closing=CLOSING)
