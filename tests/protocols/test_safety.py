"""The safety rules, for every protocol: no bytes past the go-ahead, bounded lines and
replies, EOF and refusals are errors, and a failed dialogue stays failed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from tcpcli.protocols import (
    DIALOGUES,
    LimitExceededError,
    ReadyForTls,
    ResponseInjectionError,
    StartTlsUnavailableError,
    State,
    get_dialogue,
)
from tcpcli.protocols.errors import LocalProtocolError, RemoteProtocolError
from tests.protocols.conftest import PROTOCOL_SETTINGS
from tests.protocols.transcript import (
    REQUIRED_OPTIONS,
    Chunker,
    Transcript,
    all_transcripts,
    bytewise,
    fuzz_drive,
    replay,
    split_at,
    whole,
)

TRANSCRIPTS = all_transcripts()
UPGRADES = [t for t in TRANSCRIPTS if t.outcome == "done"]
FAILURES = [t for t in TRANSCRIPTS if t.outcome != "done"]
INJECTED = b"250 injected\r\n"


def go_ahead_index(transcript: Transcript) -> int:
    """Index in turns of the server turn that ends with the go-ahead."""
    tls = next(i for i, (kind, _) in enumerate(transcript.turns) if kind == "TLS")
    return max(i for i, (kind, _) in enumerate(transcript.turns[:tls]) if kind == "S")


def with_server_turn(transcript: Transcript, index: int, data: bytes,
                     *, cut: bool = False) -> Transcript:
    turns = list(transcript.turns)
    turns[index] = ("S", data)
    if cut:
        turns = turns[: index + 1]
    return dataclasses.replace(transcript, turns=turns)


# -- Response injection --------------------------------------------------------------------


@pytest.mark.parametrize("transcript", UPGRADES, ids=lambda t: t.name)
def test_bytes_with_the_go_ahead_abort_before_tls(transcript: Transcript) -> None:
    index = go_ahead_index(transcript)
    injected = with_server_turn(transcript, index, transcript.turns[index][1] + INJECTED)
    run = replay(injected, whole)
    assert isinstance(run.error, ResponseInjectionError), run.error
    assert not any(isinstance(e, ReadyForTls) for e in run.events)


@pytest.mark.parametrize("transcript", UPGRADES, ids=lambda t: t.name)
def test_bytes_after_the_go_ahead_are_refused_however_split(transcript: Transcript) -> None:
    """Later chunks of the same segment reach receive_data in the UPGRADE state: refused."""
    index = go_ahead_index(transcript)
    injected = with_server_turn(transcript, index, transcript.turns[index][1] + INJECTED)
    assert isinstance(replay(injected, bytewise).error, ResponseInjectionError)

    @PROTOCOL_SETTINGS
    @given(st.lists(st.integers(min_value=1, max_value=2048), max_size=4))
    def splits(points: list[int]) -> None:
        assert isinstance(replay(injected, split_at(points)).error, ResponseInjectionError)

    splits()


@pytest.mark.parametrize("transcript", UPGRADES, ids=lambda t: t.name)
def test_a_failed_dialogue_stays_failed(transcript: Transcript) -> None:
    index = go_ahead_index(transcript)
    injected = with_server_turn(transcript, index, transcript.turns[index][1] + INJECTED)
    run = replay(injected, whole)
    assert isinstance(run.error, ResponseInjectionError)
    dialogue = run.dialogue
    assert dialogue.state is State.FAILED
    with pytest.raises(LocalProtocolError, match="already failed"):
        dialogue.next_event()
    with pytest.raises(LocalProtocolError):
        dialogue.receive_data(b"more")
    with pytest.raises(LocalProtocolError):
        dialogue.tls_established()


LOCKSTEP_EARLY_TALKERS = {
    "smtp": b"220 mail.example.com ESMTP\r\n250 early\r\n",
    "lmtp": b"220 mail.example.com LMTP\r\n250 early\r\n",
    "pop3": b"+OK ready\r\n+OK early\r\n",
    "ftp": b"220 ready\r\n211 early\r\n",
    "nntp": b"200 ready\r\n101 early\r\n",
}


@pytest.mark.parametrize("protocol", sorted(LOCKSTEP_EARLY_TALKERS))
def test_early_talkers_are_rejected(protocol: str) -> None:
    """Data before our first command (the SMTP 'early talker'/pipelining attack)."""
    run = fuzz_drive(protocol, [LOCKSTEP_EARLY_TALKERS[protocol]])
    assert type(run.error) is RemoteProtocolError
    assert "unsolicited" in str(run.error)


# -- Bounds --------------------------------------------------------------------------------

LIMITS = {"max_line": 64, "max_reply": 512}
XMPP_HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
XMPP_S2S_HEADER = XMPP_HEADER.replace(b"jabber:client", b"jabber:server")

#: Per protocol: server chunks containing one line / tag / packet over max_line or max_reply.
OVERSIZED: dict[str, list[bytes]] = {
    **{name: [b"A" * 100 + b"\r\n"] for name in
       ("smtp", "lmtp", "pop3", "imap", "ftp", "nntp", "sieve", "irc")},
    "mysql": [b"\xff\xff\xff\x00" + b"\x0a5.7"],
    "ldap": [bytes.fromhex("3084000100000201")],
    "telnet": [bytes([255, 250, 24]) + b"x" * 100],
    "xmpp": [b"<stream:stream" + b" a='b'" * 20],
    "xmpp-server": [XMPP_S2S_HEADER + b"<stream:features" + b" a='b'" * 20],
}
#: Per protocol: a reply made of many short pieces, over max_reply (or the total budget).
FLOODED: dict[str, list[bytes]] = {
    "smtp": [b"220-x\r\n" * 100],
    "lmtp": [b"220 x\r\n", b"250-x\r\n" * 100],
    "pop3": [b"+OK x\r\n", b"+OK\r\n" + b"X\r\n" * 200],
    "imap": [b"* OK x\r\n", b"* NOTICE x\r\n" * 300],
    "ftp": [b"220-x\r\n" + b" free text\r\n" * 100],
    "nntp": [b"200 x\r\n", b"101 caps\r\n" + b"X\r\n" * 200],
    "sieve": [b'"X" "Y"\r\n' * 100],
    "irc": [b":s NOTICE * :x\r\n" * 200],
    "telnet": [bytes([255, 253, 24]) * 1000],
    "xmpp": [XMPP_HEADER, b"<stream:features>" + b"<a/>" * 200],
    "xmpp-server": [XMPP_S2S_HEADER, b"<stream:features>" + b"<a/>" * 200],
}


def options(protocol: str) -> dict[str, object]:
    return {**REQUIRED_OPTIONS.get(protocol, {}), **LIMITS}


def test_every_protocol_with_lines_or_packets_is_bounded() -> None:
    assert set(OVERSIZED) == set(DIALOGUES) - {"postgres"}  # postgres reads one byte


@pytest.mark.parametrize("protocol", sorted(OVERSIZED))
@pytest.mark.parametrize("chunker", [whole, bytewise], ids=["whole", "bytewise"])
def test_oversized_lines_and_packets(protocol: str, chunker: Chunker) -> None:
    chunks = [piece for chunk in OVERSIZED[protocol] for piece in chunker(chunk)]
    run = fuzz_drive(protocol, chunks, **options(protocol))
    assert isinstance(run.error, LimitExceededError), run.error


@pytest.mark.parametrize("protocol", sorted(FLOODED))
@pytest.mark.parametrize("chunker", [whole, bytewise], ids=["whole", "bytewise"])
def test_oversized_replies(protocol: str, chunker: Chunker) -> None:
    chunks = [piece for chunk in FLOODED[protocol] for piece in chunker(chunk)]
    run = fuzz_drive(protocol, chunks, **options(protocol))
    assert isinstance(run.error, LimitExceededError), run.error


def test_a_line_of_exactly_max_line_is_fine() -> None:
    line = b"220 " + b"x" * 60 + b"\r\n"  # 64 bytes without CRLF
    for chunks in ([line], [line[i : i + 1] for i in range(len(line))]):
        run = fuzz_drive("smtp", chunks, **LIMITS)
        assert not isinstance(run.error, LimitExceededError)
    run = fuzz_drive("smtp", [b"220 " + b"x" * 61 + b"\r\n"], **LIMITS)
    assert isinstance(run.error, LimitExceededError)


def _imap_run(notices_before: int, notices_after: int) -> Exception | None:
    filler = b"* OK " + b"x" * 53 + b"\r\n"  # 60 bytes
    turns = [
        ("S", b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
        ("C", b"a1 STARTTLS\r\n"),
        ("S", filler * notices_before + b"a1 OK go\r\n"),
        ("TLS", b""),
        ("C", b"a2 CAPABILITY\r\n"),
        ("S", filler * notices_after + b"* CAPABILITY IMAP4rev1\r\na2 OK done\r\n"),
    ]
    transcript = Transcript(Path("inline"), "imap", dict(LIMITS), "done", {}, turns)
    return replay(transcript, whole).error


def test_the_total_budget_bounds_each_side_of_tls() -> None:
    """4 × max_reply before TLS, and again after it: 2 × 1,500 bytes pass, 2,100 do not."""
    assert get_dialogue("imap", **LIMITS).max_total == 2048
    assert _imap_run(25, 25) is None
    assert isinstance(_imap_run(35, 0), LimitExceededError)
    assert isinstance(_imap_run(0, 35), LimitExceededError)


# -- EOF and refusals ----------------------------------------------------------------------


@pytest.mark.parametrize("transcript", UPGRADES, ids=lambda t: t.name)
def test_eof_before_the_go_ahead_is_a_remote_error(transcript: Transcript) -> None:
    index = go_ahead_index(transcript)
    data = transcript.turns[index][1]
    for cut in {0, len(data) // 2, len(data) - 1}:
        truncated = with_server_turn(transcript, index, data[:cut], cut=True)
        run = replay(truncated, whole)
        assert type(run.error) is RemoteProtocolError, (cut, run.error)
        assert "closed the connection" in str(run.error)


@pytest.mark.parametrize("transcript", FAILURES, ids=lambda t: t.name)
def test_refusals_end_the_dialogue(transcript: Transcript) -> None:
    run = replay(transcript, whole)
    assert run.error is not None
    if transcript.outcome in ("not-offered", "refused", "session-refused"):
        assert isinstance(run.error, StartTlsUnavailableError)
        assert run.error.reason.startswith(("starttls-", "session-"))
        assert str(run.error).startswith(f"{transcript.protocol}: ")


def test_nothing_is_sent_once_a_failure_is_known() -> None:
    """MySQL: greeting + injected bytes. The greeting is reported; the SSLRequest is not sent."""
    from tcpcli.protocols import Capabilities, Greeting, Send

    greeting = bytes.fromhex(
        "4a0000000a382e302e333600080000003a1f6b2c49550e7d00ffffff0200ffdf150000000000000000"
        "00001e4f0b62731c5a2d3b4e6f110063616368696e675f736861325f70617373776f726400"
    )
    dialogue = get_dialogue("mysql")
    dialogue.next_event()
    dialogue.receive_data(greeting + b"\x16\x03\x01")
    assert isinstance(dialogue.next_event(), Greeting)
    assert isinstance(dialogue.next_event(), Capabilities)
    with pytest.raises(ResponseInjectionError):
        event = dialogue.next_event()
        assert not isinstance(event, Send)
    assert dialogue.state is State.FAILED
