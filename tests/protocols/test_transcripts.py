"""Every recorded transcript gives the same events, bytes and report however it is split.

Fed whole (one segment per server turn), byte by byte, and at random split points
(hypothesis, derandomized): the outcome is the transcript's, the client sends exactly the
transcript's bytes, and the report has the transcript's ``expect`` values.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from tcpcli.protocols import Capabilities, Done, ReadyForTls, Send
from tests.protocols.conftest import PROTOCOL_SETTINGS
from tests.protocols.transcript import (
    OUTCOMES,
    Run,
    Transcript,
    all_transcripts,
    bytewise,
    replay,
    split_at,
    whole,
)

TRANSCRIPTS = all_transcripts()
IDS = [t.name for t in TRANSCRIPTS]


def comparable(run: Run) -> tuple[Any, ...]:
    return (run.events, type(run.error), run.report, run.sent)


def check_outcome(transcript: Transcript, run: Run) -> None:
    expected = OUTCOMES[transcript.outcome]
    if expected is None:
        assert run.error is None, f"{transcript.name}: {run.error!r}"
        assert isinstance(run.events[-1], Done)
        assert sum(isinstance(e, ReadyForTls) for e in run.events) == 1
    else:
        assert isinstance(run.error, expected), f"{transcript.name}: {run.error!r}"
        # Never a plaintext fallback: no go-ahead, and nothing sent after the failure.
        assert not any(isinstance(e, ReadyForTls) for e in run.events)
    # What the report says was advertised was also delivered as events, errors or not.
    before = run.report.capabilities_before
    if before is not None:
        assert Capabilities(before) in run.events
    if run.report.capabilities_after is not None:
        assert Capabilities(run.report.capabilities_after, after_tls=True) in run.events
    for key, value in transcript.expect.items():
        got = getattr(run.report, key)
        if isinstance(got, tuple):
            got = list(got)
        elif key == "details":
            got = {k: got[k] for k in value}
        assert got == value, f"{transcript.name}: report.{key}"


def test_the_corpus_covers_every_protocol() -> None:
    from tcpcli.protocols import DIALOGUES

    assert {t.protocol for t in TRANSCRIPTS} == set(DIALOGUES)
    for name in DIALOGUES:
        outcomes = {t.outcome for t in TRANSCRIPTS if t.protocol == name}
        assert "done" in outcomes, name
        assert outcomes & {"not-offered", "refused"}, name


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=IDS)
def test_whole_and_bytewise_agree(transcript: Transcript) -> None:
    run = replay(transcript, whole)
    check_outcome(transcript, run)
    assert comparable(replay(transcript, bytewise)) == comparable(run)


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=IDS)
def test_random_splits_agree(transcript: Transcript) -> None:
    reference = comparable(replay(transcript, whole))

    @PROTOCOL_SETTINGS
    @given(st.lists(st.integers(min_value=1, max_value=4096), max_size=6))
    def splits(points: list[int]) -> None:
        assert comparable(replay(transcript, split_at(points))) == reference

    splits()


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=IDS)
def test_send_events_name_their_step(transcript: Transcript) -> None:
    run = replay(transcript, whole)
    for event in run.events:
        if isinstance(event, Send):
            assert event.data and event.step
