"""A monotonic phase clock: every phase is timed from its own start to its own end.

Phases are never derived by subtracting one cumulative stamp from another (the httpstat
way), so a phase can't come out negative and overlapping phases (parallel happy-eyeballs
attempts) each keep their true duration.

A command's run starts before its clock does (the interpreter, imports, option parsing):
:func:`process_started_ns` says when, so a waterfall can name that time instead of losing it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: How long to wait for each server reply: a STARTTLS dialogue step, or the answer to
#: our TLS ClientHello (some servers never answer what they do not know). Here, with the
#: other clocks, so reading it imports no STARTTLS machinery.
REPLY_TIMEOUT = 10.0

#: The phases the core records, in the order they usually happen.
PHASES = ("resolve", "slot-wait", "connect", "proxy", "proxy-header", "starttls", "tls-setup",
          "tls", "first-byte", "close")


class Phase:
    """One timed step. ``start_ns``/``end_ns`` are time.perf_counter_ns() values. (A plain
    class: every run records phases, and a dataclass costs start-up more to build.)"""

    __slots__ = ("detail", "end_ns", "name", "outcome", "start_ns")

    def __init__(self, name: str, start_ns: int, end_ns: int | None = None,
                 outcome: str = "running", detail: dict[str, object] | None = None) -> None:
        self.name, self.start_ns, self.end_ns = name, start_ns, end_ns
        self.outcome = outcome  # "ok", or the error kind ("refused", "timeout", ...)
        self.detail: dict[str, object] = {} if detail is None else detail

    def __repr__(self) -> str:
        return (f"Phase(name={self.name!r}, start_ns={self.start_ns}, end_ns={self.end_ns}, "
                f"outcome={self.outcome!r}, detail={self.detail!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Phase):
            return NotImplemented
        return (self.name, self.start_ns, self.end_ns, self.outcome, self.detail) == (
            other.name, other.start_ns, other.end_ns, other.outcome, other.detail)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass would be

    @property
    def duration_ms(self) -> float | None:
        if self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / 1e6

    def offset_ms(self, origin_ns: int) -> float:
        """Start of the phase relative to the clock's origin."""
        return (self.start_ns - origin_ns) / 1e6


#: Called with ("start" | "end", phase) as phases begin and finish (JSON events, live views).
PhaseObserver = Callable[[str, Phase], None]


class PhaseClock:
    """Records phases for one connection (or one command run)."""

    def __init__(self, observer: PhaseObserver | None = None, origin_ns: int | None = None):
        self.origin_ns = time.perf_counter_ns() if origin_ns is None else origin_ns
        self.phases: list[Phase] = []
        self.observer = observer

    def now_ms(self) -> float:
        return (time.perf_counter_ns() - self.origin_ns) / 1e6

    def begin(self, name: str, /, **detail: object) -> Phase:
        phase = Phase(name, time.perf_counter_ns(), detail=detail)
        self.phases.append(phase)
        if self.observer is not None:
            self.observer("start", phase)
        return phase

    def end(self, phase: Phase, outcome: str = "ok", **detail: object) -> None:
        if phase.end_ns is not None:
            return
        phase.end_ns = time.perf_counter_ns()
        phase.outcome = outcome
        phase.detail.update(detail)
        if self.observer is not None:
            self.observer("end", phase)

    @contextmanager
    def phase(self, name: str, /, **detail: object) -> Iterator[Phase]:
        """Time the block; an exception ends the phase with its ``kind`` as the outcome."""
        current = self.begin(name, **detail)
        try:
            yield current
        except BaseException as exc:
            # Cancellation and KeyboardInterrupt are BaseExceptions, not Exceptions.
            fallback = "error" if isinstance(exc, Exception) else "cancelled"
            self.end(current, getattr(exc, "kind", fallback))
            raise
        self.end(current)

    def record(self, name: str, start_ns: int, /, **detail: object) -> Phase:
        """A phase that started at ``start_ns`` and ends now (known only afterwards to
        have been worth recording)."""
        phase = Phase(name, start_ns, detail=detail)
        self.phases.append(phase)
        if self.observer is not None:
            self.observer("start", phase)
        self.end(phase)
        return phase

    def find(self, name: str) -> list[Phase]:
        return [p for p in self.phases if p.name == name]

    def total_ms(self, name: str) -> float:
        """Sum of the finished phases with this name (e.g. all slot waits)."""
        return sum(p.duration_ms or 0.0 for p in self.find(name))



def process_started_ns() -> int | None:
    """When this process started, on ``time.perf_counter_ns()``'s clock; None where the
    system does not say (Linux does, in /proc/self/stat, to its clock tick: 10 ms).

    The kernel stamps the start on the boot-time clock; perf_counter is the monotonic one.
    Both advance together while the machine is awake, so the age measured on one is the age
    on the other.
    """
    try:
        with open("/proc/self/stat", "rb") as file:
            stat = file.read()
        # Field 22, counted after the command name, which may hold spaces and parentheses.
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        per_second = os.sysconf("SC_CLK_TCK")
        booted_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        now_ns = time.perf_counter_ns()
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    age_ns = booted_ns - ticks * 1_000_000_000 // per_second
    return now_ns - age_ns if age_ns >= 0 else None
