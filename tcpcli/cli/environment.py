"""The Environment a command runs in: its streams, whether they are terminals, colour, and
the JSON Lines stream of its session.

Commands never touch ``sys.std*`` directly, and never write JSON or notes themselves: they
call the Environment (tests inject one instead; httpie's ``context.Environment`` is the
model). One rule keeps every output apart (the README's "Output contract"):

* stdout is the command's product: the report, or with ``--json`` its JSON Lines, for
  the commands in :data:`JSON_ON_STDOUT`; the peer's bytes for ``connect`` and ``listen``,
  whose JSON goes to ``--events FILE`` or stderr;
* stderr is for people: notes, warnings, progress, the one error line;
* once a JSON stream is open, every message is also an event in it (``notice``,
  ``warning``, ``error``...), with the envelope of :mod:`tcpcli.render.events`, and no
  plain line is written where it would break that stream.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from tcpcli.core.errors import TcpcliError
    from tcpcli.render.events import EventWriter, FieldValue

#: The commands whose product is a report: ``--json`` puts their JSON Lines on stdout.
#: (``connect`` and ``listen`` carry the peer's bytes on stdout; their JSON goes to stderr.)
JSON_ON_STDOUT = frozenset({"probe", "ping", "starttls", "bench", "config", "demo"})

#: The kinds of message a person reads on stderr and a JSON reader gets as an event.
MessageEvent = Literal["notice", "warning", "hint"]


def _isatty(stream: IO[bytes] | IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Environment:
    """Where a command reads and writes, and the environment it sees: the process's own
    streams by default, others in tests. (A plain class: a dataclass costs every run's
    start-up more to build than the whole of this one.)"""

    def __init__(self, *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
                 stderr: IO[str] | None = None, environ: dict[str, str] | None = None,
                 quiet: bool = False) -> None:
        self.stdin: IO[bytes] = sys.stdin.buffer if stdin is None else stdin
        self.stdout: IO[bytes] = sys.stdout.buffer if stdout is None else stdout
        self.stderr: IO[str] = sys.stderr if stderr is None else stderr
        self.environ: dict[str, str] = dict(os.environ) if environ is None else environ
        self._console: Console | None = None
        #: The session's JSON Lines stream, once :meth:`start_session` opened one.
        self.events: EventWriter | None = None
        #: The target the session's own events (errors, notices) name, when it has one.
        self.target: str | None = None
        #: ``--quiet``: no human report lines (errors and warnings still show).
        self.quiet = quiet

    # ---------------------------------------------------------------- terminals, colour

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
        """Rich rendering (tables, colour, live views) on stderr only on a terminal or when
        forced."""
        return self.stderr_isatty or bool(self.environ.get("FORCE_COLOR"))

    @property
    def stdout_rich(self) -> bool:
        """Rich results on stdout only where a person reads them: a terminal, or
        FORCE_COLOR. Piped, results are plain lines (for grep, awk, less)."""
        return self.stdout_isatty or bool(self.environ.get("FORCE_COLOR"))

    @property
    def stdout_color(self) -> bool:
        """Colour in Rich results on stdout: NO_COLOR (any value) wins, then FORCE_COLOR,
        then a terminal that is not TERM=dumb."""
        if self.environ.get("NO_COLOR"):
            return False
        if self.environ.get("FORCE_COLOR"):
            return True
        return self.stdout_isatty and self.environ.get("TERM") != "dumb"

    @property
    def width(self) -> int:
        """Columns for a report: $COLUMNS, else the terminal's, else 80 (a pipe)."""
        columns = self.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        import shutil  # only here: start-up time is a tested figure

        return shutil.get_terminal_size((80, 24)).columns

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

    def stdout_console(self, file: IO[str]) -> Console:
        """A Rich console for stdout's report, writing into ``file``: terminal codes only
        when stdout is rich, colour only when :attr:`stdout_color`, as wide as
        :attr:`width`."""
        from rich.console import Console

        rich = self.stdout_rich
        return Console(file=file, force_terminal=rich, no_color=not self.stdout_color,
                       color_system="auto" if rich else None, width=self.width,
                       highlight=False, emoji=False)

    # ---------------------------------------------------------------- the session

    def start_session(self, command: str, *, json: bool, events_file: str | None = None,
                      target: str | None = None, quiet: bool = False,
                      origin_ns: int | None = None) -> EventWriter | None:
        """Open the command's JSON Lines stream, if ``--json`` or ``--events FILE`` asked
        for one: to FILE, else stdout for :data:`JSON_ON_STDOUT`, else stderr."""
        self.target, self.quiet = target, quiet
        if not events_file and not json:
            return None
        from tcpcli.render.events import EventWriter, TextSink, Utf8Lines

        origin = time.perf_counter_ns() if origin_ns is None else origin_ns
        sink: TextSink
        if events_file:
            sink = open(events_file, "a", encoding="utf-8")  # noqa: SIM115
        elif command in JSON_ON_STDOUT:
            sink = Utf8Lines(self.stdout)
        else:
            sink = self.stderr
        self.events = EventWriter(sink, origin_ns=origin)
        return self.events

    @property
    def json_on_stdout(self) -> bool:
        """The JSON stream is stdout: no report may be written there beside it."""
        if self.events is None:
            return False
        from tcpcli.render.events import Utf8Lines

        return isinstance(self.events.stream, Utf8Lines)

    @property
    def events_on_stderr(self) -> bool:
        """The JSON stream is stderr: no plain line may be written there beside it."""
        return self.events is not None and self.events.stream is self.stderr

    def emit(self, event: str, /, **fields: FieldValue) -> None:
        """One event in the session's stream (nothing without one). ``target=`` names the
        envelope's target; it defaults to the session's."""
        if self.events is not None:
            target = fields.pop("target", None)
            self.events.emit(event, str(target) if target is not None else self.target,
                             **fields)

    # ---------------------------------------------------------------- messages

    def note(self, message: str, *, event: MessageEvent = "notice",
             target: str | None = None, **fields: FieldValue) -> None:
        """A message for people: ``tcpcli: message`` on stderr, and with a JSON stream
        open also a ``notice``/``warning``/``hint`` event carrying it (then the plain
        line is left out if the stream itself is stderr)."""
        self.emit(event, target=target, message=message, **fields)
        if not self.events_on_stderr:
            prefix = "warning: " if event == "warning" else ""
            self.stderr.write(f"tcpcli: {prefix}{message}\n")
            self.stderr.flush()

    def warn(self, message: str, *, target: str | None = None, **fields: FieldValue) -> None:
        """A warning: ``tcpcli: warning: message`` for people, a ``warning`` event in the
        JSON stream."""
        self.note(message, event="warning", target=target, **fields)

    @property
    def human_report(self) -> bool:
        """Whether a report for people is written: not with ``--quiet``, and not when
        ``--json`` put the JSON stream on stdout or stderr (it carries the same facts;
        ``--events FILE`` keeps the report)."""
        return not (self.quiet or self.json_on_stdout or self.events_on_stderr)

    def say(self, line: str) -> None:
        """A line of a human report on stderr (the dialogue, the waterfall, a summary
        line), whose facts the JSON stream carries in its own events: only when
        :attr:`human_report`."""
        if not self.human_report:
            return
        self.stderr.write(f"tcpcli: {line}\n")
        self.stderr.flush()

    def error(self, error: TcpcliError, code: int, target: str | None = None) -> None:
        """An error as an ``error`` event carrying what the error knows (rule and lift of
        a policy refusal, OpenSSL's verify code...) and as the one line on stderr."""
        from tcpcli.render.errors import error_fields, error_line

        self.emit("error", target=target, **error_fields(error, code))
        if not self.events_on_stderr:
            self.stderr.write(f"tcpcli: {error_line(error)}\n")
            self.stderr.flush()

    def unexpected(self, exc: BaseException) -> None:
        """A failure that is not tcpcli's own kind: one line, a hint to see more."""
        message = f"unexpected error: {type(exc).__name__}: {exc}"
        self.emit("error", kind="unexpected", message=message, exit_code=1)
        if not self.events_on_stderr:
            self.stderr.write(f"tcpcli: {message} (run with --traceback for details)\n")
            self.stderr.flush()

    # ---------------------------------------------------------------- stdout

    def write(self, text: str) -> None:
        """The product, on stdout (never beside a JSON stream there: callers check
        :attr:`json_on_stdout`)."""
        # surrogateescape: a file name from argv that is not UTF-8 is written back as the
        # bytes it was, not a UnicodeEncodeError.
        self.stdout.write(text.encode("utf-8", "surrogateescape"))
        self.stdout.flush()

    def write_rich(self, renderables: Iterable[RenderableType]) -> None:
        """Rich renderables on stdout, in one write: terminal text on a terminal (or
        FORCE_COLOR), plain text, no escape codes, at most :attr:`width` wide otherwise."""
        buffer = io.StringIO()
        console = self.stdout_console(buffer)
        for renderable in renderables:
            console.print(renderable)
        self.write(buffer.getvalue())
