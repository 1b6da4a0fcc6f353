"""Drive a sans-IO STARTTLS dialogue (``tcpcli.protocols``) over a channel, then upgrade.

The rules of a STARTTLS run live here once, whoever moves its bytes: the dialogue decides
what to send and when the server said go; this module feeds it what arrived, sends what it
asks for, reads nothing it was not asked for (so nothing is buffered past the go-ahead),
gives each server reply one deadline (slowloris), times the plaintext part as the
``starttls`` phase, has the channel upgraded, and runs the part after TLS, whose failure
is reported rather than raised.

Two channels move the bytes: ``core.starttls`` over the event loop's Socket, and
``core.blockingstarttls`` over a ``core.blocking`` connection for a run that starts no
event loop, where every await returns without suspending (``core.waits``). Neither anyio
nor the Socket is imported here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from tcpcli.core.errors import IdleTimeoutError, TcpcliError, map_exceptions
from tcpcli.protocols.base import NEED_DATA, Done, ReadyForTls, Send
from tcpcli.record import Record, field

if TYPE_CHECKING:
    from tcpcli.core.timing import PhaseClock
    from tcpcli.protocols.base import Dialogue, DialogueReport

#: Reads during a dialogue are small: a reply, never the TLS data behind it.
DIALOGUE_READ = 4096

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class Channel(Protocol):
    """A connection's bytes as a dialogue needs them."""

    @property
    def target(self) -> str:
        """The target as the user named it (host:port), for messages."""

    @property
    def port(self) -> int: ...

    @property
    def clock(self) -> PhaseClock: ...

    async def receive(self, max_bytes: int, timeout: float) -> bytes:
        """Up to ``max_bytes`` of what the server sent; ``b""`` at its EOF. TimeoutError
        when nothing came within ``timeout`` seconds."""

    async def send(self, data: bytes) -> None:
        """All of ``data``."""


class SecureChannel(Channel, Protocol[S_co]):
    """The channel after the upgrade, over the TLS socket the caller gets back."""

    @property
    def socket(self) -> S_co: ...


class PlainChannel(Channel, Protocol[S_co]):
    """The channel before the upgrade."""

    async def start_tls(self, timeout: float) -> SecureChannel[S_co]:
        """The TLS handshake over this connection, done: the server's hello is a reply
        like any other, so it gets ``timeout`` too (raising what the core raises when a
        handshake fails or times out)."""


class StartTlsResult(Record, Generic[S]):
    """What a STARTTLS upgrade gave: the TLS socket, the dialogue's report, what was sent."""

    socket: S  # the upgraded, "on" socket
    report: DialogueReport
    steps: list[str] = field(default_factory=list)  # what was sent, in order
    #: The dialogue failed after the upgrade (a re-query refused, a stream error, the
    #: server hanging up): TLS itself is up and reported; the caller decides what it means.
    after_tls_error: TcpcliError | None = None


class ReplyDeadline:
    """One deadline per server reply, not per read: a server trickling a byte at a time
    must not keep the dialogue alive past ``timeout`` (slowloris)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._at: float | None = None
        self.partial = False  # some of the reply under way has arrived

    def remaining(self) -> float:
        """Seconds left for the reply under way, starting its clock on the first call."""
        if self._at is None:
            self._at = time.monotonic() + self.timeout
        return max(0.0, self._at - time.monotonic())

    def reply_complete(self) -> None:
        self._at = None
        self.partial = False


async def first_words(channel: Channel, wait: float) -> bytes:
    """What the server says by itself within ``wait`` seconds, before we say anything
    (``--protocol auto`` decides by it): b"" for a silent server, or one that closed."""
    try:
        return await channel.receive(DIALOGUE_READ, wait)
    except TimeoutError:
        return b""


async def _feed(channel: Channel, dialogue: Dialogue, deadline: ReplyDeadline) -> None:
    try:
        data = await channel.receive(DIALOGUE_READ, deadline.remaining())
    except TimeoutError:
        what = "reply still incomplete" if deadline.partial else "no reply"
        raise IdleTimeoutError(
            f"{dialogue.name}: {what} from {channel.target} after {deadline.timeout:g} s "
            f"(at step {getattr(dialogue, 'step', '?')})",
            target=channel.target, port=channel.port) from None
    deadline.partial = True
    with map_exceptions():  # the dialogue's errors become the core's
        dialogue.receive_data(data)


async def _drive(dialogue: Dialogue, channel: Channel, deadline: ReplyDeadline,
                 steps: list[str], *, until: type[ReadyForTls | Done]) -> None:
    """Feed the dialogue the server's bytes and send what it asks to, until ``until``.

    Greetings and capabilities are the dialogue's report; nothing to do here."""
    while True:
        with map_exceptions():
            event = dialogue.next_event()
        if event is NEED_DATA:
            await _feed(channel, dialogue, deadline)
            continue
        deadline.reply_complete()
        if isinstance(event, Send):
            steps.append(event.step)
            try:
                await channel.send(event.data)
            except TcpcliError as exc:
                from tcpcli.core.errors import StreamClosedError  # (anyio: only here)

                if not isinstance(exc, StreamClosedError):
                    raise
                # The server closed before hearing us (the EOF --protocol auto's wait for
                # a greeting met closed our side): its next read tells the dialogue, which
                # names the step, as when the server closes at any other point.
        elif isinstance(event, until):
            return


async def drive_starttls(channel: PlainChannel[S], dialogue: Dialogue, *,
                         reply_timeout: float) -> StartTlsResult[S]:
    """Run ``dialogue`` over ``channel`` and upgrade it (see the module docstring).

    Protocol errors (refused or absent STARTTLS, injected bytes, oversized replies) are
    raised from the dialogue as ``ProtocolError``s; TLS errors from the upgrade, whose
    handshake gets ``reply_timeout`` as any server reply does. After the upgrade the
    dialogue may re-query capabilities over TLS; an error there is not raised but returned
    (``after_tls_error``), with the upgraded socket.
    """
    steps: list[str] = []
    deadline = ReplyDeadline(reply_timeout)
    with channel.clock.phase("starttls", protocol=dialogue.name) as phase:
        await _drive(dialogue, channel, deadline, steps, until=ReadyForTls)
        phase.detail["steps"] = list(steps)
    secure = await channel.start_tls(reply_timeout)
    with map_exceptions():
        dialogue.tls_established()
    deadline.reply_complete()
    try:
        await _drive(dialogue, secure, deadline, steps, until=Done)
    except TcpcliError as exc:
        return StartTlsResult(secure.socket, dialogue.report, steps, after_tls_error=exc)
    return StartTlsResult(secure.socket, dialogue.report, steps)
