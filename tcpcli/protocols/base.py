"""The shared machinery of the sans-IO STARTTLS dialogues: events, report, errors, engine.

Like h11, nothing here does I/O. A dialogue is fed the bytes the server sent
(:meth:`Dialogue.receive_data`; ``b""`` means EOF) and asked what happened
(:meth:`Dialogue.next_event`): a greeting, a capability listing, bytes the client must
send now (:class:`Send`), the go-ahead to start TLS (:class:`ReadyForTls`), the end of the
dialogue (:class:`Done`), or :data:`NEED_DATA`. The caller owns the socket, the TLS layer
and the clock; the dialogue owns the protocol.

Each protocol is one :class:`TableDialogue`: a framer that cuts replies out of a bounded
buffer, a classifier that turns a reply into an :class:`Outcome` (and records what the
server advertised), and one transition table ``(step, outcome) -> step | Goal`` that is
the whole control flow. A missing table entry is a remote protocol error.

Two safety rules are enforced here, for every protocol, rather than in each one:

* Nothing may be buffered past the server's go-ahead. Bytes that arrive with (or after)
  the "220 Ready to start TLS" would be read by the TLS layer as plaintext the attacker
  chose (CVE-2011-0411, CVE-2021-23222); they raise :class:`ResponseInjectionError`.
* A refused or absent STARTTLS raises a :class:`StartTlsUnavailableError`; the dialogue
  never continues in plaintext.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Generic, NoReturn, TypeVar

from tcpcli.protocols.errors import (
    LimitExceededError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    ResponseInjectionError,
    SessionRefusedError,
    StartTlsNotOfferedError,
    StartTlsRefusedError,
)
from tcpcli.record import Record, field, replace

#: A line longer than this (without its line ending) is a remote protocol error.
DEFAULT_MAX_LINE: Final = 8192
#: A reply (all lines of a multi-line reply, one packet, one XML element) larger than this
#: is a remote protocol error.
DEFAULT_MAX_REPLY: Final = 65536
#: A dialogue may receive at most this many times ``max_reply`` bytes before TLS (and again
#: after it). It bounds the buffer however the bytes are chunked, and a flood of NOTICEs.
TOTAL_REPLIES: Final = 4
#: Server text shown in events, reports and error messages is cut to this many characters.
MAX_TEXT: Final = 300


# -- Events ---------------------------------------------------------------------------------


class NeedData(enum.Enum):
    """The sentinel type of :data:`NEED_DATA`."""

    NEED_DATA = "NEED_DATA"


#: Returned by :meth:`Dialogue.next_event` when it needs more bytes from the server.
NEED_DATA: Final = NeedData.NEED_DATA


class Greeting(Record, frozen=True):
    """The server's first words (banner), as printable text."""

    text: str


class Capabilities(Record, frozen=True):
    """What the server advertised, one printable item per capability."""

    items: tuple[str, ...]
    after_tls: bool = False


class Send(Record, frozen=True):
    """Bytes the client must send now, in order. ``step`` names them for a waterfall."""

    data: bytes
    step: str


class ReadyForTls(Record, frozen=True):
    """The server said go: start the TLS handshake now, then call ``tls_established()``.

    ``reply`` is the go-ahead's text ("" where the protocol has none, e.g. MySQL).
    """

    reply: str


class Done(Record, frozen=True):
    """The dialogue is over; further bytes belong to the application."""


Event = Greeting | Capabilities | Send | ReadyForTls | Done


class State(enum.Enum):
    """Where a dialogue is, as seen by its driver."""

    PLAINTEXT = "plaintext"  # talking before TLS
    UPGRADE = "upgrade"  # the go-ahead came: run the TLS handshake, read no plaintext
    AFTER_TLS = "after-tls"  # re-querying capabilities over TLS
    DONE = "done"
    FAILED = "failed"


# -- Report ---------------------------------------------------------------------------------


class DialogueReport(Record, frozen=True):
    """What the server advertised. ``None`` means "not known" (the server did not say)."""

    protocol: str
    greeting: str | None = None
    starttls_offered: bool | None = None
    capabilities_before: tuple[str, ...] | None = None
    capabilities_after: tuple[str, ...] | None = None
    #: A finding: a login that sends the password in clear was offered before TLS.
    plaintext_login_offered: bool | None = None
    #: The go-ahead's text (e.g. "220 2.0.0 Ready to start TLS").
    upgrade_reply: str | None = None
    #: Protocol-specific facts: server version, auth plugin, "starttls required", ...
    details: Mapping[str, str] = field(default_factory=dict)


# -- Text -----------------------------------------------------------------------------------


def printable(data: bytes | str, limit: int = MAX_TEXT) -> str:
    """Server text made safe for a terminal: UTF-8 (lenient), controls escaped, bounded.

    Everything a server says ends up on someone's screen; an escape sequence in a banner
    must not reach it raw.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    out: list[str] = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char == "\t":
            out.append(" ")
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    result = "".join(out)
    return result if len(result) <= limit else result[: limit - 1] + "…"


def check_token(value: str, what: str, *, max_length: int = 255, allow: str = "") -> str:
    """Validate a caller-supplied value that goes into a command line (no injection)."""
    if not value or len(value) > max_length:
        raise LocalProtocolError(f"{what} must be 1–{max_length} characters: {value!r}")
    for char in value:
        if not (char.isascii() and (char.isalnum() or char in "-._:[]" + allow)):
            raise LocalProtocolError(f"{what} contains a forbidden character: {value!r}")
    return value


# -- Dialogue -------------------------------------------------------------------------------


class Goal(enum.Enum):
    """Terminal targets of a transition table."""

    UPGRADE = "upgrade"  # go-ahead received: TLS now (nothing may be left in the buffer)
    DONE = "done"  # the post-TLS part is over
    NOT_OFFERED = "not-offered"
    REFUSED = "refused"
    SESSION_REFUSED = "session-refused"


class Outcome(enum.Enum):
    """What a reply meant, as far as the transition table is concerned."""

    OK = "ok"  # positive completion
    NO = "no"  # negative completion
    CLOSING = "closing"  # the server is ending the session (421, BYE, stream error)
    OFFERED = "offered"  # a capability listing that includes STARTTLS
    ABSENT = "absent"  # a capability listing without it
    UNKNOWN = "unknown"  # no capability listing: the query was not understood
    WAIT = "wait"  # informational (a NOTICE, an untagged line): stay in the step


class Dialogue(ABC):
    """One STARTTLS dialogue, driven by bytes. See the module docstring for the protocol.

    The first :meth:`next_event` returns :class:`Send` for protocols where the client
    speaks first (``server_speaks_first`` is False) and :data:`NEED_DATA` otherwise.
    """

    name: ClassVar[str]
    default_ports: ClassVar[tuple[int, ...]]
    server_speaks_first: ClassVar[bool]

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        if max_line < 16 or max_reply < max_line:
            raise LocalProtocolError("need 16 <= max_line <= max_reply")
        self.max_line = max_line
        self.max_reply = max_reply
        self.max_total = TOTAL_REPLIES * max_reply
        self._received = 0
        self._buffer = bytearray()
        self._eof = False
        self._events: deque[Event] = deque()
        self._state = State.PLAINTEXT
        self._error: ProtocolError | None = None
        self._pending_error: ProtocolError | None = None  # raised once _events are drained
        self._report = DialogueReport(protocol=self.name)

    # Public API --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def step(self) -> str:
        """The protocol's own step name (finer than :attr:`state`)."""
        return self._state.value

    @property
    def report(self) -> DialogueReport:
        return self._report

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the server; ``b""`` means the server closed its side (EOF)."""
        if self._state is State.FAILED or self._pending_error is not None:
            raise LocalProtocolError(f"{self.name}: the dialogue has already failed")
        if self._state is State.DONE:
            if data:
                raise LocalProtocolError(
                    f"{self.name}: the dialogue is over; these bytes belong to the application"
                )
            return
        if self._state is State.UPGRADE:
            if data:
                self._fail(ResponseInjectionError(
                    f"{self.name}: the server sent {len(data)} plaintext bytes after its"
                    " go-ahead, before the TLS handshake (response injection)"
                ))
            return
        if self._eof:
            if data:
                raise LocalProtocolError(f"{self.name}: data received after EOF")
            return
        if not data:
            self._eof = True
            return
        self._received += len(data)
        if self._received > self.max_total:
            self._fail(LimitExceededError(
                f"{self.name}: the server sent more than {self.max_total} bytes"
                f" {'after' if self._state is State.AFTER_TLS else 'before'} TLS"
            ))
        self._buffer += data

    def next_event(self) -> Event | NeedData:
        """The next event, or :data:`NEED_DATA`. Errors are raised here (h11 style).

        A :class:`Greeting` or :class:`Capabilities` that came with a failure (the
        listing that lacks STARTTLS) is returned first and the error raised by the call
        after it; a :class:`Send` queued with a failure is dropped.
        """
        if self._events:
            return self._events.popleft()
        if self._pending_error is not None:
            self._fail(self._pending_error)
        if self._error is not None:
            raise LocalProtocolError(
                f"{self.name}: the dialogue has already failed: {self._error}"
            )
        while not self._events:
            if self._state is State.UPGRADE:
                raise LocalProtocolError(
                    f"{self.name}: start TLS and call tls_established() first"
                )
            if self._state is State.DONE:
                return Done()
            try:
                progressed = self._advance()
            except ProtocolError as exc:
                # Report what the server said (greeting, capabilities), but send nothing
                # more once the dialogue is known to have failed.
                self._events = deque(
                    e for e in self._events if isinstance(e, Greeting | Capabilities)
                )
                if not self._events:
                    self._fail(exc)
                self._pending_error = exc
                break
            if not progressed:
                return NEED_DATA
        return self._events.popleft()

    def tls_established(self) -> None:
        """The TLS handshake finished: re-query capabilities where the protocol says so.

        Further events (:class:`Send` over TLS, :class:`Capabilities` with
        ``after_tls=True``, finally :class:`Done`) come from :meth:`next_event`.
        """
        if self._state is not State.UPGRADE or self._pending_error is not None:
            raise LocalProtocolError(
                f"{self.name}: tls_established() without a go-ahead (state {self._state.value})"
            )
        self._state = State.AFTER_TLS
        self._eof = False
        self._received = 0
        try:
            self._after_tls()
        except ProtocolError as exc:
            self._fail(exc)

    # For subclasses ----------------------------------------------------------------------

    @abstractmethod
    def _advance(self) -> bool:
        """Make progress from the buffer; False when more bytes are needed."""

    @abstractmethod
    def _after_tls(self) -> None:
        """Queue the post-TLS events."""

    def _fail(self, exc: ProtocolError) -> NoReturn:
        if self._error is None:
            self._error = exc
        self._pending_error = None
        self._state = State.FAILED
        raise exc

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _update(self, **changes: Any) -> None:
        self._report = replace(self._report, **changes)

    def _detail(self, key: str, value: str) -> None:
        self._update(details={**self._report.details, key: printable(value)})

    def _greeting(self, text: str) -> None:
        self._update(greeting=text)
        self._emit(Greeting(text))

    def _capabilities(self, items: list[str] | tuple[str, ...]) -> None:
        clean = tuple(printable(item) for item in items)
        after = self._state is State.AFTER_TLS
        if after:
            self._update(capabilities_after=clean)
        else:
            self._update(capabilities_before=clean)
        self._emit(Capabilities(clean, after_tls=after))

    def _plaintext_login(self, offered: bool | None) -> None:
        if self._state is State.PLAINTEXT:
            self._update(plaintext_login_offered=offered)


ReplyT = TypeVar("ReplyT")


#: A transition table: (step, outcome) -> the next step, or a Goal.
Table = Mapping[tuple[enum.Enum, Outcome], enum.Enum]


class TableDialogue(Dialogue, Generic[ReplyT]):
    """A dialogue whose control flow is one table: ``(step, Outcome) -> step | Goal``.

    Subclasses give ``FIRST`` (the step to enter at the start), ``AFTER_TLS`` (the step
    to enter after the handshake, or ``Goal.DONE``), ``TABLE``, and ``NO_REPLY`` for steps
    that expect no answer (where to go right after sending their command). Entering a
    step sends its :meth:`_command`. ``LOCKSTEP`` protocols never receive unsolicited
    data: bytes pending when a command is about to be sent are a protocol error.
    """

    FIRST: ClassVar[enum.Enum]
    AFTER_TLS: ClassVar[enum.Enum]
    TABLE: ClassVar[Table]
    NO_REPLY: ClassVar[Mapping[enum.Enum, enum.Enum]] = {}
    LOCKSTEP: ClassVar[bool] = True

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._step: enum.Enum = self.FIRST
        self._started = False
        self._last_text = ""  # the text of the last reply, for error messages
        self._why = ""  # why a goal was reached, for error messages

    @property
    def step(self) -> str:
        """The protocol's own step name (finer than :attr:`state`)."""
        return self._step.name.lower()

    @abstractmethod
    def _next_reply(self) -> ReplyT | None:
        """Cut one complete reply out of ``self._buffer``; None when incomplete."""

    @abstractmethod
    def _classify(self, step: enum.Enum, reply: ReplyT) -> Outcome:
        """What the reply means in this step; records greeting/capabilities on the way."""

    @abstractmethod
    def _command(self, step: enum.Enum) -> Send | None:
        """The bytes to send on entering ``step`` (None: the step only listens)."""

    def _partial(self) -> bool:
        """True while part of a reply has been consumed from the buffer."""
        return False

    def _first_step(self) -> enum.Enum:
        return self.FIRST

    def _advance(self) -> bool:
        if not self._started:
            self._started = True
            self._enter(self._first_step())
            return True
        reply = self._next_reply()
        if reply is None:
            if self._eof:
                where = "in the middle of a reply" if self._buffer or self._partial() else (
                    f"while we waited in step {self.step}"
                )
                raise RemoteProtocolError(
                    f"{self.name}: the server closed the connection {where}"
                )
            return False
        outcome = self._classify(self._step, reply)
        if outcome is Outcome.WAIT:
            return True
        target = self.TABLE.get((self._step, outcome))
        if target is None:
            raise RemoteProtocolError(
                f"{self.name}: unexpected reply in step {self.step}: {self._last_text}"
            )
        if outcome is Outcome.NO and self._state is State.AFTER_TLS and self._last_text:
            # The re-query over TLS was refused: why the capabilities after TLS are missing.
            self._detail("refused after tls", self._last_text)
        self._enter(target)
        return True

    def _after_tls(self) -> None:
        self._enter(self.AFTER_TLS)

    def _enter(self, target: enum.Enum) -> None:
        while not isinstance(target, Goal):
            self._step = target
            command = self._command(target)
            if command is not None:
                if self.LOCKSTEP and self._buffer:
                    raise RemoteProtocolError(
                        f"{self.name}: the server sent {len(self._buffer)} unsolicited bytes"
                        f" before our {command.step}: {printable(bytes(self._buffer[:80]))}"
                    )
                self._emit(command)
            following = self.NO_REPLY.get(target)
            if following is None:
                return
            target = following
        self._reach(target)

    def _reach(self, goal: Goal) -> None:
        why = f" ({self._why})" if self._why else ""
        said = f": {self._last_text}" if self._last_text else ""
        if goal is Goal.UPGRADE:
            if self._buffer:
                raise ResponseInjectionError(
                    f"{self.name}: the server sent {len(self._buffer)} more bytes with its"
                    " go-ahead, before the TLS handshake (response injection):"
                    f" {printable(bytes(self._buffer[:80]))}"
                )
            self._update(upgrade_reply=self._last_text)
            self._state = State.UPGRADE
            self._emit(ReadyForTls(self._last_text))
        elif goal is Goal.DONE:
            self._state = State.DONE
            self._emit(Done())
        elif goal is Goal.NOT_OFFERED:
            self._update(starttls_offered=False)
            raise StartTlsNotOfferedError(
                f"{self.name}: the server does not offer STARTTLS{why}"
            )
        elif goal is Goal.REFUSED:
            raise StartTlsRefusedError(f"{self.name}: the server refused STARTTLS{said}{why}")
        else:
            raise SessionRefusedError(f"{self.name}: the server refused the session{said}{why}")
