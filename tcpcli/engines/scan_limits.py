"""What holds a scan back: the pace of new connects (``--rate``, ``--host-rate``), the
invocation's socket slots (the six-socket cap, when not lifted) and the process's file
descriptors. Both ways of dialing, and the inspection of open ports, share these.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import TYPE_CHECKING, Final

from tcpcli.core.slots import SocketSlot, SocketSlots

#: How long a probe may go without being able to open any socket before giving up.
OUT_OF_SOCKETS_PATIENCE: Final = 10.0
#: File descriptors a scan leaves free for everything else the run opens.
FD_RESERVE: Final = 16

if TYPE_CHECKING:
    import anyio


class Pacer:
    """Connect start times spaced 1/rate apart overall (--rate) and per address
    (--host-rate, the politeness a single host is owed however many are scanned)."""

    #: Addresses remembered before the ones whose next start has passed are forgotten.
    PRUNE_AT = 4096

    def __init__(self, rate: float | None, host_rate: float | None) -> None:
        self.rate, self.host_rate = rate, host_rate
        self.active = bool(rate or host_rate)
        self._next = 0.0
        self._next_by_host: dict[str, float] = {}

    def ready_at(self, host: str) -> float:
        """When the next connect to ``host`` may start (monotonic seconds)."""
        return max(self._next, self._next_by_host.get(host, 0.0))

    def started(self, host: str, now: float) -> None:
        if self.rate:
            self._next = max(now, self._next) + 1 / self.rate
        if self.host_rate:
            by_host = self._next_by_host
            if len(by_host) >= self.PRUNE_AT:  # bounded memory over huge target lists
                for old in [key for key, at in by_host.items() if at <= now]:
                    del by_host[old]
            by_host[host] = max(now, by_host.get(host, 0.0)) + 1 / self.host_rate


class SocketRoom:
    """The invocation's socket slots as a scan takes them, and a wake-up for whoever waits
    for one of the scan's sockets to close (a connect through the connector, an inspection)
    because descriptors or the concurrency limit ran out."""

    def __init__(self, slots: SocketSlots) -> None:
        self.slots = slots
        self._freed: anyio.Event | None = None  # made by the first wait: a loop is running

    async def acquire(self) -> SocketSlot | None:
        """A slot, waiting for one under the cap; None when the cap is lifted (not counted)."""
        return await self.slots.acquire() if self.slots.limit is not None else None

    def release(self, slot: SocketSlot | None) -> None:
        if slot is not None:
            self.slots.release(slot)

    def freed(self) -> None:
        """One of the scan's sockets closed: wake whoever waits for room."""
        if self._freed is not None:
            self._freed.set()

    async def wait(self, timeout: float = 0.05) -> None:
        """Until a socket of ours closes, or ``timeout`` (the back-off when none will)."""
        import anyio

        freed = self._freed = anyio.Event()
        with anyio.move_on_after(timeout):
            await freed.wait()


def fd_budget() -> float:
    """Sockets a scan may hold at once: the soft RLIMIT_NOFILE, less the descriptors open
    already and ``FD_RESERVE`` (lazy imports, CA files and the like must still open)."""
    try:
        # The soft RLIMIT_NOFILE, as getrlimit() gives it, without importing ``resource``
        # (an extension module: a one-port probe's start-up would pay for its loading).
        soft = os.sysconf("SC_OPEN_MAX")
    except (AttributeError, OSError, ValueError):  # not POSIX
        return 256
    if soft < 0:  # no limit
        return math.inf
    return max(1, soft - _open_fds() - FD_RESERVE)


def _open_fds() -> int:
    for listing in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(listing))
    return 64 - FD_RESERVE  # unknown: assume a few dozen, as a generous margin
