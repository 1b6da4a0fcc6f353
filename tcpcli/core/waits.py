"""How the engines' fast paths wait: on the event loop, or by blocking the thread.

The scan (``engines.scan_batch``) and bench's connect storm (``engines.bench``) issue
non-blocking connects and wait on one kernel poller's fd. Beside other tasks (inspections
of open ports, a live progress line) they wait on the event loop (:class:`LoopWaits`). When
the engine is all the run does, starting asyncio and anyio would cost more than a small
run itself: the same coroutine runs with :class:`BlockingWaits`, which block in
``select``/``sleep`` and so never suspend, and :func:`run_without_loop` finishes it in one
step with no loop at all.
"""

from __future__ import annotations

import select
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Room(Protocol):
    """Whatever tells a waiter that one of its sockets, held elsewhere, has closed."""

    async def wait(self) -> None: ...


class Waits(Protocol):
    """How an engine waits: for its poller's fd, for time, for one of its sockets to close."""

    async def readable(self, fd: int, timeout: float) -> None:
        """Until ``fd`` is readable or ``timeout`` seconds have passed."""

    async def sleep(self, delay: float) -> None: ...

    async def checkpoint(self) -> None:
        """Let others run (and cancellation in) between batches."""

    async def room(self, room: Room) -> None:
        """Until a socket of ours, held by someone else (an inspection), may have closed."""


class LoopWaits:
    """Waits on the event loop, beside the run's other tasks (inspections, a live line)."""

    async def readable(self, fd: int, timeout: float) -> None:
        import anyio

        with anyio.move_on_after(timeout):
            await anyio.wait_readable(fd)

    async def sleep(self, delay: float) -> None:
        import anyio

        await anyio.sleep(delay)

    async def checkpoint(self) -> None:
        import anyio.lowlevel

        await anyio.lowlevel.checkpoint()

    async def room(self, room: Room) -> None:
        await room.wait()


class BlockingWaits:
    """Waits by blocking the thread, for an engine that is all the run does: no task
    shares it, so every wait returns without suspending (see :func:`run_without_loop`).
    Nobody else holds its sockets, so waiting for room is the out-of-descriptors back-off
    only."""

    async def readable(self, fd: int, timeout: float) -> None:
        select.select([fd], [], [], max(0.0, timeout))

    async def sleep(self, delay: float) -> None:
        time.sleep(max(0.0, delay))  # noqa: ASYNC251 (no loop to block: see above)

    async def checkpoint(self) -> None:
        return None

    async def room(self, room: Room) -> None:
        time.sleep(0.05)  # noqa: ASYNC251 (no loop to block)


def run_without_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (it waits only through :class:`BlockingWaits`)
    to its end, on this thread, with no event loop: one ``send`` finishes it."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a run without an event loop tried to suspend")
