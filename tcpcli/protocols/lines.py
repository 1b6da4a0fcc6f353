"""Bounded line framing shared by the text protocols (SMTP, POP3, IMAP, FTP, NNTP, ...).

Lines end with CRLF; a bare LF is accepted (and the CR stripped) because real servers and
openssl are lenient there. A line is consumed from the buffer as soon as it is complete and
counted against the reply bound, so byte-by-byte input costs no re-scanning.
"""

from __future__ import annotations

from tcpcli.protocols.base import Outcome, printable
from tcpcli.protocols.errors import LimitExceededError, RemoteProtocolError
from tcpcli.record import Record


class LineReader:
    """Takes lines out of a buffer, bounding each line and the reply they belong to."""

    def __init__(self, name: str, max_line: int, max_reply: int) -> None:
        self.name = name
        self.max_line = max_line
        self.max_reply = max_reply
        self.reply_size = 0  # bytes of the current reply consumed so far

    def take(self, buffer: bytearray) -> bytes | None:
        """One line without its ending, or None when the buffer holds no complete line."""
        end = buffer.find(b"\n", 0, self.max_line + 2)
        if end < 0:
            if len(buffer) >= self.max_line + 2:
                raise LimitExceededError(
                    f"{self.name}: a line is longer than {self.max_line} bytes"
                )
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            raise LimitExceededError(f"{self.name}: a line is longer than {self.max_line} bytes")
        self.reply_size += end + 1
        if self.reply_size > self.max_reply:
            raise LimitExceededError(
                f"{self.name}: a reply is longer than {self.max_reply} bytes"
            )
        return line

    def end_reply(self) -> None:
        self.reply_size = 0


class CodedReply(Record, frozen=True):
    """A reply with a three-digit code (SMTP, LMTP, FTP, NNTP): code and one text per line."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return printable(f"{self.code} {self.lines[0]}".rstrip())


def split_code(line: bytes, name: str) -> tuple[int, str, str]:
    """``b"250-SIZE 1000"`` -> ``(250, "-", "SIZE 1000")``; the separator is "-", " " or ""."""
    head = line[:3]
    sep = line[3:4]
    if len(head) != 3 or not head.isdigit() or head[:1] not in b"12345" or sep not in (
        b"", b" ", b"-"
    ):
        raise RemoteProtocolError(f"{name}: not a reply line: {printable(line[:80])}")
    return int(head), sep.decode(), printable(line[4:])


class CodedReplyFramer:
    """SMTP-style replies: every line is ``ddd-text`` except the last, ``ddd text``.

    With ``ftp_style`` the lines between the first ``ddd-`` line and the final
    ``ddd text`` line are free text (RFC 959 §4.2), as FTP servers send them.
    """

    def __init__(self, reader: LineReader, *, ftp_style: bool = False) -> None:
        self.reader = reader
        self.ftp_style = ftp_style
        self.code: int | None = None
        self.lines: list[str] = []

    def next(self, buffer: bytearray) -> CodedReply | None:
        while (line := self.reader.take(buffer)) is not None:
            # Between the first and last lines of an FTP reply, anything goes.
            if self.ftp_style and self.code is not None and not (
                line[:3] == str(self.code).encode() and line[3:4] in (b" ", b"")
            ):
                self.lines.append(printable(line))
                continue
            code, sep, text = split_code(line, self.reader.name)
            if self.code is not None and code != self.code:
                raise RemoteProtocolError(
                    f"{self.reader.name}: reply code changed from {self.code} to {code}"
                    " inside a multi-line reply"
                )
            self.code = code
            self.lines.append(text)
            if sep != "-":
                reply = CodedReply(code, tuple(self.lines))
                self.code = None
                self.lines = []
                self.reader.end_reply()
                return reply
        return None


class DotBlockFramer:
    """A multi-line data block ended by a line holding a single ".", dot-stuffing removed."""

    def __init__(self, reader: LineReader) -> None:
        self.reader = reader
        self.lines: list[str] = []

    def next(self, buffer: bytearray) -> tuple[str, ...] | None:
        while (line := self.reader.take(buffer)) is not None:
            if line == b".":
                block = tuple(self.lines)
                self.lines = []
                self.reader.end_reply()
                return block
            if line.startswith(b"."):
                line = line[1:]
            self.lines.append(printable(line))
        return None


#: SASL mechanisms that carry the password itself, readable by anyone on the path.
PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


def code_outcome(reply: CodedReply, expected: int, name: str, *,
                 closing: frozenset[int] = frozenset({421})) -> Outcome:
    """The usual reading of a coded reply: expected → OK, 421 → CLOSING, 4xx/5xx → NO.

    Any other positive code is not an answer we can act on: a remote protocol error.
    """
    if reply.code == expected:
        return Outcome.OK
    if reply.code in closing:
        return Outcome.CLOSING
    if reply.code >= 400:
        return Outcome.NO
    raise RemoteProtocolError(f"{name}: expected {expected}, got: {reply.text}")
