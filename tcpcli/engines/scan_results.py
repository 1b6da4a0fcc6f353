"""What a scan reports: each port's state and the reason for it, the rows, the summary,
and the options that shape them.

The reading of a failed connect's errno comes from the core's one table
(:mod:`tcpcli.core.errnos`): :func:`port_state` only says what each class of errno means for
the port probed, so "refused" or "unreachable" mean the same in ``probe`` as in ``connect``.
:class:`Tally` is the one owner of the counts and the rows, shared by both ways of dialing.
"""

from __future__ import annotations

import functools
import socket
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, assert_never

from tcpcli.core.errnos import ErrnoClass, classify_errno, errno_name
from tcpcli.core.errors import TcpcliError
from tcpcli.core.policy import Decision
from tcpcli.data.services import port_name
from tcpcli.engines.scan_targets import HostPlan, Target
from tcpcli.record import Record, field

if TYPE_CHECKING:
    from tcpcli.core.tlsoptions import TLSOptions
    from tcpcli.protocols.banner import ServiceGuess

#: Default in-flight connects when the cap is lifted.
DEFAULT_CONCURRENCY: Final = 1024
#: Default per-port connect timeout (seconds).
DEFAULT_TIMEOUT: Final = 1.0
SELF_CONNECT_REASON: Final = ("self-connect (the source port was the port probed; nothing "
                              "listens)")


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    UNREACHABLE = "unreachable"
    BLOCKED = "blocked"


def port_state(kind: ErrnoClass) -> PortState:
    """What a class of errno from connect() says about the port probed."""
    match kind:
        case ErrnoClass.REFUSED:
            return PortState.CLOSED
        case ErrnoClass.TIMEOUT:
            return PortState.FILTERED
        case ErrnoClass.LOST:
            # These exist only once the handshake completed (a refused SYN is
            # ECONNREFUSED), so something listens there and hung up at once (tcpwrappers,
            # a full accept queue's abort, a service rejecting our address).
            return PortState.OPEN
        case ErrnoClass.UNREACHABLE | ErrnoClass.OUT_OF_SOCKETS | ErrnoClass.OTHER:
            return PortState.UNREACHABLE
        case _:
            assert_never(kind)


@functools.cache  # a scan meets a handful of errnos, some of them for every port
def connect_failure(code: int) -> tuple[PortState, str]:
    """A failed connect's errno -> the port's state and the reason shown beside it."""
    verdict = classify_errno(code)
    state = port_state(verdict.errno_class)
    if state is PortState.OPEN:
        return state, f"accepted, then {errno_name(code)}"
    return state, verdict.reason


def no_answer_reason(timeout: float) -> str:
    return f"no answer within {timeout:g} s"


def is_self_connect(local: object, remote: object) -> bool:
    """TCP simultaneous open with itself: connecting to a free ephemeral port on loopback
    can pick that very port as the source. Nothing listens there; it is never "open"."""
    if not isinstance(local, tuple) or not isinstance(remote, tuple):
        return False
    return local[:2] == remote[:2]


class ProbeResult(Record):
    """One (address, port) row."""

    host: str
    address: str
    port: int
    state: PortState
    reason: str
    latency_ms: float | None = None
    errno: int | None = None
    attempts: int = 1
    service: str = ""  # the conventional service on this port (a guess by number)
    rule: str | None = None  # the policy rule that blocked it
    lift: str | None = None
    workers_allowed: bool = False
    workers_rule: str = ""
    workers_reason: str = ""
    banner: str | None = None
    identified: str | None = None  # the service named from the banner
    identified_detail: str | None = None
    confidence: str | None = None  # high | medium | low
    tls: dict[str, Any] | None = None
    #: What the identification found (product, version, facts); None: nothing answered.
    identity: ServiceGuess | None = None
    #: What the kernel knew once the port answered (Linux TCP_INFO; ``kernel_facts``).
    tcp: dict[str, Any] | None = None
    #: The tunnel entry point dialed for this port (``--via``/``--via-map``).
    via: str | None = None

    def service_object(self) -> dict[str, Any] | None:
        """The JSON ``service``: what speaks here, and how that is known (the README's
        probe section documents it). None when neither an answer nor the port names one."""
        guess = self.identity
        if guess is None:
            if not self.service:
                return None
            return {"name": self.service, "confidence": "port default only"}
        facts = dict(guess.facts)
        service: dict[str, Any] = {"name": guess.name}
        for key, value in (("product", guess.product), ("version", guess.version),
                           ("info", guess.info)):
            if value:
                service[key] = value
        service["confidence"] = str(guess.how)
        if facts.get("tls") == "implicit":
            service["tunnel"] = "tls"
        service["detail"] = guess.detail
        if facts:
            service["facts"] = facts
        return service

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None}
        data["state"] = str(self.state)
        del data["service"]
        data.pop("identity", None)
        service = self.service_object()
        if service is not None:
            data["service"] = service
        return data


class ScanOptions(Record, frozen=True):
    """How a scan probes each port: timeouts, concurrency, rates, and what it reads."""

    timeout: float = DEFAULT_TIMEOUT
    retries: int = 0
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float | None = None  # new connects per second, overall
    host_rate: float | None = None  # new connects per second to any one address
    all_addresses: bool = False
    banner: bool = False
    banner_wait: float = 1.0
    tls_detect: bool = False
    family: int = socket.AF_UNSPEC
    local_address: str | None = None
    #: The run's TLS options (--ca-file, --sni, versions, ALPN) for the handshakes of
    #: --banner and --tls-detect, which run unverified but report the verdict.
    tls: TLSOptions | None = None
    #: Read the kernel's facts (TCP_INFO) of each open port's connection (probe -v, --json).
    kernel_facts: bool = False


class ScanSummary(Record):
    """What a whole scan found and what it took, for the summary line and event."""

    counts: Counter[str] = field(default_factory=Counter)
    probes: int = 0
    hosts: int = 0
    errors: list[TcpcliError] = field(default_factory=list)
    elapsed_ms: float = 0.0
    peak_sockets: int = 0
    #: The processes the scan ran in (``scan_shards``).
    processes: int = 1
    #: socket() failed for want of descriptors (EMFILE...) and the probe waited and retried.
    socket_backoffs: int = 0
    #: A name's further addresses, left unprobed (only the first is, unless all_addresses),
    #: as nmap's "Other addresses for NAME (not scanned)".
    unprobed: dict[str, list[str]] = field(default_factory=dict)


ResultSink = Callable[[ProbeResult], None]
ErrorSink = Callable[[Target, TcpcliError], None]


class Tally:
    """Counts every probe in the summary and passes the rows of the reported states on.

    ``report`` names the states passed to ``on_result``; the others are only counted
    (a 65,535-port scan need not build 65,530 "closed" rows nobody will read).
    """

    def __init__(self, on_result: ResultSink, report: frozenset[PortState],
                 on_error: ErrorSink | None = None) -> None:
        self.summary = ScanSummary()
        self.on_result = on_result
        self.report = report
        self.on_error = on_error

    def emit(self, plan: HostPlan, port: int, state: PortState, reason: str,
             **fields: Any) -> None:
        self.summary.probes += 1
        self.summary.counts[state] += 1
        if state not in self.report:
            return
        workers = plan.workers(port)
        result = ProbeResult(
            plan.host, plan.address_text, port, state,
            reason, service=port_name(port), workers_allowed=workers.allowed,
            workers_rule=workers.rule, workers_reason=workers.reason, **fields)
        self.on_result(result)

    def blocked(self, plan: HostPlan, port: int, decision: Decision) -> None:
        self.emit(plan, port, PortState.BLOCKED, f"policy rule {decision.rule}",
                  rule=decision.rule, lift=decision.lift or None)

    def open_result(self, plan: HostPlan, port: int, latency: float, attempt: int,
                    reason: str = "connected") -> ProbeResult | None:
        """Count an open port; build its row unless it is to be counted only."""
        if PortState.OPEN not in self.report:
            self.summary.probes += 1
            self.summary.counts[PortState.OPEN] += 1
            return None
        workers = plan.workers(port)
        return ProbeResult(plan.host, plan.address_text, port, PortState.OPEN, reason,
                           latency_ms=round(latency, 3), attempts=attempt,
                           service=port_name(port), workers_allowed=workers.allowed,
                           workers_rule=workers.rule, workers_reason=workers.reason)

    def finish_open(self, result: ProbeResult) -> None:
        """Count and pass on an open port's row, once its inspection (if any) is done."""
        self.summary.probes += 1
        self.summary.counts[PortState.OPEN] += 1
        self.on_result(result)

    def error(self, target: Target, error: TcpcliError) -> None:
        self.summary.errors.append(error)
        if self.on_error is not None:
            self.on_error(target, error)
