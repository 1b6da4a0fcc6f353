"""ManageSieve STARTTLS (RFC 5804 §2.2), sans-IO.

    S: "IMPLEMENTATION" "Dovecot Pigeonhole" / "SASL" "PLAIN LOGIN" / "STARTTLS" / ...
    S: OK "Dovecot ready."
    C: STARTTLS
    S: OK "Begin TLS negotiation now."          <- nothing may follow this in the buffer
    -- TLS --
    S: "IMPLEMENTATION" ... / OK                 <- RFC 5804: the server re-sends them unasked
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
from tcpcli.protocols.errors import LimitExceededError, RemoteProtocolError
from tcpcli.protocols.lines import PLAINTEXT_MECHANISMS, LineReader
from tcpcli.protocols.literals import LiteralLineReader, LogicalLine


class Step(enum.Enum):
    GREETING = "greeting"
    STARTTLS = "starttls"
    TLS_CAPABILITIES = "tls-capabilities"


@dataclass(frozen=True)
class SieveReply:
    """Capability lines (each a tuple of strings), then the status line."""

    capabilities: tuple[tuple[str, ...], ...]
    status: str  # OK, NO or BYE
    code: str
    text: str


class SieveDialogue(TableDialogue[SieveReply]):
    """ManageSieve STARTTLS."""

    name = "sieve"
    default_ports = (4190,)
    server_speaks_first = True

    FIRST = Step.GREETING
    AFTER_TLS = Step.TLS_CAPABILITIES
    TABLE: ClassVar[Table] = {
        # Rule 1 — the greeting is the capability listing ended by OK: "STARTTLS" listed →
        # STARTTLS; not listed → not offered; NO or BYE → the session is refused.
        (Step.GREETING, Outcome.OFFERED): Step.STARTTLS,
        (Step.GREETING, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.GREETING, Outcome.NO): Goal.SESSION_REFUSED,
        (Step.GREETING, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — STARTTLS: OK → upgrade (the buffer must be empty); NO/BYE → refused.
        (Step.STARTTLS, Outcome.OK): Goal.UPGRADE,
        (Step.STARTTLS, Outcome.NO): Goal.REFUSED,
        (Step.STARTTLS, Outcome.CLOSING): Goal.REFUSED,
        # Rule 3 — over TLS the server sends the capabilities again, unasked, ended by OK.
        (Step.TLS_CAPABILITIES, Outcome.OK): Goal.DONE,
        (Step.TLS_CAPABILITIES, Outcome.NO): Goal.DONE,
        (Step.TLS_CAPABILITIES, Outcome.CLOSING): Goal.SESSION_REFUSED,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._reader = LiteralLineReader(LineReader(self.name, max_line, max_reply))
        self._lines: list[tuple[str, ...]] = []
        self._size = 0

    def _partial(self) -> bool:
        return bool(self._lines) or self._reader.partial

    def _next_reply(self) -> SieveReply | None:
        while (line := self._reader.next(self._buffer)) is not None:
            self._size += len(line.text) + sum(len(lit) for lit in line.literals) + 2
            if self._size > self.max_reply:
                raise LimitExceededError(
                    f"{self.name}: a response is longer than {self.max_reply} bytes"
                )
            tokens = _tokens(line, self.name)
            if not tokens:
                raise RemoteProtocolError(f"{self.name}: empty response line")
            kind, first = tokens[0]
            if kind == "string":
                self._lines.append(tuple(value for _, value in tokens))
                continue
            status = first.upper()
            if kind != "atom" or status not in ("OK", "NO", "BYE"):
                raise RemoteProtocolError(
                    f"{self.name}: not a response line: {printable(line.text)}"
                )
            rest = tokens[1:]
            code = ""
            if rest and rest[0] == ("paren", "("):
                close = rest.index(("paren", ")")) if ("paren", ")") in rest else -1
                if close < 0:
                    raise RemoteProtocolError(f"{self.name}: unclosed response code")
                code = " ".join(value for _, value in rest[1:close])
                rest = rest[close + 1 :]
            text = " ".join(value for _, value in rest)
            reply = SieveReply(tuple(self._lines), status, printable(code), printable(text))
            self._lines = []
            self._size = 0
            return reply
        return None

    def _command(self, step: enum.Enum) -> Send | None:
        if step is Step.STARTTLS:
            return Send(b"STARTTLS\r\n", "STARTTLS")
        return None

    def _classify(self, step: enum.Enum, reply: SieveReply) -> Outcome:
        self._last_text = " ".join(
            part for part in (reply.status, f"({reply.code})" if reply.code else "", reply.text)
            if part
        )
        if reply.status == "BYE":
            return Outcome.CLOSING
        if reply.status == "NO":
            return Outcome.NO
        if step is Step.STARTTLS:
            return Outcome.OK
        items = [" ".join(value for value in line if value) for line in reply.capabilities]
        if step is Step.TLS_CAPABILITIES:
            self._capabilities(items)
            return Outcome.OK
        if reply.text:
            self._greeting(reply.text)
        self._capabilities(items)
        names = {line[0].upper(): line[1:] for line in reply.capabilities}
        for key in ("IMPLEMENTATION", "VERSION"):
            if names.get(key):
                self._detail(key.lower(), " ".join(names[key]))
        sasl = {word.upper() for value in names.get("SASL", ()) for word in value.split()}
        self._plaintext_login(bool(PLAINTEXT_MECHANISMS & sasl))
        offered = "STARTTLS" in names
        self._update(starttls_offered=offered)
        return Outcome.OFFERED if offered else Outcome.ABSENT


def _tokens(line: LogicalLine, name: str) -> list[tuple[str, str]]:
    """Atoms, quoted strings, literals and parentheses of one logical line."""
    data = line.text
    literals = list(line.literals)
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(data):
        char = data[i : i + 1]
        if char in (b" ", b"\t"):
            i += 1
        elif char in (b"(", b")"):
            tokens.append(("paren", char.decode()))
            i += 1
        elif char == b'"':
            value = bytearray()
            i += 1
            while True:
                if i >= len(data):
                    raise RemoteProtocolError(f"{name}: unterminated quoted string")
                byte = data[i : i + 1]
                if byte == b"\\" and i + 1 < len(data):
                    value += data[i + 1 : i + 2]
                    i += 2
                elif byte == b'"':
                    i += 1
                    break
                else:
                    value += byte
                    i += 1
            tokens.append(("string", printable(bytes(value))))
        elif char == b"{":
            end = data.find(b"}", i)
            if end < 0 or not literals:
                raise RemoteProtocolError(f"{name}: malformed literal")
            tokens.append(("string", printable(literals.pop(0))))
            i = end + 1
        else:
            start = i
            while i < len(data) and data[i : i + 1] not in (b" ", b"\t", b"(", b")", b'"', b"{"):
                i += 1
            tokens.append(("atom", printable(data[start:i])))
    return tokens
