"""SMTP (RFC 5321, STARTTLS per RFC 3207) and LMTP (RFC 2033), sans-IO.

    S: 220 mail.example.com ESMTP Postfix (Debian/GNU)
    C: EHLO client.example.org
    S: 250-mail.example.com / 250-STARTTLS / ... / 250 CHUNKING
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS            <- nothing may follow this in the buffer
    -- TLS --
    C: EHLO client.example.org                  <- RFC 3207 §4.2: forget the old capabilities
    S: 250-mail.example.com / 250-AUTH PLAIN LOGIN / ...
"""

from __future__ import annotations

import enum
from typing import ClassVar

from tcpcli.protocols.base import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_REPLY,
    Goal,
    Outcome,
    Send,
    Table,
    TableDialogue,
    check_token,
)
from tcpcli.protocols.lines import (
    PLAINTEXT_MECHANISMS,
    CodedReply,
    CodedReplyFramer,
    LineReader,
    code_outcome,
)


class Step(enum.Enum):
    GREETING = "greeting"
    HELLO = "hello"
    STARTTLS = "starttls"
    TLS_HELLO = "tls-hello"


class SmtpDialogue(TableDialogue[CodedReply]):
    """SMTP STARTTLS. Option: ``ehlo_name`` (our name in EHLO; a domain or [address])."""

    name = "smtp"
    default_ports: ClassVar[tuple[int, ...]] = (25, 587)
    server_speaks_first = True
    HELLO: ClassVar[str] = "EHLO"

    FIRST = Step.GREETING
    AFTER_TLS = Step.TLS_HELLO
    TABLE: ClassVar[Table] = {
        # Rule 1 — the greeting: 220 → EHLO; 554 or 421 → the session is refused.
        (Step.GREETING, Outcome.OK): Step.HELLO,
        (Step.GREETING, Outcome.NO): Goal.SESSION_REFUSED,
        (Step.GREETING, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — EHLO: STARTTLS listed → ask for it. Not listed, or EHLO itself refused
        # (a HELO-only server has no extensions) → not offered; never go on in plaintext.
        (Step.HELLO, Outcome.OFFERED): Step.STARTTLS,
        (Step.HELLO, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.HELLO, Outcome.NO): Goal.NOT_OFFERED,
        (Step.HELLO, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 3 — STARTTLS: 220 → upgrade (the buffer must be empty); 454, 501, 5xx → refused.
        (Step.STARTTLS, Outcome.OK): Goal.UPGRADE,
        (Step.STARTTLS, Outcome.NO): Goal.REFUSED,
        (Step.STARTTLS, Outcome.CLOSING): Goal.REFUSED,
        # Rule 4 — over TLS: EHLO again; its answer gives the capabilities after TLS.
        (Step.TLS_HELLO, Outcome.OK): Goal.DONE,
        (Step.TLS_HELLO, Outcome.NO): Goal.DONE,
        (Step.TLS_HELLO, Outcome.CLOSING): Goal.SESSION_REFUSED,
    }

    def __init__(self, *, ehlo_name: str = "tcpcli.invalid", max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self.ehlo_name = check_token(ehlo_name, f"{self.HELLO} name")
        self._reader = LineReader(self.name, max_line, max_reply)
        self._framer = CodedReplyFramer(self._reader)

    def _next_reply(self) -> CodedReply | None:
        return self._framer.next(self._buffer)

    def _partial(self) -> bool:
        return self._reader.reply_size > 0

    def _command(self, step: enum.Enum) -> Send | None:
        if step in (Step.HELLO, Step.TLS_HELLO):
            return Send(f"{self.HELLO} {self.ehlo_name}\r\n".encode(), self.HELLO)
        if step is Step.STARTTLS:
            return Send(b"STARTTLS\r\n", "STARTTLS")
        return None

    def _classify(self, step: enum.Enum, reply: CodedReply) -> Outcome:
        self._last_text = reply.text
        if step is Step.GREETING:
            outcome = code_outcome(reply, 220, self.name)
            if outcome is Outcome.OK:
                self._greeting(" ".join(reply.lines))
            return outcome
        if step in (Step.HELLO, Step.TLS_HELLO):
            outcome = code_outcome(reply, 250, self.name)
            if outcome is not Outcome.OK:
                if step is Step.HELLO:
                    self._why = f"{self.HELLO} was refused: {reply.text}"
                return outcome
            keywords = list(reply.lines[1:])
            self._capabilities(keywords)
            if step is Step.TLS_HELLO:
                return Outcome.OK
            self._plaintext_login(_plaintext_auth(keywords))
            offered = any(k.upper().split()[:1] == ["STARTTLS"] for k in keywords)
            self._update(starttls_offered=offered)
            return Outcome.OFFERED if offered else Outcome.ABSENT
        return code_outcome(reply, 220, self.name)


def _plaintext_auth(keywords: list[str]) -> bool:
    """AUTH PLAIN/LOGIN advertised (also the pre-RFC ``AUTH=LOGIN`` spelling)."""
    for keyword in keywords:
        words = keyword.upper().replace("=", " ").split()
        if words[:1] == ["AUTH"] and PLAINTEXT_MECHANISMS & set(words[1:]):
            return True
    return False


class LmtpDialogue(SmtpDialogue):
    """LMTP STARTTLS: SMTP with LHLO (RFC 2033). Option: ``ehlo_name`` (our LHLO name)."""

    name = "lmtp"
    default_ports = (24,)
    HELLO = "LHLO"
