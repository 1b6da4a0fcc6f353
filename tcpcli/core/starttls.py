"""Drive a sans-IO STARTTLS dialogue (``tcpcli.protocols``) over a Socket, then upgrade.

The rules (stepping, the per-reply deadline, nothing read past the go-ahead, the re-query
after TLS) are ``core.dialoguedriver``'s; this module only moves the bytes over the
event loop's Socket and calls ``start_tls()`` on it, Workers-style.
"""

from __future__ import annotations

import anyio

from tcpcli.core.dialoguedriver import (
    DIALOGUE_READ,
    StartTlsResult,
    drive_starttls,
)
from tcpcli.core.errors import ConnectTimeoutError
from tcpcli.core.socket import Socket
from tcpcli.core.timing import REPLY_TIMEOUT, PhaseClock
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.protocols.base import Dialogue

__all__ = ["DIALOGUE_READ", "REPLY_TIMEOUT", "SocketChannel", "StartTlsResult",
           "run_starttls"]


class SocketChannel:
    """A Socket as ``core.dialoguedriver`` reads and writes it."""

    def __init__(self, sock: Socket, *, tls: TLSOptions | None = None) -> None:
        self.socket = sock
        self.tls = tls  # for the upgraded socket (None: the socket's own options)

    @property
    def target(self) -> str:
        return str(self.socket.address)

    @property
    def port(self) -> int:
        return self.socket.address.port

    @property
    def clock(self) -> PhaseClock:
        return self.socket.clock

    async def receive(self, max_bytes: int, timeout: float) -> bytes:
        try:
            with anyio.fail_after(timeout):
                return await self.socket.readable.receive(max_bytes)
        except anyio.EndOfStream:
            return b""

    async def send(self, data: bytes) -> None:
        await self.socket.writable.send(data)
        self.socket.ack_promptly()  # a reply comes next

    async def start_tls(self, timeout: float) -> SocketChannel:
        sock = self.socket
        upgraded = sock.start_tls(tls=self.tls)
        try:
            with anyio.fail_after(timeout):
                await upgraded.opened
        except TimeoutError:
            # Worded as the socket's own handshake timeout, which may end it first.
            raise ConnectTimeoutError(
                f"timed out after {timeout:g} s in the TLS handshake with {sock.address}",
                target=str(sock.address), port=sock.address.port) from None
        return SocketChannel(upgraded)


async def run_starttls(sock: Socket, dialogue: Dialogue, *,
                       tls: TLSOptions | None = None,
                       reply_timeout: float = REPLY_TIMEOUT) -> StartTlsResult[Socket]:
    """Run ``dialogue`` on a ``secure_transport="starttls"`` socket and upgrade it.

    Protocol errors (refused or absent STARTTLS, injected bytes, oversized replies) are
    raised from the dialogue as ``ProtocolError``s; TLS errors from the upgraded socket's
    ``opened``, whose handshake gets ``reply_timeout`` as any server reply does. After the
    upgrade the dialogue may re-query capabilities over TLS; an error
    there is not raised but returned (``after_tls_error``), with the upgraded socket.
    """
    return await drive_starttls(SocketChannel(sock, tls=tls), dialogue,
                                reply_timeout=reply_timeout)
