"""Logical lines with IMAP-style literals (``{12}`` or ``{12+}`` then 12 raw bytes).

IMAP (RFC 3501 §4.3) and ManageSieve (RFC 5804 §4) let a line carry a literal: the line
ends with ``{n}``, then n bytes follow, then the line continues. The reader returns one
logical line at a time, the literal bytes kept aside, and bounds the whole response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tcpcli.protocols.errors import LimitExceededError
from tcpcli.protocols.lines import LineReader

_LITERAL = re.compile(rb"\{([0-9]{1,10})\+?\}$")


@dataclass(frozen=True)
class LogicalLine:
    """``text`` is the line with each literal's bytes left out (its ``{n}`` marker stays)."""

    text: bytes
    literals: tuple[bytes, ...] = ()


class LiteralLineReader:
    def __init__(self, reader: LineReader) -> None:
        self.reader = reader
        self._parts: list[bytes] = []
        self._literals: list[bytes] = []
        self._literal_left = 0
        self._literal = bytearray()

    @property
    def partial(self) -> bool:
        return bool(self._parts) or self.reader.reply_size > 0

    def next(self, buffer: bytearray) -> LogicalLine | None:
        while True:
            if self._literal_left:
                taken = buffer[: self._literal_left]
                del buffer[: len(taken)]
                self._literal += taken
                self._literal_left -= len(taken)
                self.reader.reply_size += len(taken)
                if self._literal_left:
                    return None
                self._literals.append(bytes(self._literal))
                self._literal.clear()
            line = self.reader.take(buffer)
            if line is None:
                return None
            self._parts.append(line)
            match = _LITERAL.search(line)
            if match:
                size = int(match.group(1))
                if self.reader.reply_size + size > self.reader.max_reply:
                    raise LimitExceededError(
                        f"{self.reader.name}: a {size}-byte literal exceeds the reply bound"
                        f" of {self.reader.max_reply} bytes"
                    )
                self._literal_left = size
                if size:
                    continue
                self._literals.append(b"")
                continue
            result = LogicalLine(b"".join(self._parts), tuple(self._literals))
            self._parts = []
            self._literals = []
            self.reader.end_reply()
            return result
