"""Drive a sans-IO STARTTLS dialogue (``tcpcli.protocols``) over a Socket, then upgrade.

The dialogue decides what to send and when the server said go; this module only moves
bytes, reads nothing it was not asked for (so nothing is buffered past the go-ahead), and
calls ``start_tls()`` on the Workers-style socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from tcpcli.core.errors import IdleTimeoutError
from tcpcli.core.socket import Socket
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.protocols.base import (
    NEED_DATA,
    Capabilities,
    Dialogue,
    DialogueReport,
    Done,
    Greeting,
    ReadyForTls,
    Send,
)

#: Reads during a dialogue are small: a reply, never the TLS data behind it.
DIALOGUE_READ = 4096
#: How long to wait for each server reply (the dialogues have no clock of their own;
#: some servers never answer a STARTTLS they do not know).
REPLY_TIMEOUT = 10.0


@dataclass
class StartTlsResult:
    socket: Socket  # the upgraded, "on" socket
    report: DialogueReport
    steps: list[str] = field(default_factory=list)  # what was sent, in order


async def _feed(sock: Socket, dialogue: Dialogue, timeout: float) -> None:
    try:
        with anyio.fail_after(timeout):
            data = await sock.readable.receive(DIALOGUE_READ)
    except anyio.EndOfStream:
        data = b""
    except TimeoutError:
        raise IdleTimeoutError(
            f"{dialogue.name}: no reply from {sock.address} within {timeout:g} s "
            f"(at step {getattr(dialogue, 'step', '?')})",
            target=str(sock.address), port=sock.address.port) from None
    dialogue.receive_data(data)


async def run_starttls(sock: Socket, dialogue: Dialogue, *,
                       tls: TLSOptions | None = None,
                       reply_timeout: float = REPLY_TIMEOUT) -> StartTlsResult:
    """Run ``dialogue`` on a ``secure_transport="starttls"`` socket and upgrade it.

    Protocol errors (refused or absent STARTTLS, injected bytes, oversized replies) are
    raised from the dialogue as ``ProtocolError``s; TLS errors from the upgraded socket's
    ``opened``. After the upgrade the dialogue may re-query capabilities over TLS.
    """
    steps: list[str] = []
    current = sock
    with sock.clock.phase("starttls", protocol=dialogue.name) as phase:
        while True:
            event = dialogue.next_event()
            if event is NEED_DATA:
                await _feed(current, dialogue, reply_timeout)
            elif isinstance(event, Send):
                steps.append(event.step)
                await current.writable.send(event.data)
            elif isinstance(event, Greeting | Capabilities):
                continue
            elif isinstance(event, ReadyForTls):
                phase.detail["steps"] = list(steps)
                break
            elif isinstance(event, Done):  # pragma: no cover - a dialogue ends after TLS
                break
    upgraded = sock.start_tls(tls=tls)
    await upgraded.opened
    dialogue.tls_established()
    while True:
        event = dialogue.next_event()
        if event is NEED_DATA:
            await _feed(upgraded, dialogue, reply_timeout)
        elif isinstance(event, Send):
            steps.append(event.step)
            await upgraded.writable.send(event.data)
        elif isinstance(event, Done):
            break
    return StartTlsResult(upgraded, dialogue.report, steps)
