"""The JSON Lines event stream shared by every command (``--json``).

Every line is one object: ``schema`` ("tcpcli/1"), ``event``, ``t_ms`` (milliseconds since
the command started, from a monotonic clock), ``target`` (when the event has one), then the
event's own fields. Numbers are numbers; durations are ``*_ms`` floats. Adding fields is
compatible; renaming or removing one needs a new schema version.

Where the stream goes is the Environment's decision (:mod:`tcpcli.cli.environment`): stdout
for the commands whose product is a report, stderr or ``--events FILE`` for ``connect`` and
``listen``, whose stdout carries the peer's bytes.
"""

from __future__ import annotations

import time
from typing import IO, Protocol

from tcpcli.core.timing import Phase

SCHEMA = "tcpcli/1"

#: Core phase name -> event name.
PHASE_EVENTS = {
    "resolve": "resolve",
    "slot-wait": "slot_wait",
    "connect": "attempt",
    "proxy": "proxy",
    "proxy-header": "proxy_header",
    "starttls": "starttls",
    "tls-setup": "tls_setup",
    "tls": "tls",
    "first-byte": "first_byte",
    "close": "socket_close",
}

#: An event field's value: whatever ``json.dumps`` takes (others are written with str()).
FieldValue = object


class TextSink(Protocol):
    """Where lines of text go: a text stream, or stdout's bytes through :class:`Utf8Lines`."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class Utf8Lines:
    """Text written to a byte stream (stdout's buffer) as UTF-8, flushed per write.

    Not an ``io.TextIOWrapper``: a wrapper closes the stream it wraps when it is collected,
    and stdout must outlive every writer.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, text: str, /) -> int:
        self.stream.write(text.encode("utf-8"))
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class EventWriter:
    """Writes events to a text stream, one JSON object per line, flushed per line."""

    def __init__(self, stream: TextSink, *, origin_ns: int | None = None) -> None:
        self.stream = stream
        self.origin_ns = time.perf_counter_ns() if origin_ns is None else origin_ns

    def record(self, event: str, target: str | None = None,
               **fields: FieldValue) -> dict[str, FieldValue]:
        """The envelope and ``fields``, as one line of the stream would carry them."""
        record: dict[str, FieldValue] = {
            "schema": SCHEMA,
            "event": event,
            "t_ms": round((time.perf_counter_ns() - self.origin_ns) / 1e6, 3),
        }
        if target is not None:
            record["target"] = target
        record.update(fields)
        return record

    def emit(self, event: str, target: str | None = None, **fields: FieldValue) -> None:
        import json  # (here: a run without --json writes no event)

        line = json.dumps(self.record(event, target, **fields), separators=(",", ":"),
                          default=str)
        self.stream.write(line + "\n")
        self.stream.flush()

    def phase(self, phase: Phase, target: str | None) -> None:
        """Emit a finished core phase as its event."""
        name = PHASE_EVENTS.get(phase.name)
        if name is None or phase.duration_ms is None:
            return
        self.emit(
            name,
            target,
            outcome=phase.outcome,
            start_ms=round(phase.offset_ms(self.origin_ns), 3),
            duration_ms=round(phase.duration_ms, 3),
            **phase.detail,
        )
