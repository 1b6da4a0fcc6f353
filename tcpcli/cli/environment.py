"""The Environment a command runs in: its streams, whether they are terminals, colour.

Commands never touch ``sys.std*`` directly; tests inject an Environment instead
(httpie's ``context.Environment`` is the model).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def _isatty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class Environment:
    stdin: IO[bytes] = field(default_factory=lambda: sys.stdin.buffer)
    stdout: IO[bytes] = field(default_factory=lambda: sys.stdout.buffer)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _console: Console | None = field(default=None, repr=False)

    @property
    def stdin_isatty(self) -> bool:
        return _isatty(self.stdin)

    @property
    def stdout_isatty(self) -> bool:
        return _isatty(self.stdout)

    @property
    def stderr_isatty(self) -> bool:
        return _isatty(self.stderr)

    @property
    def color(self) -> bool:
        """NO_COLOR (any value) wins, then FORCE_COLOR, then "is stderr a terminal"."""
        if self.environ.get("NO_COLOR"):
            return False
        if self.environ.get("FORCE_COLOR"):
            return True
        return self.stderr_isatty and self.environ.get("TERM") != "dumb"

    @property
    def rich(self) -> bool:
        """Rich rendering (tables, colour, live views) only on a terminal or when forced."""
        return self.stderr_isatty or bool(self.environ.get("FORCE_COLOR"))

    @property
    def console(self) -> Console:
        """A Rich console on stderr (imported lazily: start-up time is a tested figure)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=self.stderr,
                force_terminal=self.rich,
                no_color=not self.color,
                highlight=False,
                soft_wrap=True,
            )
        return self._console

    def note(self, message: str) -> None:
        """One plain line on stderr (diagnostics never go to stdout)."""
        self.stderr.write(f"tcpcli: {message}\n")
        self.stderr.flush()
