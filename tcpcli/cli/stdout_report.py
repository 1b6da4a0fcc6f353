"""A command's results on stdout: Rich on a terminal (or when colour is forced), plain
text otherwise. bench and its throughput mode both report this way; one module keeps them
from importing each other."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tcpcli.cli.environment import Environment

if TYPE_CHECKING:
    from rich.console import RenderableType


def stdout_is_rich(env: Environment) -> bool:
    """Rich results only where a person reads them: stdout a terminal, or FORCE_COLOR."""
    return env.stdout_isatty or bool(env.environ.get("FORCE_COLOR"))


def stdout_color(env: Environment) -> bool:
    """Colour in Rich results: NO_COLOR (any value) wins, then FORCE_COLOR, then TERM."""
    if env.environ.get("NO_COLOR"):
        return False
    return bool(env.environ.get("FORCE_COLOR")) or env.environ.get("TERM") != "dumb"


def render_rich(env: Environment, renderables: Iterable[RenderableType]) -> str:
    """The renderables as terminal text, as wide as the terminal, ready for one write."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, no_color=not stdout_color(env),
                      width=shutil.get_terminal_size((100, 24)).columns, highlight=False)
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()
