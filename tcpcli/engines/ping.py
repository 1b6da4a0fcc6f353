"""The engine behind ``tcpcli ping``: one handshake per round, watched over time.

Every round goes through the core's one checked path (:func:`tcpcli.core.socket.connect`):
the name is resolved again (every round, or every ``resolve_every`` rounds), every address
it resolves to is judged by the invocation's policy, and the dial passes the ``Connector``
seam — so a DNS flip to a refused address is refused on the round it happens, and
``--via``/``--proxy`` work as they do for ``connect``. A round is a TCP handshake, or a TLS
handshake (``secure_transport="on"``), or a STARTTLS dialogue and upgrade, then a graceful
close.

Rounds are sequential and paced from their intended start (``start + i × interval``), as
``ping`` paces its probes: a slow round delays the next one, never doubles up. The
latency recorded is the handshake time (TCP connect, plus TLS, plus the STARTTLS
dialogue), without DNS — what the service costs, not the resolver; resolution has its
own column.

No click and no rich here: the CLI renders :class:`Attempt` and :class:`PingStats`.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tcpcli.core.address import join_host_port
from tcpcli.engines.histogram import Histogram

if TYPE_CHECKING:
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.resolve import Resolution, Resolver
    from tcpcli.core.socket import Socket
    from tcpcli.core.timing import Phase

#: Percentiles in the summary, as ``ping`` users extend ``min/avg/max/mdev``.
PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(frozen=True)
class PingConfig:
    """One ping run: the target, how many rounds, how often, and what each round does."""

    address: str  # "host:port" as given
    count: int | None = None  # None: until the deadline or Ctrl-C
    interval: float = 1.0
    timeout: float = 2.0  # one round: resolve + dial + TLS/STARTTLS
    deadline: float | None = None  # the whole run
    resolve_every: int = 1
    secure_transport: Literal["off", "on", "starttls"] = "off"
    protocol: str | None = None  # the STARTTLS dialogue, with secure_transport "starttls"
    dialogue_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """One round: what was reached, how long it took, or why it failed."""

    seq: int
    ok: bool
    state: str  # "open" | "tls" | "starttls" when ok, else the error kind
    peer: str | None  # the address dialed, "ip:port" (or the entry point with via)
    addresses: tuple[str, ...]  # what the name resolved to this round (empty: not asked)
    resolved: bool  # resolved this round, rather than reusing the last answer
    time_ms: float | None  # the handshake: connect (+ TLS, + STARTTLS); None when failed
    connect_ms: float | None
    tls_ms: float | None
    resolve_ms: float | None
    rtt_ms: float | None  # the kernel's smoothed RTT after the handshake (Linux)
    tls_version: str | None = None
    verified: bool | None = None
    cert_days: int | None = None
    error: str | None = None


@dataclass
class PingStats:
    """Running totals, exact (``ping``'s mdev is the population standard deviation)."""

    sent: int = 0
    ok: int = 0
    histogram: Histogram = field(default_factory=Histogram)  # handshake times, ns
    failures: dict[str, int] = field(default_factory=dict)  # error kind -> count
    last_error_kind: str | None = None
    address_changes: int = 0
    #: Each part of the successful rounds (``connect.ms`` ...), ns: their medians are
    #: what a ``--expect connect.ms<50`` on a whole run checks.
    parts: dict[str, Histogram] = field(default_factory=dict)
    last_ok: Attempt | None = None
    started_ns: int = field(default_factory=time.perf_counter_ns)
    ended_ns: int | None = None

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    @property
    def loss_pct(self) -> float:
        return 100.0 * self.failed / self.sent if self.sent else 0.0

    @property
    def elapsed_ms(self) -> float:
        end = self.ended_ns if self.ended_ns is not None else time.perf_counter_ns()
        return (end - self.started_ns) / 1e6

    def add(self, attempt: Attempt) -> None:
        self.sent += 1
        if attempt.ok and attempt.time_ms is not None:
            self.ok += 1
            self.histogram.record(round(attempt.time_ms * 1e6))
            self.last_ok = attempt
            for name, ms in (("connect.ms", attempt.connect_ms), ("tls.ms", attempt.tls_ms),
                             ("resolve.ms", attempt.resolve_ms), ("rtt.ms", attempt.rtt_ms)):
                if ms is not None:
                    self.parts.setdefault(name, Histogram()).record(round(ms * 1e6))
        else:
            self.failures[attempt.state] = self.failures.get(attempt.state, 0) + 1
            self.last_error_kind = attempt.state

    def latency_ms(self) -> dict[str, float] | None:
        """min/avg/max/mdev and the percentiles, in ms; None before the first success."""
        h = self.histogram
        if h.count == 0:
            return None
        facts = {"min": h.min / 1e6, "avg": h.mean / 1e6, "max": h.max / 1e6,
                 "mdev": h.stdev / 1e6}
        for p in PERCENTILES:
            facts[f"p{p:g}"] = h.percentile(p) / 1e6
        return facts

    def facts(self) -> dict[str, object]:
        """The summary as ``--expect`` names it (loss in percent points, times in ms): the
        per-round parts as their medians, the TLS facts of the last successful round."""
        loss = self.loss_pct
        facts: dict[str, object] = {"sent": self.sent, "ok": self.ok, "failed": self.failed,
                                    "loss": int(loss) if loss.is_integer() else loss}
        facts.update(self.latency_ms() or {})
        for name, histogram in self.parts.items():
            facts[name] = histogram.percentile(50) / 1e6
        last = self.last_ok
        if last is not None and last.tls_version is not None:
            facts.update({"tls.version": last.tls_version, "verified": last.verified})
            if last.cert_days is not None:
                facts["cert.days"] = last.cert_days
        return facts


class ReusingResolver:
    """``--resolve-every N``: asks the real resolver on the first of every N rounds and
    answers the others from that answer, still judged by the policy each round."""

    def __init__(self, inner: Resolver, every: int) -> None:
        self._inner, self.every = inner, every
        self.fresh = True  # set per round by the engine
        #: This round's answer (asked or reused), even when the policy then refused it.
        self.answer: Resolution | None = None
        self.asked = False  # whether this round asked the real resolver
        self._last: dict[tuple[str, int], Resolution] = {}

    async def resolve(self, name: str, *, family: int = socket.AF_UNSPEC,
                      timeout: float | None = None) -> Resolution:
        key = (name, family)
        if not self.fresh and key in self._last:
            self.answer = self._last[key]
            return self.answer
        self.answer = await self._inner.resolve(name, family=family, timeout=timeout)
        self.asked = True
        self._last[key] = self.answer
        return self.answer


class Pinger:
    """Runs the rounds; ``on_attempt`` sees each as it ends, ``on_change`` each change in
    the set of addresses the name resolves to (old, new)."""

    def __init__(self, config: PingConfig, invocation: Invocation, *,
                 on_attempt: Callable[[Attempt], None],
                 on_change: Callable[[tuple[str, ...], tuple[str, ...]], None] | None = None,
                 fatal_first: frozenset[str] = frozenset()) -> None:
        self.config, self.invocation = config, invocation
        #: Error kinds that end the run when the first round meets them (raised as is):
        #: a refused target or a name that does not resolve, where no later round helps.
        self.fatal_first = fatal_first
        self.on_attempt, self.on_change = on_attempt, on_change
        self.stats = PingStats()
        self._addresses: tuple[str, ...] | None = None
        self.resolver = ReusingResolver(invocation.resolver, config.resolve_every)
        invocation.resolver = self.resolver

    async def run(self) -> PingStats:
        """Until ``count`` rounds, the deadline, or cancellation (Ctrl-C): the stats so
        far are kept in :attr:`stats` whichever ends it."""
        import anyio

        config = self.config
        self.stats.started_ns = start = time.perf_counter_ns()
        try:
            with anyio.move_on_after(config.deadline):
                seq = 0
                while config.count is None or seq < config.count:
                    due = start + round(seq * config.interval * 1e9)
                    wait = (due - time.perf_counter_ns()) / 1e9
                    if wait > 0:
                        await anyio.sleep(wait)
                    seq += 1
                    self.resolver.fresh = (seq - 1) % config.resolve_every == 0
                    self.resolver.answer, self.resolver.asked = None, False
                    attempt = await self._round(seq)
                    self.stats.add(attempt)
                    self.on_attempt(attempt)
        finally:
            self.stats.ended_ns = time.perf_counter_ns()
        return self.stats

    async def _round(self, seq: int) -> Attempt:
        import anyio

        from tcpcli.core.errors import TcpcliError, translate
        from tcpcli.core.socket import connect

        config = self.config
        sock = connect(config.address, secure_transport=config.secure_transport,
                       connect_timeout=config.timeout, invocation=self.invocation)
        state = {"off": "open", "on": "tls", "starttls": "starttls"}[config.secure_transport]
        ready = sock
        try:
            try:
                with anyio.fail_after(config.timeout):
                    await sock.opened
                    if config.secure_transport == "starttls":
                        ready = await self._starttls(sock)
            except TimeoutError:
                from tcpcli.core.errors import ConnectTimeoutError

                raise ConnectTimeoutError(
                    f"timed out after {config.timeout:g} s with {sock.address}",
                    target=str(sock.address), port=sock.address.port) from None
            rtt = ready.tcp_info()
            await ready.close()
        except TcpcliError as exc:
            await _abort(sock, ready)
            if seq == 1 and str(exc.kind) in self.fatal_first:
                raise
            return self._attempt(seq, sock, ready, ok=False, state=str(exc.kind),
                                 error=str(exc))
        except OSError as exc:
            await _abort(sock, ready)
            error = translate(exc, target=str(sock.address), port=sock.address.port,
                              phase="stream")
            kind = str(getattr(error, "kind", "error"))
            return self._attempt(seq, sock, ready, ok=False, state=kind, error=str(error))
        return self._attempt(seq, sock, ready, ok=True, state=state,
                             rtt_ms=None if rtt is None else _float(rtt.get("rtt_ms")))

    async def _starttls(self, sock: Socket) -> Socket:
        from tcpcli.core.starttls import run_starttls
        from tcpcli.protocols.registry import get_dialogue

        config = self.config
        assert config.protocol is not None
        dialogue = get_dialogue(config.protocol, **config.dialogue_options)
        result = await run_starttls(sock, dialogue, reply_timeout=config.timeout)
        if result.after_tls_error is not None:
            await result.socket.abort(result.after_tls_error)
            raise result.after_tls_error
        return result.socket

    def _attempt(self, seq: int, sock: Socket, ready: Socket, *, ok: bool, state: str,
                 error: str | None = None, rtt_ms: float | None = None) -> Attempt:
        phases = list(sock.clock.phases) + (list(ready.clock.phases) if ready is not sock
                                            else [])
        resolution = self.resolver.answer
        addresses: tuple[str, ...] = ()
        if resolution is not None:
            addresses = tuple(str(a) for a in resolution.addresses)
            self._note_change(addresses)
        peer = None
        if sock.peer_address is not None:
            peer = join_host_port(*sock.peer_address)
        else:  # failed: the last address it tried to dial, as ping names the host it lost
            tried = [p for p in phases if p.name in ("connect", "proxy") and "address" in p.detail]
            if tried:
                peer = join_host_port(str(tried[-1].detail["address"]),
                                      int(str(tried[-1].detail.get("port", sock.address.port))))
        connect_ms = _last_ok(phases, "connect")
        proxies_ms = _total(phases, "proxy")  # each proxy's answer, when going through some
        tls_ms = _last_ok(phases, "tls")
        starttls_ms = _last_ok(phases, "starttls")
        time_ms = None
        if ok:
            time_ms = sum(ms for ms in (connect_ms, proxies_ms, tls_ms, starttls_ms)
                          if ms is not None)
        report = ready.tls_report
        return Attempt(
            seq=seq, ok=ok, state=state, peer=peer, addresses=addresses,
            resolved=self.resolver.asked,
            time_ms=time_ms, connect_ms=connect_ms, tls_ms=tls_ms,
            resolve_ms=_total(phases, "resolve"), rtt_ms=rtt_ms,
            tls_version=report.version if report is not None else None,
            verified=report.verification.verified if report is not None else None,
            cert_days=report.chain[0].days_left if report is not None and report.chain
            else None,
            error=error)

    def _note_change(self, addresses: tuple[str, ...]) -> None:
        if not addresses:
            return
        before = self._addresses
        self._addresses = addresses
        if before is not None and set(before) != set(addresses):
            self.stats.address_changes += 1
            if self.on_change is not None:
                self.on_change(before, addresses)


async def _abort(sock: Socket, ready: Socket) -> None:
    import anyio

    with anyio.CancelScope(shield=True):
        for each in {id(sock): sock, id(ready): ready}.values():
            await each.abort()


def _last_ok(phases: list[Phase], name: str) -> float | None:
    done = [p.duration_ms for p in phases if p.name == name and p.outcome == "ok"]
    return done[-1] if done and done[-1] is not None else None


def _total(phases: list[Phase], name: str) -> float | None:
    times = [p.duration_ms for p in phases if p.name == name and p.duration_ms is not None]
    return sum(times) if times else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
