"""IMAP STARTTLS (RFC 3501 §6.2.1, RFC 9051), sans-IO.

    S: * OK [CAPABILITY IMAP4rev1 ... STARTTLS LOGINDISABLED] Dovecot (Debian) ready.
    C: a1 STARTTLS                               <- the greeting carried the capabilities
    S: a1 OK Begin TLS negotiation now.          <- nothing may follow this in the buffer
    -- TLS --
    C: a2 CAPABILITY                             <- RFC 3501: discard what was learnt before
    S: * CAPABILITY IMAP4rev1 ... AUTH=PLAIN / a2 OK Pre-login capabilities listed

Without capabilities in the greeting the dialogue asks ``CAPABILITY`` first. Untagged
responses may come at any time and are skipped (``* BYE`` ends the session).
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
    printable,
)
from tcpcli.protocols.errors import RemoteProtocolError
from tcpcli.protocols.lines import LineReader
from tcpcli.protocols.literals import LiteralLineReader, LogicalLine


class Step(enum.Enum):
    GREETING = "greeting"
    CAPABILITY = "capability"
    STARTTLS = "starttls"
    TLS_CAPABILITY = "tls-capability"


class ImapDialogue(TableDialogue[LogicalLine]):
    """IMAP STARTTLS, with tags ``a1``, ``a2``, ... ."""

    name = "imap"
    default_ports = (143,)
    server_speaks_first = True
    LOCKSTEP = False  # untagged responses may arrive whenever the server likes

    FIRST = Step.GREETING
    AFTER_TLS = Step.TLS_CAPABILITY
    TABLE: ClassVar[Table] = {
        # Rule 1 — the greeting: "* OK" → CAPABILITY, or straight to STARTTLS when the
        # greeting lists capabilities. "* PREAUTH" → not offered (STARTTLS is only valid
        # before authentication). "* BYE" → the session is refused.
        (Step.GREETING, Outcome.OK): Step.CAPABILITY,
        (Step.GREETING, Outcome.OFFERED): Step.STARTTLS,
        (Step.GREETING, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.GREETING, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — CAPABILITY (tagged OK ends it): STARTTLS listed → STARTTLS; not listed →
        # not offered; no listing or NO/BAD → try STARTTLS anyway.
        (Step.CAPABILITY, Outcome.OFFERED): Step.STARTTLS,
        (Step.CAPABILITY, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.CAPABILITY, Outcome.UNKNOWN): Step.STARTTLS,
        (Step.CAPABILITY, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 3 — STARTTLS: tagged OK → upgrade (the buffer must be empty); NO/BAD → refused.
        (Step.STARTTLS, Outcome.OK): Goal.UPGRADE,
        (Step.STARTTLS, Outcome.NO): Goal.REFUSED,
        (Step.STARTTLS, Outcome.CLOSING): Goal.REFUSED,
        # Rule 4 — over TLS: CAPABILITY again; any tagged answer ends the dialogue.
        (Step.TLS_CAPABILITY, Outcome.OK): Goal.DONE,
        (Step.TLS_CAPABILITY, Outcome.UNKNOWN): Goal.DONE,
        (Step.TLS_CAPABILITY, Outcome.CLOSING): Goal.SESSION_REFUSED,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._reader = LiteralLineReader(LineReader(self.name, max_line, max_reply))
        self._tag_number = 0
        self._tag = b""
        self._caps: list[str] | None = None

    def _partial(self) -> bool:
        return self._reader.partial

    def _next_reply(self) -> LogicalLine | None:
        return self._reader.next(self._buffer)

    def _command(self, step: enum.Enum) -> Send | None:
        if step is Step.GREETING:
            return None
        verb = "STARTTLS" if step is Step.STARTTLS else "CAPABILITY"
        self._tag_number += 1
        self._tag = f"a{self._tag_number}".encode()
        self._caps = None
        return Send(self._tag + b" " + verb.encode() + b"\r\n", verb)

    def _classify(self, step: enum.Enum, reply: LogicalLine) -> Outcome:
        tag, _, rest = reply.text.partition(b" ")
        status, _, text = rest.partition(b" ")
        status = status.upper()
        self._last_text = printable(reply.text)
        if tag == b"+":
            raise RemoteProtocolError(f"{self.name}: unexpected continuation request")
        if tag == b"*":
            if status == b"BYE":
                return Outcome.CLOSING
            if step is Step.GREETING:
                return self._greeted(status, text)
            if status == b"CAPABILITY":
                self._caps = text.decode("ascii", "replace").split()
            return Outcome.WAIT
        if step is Step.GREETING or tag != self._tag:
            raise RemoteProtocolError(
                f"{self.name}: unexpected tagged response: {self._last_text}"
            )
        code, _ = _response_code(text)
        if status == b"OK" and self._caps is None and code[:1] == ["CAPABILITY"]:
            self._caps = code[1:]
        if step is Step.STARTTLS:
            if status == b"OK":
                return Outcome.OK
            if status in (b"NO", b"BAD"):
                return Outcome.NO
        elif status in (b"OK", b"NO", b"BAD"):
            if status != b"OK" or self._caps is None:
                return Outcome.UNKNOWN
            return self._listed(self._caps)
        raise RemoteProtocolError(f"{self.name}: not a tagged status: {self._last_text}")

    def _greeted(self, status: bytes, text: bytes) -> Outcome:
        code, words = _response_code(text)
        if status not in (b"OK", b"PREAUTH"):
            raise RemoteProtocolError(f"{self.name}: not a greeting: {self._last_text}")
        self._greeting(printable(words))
        if status == b"PREAUTH":
            self._why = "PREAUTH greeting: STARTTLS is only valid before authentication"
            return Outcome.ABSENT
        if code[:1] == ["CAPABILITY"]:
            return self._listed(code[1:])
        return Outcome.OK

    def _listed(self, caps: list[str]) -> Outcome:
        self._capabilities(caps)
        if self._step is Step.TLS_CAPABILITY:
            return Outcome.OK
        upper = {cap.upper() for cap in caps}
        self._plaintext_login(
            "LOGINDISABLED" not in upper or bool({"AUTH=PLAIN", "AUTH=LOGIN"} & upper)
        )
        offered = "STARTTLS" in upper
        self._update(starttls_offered=offered)
        return Outcome.OFFERED if offered else Outcome.ABSENT


def _response_code(text: bytes) -> tuple[list[str], bytes]:
    """``b"[CAPABILITY A B] text"`` -> ``(["CAPABILITY", "A", "B"], b"text")``."""
    if text.startswith(b"["):
        end = text.find(b"]")
        if end > 0:
            return text[1:end].decode("ascii", "replace").split(), text[end + 1 :].strip()
    return [], text
