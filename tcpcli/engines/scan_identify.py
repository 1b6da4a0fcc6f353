"""Service identification of an open port (``probe --banner``): what speaks there.

The scan's own connection listens first, for a short quiet period (a few round trips,
at least :data:`QUIET_MIN`): a server that greets (SSH, SMTP, FTP, IMAP, MySQL, ...) is
named from its greeting and asked its capability question on that connection. A silent
one gets the client-first probes of :mod:`tcpcli.protocols.service`, the usual one for
its port first but all of them in turn, :data:`PARALLEL` at a time: the first on the
scan's connection, the others each on a fresh one, since a probe spoils the session for
the next. The first probe whose own protocol answers ends the search (the others are
cancelled); an answer that names some other service by the way moves that service's probe
to the front. A port found to speak TLS gets a real (unverified) handshake, and what
speaks inside the TLS is identified the same way.

Every probe is bounded in bytes (by the probe) and in time here: ``banner_wait`` per reply,
:data:`CAP_REPLIES` replies' worth per probe. Sockets come from the scanner's connect
(its connector, its out-of-descriptors back-off) and slots from its room; a worker holds
at most one slot at a time and never waits for another while holding one, so inspections
under the Workers cap cannot starve each other.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from tcpcli.core.errors import TcpcliError
from tcpcli.engines.scan_limits import SocketRoom
from tcpcli.record import replace

if TYPE_CHECKING:
    from tcpcli.core.destination import IPAddress
    from tcpcli.core.slots import SocketSlot
    from tcpcli.core.tlsoptions import TLSOptions
    from tcpcli.core.tlsreport import TLSReport
    from tcpcli.protocols.banner import ServiceGuess
    from tcpcli.protocols.service import Finished, ServiceProbe

#: The shortest wait for a greeting before the client-first probes start.
QUIET_MIN: Final = 0.25
#: Connect round trips a greeting is given beyond that (a far server greets later).
QUIET_ROUND_TRIPS: Final = 4
#: Probes of one port in flight at once.
PARALLEL: Final = 4
#: A probe's time cap, in replies' worth of ``banner_wait``.
CAP_REPLIES: Final = 3
#: What a fresh connection's failure or a closed stream raises.
STREAM_ERRORS = (TcpcliError, OSError, anyio.EndOfStream, anyio.BrokenResourceError,
                 anyio.ClosedResourceError)
#: ALPN offered in the handshake of a port found to speak TLS.
ALPN: Final = ("h2", "http/1.1")

Connect = Callable[["IPAddress", int], Awaitable[tuple[anyio.abc.ByteStream | None, float]]]


@dataclass
class Found:
    """One probe's outcome, and the first text it read (the row's banner)."""

    probe: str
    finished: Finished
    first_reply: bytes


class PortIdentifier:
    """Identifies one open port; :attr:`guess` and :attr:`tls_report` hold the outcome."""

    def __init__(self, *, connect: Connect, room: SocketRoom, address: IPAddress,
                 port: int, name: str | None, wait: float, latency_s: float,
                 tls: TLSOptions | None = None) -> None:
        self._connect = connect
        self._room = room
        self._tls = tls
        self.address = address
        self.port = port
        #: The target's name (None for a literal address): the TLS server name.
        self.name = name
        self._probe_args: dict[str, Any] = {"host": name, "port": port,
                                            "address": str(address)}
        self.wait = wait
        self.quiet = min(wait, max(QUIET_MIN, QUIET_ROUND_TRIPS * latency_s))
        self.guess: ServiceGuess | None = None
        self.banner: bytes = b""
        #: The handshake of a port that speaks TLS: its report (for --tls-detect too).
        self.tls_report: TLSReport | None = None
        self._best: Found | None = None
        self._pending: deque[str] = deque()
        self._scope: anyio.CancelScope | None = None

    # ------------------------------------------------------------------ the whole port

    async def run(self, stream: anyio.abc.ByteStream, slot: SocketSlot | None) -> None:
        """Identify the port, starting on the scan's connection (closed and its slot
        released here, whatever happens)."""
        from tcpcli.protocols.service import GreetingProbe, client_first_probes

        searched = False
        try:
            first = await receive(stream, self.quiet)
            self.banner = first  # named or not, what the server said first is the banner
            if first:
                found = await self._drive("greeting", GreetingProbe(
                    **self._probe_args), stream, first)
                self._consider(found)
            else:
                self._pending = deque(client_first_probes(self.port))
                searched = True  # the search owns the stream and the slot now
                await self._search(stream, slot)
        finally:
            if not searched:
                await close(stream)
                self._room.release(slot)
        await self._deepen()

    async def _search(self, stream: anyio.abc.ByteStream, slot: SocketSlot | None) -> None:
        """The client-first probes, PARALLEL workers at a time, until one is sure."""
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            tg.start_soon(self._worker, stream, slot)
            for _ in range(PARALLEL - 1):
                tg.start_soon(self._worker, None, None)

    async def _worker(self, stream: anyio.abc.ByteStream | None,
                      slot: SocketSlot | None) -> None:
        from tcpcli.protocols.service import make_probe

        try:
            while self._pending:
                name = self._pending.popleft()
                if stream is None:
                    slot = await self._room.acquire()
                    stream = await self._fresh()
                    if stream is None:
                        self._room.release(slot)
                        slot = None
                        continue
                try:
                    found = await self._drive(name, make_probe(
                        name, **self._probe_args), stream, b"")
                finally:
                    await close(stream)
                    stream = None
                    self._room.release(slot)
                    slot = None
                self._consider(found)
        finally:
            if stream is not None:
                await close(stream)
            self._room.release(slot)

    def _consider(self, found: Found) -> None:
        """Keep the best answer; a sure one ends the search."""
        finished = found.finished
        self.banner = self.banner or found.first_reply  # some answer, even if unnamed
        if finished.suggests and finished.suggests in self._pending:
            self._pending.remove(finished.suggests)
            self._pending.appendleft(finished.suggests)
        if finished.guess is None:
            return
        if self._best is None or _rank(found) > _rank(self._best):
            self._best = found
        if not finished.by_the_way and _rank(found)[1] >= 2 and self._scope is not None:
            self._pending.clear()
            self._scope.cancel()

    # ------------------------------------------------------------------ after the search

    async def _deepen(self) -> None:
        """The follow-up of the winning probe, and what speaks inside TLS."""
        from tcpcli.protocols.service import make_probe, merge

        best = self._best
        if best is None:
            return
        self.banner = best.first_reply or self.banner
        guess = best.finished.guess
        assert guess is not None
        follow_up = best.finished.follow_up
        if follow_up:
            found = await self._on_fresh(follow_up, lambda: make_probe(
                follow_up, **self._probe_args))
            guess = merge(guess, found.finished.guess if found else None)
        if guess.name == "tls":
            guess = await self._inside_tls(guess)
        self.guess = guess

    async def _inside_tls(self, hello: ServiceGuess) -> ServiceGuess:
        """A real handshake (unverified, the verdict still computed), then the service
        inside: its greeting, or HEAD / (GET / where HEAD goes unanswered)."""
        from tcpcli.protocols.banner import Confidence, ServiceGuess
        from tcpcli.protocols.service import GreetingProbe, HttpGetProbe, HttpProbe

        inner: ServiceGuess | None = None
        async with self._tls_connection() as tls:
            if tls is None:
                return hello
            first = await receive(tls, self.quiet)
            if first:
                found = await self._drive("greeting", GreetingProbe(
                    **self._probe_args), tls, first)
                inner = found.finished.guess
            elif self.tls_report is not None and self.tls_report.alpn == "h2":
                inner = ServiceGuess("http", "HTTP/2 chosen by ALPN", Confidence.HIGH)
            else:
                found = await self._drive("http", HttpProbe(**self._probe_args),
                                          tls, b"")
                inner = found.finished.guess if found.first_reply else None
        if inner is None and self.tls_report is not None:
            async with self._tls_connection() as tls:
                if tls is not None:
                    found = await self._drive("http-get", HttpGetProbe(
                        **self._probe_args), tls, b"")
                    inner = found.finished.guess
        return self._wrapped(hello, inner)

    def _wrapped(self, hello: ServiceGuess, inner: ServiceGuess | None) -> ServiceGuess:
        from tcpcli.protocols.banner import ServiceGuess

        report = self.tls_report
        facts: list[tuple[str, str]] = [("tls", "implicit")]
        if report is not None:
            facts.append(("tls_version", report.version))
            if report.alpn:
                facts.append(("alpn", report.alpn))
            if report.chain:
                facts.append(("subject", report.chain[0].subject))
        else:
            facts += [fact for fact in hello.facts if fact[0] == "tls_version"]
        if inner is None or inner.name in ("tls", "echo"):
            return ServiceGuess("tls", hello.detail, hello.confidence, None, None, None,
                                tuple(facts))
        return ServiceGuess(inner.name, inner.detail, inner.confidence, inner.version,
                            inner.product, inner.info, (*facts, *inner.facts))

    @contextlib.asynccontextmanager
    async def _tls_connection(self) -> Any:
        """A fresh connection with the TLS handshake done (None when either failed); the
        first handshake's report is kept."""
        from tcpcli.core.tls import TLSStream

        slot = await self._room.acquire()
        stream = None
        tls: anyio.abc.ByteStream | None = None
        try:
            stream = await self._fresh()
            if stream is not None:
                with contextlib.suppress(*STREAM_ERRORS, TimeoutError), \
                        anyio.fail_after(self.wait * CAP_REPLIES):
                    wrapped = await TLSStream.wrap(
                        stream, hostname=self.name,
                        options=unverified(self._tls, alpn=(self._tls and self._tls.alpn) or ALPN),
                        target=f"{self.address}:{self.port}", port=self.port)
                    if self.tls_report is None:
                        self.tls_report = wrapped.report
                    tls = wrapped
            yield tls
        finally:
            if tls is not None:
                await close(tls)
            if stream is not None:
                await close(stream)
            self._room.release(slot)

    # ------------------------------------------------------------------ one probe

    async def _fresh(self) -> anyio.abc.ByteStream | None:
        try:
            stream, _ = await self._connect(self.address, self.port)
        except STREAM_ERRORS:
            return None
        return stream

    async def _on_fresh(self, name: str, make: Callable[[], ServiceProbe]) -> Found | None:
        """One probe on a fresh connection (None when it could not connect)."""
        slot = await self._room.acquire()
        stream = None
        try:
            stream = await self._fresh()
            if stream is None:
                return None
            return await self._drive(name, make(), stream, b"")
        finally:
            if stream is not None:
                await close(stream)
            self._room.release(slot)

    async def _drive(self, name: str, probe: ServiceProbe, stream: anyio.abc.ByteStream,
                     first: bytes) -> Found:
        """Run ``probe`` on ``stream`` (``first``: bytes already read from it), within
        ``banner_wait`` per reply and :data:`CAP_REPLIES` replies' worth in all."""
        return await drive(name, probe, stream, first, wait=self.wait,
                           cap=self.wait * CAP_REPLIES)


async def drive(name: str, probe: ServiceProbe, stream: anyio.abc.ByteStream, first: bytes,
                *, wait: float, cap: float) -> Found:
    """Run one probe over ``stream``: its sends, the server's bytes, its goodbye. Silence
    longer than ``wait``, a closed stream or ``cap`` running out end it like EOF."""
    from tcpcli.protocols.base import NEED_DATA, Send
    from tcpcli.protocols.service import Finished

    first_reply = first
    if first:
        probe.receive_data(first)
    with anyio.move_on_after(cap):
        while True:
            event = probe.next_event()
            if event is NEED_DATA:
                data = await receive(stream, wait, settle=False)
                first_reply = first_reply or data
                probe.receive_data(data)
            elif isinstance(event, Send):
                try:
                    await stream.send(event.data)
                except STREAM_ERRORS:
                    probe.receive_data(b"")
            else:
                assert isinstance(event, Finished)
                if event.farewell:
                    with contextlib.suppress(*STREAM_ERRORS), anyio.move_on_after(wait):
                        await stream.send(event.farewell)
                return Found(name, event, first_reply)
    return Found(name, probe.give_up(), first_reply)  # out of time: what it learned


async def receive(stream: anyio.abc.ByteStream, wait: float, *, settle: bool = True) -> bytes:
    """What arrives within ``wait`` seconds (b"" on silence, EOF or a broken stream);
    with ``settle``, the rest of a greeting sent in pieces, for a moment more."""
    data = bytearray()
    with anyio.move_on_after(wait), contextlib.suppress(*STREAM_ERRORS):
        data += await stream.receive(4096)
    if data and settle:
        with anyio.move_on_after(0.05), contextlib.suppress(*STREAM_ERRORS):
            while len(data) < 4096:
                data += await stream.receive(4096 - len(data))
    return bytes(data)


async def close(stream: anyio.abc.ByteStream) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.aclose_forcefully(stream)


def unverified(options: TLSOptions | None, **changes: Any) -> TLSOptions:
    """The run's TLS options for a handshake that must not fail on the certificate: the
    verdict is computed all the same (against --ca-file, for --sni), and reported."""
    from tcpcli.core.tlsoptions import TLSOptions

    return replace(options or TLSOptions(), insecure=True, pins=(), **changes)


def _rank(found: Found) -> tuple[int, int, int]:
    """Better answers rank higher: from the probe's own protocol, surer, more told."""
    from tcpcli.protocols.banner import Confidence

    guess = found.finished.guess
    assert guess is not None
    sure = {Confidence.HIGH: 2, Confidence.MEDIUM: 1}.get(guess.confidence, 0)
    told = (guess.product is not None) + (guess.version is not None)
    return (not found.finished.by_the_way, sure, told)
