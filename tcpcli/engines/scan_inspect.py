"""Banner and TLS inspection of open ports (``probe --banner``, ``--tls-detect``).

An open port's row waits for its inspection: what the service says first, the answers to
harmless probes when it says nothing (each further probe on a fresh connection, since a
probe spoils the session for the next), and an unverified TLS handshake on another fresh
connection. Fresh connections go through the ``connect`` callable the scanner gives (its
connector path, with the out-of-descriptors back-off), one socket slot at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc

from tcpcli.core.destination import IPAddress
from tcpcli.core.errors import PlaintextPeerError, TcpcliError
from tcpcli.core.slots import SocketSlot
from tcpcli.engines.scan_limits import SocketRoom
from tcpcli.engines.scan_results import ProbeResult, ResultSink, ScanOptions
from tcpcli.engines.scan_targets import HostPlan

#: How many bytes of a banner are kept.
BANNER_LIMIT: Final = 4096
#: Inspections at once, at most (each holds a socket, and some wait on a silent service).
MAX_INSPECTIONS: Final = 64

#: What a row identified as TLS says when the user did not ask for the handshake.
TLS_DETECT_HINT: Final = "this port speaks TLS: add --tls-detect for its version and certificate"

#: Connect within the per-port timeout: the stream (None: no answer in time) and when the
#: attempt started.
Connect = Callable[[IPAddress, int], Awaitable[tuple[anyio.abc.ByteStream | None, float]]]


class PortInspector:
    """Inspects open ports, then hands each finished row to ``on_done``."""

    def __init__(self, options: ScanOptions, connect: Connect, room: SocketRoom,
                 on_done: ResultSink, concurrency: float) -> None:
        self.options = options
        self._connect = connect
        self._room = room
        self._on_done = on_done
        self._limiter = anyio.CapacityLimiter(max(1, min(concurrency, MAX_INSPECTIONS)))

    @property
    def wanted(self) -> bool:
        """Whether open ports are inspected at all (else their sockets close at once)."""
        return self.options.banner or self.options.tls_detect

    async def inspect(self, stream: anyio.abc.ByteStream, slot: SocketSlot | None,
                       plan: HostPlan, result: ProbeResult) -> None:
        """Read what the service says (and answers to harmless probes); detect TLS."""
        try:
            async with self._limiter:
                more_probes: list[tuple[str, bytes]] = []
                try:
                    if self.options.banner:
                        more_probes = await self._read_banner(stream, result)
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.aclose_forcefully(stream)
                    # Give the slot back before any fresh connection asks for one: six
                    # inspections holding the six slots, each waiting for a seventh, would
                    # wait for ever under the Workers cap.
                    self._room.release(slot)
                    slot = None
                for probe, payload in more_probes:
                    if await self._probe_fresh(plan, result, probe, payload):
                        break
                if self.options.tls_detect:
                    await self._detect_tls(plan, result)
        finally:
            self._room.release(slot)
            self._room.freed()
            self._on_done(result)

    async def _read_banner(self, stream: anyio.abc.ByteStream,
                           result: ProbeResult) -> list[tuple[str, bytes]]:
        """The greeting; for a silent service, the answer to the likeliest harmless probe
        for its port (sent on this connection, which has carried nothing yet). Returns the
        probes still worth trying, each on a fresh connection, when that named nothing."""
        from tcpcli.protocols.banner import probes_for_silent_service

        data = await _read_some(stream, self.options.banner_wait)
        if data:
            self._note_reply(result, data, None, b"")
            return []
        host = result.host if result.host != result.address else "localhost"
        probes = probes_for_silent_service(result.port, host=host)
        if not probes:
            return []
        probe, payload = probes[0]
        try:
            await stream.send(payload)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return []
        data = await _read_some(stream, self.options.banner_wait)
        if data and self._note_reply(result, data, probe, payload):
            return []
        return probes[1:]

    async def _probe_fresh(self, plan: HostPlan, result: ProbeResult, probe: str,
                           payload: bytes) -> bool:
        """One more harmless probe on a new connection (a probe spoils the session for the
        next); True once a reply named the service."""
        assert plan.address is not None
        slot = await self._room.acquire()
        stream: anyio.abc.ByteStream | None = None
        try:
            stream, _ = await self._connect(plan.address, result.port)
            if stream is None:
                return False
            await stream.send(payload)
            data = await _read_some(stream, self.options.banner_wait)
            return bool(data) and self._note_reply(result, data, probe, payload)
        except (TcpcliError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        finally:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
            self._room.release(slot)

    def _note_reply(self, result: ProbeResult, data: bytes, probe: str | None,
                    payload: bytes) -> bool:
        """Record a reply on the row; True when it named the service (a TLS service
        without --tls-detect is named with the flag that would say more)."""
        from tcpcli.protocols.banner import identify

        # A text greeting is worth showing; a binary answer (a ServerHello, a CONNACK) is
        # unreadable escaped, and the identification already says what it was.
        if result.banner is None and _is_text(data[:200]):
            result.banner = _printable(data[:200])
        guess = identify(data, probe=probe, sent=payload, port=result.port)
        if guess is None:
            return False
        result.identified = guess.name
        result.identified_detail = guess.detail or None
        if guess.name == "tls" and not self.options.tls_detect:
            result.identified_detail = "; ".join(
                part for part in (guess.detail, TLS_DETECT_HINT) if part)
        result.confidence = str(guess.confidence)
        if _is_text(data[:200]):
            result.banner = _printable(data[:200])  # the reply that named it
        return True

    async def _detect_tls(self, plan: HostPlan, result: ProbeResult) -> None:
        """A fresh connection and an unverified handshake: version, subject, expiry."""
        from tcpcli.core.tls import TLSOptions, TLSStream

        assert plan.address is not None
        hostname = None if plan.host == str(plan.address) else plan.host
        slot = await self._room.acquire()
        stream: anyio.abc.ByteStream | None = None
        try:
            stream, _ = await self._connect(plan.address, result.port)
            if stream is None:
                raise TimeoutError
            with anyio.fail_after(self.options.timeout + self.options.banner_wait):
                tls = await TLSStream.wrap(stream, hostname=hostname,
                                           options=TLSOptions(insecure=True),
                                           target=f"{plan.host}:{result.port}",
                                           port=result.port)
            report = tls.report
            facts: dict[str, object] = {"detected": True, "version": report.version,
                                     "cipher": report.cipher}
            if report.chain:
                leaf = report.chain[0]
                facts.update(subject=leaf.subject, issuer=leaf.issuer,
                             not_after=leaf.not_after.isoformat(), days_left=leaf.days_left)
            result.tls = facts
            await anyio.aclose_forcefully(tls)
        except TimeoutError:
            result.tls = {"detected": False, "error": "no TLS answer in time"}
        except PlaintextPeerError as exc:
            result.tls = {"detected": False,
                          "error": f"not TLS: the server answered in plaintext: '{exc.banner}'"}
        except (TcpcliError, OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            result.tls = {"detected": False, "error": str(exc) or type(exc).__name__}
        finally:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
            self._room.release(slot)


async def _read_some(stream: anyio.abc.ByteStream, wait: float) -> bytes:
    """Up to BANNER_LIMIT bytes that arrive within ``wait`` seconds ("" on EOF/silence)."""
    data = bytearray()
    closed = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
    with anyio.move_on_after(wait), contextlib.suppress(*closed):
        data += await stream.receive(BANNER_LIMIT)
    if data:
        # A greeting may come in pieces: give the rest a moment, bounded in size and time.
        with anyio.move_on_after(0.05), contextlib.suppress(*closed):
            while len(data) < BANNER_LIMIT:
                data += await stream.receive(BANNER_LIMIT - len(data))
    return bytes(data)


def _is_text(data: bytes) -> bool:
    """Mostly printable ASCII (line ends and tabs allowed): a greeting, not a record."""
    printable = sum(1 for b in data if 32 <= b < 127 or b in (9, 10, 13))
    return printable >= 0.9 * len(data)


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in data)
