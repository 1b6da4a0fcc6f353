"""The six-socket cap of an invocation: its slots, its FIFO queue and its deadlock rule.

Workers (limits page, spec §5.1) lets an invocation hold six connections at once; further
connects queue until one closes. This module knows nothing about sockets beyond
:class:`SlotHolder`, so the rule can be tested and reasoned about on its own.
"""

from __future__ import annotations

from typing import Protocol

import anyio

#: The Workers limit on simultaneous open connections per invocation (limits page).
WORKERS_MAX_SOCKETS = 6


class SlotHolder(Protocol):
    """What the deadlock rule needs of whoever holds a slot."""

    @property
    def io_in_progress(self) -> int:
        """Reads and writes now under way (non-zero: not idle)."""

    @property
    def last_used_ns(self) -> int:
        """When the holder was last used (``time.perf_counter_ns``): the LRU order."""

    async def cancel_for_limit(self) -> None:
        """Evicted to unblock the queue: tear down now and give the slot back."""


class SocketSlot:
    """One of the invocation's simultaneous-connection slots."""

    __slots__ = ("owner", "released")

    def __init__(self) -> None:
        self.owner: SlotHolder | None = None  # set once a dial attempt becomes a Socket
        self.released = False


class SocketSlots:
    """The per-invocation cap on simultaneous sockets (Workers: 6, queued beyond that).

    Waiters queue in FIFO order. The limits page's deadlock rule is kept: when connects
    are queued and no open socket has a read or write in progress, the least recently
    used open socket is canceled so the queue can move.
    """

    def __init__(self, limit: int | None = WORKERS_MAX_SOCKETS) -> None:
        if limit is not None and limit < 1:
            raise ValueError("max_sockets must be at least 1 (or None for no cap)")
        self.limit = limit
        self.held: list[SocketSlot] = []
        self._waiters: list[anyio.Event] = []
        self.peak = 0

    @property
    def live(self) -> int:
        return len(self.held)

    def _free(self) -> bool:
        return self.limit is None or len(self.held) < self.limit

    def _take(self) -> SocketSlot:
        slot = SocketSlot()
        self.held.append(slot)
        self.peak = max(self.peak, len(self.held))
        return slot

    def try_acquire(self) -> SocketSlot | None:
        if self._free() and not self._waiters:
            return self._take()
        return None

    async def acquire(self) -> SocketSlot:
        slot = self.try_acquire()
        if slot is not None:
            return slot
        event = anyio.Event()
        self._waiters.append(event)
        try:
            while True:
                if self._free() and self._waiters[0] is event:
                    self._waiters.pop(0)
                    slot = self._take()
                    self._wake_next()
                    return slot
                if self._waiters[0] is event:
                    await self._cancel_idle_socket()
                await event.wait()
                event = self._rearm(event)
        except BaseException:
            if event in self._waiters:
                self._waiters.remove(event)
            self._wake_next()
            raise

    def _rearm(self, old: anyio.Event) -> anyio.Event:
        new = anyio.Event()
        index = self._waiters.index(old)
        self._waiters[index] = new
        return new

    def release(self, slot: SocketSlot) -> None:
        if slot.released:
            return
        slot.released = True
        self.held.remove(slot)
        self._wake_next()

    def notify_idle(self) -> None:
        """A socket finished a read or write: queued connects may now apply the LRU rule."""
        if self._waiters:
            self._waiters[0].set()

    def _wake_next(self) -> None:
        if self._waiters:
            self._waiters[0].set()

    async def _cancel_idle_socket(self) -> None:
        owners = [slot.owner for slot in self.held]
        if not owners or any(owner is None or owner.io_in_progress for owner in owners):
            return  # a dial attempt or an I/O is under way: it will free or use its slot
        victim = min((o for o in owners if o is not None), key=lambda o: o.last_used_ns)
        await victim.cancel_for_limit()
