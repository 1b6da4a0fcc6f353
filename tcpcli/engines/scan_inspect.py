"""Inspection of open ports (``probe --banner``, ``--tls-detect``): what speaks, and TLS.

An open port's row waits for its inspection: the service named by
:class:`~tcpcli.engines.scan_identify.PortIdentifier` (its greeting, or the answers to
safe probes, several at once within the socket cap), then, with ``--tls-detect``, TLS
found by :class:`~tcpcli.engines.scan_tls.TlsDetector` (implicit, or STARTTLS in the
protocol found). ``--tls-detect`` identifies the service too: it decides which STARTTLS
to speak. Fresh connections go through the ``connect`` callable the scanner gives (its
connector path, with the out-of-descriptors back-off), and take socket slots from its room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import anyio
    import anyio.abc

    from tcpcli.core.destination import IPAddress
    from tcpcli.core.slots import SocketSlot
    from tcpcli.engines.scan_identify import PortIdentifier
    from tcpcli.engines.scan_limits import SocketRoom
    from tcpcli.engines.scan_results import ProbeResult, ResultSink, ScanOptions
    from tcpcli.engines.scan_targets import HostPlan

    #: Connect within the per-port timeout: the stream (None: no answer in time) and when
    #: the attempt started.
    Connect = Callable[[IPAddress, int],
                       Awaitable[tuple[anyio.abc.ByteStream | None, float]]]

#: How many bytes of a banner are kept.
BANNER_LIMIT: Final = 4096
#: Inspections at once, at most (each holds sockets, and some wait on a silent service).
MAX_INSPECTIONS: Final = 64

#: What a row identified as TLS says when the user did not ask for the handshake's facts.
TLS_DETECT_HINT: Final = "this port speaks TLS: add --tls-detect for its certificate verdict"


class PortInspector:
    """Inspects open ports, then hands each finished row to ``on_done``."""

    def __init__(self, options: ScanOptions, connect: Connect, room: SocketRoom,
                 on_done: ResultSink, concurrency: float) -> None:
        self.options = options
        self._connect = connect
        self._room = room
        self._on_done = on_done
        self._concurrency = concurrency
        self._limiter: anyio.CapacityLimiter | None = None  # made once a loop runs

    @property
    def wanted(self) -> bool:
        """Whether open ports are inspected at all (else their sockets close at once)."""
        return self.options.banner or self.options.tls_detect

    async def inspect(self, stream: anyio.abc.ByteStream, slot: SocketSlot | None,
                      plan: HostPlan, result: ProbeResult) -> None:
        """Name the service; detect TLS. The stream is closed and the slot released here."""
        from tcpcli.engines.scan_identify import PortIdentifier, close
        from tcpcli.engines.scan_tls import TlsDetector

        try:
            assert plan.address is not None
            name = None if plan.host == str(plan.address) else plan.host
            wait = self.options.banner_wait
            if self._limiter is None:
                import anyio

                self._limiter = anyio.CapacityLimiter(
                    max(1, min(self._concurrency, MAX_INSPECTIONS)))
            async with self._limiter:
                identifier = PortIdentifier(
                    connect=self._connect, room=self._room, address=plan.address,
                    port=result.port, name=name, wait=wait,
                    latency_s=(result.latency_ms or 0.0) / 1000, tls=self.options.tls)
                owned, slot = slot, None  # the identifier releases it
                await identifier.run(stream, owned)
                self._note(result, identifier)
                if self.options.tls_detect:
                    detector = TlsDetector(connect=self._connect, room=self._room,
                                           address=plan.address, port=result.port, name=name,
                                           wait=wait, timeout=self.options.timeout,
                                           tls=self.options.tls)
                    result.tls = await detector.run(identifier.guess, identifier.tls_report)
        except BaseException:
            await close(stream)
            raise
        finally:
            self._room.release(slot)
            self._room.freed()
            self._on_done(result)

    def _note(self, result: ProbeResult, identifier: PortIdentifier) -> None:
        """What the identification found, on the row."""
        if identifier.banner and _is_text(identifier.banner[:200]):
            result.banner = _printable(identifier.banner[:200])
        guess = identifier.guess
        if guess is None:
            return
        result.identity = guess
        result.identified = guess.name
        result.identified_detail = guess.detail or None
        if guess.fact("tls") == "implicit" and not self.options.tls_detect:
            result.identified_detail = "; ".join(
                part for part in (guess.detail, TLS_DETECT_HINT) if part)
        result.confidence = str(guess.confidence)


def _is_text(data: bytes) -> bool:
    """Mostly printable ASCII (line ends and tabs allowed): a greeting, not a record."""
    printable = sum(1 for b in data if 32 <= b < 127 or b in (9, 10, 13))
    return printable >= 0.9 * len(data)


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in data)
