"""Properties of the sans-IO parsers in tcpcli/protocols/ under hostile input.

tests/protocols/ already covers: arbitrary and mutated bytes never raise anything but a
ProtocolError (test_fuzz.py), recorded dialogues give the same result whole, byte by byte
and at random splits, and fixed oversized lines/replies hit their limits (test_safety.py),
with kept failing examples replayed from tests/corpus/fuzz/. This module adds:

* chunking invariance for *arbitrary* input, at the framing layer every dialogue builds on
  (lines, coded replies, dot blocks, IMAP literals, the XML stream): the same items and
  the same error, at any split;
* bounded buffers: whatever arrives, a framer that asks for more holds less than its
  limit, and a dialogue fed an endless stream gives up within its byte budget;
* BER length decoding is prefix-consistent (a truncated header is "need more", never a
  different header).

Hypothesis runs with the deterministic profile of tests/protocols (derandomized, no
database); ``TCPCLI_HYPOTHESIS_EXAMPLES`` raises the example count to hunt for bugs.
Kept failing inputs live in tests/corpus/parsers/ and are replayed first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from tcpcli.protocols import DIALOGUES, NEED_DATA, Done, ReadyForTls, get_dialogue
from tcpcli.protocols.ber import header
from tcpcli.protocols.errors import ProtocolError
from tcpcli.protocols.lines import CodedReplyFramer, DotBlockFramer, LineReader
from tcpcli.protocols.literals import LiteralLineReader
from tcpcli.protocols.xmlstream import XmlStreamParser
from tests.protocols.conftest import PROTOCOL_SETTINGS
from tests.protocols.transcript import REQUIRED_OPTIONS

EXAMPLES = int(os.environ.get("TCPCLI_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(PROTOCOL_SETTINGS, max_examples=EXAMPLES) if EXAMPLES else \
    settings(PROTOCOL_SETTINGS, max_examples=60)
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "parsers"

MAX_LINE, MAX_REPLY, MAX_TAG = 64, 512, 128

Framer = Any  # anything with next(buffer: bytearray) -> item | None


def _lines(name: str) -> LineReader:
    return LineReader(name, MAX_LINE, MAX_REPLY)


#: name -> (make a fresh framer, the buffer bound while it waits for more)
FRAMERS: dict[str, tuple[Callable[[], Framer], int]] = {
    "coded-reply": (lambda: CodedReplyFramer(_lines("smtp")), MAX_LINE + 2),
    "coded-reply-ftp": (lambda: CodedReplyFramer(_lines("ftp"), ftp_style=True), MAX_LINE + 2),
    "dot-block": (lambda: DotBlockFramer(_lines("nntp")), MAX_LINE + 2),
    "imap-literals": (lambda: LiteralLineReader(_lines("imap")), MAX_LINE + 2),
    "xml-stream": (lambda: XmlStreamParser("xmpp", max_tag=MAX_TAG, max_element=MAX_REPLY),
                   MAX_TAG),
}

#: Pieces that make arbitrary input reach past the first check of each framer.
FRAGMENTS = [b"250-", b"250 ", b"220 ", b"211-", b"\r\n", b"\n", b"\r", b".", b"..", b"{3}",
             b"{0}", b"{99999}", b"* OK ", b"<a>", b"</a>", b"<b x='1'/>", b"'", b'"', b"<",
             b">", b"<?xml version='1.0'?>", b"<stream:stream xmlns='jabber:client' "
             b"xmlns:stream='http://etherx.jabber.org/streams'>", b"</stream:stream>",
             b"&amp;", b"&bogus;", b"<!-- -->", b"x" * 70, b"y"]
INPUT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)),
                 max_size=30).map(b"".join)
CUTS = st.lists(st.integers(min_value=0, max_value=2000), max_size=12)


def drive(make: Callable[[], Framer], pieces: list[bytes]) -> tuple[list[Any], Any, int]:
    """Feed pieces; return the items, the error's type (its text may quote the bytes at
    hand) and the largest buffer left while the framer waited for more."""
    framer = make()
    buffer = bytearray()
    items: list[Any] = []
    waiting_peak = 0
    for piece in pieces:
        buffer += piece
        try:
            while (item := framer.next(buffer)) is not None:
                items.append(item)
        except ProtocolError as exc:
            return items, type(exc).__name__, waiting_peak
        waiting_peak = max(waiting_peak, len(buffer))
    return items, None, waiting_peak


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def check_framer(name: str, data: bytes, cuts: list[int]) -> None:
    make, bound = FRAMERS[name]
    whole = drive(make, [data])
    for pieces in (split(data, cuts), [data[i : i + 1] for i in range(len(data))]):
        result = drive(make, pieces)
        assert result[:2] == whole[:2], (pieces, result[:2], whole[:2])
        assert result[2] < bound, result[2]


def kept_examples() -> list[tuple[str, str, bytes]]:
    """tests/corpus/parsers/<framer>/<case>.bin: inputs that once broke a property."""
    if not CORPUS.is_dir():
        return []
    return [(path.parent.name, path.stem, path.read_bytes())
            for path in sorted(CORPUS.glob("*/*.bin"))]


@pytest.mark.parametrize(("framer", "case", "data"), kept_examples(),
                         ids=[f"{f}/{c}" for f, c, _ in kept_examples()])
def test_kept_examples(framer: str, case: str, data: bytes) -> None:
    check_framer(framer, data, [len(data) // 3, len(data) // 2])


@pytest.mark.parametrize("framer", sorted(FRAMERS))
def test_framing_is_chunking_invariant_and_bounded(framer: str) -> None:
    @SETTINGS
    @given(INPUT, CUTS)
    def run(data: bytes, cuts: list[int]) -> None:
        check_framer(framer, data, cuts)

    run()


@pytest.mark.parametrize("protocol", sorted(DIALOGUES))
def test_an_endless_stream_ends_the_dialogue_within_its_budget(protocol: str) -> None:
    """A server that never stops talking (any repeating unit) cannot make a dialogue
    buffer without bound: it fails, or reaches its go-ahead, within max_total bytes."""
    @SETTINGS
    @given(st.one_of(st.sampled_from(FRAGMENTS), st.binary(min_size=1, max_size=200)))
    def run(unit: bytes) -> None:
        dialogue = get_dialogue(protocol, **REQUIRED_OPTIONS.get(protocol, {}),
                                max_line=MAX_LINE, max_reply=MAX_REPLY)
        fed = 0
        try:
            while True:
                event = dialogue.next_event()
                if event is NEED_DATA:
                    assert fed <= dialogue.max_total + len(unit), fed
                    dialogue.receive_data(unit)
                    fed += len(unit)
                elif isinstance(event, ReadyForTls | Done):
                    return
        except ProtocolError:
            return

    run()


@SETTINGS
@given(st.binary(max_size=12), st.integers(min_value=0, max_value=12))
def test_ber_header_is_prefix_consistent(data: bytes, cut: int) -> None:
    def decode(blob: bytes) -> object:
        try:
            return header(blob)
        except ProtocolError as exc:
            return str(exc)

    full, prefix = decode(data), decode(data[:cut])
    assert prefix is None or prefix == full, (prefix, full)
