"""Arbitrary and mutated server bytes never crash a dialogue: only ProtocolError subclasses.

Failing examples found by hypothesis (or by hand) are kept in tests/corpus/fuzz/ as
transcripts and replayed here, so they stay fixed.
"""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from tcpcli.protocols import (
    DIALOGUES,
    auto_detect,
    detect_by_greeting,
    identify,
    parse_tls_reply,
    wants_more,
)
from tcpcli.protocols.errors import RemoteProtocolError
from tests.protocols.conftest import PROTOCOL_SETTINGS
from tests.protocols.transcript import (
    FUZZ,
    OUTCOMES,
    REQUIRED_OPTIONS,
    all_transcripts,
    fuzz_drive,
)

PROTOCOLS = sorted(DIALOGUES)
SMALL = {"max_line": 256, "max_reply": 2048}
TRANSCRIPTS = all_transcripts()
KEPT = all_transcripts(FUZZ)


def opts(protocol: str) -> dict[str, object]:
    return {**REQUIRED_OPTIONS.get(protocol, {}), **SMALL}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_arbitrary_bytes(protocol: str) -> None:
    @PROTOCOL_SETTINGS
    @given(st.lists(st.binary(max_size=300), max_size=8))
    def run(chunks: list[bytes]) -> None:
        fuzz_drive(protocol, chunks, **opts(protocol))  # raises only ProtocolError

    run()


MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]),
              st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=8)),
    min_size=1, max_size=3,
)


def mutate(turns: list[bytes], mutations: list[tuple[str, int, bytes]]) -> list[bytes]:
    data = [bytearray(turn) for turn in turns]
    for kind, where, payload in mutations:
        turn = data[where % len(data)]
        pos = where % (len(turn) + 1)
        if kind == "flip" and turn:
            turn[pos % len(turn)] ^= payload[0] or 1
        elif kind == "insert":
            turn[pos:pos] = payload
        elif kind == "delete":
            del turn[pos : pos + len(payload)]
        elif kind == "truncate":
            del turn[pos:]
    return [bytes(turn) for turn in data]


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.name)
def test_mutated_transcripts(transcript: object) -> None:
    from tests.protocols.transcript import Transcript

    assert isinstance(transcript, Transcript)
    turns = transcript.server_turns()

    @PROTOCOL_SETTINGS
    @given(MUTATIONS, st.booleans())
    def run(mutations: list[tuple[str, int, bytes]], split: bool) -> None:
        chunks = mutate(turns, mutations)
        if split:
            chunks = [c[i : i + 7] for c in chunks for i in range(0, len(c), 7)]
        fuzz_drive(transcript.protocol, chunks, **transcript.options)

    run()


@pytest.mark.parametrize("kept", KEPT, ids=lambda t: t.name)
def test_kept_failing_examples(kept: object) -> None:
    from tests.protocols.transcript import Transcript

    assert isinstance(kept, Transcript)
    run = fuzz_drive(kept.protocol, kept.server_turns(), **kept.options)
    expected = OUTCOMES[kept.outcome]
    if kept.outcome == "remote-error":
        assert type(run.error) is RemoteProtocolError, run.error
    elif kept.outcome == "done":
        assert run.error is None, run.error
    elif expected is not None and kept.outcome != "any-error":
        assert isinstance(run.error, expected), run.error
    for key, value in kept.expect.items():
        assert getattr(run.report, key) == value, key


@PROTOCOL_SETTINGS
@given(st.binary(max_size=600), st.sampled_from([None, "tls", "http", "redis", "postgres",
                                                 "mqtt"]),
       st.one_of(st.none(), st.integers(min_value=0, max_value=65535)))
def test_identification_never_raises(data: bytes, probe: str | None, port: int | None) -> None:
    identify(data, probe=probe, port=port)
    detect_by_greeting(data)
    auto_detect(port, data)
    parse_tls_reply(data)
    wants_more(data, probe=probe)
