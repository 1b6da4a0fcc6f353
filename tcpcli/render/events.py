"""The JSON Lines event stream shared by every command (``--json``).

Every line is one object: ``schema`` ("tcpcli/1"), ``event``, ``t_ms`` (milliseconds since
the command started, from a monotonic clock), ``target``, then the event's own fields.
Numbers are numbers; durations are ``*_ms`` floats. Adding fields is compatible; renaming
or removing one needs a new schema version.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from tcpcli.core.timing import Phase

SCHEMA = "tcpcli/1"

#: Core phase name -> event name.
PHASE_EVENTS = {
    "resolve": "resolve",
    "slot-wait": "slot_wait",
    "connect": "attempt",
    "proxy": "proxy",
    "starttls": "starttls",
    "tls-setup": "tls_setup",
    "tls": "tls",
    "first-byte": "first_byte",
    "close": "socket_close",
}


class EventWriter:
    """Writes events to a text stream, one JSON object per line, flushed per line."""

    def __init__(self, stream: IO[str], *, origin_ns: int | None = None) -> None:
        self.stream = stream
        self.origin_ns = time.perf_counter_ns() if origin_ns is None else origin_ns

    def emit(self, event: str, target: str | None = None, **fields: Any) -> None:
        record: dict[str, Any] = {
            "schema": SCHEMA,
            "event": event,
            "t_ms": round((time.perf_counter_ns() - self.origin_ns) / 1e6, 3),
        }
        if target is not None:
            record["target"] = target
        record.update(fields)
        self.stream.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self.stream.flush()

    @classmethod
    def for_command(cls, enabled: bool, events_file: str | None, stderr: IO[str],
                    origin_ns: int) -> EventWriter | None:
        """The writer a command's ``--json`` / ``--events FILE`` ask for, if any."""
        if not enabled and not events_file:
            return None
        stream = open(events_file, "a", encoding="utf-8") if events_file else stderr  # noqa: SIM115
        return cls(stream, origin_ns=origin_ns)

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
