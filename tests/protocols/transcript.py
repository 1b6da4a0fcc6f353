"""Recorded transcripts (tests/corpus/transcripts/*.txt) and the driver that replays them.

A transcript file::

    # a comment: which server, which configuration
    protocol: smtp
    option ehlo_name: "client.example.org"        (JSON values)
    outcome: done | not-offered | refused | session-refused | remote-error | too-large
    expect greeting: "mail.example.com ESMTP Postfix"   (a DialogueReport field, JSON)
    S: 220 mail.example.com ESMTP Postfix\\r\\n      (server bytes; \\r \\n \\t \\\\ \\xHH \\s)
    S hex: 0a0b                                    (server bytes, hex; spaces ignored)
    C: EHLO client.example.org\\r\\n                  (what the client must send)
    TLS                                            (the handshake happens here)

Consecutive ``S`` lines form one server turn, delivered as one segment by the "whole"
chunker; a turn is delivered only after the client sent what precedes it.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpcli.protocols import (
    NEED_DATA,
    Done,
    Event,
    LimitExceededError,
    ReadyForTls,
    ResponseInjectionError,
    Send,
    SessionRefusedError,
    StartTlsNotOfferedError,
    StartTlsRefusedError,
    get_dialogue,
)
from tcpcli.protocols.base import Dialogue, DialogueReport
from tcpcli.protocols.errors import ProtocolError, RemoteProtocolError

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
TRANSCRIPTS = CORPUS / "transcripts"
FUZZ = CORPUS / "fuzz"

OUTCOMES: dict[str, type[ProtocolError] | None] = {
    "done": None,
    "not-offered": StartTlsNotOfferedError,
    "refused": StartTlsRefusedError,
    "session-refused": SessionRefusedError,
    "remote-error": RemoteProtocolError,
    "too-large": LimitExceededError,
    "injection": ResponseInjectionError,
    "any-error": ProtocolError,  # fuzz corpus: any documented error (or none) is fine
}


def unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    simple = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\", "s": b" "}
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            code = text[i + 1]
            if code in simple:
                out += simple[code]
                i += 2
                continue
            if code == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            raise ValueError(f"bad escape \\{code}")
        out += char.encode()
        i += 1
    return bytes(out)


@dataclass
class Transcript:
    path: Path
    protocol: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    outcome: str = "done"
    expect: dict[str, Any] = field(default_factory=dict)
    turns: list[tuple[str, bytes]] = field(default_factory=list)  # ("S"|"C"|"TLS", bytes)

    @property
    def name(self) -> str:
        return self.path.stem

    def server_turns(self) -> list[bytes]:
        return [data for kind, data in self.turns if kind == "S"]

    def client_bytes(self) -> bytes:
        return b"".join(data for kind, data in self.turns if kind == "C")


def load(path: Path) -> Transcript:
    transcript = Transcript(path)
    for raw in path.read_text(encoding="utf-8").split("\n"):
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.strip() == "TLS":
            transcript.turns.append(("TLS", b""))
            continue
        key, _, value = raw.partition(": ")
        if key in ("S", "C", "S hex", "C hex"):
            data = bytes.fromhex(value.replace(" ", "")) if key.endswith("hex") else unescape(
                value
            )
            kind = key[0]
            if transcript.turns and transcript.turns[-1][0] == kind:
                transcript.turns[-1] = (kind, transcript.turns[-1][1] + data)
            else:
                transcript.turns.append((kind, data))
        elif key == "protocol":
            transcript.protocol = value.strip()
        elif key == "outcome":
            transcript.outcome = value.strip()
        elif key.startswith("option "):
            transcript.options[key[7:]] = json.loads(value)
        elif key.startswith("expect "):
            transcript.expect[key[7:]] = json.loads(value)
        else:
            raise ValueError(f"{path.name}: cannot read line {raw!r}")
    assert transcript.protocol, f"{path.name}: no protocol"
    assert transcript.outcome in OUTCOMES, f"{path.name}: unknown outcome {transcript.outcome}"
    return transcript


def all_transcripts(directory: Path = TRANSCRIPTS) -> list[Transcript]:
    return [load(path) for path in sorted(directory.glob("*.txt"))]


Chunker = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(points: list[int]) -> Chunker:
    """A chunker cutting every server turn at ``points`` (taken modulo its length)."""

    def chunker(data: bytes) -> list[bytes]:
        if len(data) < 2:
            return [data]
        cuts = sorted({p % len(data) for p in points} - {0})
        edges = [0, *cuts, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(edges)]

    return chunker


@dataclass
class Run:
    events: list[Event]
    error: ProtocolError | None
    report: DialogueReport
    sent: bytes
    dialogue: Dialogue = field(repr=False, compare=False)


class ScriptError(AssertionError):
    """The dialogue did not follow the transcript (sent other bytes, upgraded early, ...)."""


def replay(transcript: Transcript, chunker: Chunker, *, strict: bool = True,
           **overrides: Any) -> Run:
    """Drive a dialogue through the transcript; ``strict`` checks what the client sends."""
    dialogue = get_dialogue(transcript.protocol, **{**transcript.options, **overrides})
    turns = deque(transcript.turns)
    expected_total = transcript.client_bytes()
    expected_so_far = bytearray()
    sent = bytearray()
    chunks: deque[bytes] = deque()
    events: list[Event] = []
    error: ProtocolError | None = None

    def take_client_turns() -> None:
        while turns and turns[0][0] == "C":
            expected_so_far.extend(turns.popleft()[1])

    try:
        for _ in range(100_000):
            event = dialogue.next_event()
            if event is NEED_DATA:
                if not chunks:
                    take_client_turns()
                    if turns and turns[0][0] == "S":
                        if strict and not (sent.startswith(expected_so_far)
                                           and expected_total.startswith(sent)):
                            raise ScriptError(
                                f"sent {bytes(sent)!r}, expected {bytes(expected_so_far)!r}"
                            )
                        chunks.extend(chunker(turns.popleft()[1]) or [b""])
                    elif turns:
                        raise ScriptError("the dialogue wants data where the handshake is due")
                    else:
                        chunks.append(b"")  # the server closes
                dialogue.receive_data(chunks.popleft())
                continue
            events.append(event)
            if isinstance(event, Send):
                sent += event.data
            elif isinstance(event, ReadyForTls):
                # The rest of the go-ahead's segment would be read by the TLS layer.
                while chunks:
                    dialogue.receive_data(chunks.popleft())
                take_client_turns()
                if strict and bytes(sent) != bytes(expected_so_far):
                    raise ScriptError(f"sent {bytes(sent)!r} before TLS, expected "
                                      f"{bytes(expected_so_far)!r}")
                if not turns or turns[0][0] != "TLS":
                    if strict:
                        raise ScriptError("the dialogue upgraded where the transcript did not")
                else:
                    turns.popleft()
                dialogue.tls_established()
            elif isinstance(event, Done):
                break
        else:
            raise ScriptError("the dialogue did not finish")
    except ProtocolError as exc:
        error = exc
    if strict and error is None and bytes(sent) != expected_total:
        raise ScriptError(f"sent {bytes(sent)!r}, expected {expected_total!r}")
    return Run(events, error, dialogue.report, bytes(sent), dialogue)


def fuzz_drive(protocol: str, chunks: list[bytes], **options: Any) -> Run:
    """Feed arbitrary server bytes, answering nothing; TLS is 'established' on request."""
    dialogue = get_dialogue(protocol, **options)
    pending = deque(chunks)
    events: list[Event] = []
    error: ProtocolError | None = None
    sent = bytearray()
    try:
        for _ in range(100_000):
            event = dialogue.next_event()
            if event is NEED_DATA:
                dialogue.receive_data(pending.popleft() if pending else b"")
                continue
            events.append(event)
            if isinstance(event, Send):
                sent += event.data
            elif isinstance(event, ReadyForTls):
                while pending:
                    dialogue.receive_data(pending.popleft())
                dialogue.tls_established()
            elif isinstance(event, Done):
                break
        else:
            raise AssertionError("the dialogue did not finish")
    except ProtocolError as exc:
        error = exc
    return Run(events, error, dialogue.report, bytes(sent), dialogue)


#: Options a protocol needs to be constructed at all.
REQUIRED_OPTIONS: dict[str, dict[str, Any]] = {
    "xmpp": {"to": "example.com"},
    "xmpp-server": {"to": "example.com"},
}
