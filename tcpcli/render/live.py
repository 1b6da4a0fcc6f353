"""A transient live line on a terminal, for commands that run a while (probe, bench)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


async def show_live(console: Console, line: Callable[[], RenderableType], *,
                    every: float = 0.25, after: float = 0.0) -> None:
    """Draw ``line()`` after ``after`` seconds and redraw it every ``every`` seconds until
    cancelled; the line is cleared when it ends, leaving the final report alone."""
    import anyio
    from rich.live import Live

    if after:
        await anyio.sleep(after)
    with Live(line(), console=console, auto_refresh=False, transient=True) as live:
        while True:
            await anyio.sleep(every)
            live.update(line(), refresh=True)
