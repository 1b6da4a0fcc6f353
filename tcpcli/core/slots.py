"""The six-socket cap of an invocation: its slots, its FIFO queue and its deadlock rule.

Workers (limits page, spec §5.1) lets an invocation hold six connections at once; further
connects queue until one closes. And "if the Worker has pending connection attempts but has
no in-progress reads or writes on the connections that it already has open — then the
least-recently-used open connection will be canceled to unblock the Worker".

The rule is re-checked whenever it may have become true, never by polling: the head of the
queue sleeps until a holder reports a change (it opened, an I/O ended, it was handed over)
or a slot comes back, then looks again. What counts:

* A holder is *open* when its connection is established — TCP connected and, with TLS,
  the handshake done — and it is not closing. Only open holders may be canceled.
* A slot whose holder is not open (a dial attempt with no holder yet, a TLS handshake, a
  start_tls hand-over, a close under way) is work in progress that will change state on
  its own, so the rule waits for it instead of canceling some other socket meanwhile.
  Slots taken outside the socket model (``owner`` None: the scan and bench engines) count
  the same way: their users give them back.
* The rule fires only when every held slot's holder is open with no read or write in
  progress; it cancels the one used least recently.

This module knows nothing about sockets beyond :class:`SlotHolder`.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

#: The Workers limit on simultaneous open connections per invocation (limits page).
WORKERS_MAX_SOCKETS = 6


class SlotHolder(Protocol):
    """What the deadlock rule needs of whoever holds a slot."""

    @property
    def is_open(self) -> bool:
        """Established (TLS handshake included) and not closing: one of "the connections
        it already has open"."""

    @property
    def io_in_progress(self) -> int:
        """Reads and writes under way now; non-zero keeps the rule from firing."""

    @property
    def last_used_ns(self) -> int:
        """When the holder was last used (``time.perf_counter_ns``): the LRU order."""

    async def cancel_for_limit(self) -> None:
        """Canceled by the rule: tear down at once and give the slot back before returning;
        later use raises :class:`~tcpcli.core.errors.SocketCanceledError`."""


class SocketSlot:
    """One of the invocation's simultaneous-connection slots."""

    __slots__ = ("owner", "released")

    def __init__(self) -> None:
        self.owner: SlotHolder | None = None  # set once a dial attempt becomes a Socket
        self.released = False


class _Waiter:
    """A queued acquire: woken (not handed a slot) whenever the rule may have changed."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        import anyio  # (a loop runs whenever anyone waits: a run without one never does)

        self._event = anyio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        import anyio

        await self._event.wait()
        self._event = anyio.Event()  # a wake-up that came meanwhile was already seen


class SocketSlots:
    """The per-invocation cap on simultaneous sockets (Workers: 6, queued beyond that).

    Waiters are served in FIFO order; only the head of the queue applies the deadlock rule,
    so one socket is canceled per slot needed. ``peak`` is the most slots ever held at
    once; ``live`` those held now.
    """

    def __init__(self, limit: int | None = WORKERS_MAX_SOCKETS) -> None:
        if limit is not None and limit < 1:
            raise ValueError("max_sockets must be at least 1 (or None for no cap)")
        self.limit = limit
        self.held: list[SocketSlot] = []
        self._waiters: deque[_Waiter] = deque()
        self.peak = 0

    @property
    def live(self) -> int:
        return len(self.held)

    @property
    def queued(self) -> int:
        """Connects waiting for a slot."""
        return len(self._waiters)

    def _free(self) -> bool:
        return self.limit is None or len(self.held) < self.limit

    def _take(self) -> SocketSlot:
        slot = SocketSlot()
        self.held.append(slot)
        self.peak = max(self.peak, len(self.held))
        return slot

    def try_acquire(self) -> SocketSlot | None:
        """A slot at once, or None when the cap is reached or others are queued first."""
        if self._free() and not self._waiters:
            return self._take()
        return None

    async def acquire(self) -> SocketSlot:
        """Wait in line for a slot, canceling an idle socket when the deadlock rule says so."""
        slot = self.try_acquire()
        if slot is not None:
            return slot
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            while True:
                if self._waiters[0] is waiter:
                    if self._free():
                        self._waiters.popleft()
                        self._wake_head()  # the next in line may find a slot free too
                        return self._take()
                    victim = self._deadlock_victim()
                    if victim is not None:
                        await victim.cancel_for_limit()  # returns with its slot released
                        if victim.is_open:  # would pick it again at once: a busy loop
                            raise RuntimeError("a slot holder stayed open when canceled")
                        continue
                await waiter.wait()
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            self._wake_head()  # a new head must look at the rule for itself
            raise

    def release(self, slot: SocketSlot) -> None:
        """Give a slot back (again is harmless): the head of the queue is woken."""
        if slot.released:
            return
        slot.released = True
        slot.owner = None
        self.held.remove(slot)
        self._wake_head()

    def changed(self) -> None:
        """A holder opened, finished an I/O or was handed over: the queue looks again."""
        self._wake_head()

    def _wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].wake()

    def _deadlock_victim(self) -> SlotHolder | None:
        """The socket the rule cancels now, or None while anything is under way."""
        holders: list[SlotHolder] = []
        for slot in self.held:
            owner = slot.owner
            if owner is None or not owner.is_open or owner.io_in_progress:
                return None
            holders.append(owner)
        return min(holders, key=lambda holder: holder.last_used_ns, default=None)
