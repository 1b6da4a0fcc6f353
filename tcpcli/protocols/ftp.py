"""FTP AUTH TLS (RFC 4217, FEAT per RFC 2389), sans-IO.

    S: 220 (vsFTPd 3.0.3)
    C: FEAT
    S: 211-Features: / AUTH TLS / PBSZ / PROT / UTF8 / 211 End
    C: AUTH TLS
    S: 234 Proceed with negotiation.            <- nothing may follow this in the buffer
    -- TLS --                                    (RFC 4217 asks for no re-query)

FTP multi-line replies carry free text between the first ``211-`` line and the final
``211 `` line (RFC 959 §4.2), so FEAT lines are read that way.
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
)
from tcpcli.protocols.lines import CodedReply, CodedReplyFramer, LineReader, code_outcome


class Step(enum.Enum):
    GREETING = "greeting"
    FEAT = "feat"
    AUTH = "auth"


class FtpDialogue(TableDialogue[CodedReply]):
    """FTP explicit TLS (AUTH TLS)."""

    name = "ftp"
    default_ports = (21,)
    server_speaks_first = True

    FIRST = Step.GREETING
    AFTER_TLS = Goal.DONE
    TABLE: ClassVar[Table] = {
        # Rule 1 — the greeting: 220 → FEAT (a 120 "ready in n minutes" is waited out);
        # 421 or another refusal → the session is refused.
        (Step.GREETING, Outcome.OK): Step.FEAT,
        (Step.GREETING, Outcome.NO): Goal.SESSION_REFUSED,
        (Step.GREETING, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — FEAT: "AUTH TLS" listed → AUTH TLS; not listed → not offered (RFC 4217
        # §6: a server supporting it MUST list it). FEAT not understood → try AUTH TLS.
        (Step.FEAT, Outcome.OFFERED): Step.AUTH,
        (Step.FEAT, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.FEAT, Outcome.UNKNOWN): Step.AUTH,
        (Step.FEAT, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 3 — AUTH TLS: 234 → upgrade (the buffer must be empty); 4xx/5xx → refused.
        (Step.AUTH, Outcome.OK): Goal.UPGRADE,
        (Step.AUTH, Outcome.NO): Goal.REFUSED,
        (Step.AUTH, Outcome.CLOSING): Goal.REFUSED,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._reader = LineReader(self.name, max_line, max_reply)
        self._framer = CodedReplyFramer(self._reader, ftp_style=True)

    def _partial(self) -> bool:
        return self._reader.reply_size > 0

    def _next_reply(self) -> CodedReply | None:
        return self._framer.next(self._buffer)

    def _command(self, step: enum.Enum) -> Send | None:
        if step is Step.FEAT:
            return Send(b"FEAT\r\n", "FEAT")
        if step is Step.AUTH:
            return Send(b"AUTH TLS\r\n", "AUTH TLS")
        return None

    def _classify(self, step: enum.Enum, reply: CodedReply) -> Outcome:
        self._last_text = reply.text
        if step is Step.GREETING:
            if reply.code == 120:
                return Outcome.WAIT
            outcome = code_outcome(reply, 220, self.name)
            if outcome is Outcome.OK:
                self._greeting(" ".join(reply.lines))
            return outcome
        if step is Step.FEAT:
            outcome = code_outcome(reply, 211, self.name)
            if outcome is not Outcome.OK:
                return Outcome.CLOSING if outcome is Outcome.CLOSING else Outcome.UNKNOWN
            features = [line.strip() for line in reply.lines[1:-1] if line.strip()]
            self._capabilities(features)
            offered = any(_is_auth_tls(feature) for feature in features)
            self._update(starttls_offered=offered)
            return Outcome.OFFERED if offered else Outcome.ABSENT
        return code_outcome(reply, 234, self.name)


def _is_auth_tls(feature: str) -> bool:
    """``AUTH TLS``, also the ``AUTH TLS;TLS-C;SSL`` list some servers print."""
    verb, _, args = feature.upper().partition(" ")
    return verb == "AUTH" and "TLS" in args.replace(";", " ").split()
