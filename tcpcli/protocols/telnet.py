"""Telnet START_TLS (option 46, draft-altman-telnet-starttls-02), sans-IO, as openssl does.

    S: IAC DO START_TLS                          (other options may be negotiated around it)
    C: IAC WILL START_TLS  IAC SB START_TLS FOLLOWS IAC SE
    S: IAC SB START_TLS FOLLOWS IAC SE           <- nothing may follow it in the buffer
    -- TLS --

Other options are declined (DO x → WONT x, WILL x → DONT x) until we have sent FOLLOWS;
after that the draft forbids us to send any telnet command until TLS is up.
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

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
START_TLS = 46
FOLLOWS = 1
VERBS = {DO: "DO", DONT: "DONT", WILL: "WILL", WONT: "WONT"}
OPTIONS = {
    0: "BINARY", 1: "ECHO", 3: "SGA", 5: "STATUS", 6: "TIMING-MARK", 24: "TTYPE", 31: "NAWS",
    32: "TSPEED", 33: "LFLOW", 34: "LINEMODE", 35: "XDISPLOC", 36: "OLD-ENVIRON",
    37: "AUTHENTICATION", 38: "ENCRYPT", 39: "NEW-ENVIRON", 46: "START_TLS",
}


def option_name(option: int) -> str:
    return OPTIONS.get(option, str(option))


@dataclass(frozen=True)
class Negotiation:
    """A telnet option negotiation: DO, DONT, WILL or WONT and the option."""

    verb: int  # DO, DONT, WILL, WONT
    option: int


@dataclass(frozen=True)
class Subnegotiation:
    """A telnet subnegotiation (SB ... SE): the option and its bytes."""

    option: int
    payload: bytes


@dataclass(frozen=True)
class Data:
    """Application bytes, with telnet's escaping undone."""

    data: bytes


@dataclass(frozen=True)
class Command:
    """Any other telnet command (IAC and one byte)."""

    code: int  # a two-byte IAC command: NOP, GA, AYT, ...


Unit = Negotiation | Subnegotiation | Data | Command


class Step(enum.Enum):
    NEGOTIATE = "negotiate"
    FOLLOWS = "follows"


class TelnetDialogue(TableDialogue[Unit]):
    """Telnet START_TLS."""

    name = "telnet"
    default_ports = (23,)
    server_speaks_first = True
    LOCKSTEP = False  # negotiation flows both ways at once

    FIRST = Step.NEGOTIATE
    AFTER_TLS = Goal.DONE
    TABLE: ClassVar[Table] = {
        # Rule 1 — IAC DO START_TLS → WILL START_TLS and our FOLLOWS. Text (a login prompt)
        # or DONT START_TLS before it → not offered.
        (Step.NEGOTIATE, Outcome.OFFERED): Step.FOLLOWS,
        (Step.NEGOTIATE, Outcome.ABSENT): Goal.NOT_OFFERED,
        # Rule 2 — the server's FOLLOWS → upgrade (the buffer must be empty); DONT
        # START_TLS or text instead → refused.
        (Step.FOLLOWS, Outcome.OK): Goal.UPGRADE,
        (Step.FOLLOWS, Outcome.NO): Goal.REFUSED,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._seen: list[str] = []
        self._reported = 0  # how many of _seen the report's capabilities hold
        self._size = 0  # bytes of negotiation so far: bounded by max_reply

    def _partial(self) -> bool:
        return bool(self._buffer)

    def _next_reply(self) -> Unit | None:
        buffer = self._buffer
        if not buffer:
            return None
        if buffer[0] != IAC:
            end = buffer.find(bytes([IAC]))
            end = len(buffer) if end < 0 else end
            return self._take(end, Data(bytes(buffer[:end])))
        if len(buffer) < 2:
            return None
        code = buffer[1]
        if code == IAC:
            return self._take(2, Data(b"\xff"))
        if code in VERBS:
            if len(buffer) < 3:
                return None
            return self._take(3, Negotiation(code, buffer[2]))
        if code == SB:
            end = buffer.find(bytes([IAC, SE]), 2)
            if end < 0:
                if len(buffer) > self.max_line:
                    raise LimitExceededError(
                        f"{self.name}: a subnegotiation is longer than {self.max_line} bytes"
                    )
                return None
            if end < 3:
                raise RemoteProtocolError(f"{self.name}: a subnegotiation without an option")
            payload = bytes(buffer[3:end]).replace(b"\xff\xff", b"\xff")
            return self._take(end + 2, Subnegotiation(buffer[2], payload))
        return self._take(2, Command(code))

    def _take(self, size: int, unit: Unit) -> Unit:
        del self._buffer[:size]
        self._size += size
        if self._size > self.max_reply:
            raise LimitExceededError(
                f"{self.name}: more than {self.max_reply} bytes of negotiation"
            )
        return unit

    def _command(self, step: enum.Enum) -> Send | None:
        if step is Step.FOLLOWS:
            return Send(
                bytes([IAC, WILL, START_TLS, IAC, SB, START_TLS, FOLLOWS, IAC, SE]),
                "WILL START_TLS + FOLLOWS",
            )
        return None

    def _classify(self, step: enum.Enum, reply: Unit) -> Outcome:
        if isinstance(reply, Data):
            self._last_text = printable(reply.data)
            if step is Step.NEGOTIATE:
                self._why = "the server sent text before asking for START_TLS"
                self._update(starttls_offered=False)
                self._negotiated()
                return Outcome.ABSENT
            return Outcome.NO
        if isinstance(reply, Command):
            return Outcome.WAIT
        if isinstance(reply, Subnegotiation):
            name = option_name(reply.option)
            self._last_text = f"IAC SB {name} ... IAC SE"
            if step is Step.FOLLOWS and reply.option == START_TLS:
                if reply.payload == bytes([FOLLOWS]):
                    if len(self._seen) > self._reported:
                        # Requests that came after DO START_TLS (C-Kermit's IKSD sends six
                        # at once): left unanswered, as the draft says, but reported.
                        self._negotiated()
                    return Outcome.OK
                raise RemoteProtocolError(
                    f"{self.name}: a START_TLS subnegotiation other than FOLLOWS"
                )
            return Outcome.WAIT
        verb, option = VERBS[reply.verb], option_name(reply.option)
        self._last_text = f"IAC {verb} {option}"
        self._seen.append(f"{verb} {option}")
        if reply.option == START_TLS:
            if reply.verb == DO and step is Step.NEGOTIATE:
                self._update(starttls_offered=True)
                self._negotiated()
                return Outcome.OFFERED
            if reply.verb in (DONT, WONT):
                self._update(starttls_offered=False)
                self._negotiated()
                return Outcome.ABSENT if step is Step.NEGOTIATE else Outcome.NO
            return Outcome.WAIT
        if step is Step.NEGOTIATE:
            # Decline every other option (RFC 1143: answer only requests to turn one on).
            if reply.verb == DO:
                self._emit(Send(bytes([IAC, WONT, reply.option]), f"WONT {option}"))
            elif reply.verb == WILL:
                self._emit(Send(bytes([IAC, DONT, reply.option]), f"DONT {option}"))
        return Outcome.WAIT

    def _negotiated(self) -> None:
        self._capabilities(self._seen)
        self._reported = len(self._seen)
