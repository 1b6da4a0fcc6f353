"""Drive a sans-IO STARTTLS dialogue (``tcpcli.protocols``) over a Socket, then upgrade.

The dialogue decides what to send and when the server said go; this module only moves
bytes, reads nothing it was not asked for (so nothing is buffered past the go-ahead), and
calls ``start_tls()`` on the Workers-style socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from tcpcli.core.errors import (
    ConnectTimeoutError,
    IdleTimeoutError,
    TcpcliError,
    map_exceptions,
)
from tcpcli.core.socket import Socket
from tcpcli.core.timing import REPLY_TIMEOUT
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.protocols.base import (
    NEED_DATA,
    Dialogue,
    DialogueReport,
    Done,
    ReadyForTls,
    Send,
)

#: Reads during a dialogue are small: a reply, never the TLS data behind it.
DIALOGUE_READ = 4096


@dataclass
class StartTlsResult:
    """What a STARTTLS upgrade gave: the TLS socket, the dialogue's report, what was sent."""

    socket: Socket  # the upgraded, "on" socket
    report: DialogueReport
    steps: list[str] = field(default_factory=list)  # what was sent, in order
    #: The dialogue failed after the upgrade (a re-query refused, a stream error, the
    #: server hanging up): TLS itself is up and reported; the caller decides what it means.
    after_tls_error: TcpcliError | None = None


class _ReplyDeadline:
    """One deadline per server reply, not per read: a server trickling a byte at a time
    must not keep the dialogue alive past ``timeout`` (slowloris)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._at: float | None = None
        self.partial = False  # some of the reply under way has arrived

    def remaining(self) -> float:
        """Seconds left for the reply under way, starting its clock on the first call."""
        if self._at is None:
            self._at = anyio.current_time() + self.timeout
        return max(0.0, self._at - anyio.current_time())

    def reply_complete(self) -> None:
        self._at = None
        self.partial = False


async def _feed(sock: Socket, dialogue: Dialogue, deadline: _ReplyDeadline) -> None:
    try:
        with anyio.fail_after(deadline.remaining()):
            data = await sock.readable.receive(DIALOGUE_READ)
    except anyio.EndOfStream:
        data = b""
    except TimeoutError:
        what = "reply still incomplete" if deadline.partial else "no reply"
        raise IdleTimeoutError(
            f"{dialogue.name}: {what} from {sock.address} after {deadline.timeout:g} s "
            f"(at step {getattr(dialogue, 'step', '?')})",
            target=str(sock.address), port=sock.address.port) from None
    deadline.partial = True
    with map_exceptions():  # the dialogue's errors become the core's
        dialogue.receive_data(data)


async def _drive(dialogue: Dialogue, sock: Socket, deadline: _ReplyDeadline,
                 steps: list[str], *, until: type[ReadyForTls | Done]) -> None:
    """Feed the dialogue the server's bytes and send what it asks to, until ``until``.

    Greetings and capabilities are the dialogue's report; nothing to do here."""
    while True:
        with map_exceptions():
            event = dialogue.next_event()
        if event is NEED_DATA:
            await _feed(sock, dialogue, deadline)
            continue
        deadline.reply_complete()
        if isinstance(event, Send):
            steps.append(event.step)
            await sock.writable.send(event.data)
        elif isinstance(event, until):
            return


async def run_starttls(sock: Socket, dialogue: Dialogue, *,
                       tls: TLSOptions | None = None,
                       reply_timeout: float = REPLY_TIMEOUT) -> StartTlsResult:
    """Run ``dialogue`` on a ``secure_transport="starttls"`` socket and upgrade it.

    Protocol errors (refused or absent STARTTLS, injected bytes, oversized replies) are
    raised from the dialogue as ``ProtocolError``s; TLS errors from the upgraded socket's
    ``opened``, whose handshake gets ``reply_timeout`` as any server reply does. After the
    upgrade the dialogue may re-query capabilities over TLS; an error
    there is not raised but returned (``after_tls_error``), with the upgraded socket.
    """
    steps: list[str] = []
    deadline = _ReplyDeadline(reply_timeout)
    with sock.clock.phase("starttls", protocol=dialogue.name) as phase:
        await _drive(dialogue, sock, deadline, steps, until=ReadyForTls)
        phase.detail["steps"] = list(steps)
    upgraded = sock.start_tls(tls=tls)
    try:
        # The handshake waits on the server's reply (its hello) like any dialogue step.
        with anyio.fail_after(reply_timeout):
            await upgraded.opened
    except TimeoutError:
        # Worded as the socket's own handshake timeout, which may end it first.
        raise ConnectTimeoutError(
            f"timed out after {reply_timeout:g} s in the TLS handshake with {sock.address}",
            target=str(sock.address), port=sock.address.port) from None
    with map_exceptions():
        dialogue.tls_established()
    deadline.reply_complete()
    try:
        await _drive(dialogue, upgraded, deadline, steps, until=Done)
    except TcpcliError as exc:
        return StartTlsResult(upgraded, dialogue.report, steps, after_tls_error=exc)
    return StartTlsResult(upgraded, dialogue.report, steps)
