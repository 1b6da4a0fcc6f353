"""Service identification probes (tcpcli/protocols/service.py), without sockets.

Recorded conversations with real servers (tests/protocols/service_transcripts/, each
file's first line says which server and version; hand-made ones say so) are replayed
whole, byte by byte and at random splits, and must name the same service, product,
version and facts every time. Every message any probe sends, for any bytes a server
returns (hypothesis), is one of a short list of read-only questions and goodbyes: no
probe ever sends a credential or a command that changes the server's state.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

import tcpcli.protocols.ber as ber
from tcpcli.protocols import NEED_DATA, Send
from tcpcli.protocols.banner import Confidence, How, ServiceGuess
from tcpcli.protocols.errors import LocalProtocolError
from tcpcli.protocols.service import (
    CLIENT_FIRST_ORDER,
    MAX_SENDS,
    PROBES,
    USUAL_PROBE,
    Finished,
    ServiceProbe,
    client_first_probes,
    make_probe,
    merge,
)
from tests.protocols.conftest import PROTOCOL_SETTINGS

TRANSCRIPTS = Path(__file__).resolve().parent / "service_transcripts"

# --------------------------------------------------------------------------- transcripts


@dataclass
class Transcript:
    name: str
    probe: str
    host: str | None = None
    expect: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    items: list[tuple[str, bytes]] = field(default_factory=list)  # ("C" | "S", bytes)

    def server_turns(self) -> list[bytes]:
        turns: list[bytes] = []
        previous = ""
        for kind, data in self.items:
            if kind == "S" and previous == "S":
                turns[-1] += data
            elif kind == "S":
                turns.append(data)
            previous = kind
        return turns


def unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        code = text[i + 1]
        if code == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
            continue
        out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[code]
        i += 2
    return bytes(out)


def load(path: Path) -> Transcript:
    transcript = Transcript(path.stem, "")
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.partition(": ")
        if head == "probe":
            transcript.probe = value
        elif head == "host":
            transcript.host = value
        elif head.startswith("expect fact "):
            transcript.facts[head[12:]] = json.loads(value)
        elif head.startswith("expect "):
            transcript.expect[head[7:]] = json.loads(value)
        elif head in ("C", "S"):
            transcript.items.append((head, unescape(value)))
        elif head in ("C hex", "S hex"):
            transcript.items.append((head[0], bytes.fromhex(value)))
        else:
            raise ValueError(f"{path.name}: cannot read {line!r}")
    return transcript


ALL = [load(path) for path in sorted(TRANSCRIPTS.glob("*.txt"))]

Chunker = Callable[[bytes], Iterator[bytes]]


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def bytewise(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def random_splits(seed: int) -> Chunker:
    def split(data: bytes) -> Iterator[bytes]:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            size = rng.randint(1, 9)
            yield data[i : i + size]
            i += size
    return split


def replay(transcript: Transcript, chunker: Chunker) -> Finished:
    """Drive the probe through the transcript: what it sends must be the transcript's
    client lines, in order; each server turn comes once the client said what precedes it,
    cut by ``chunker``; the server closes after its last turn."""
    probe = make_probe(transcript.probe, host=transcript.host, address="127.0.0.1")
    items = list(transcript.items)
    pending: list[bytes] = []
    for _ in range(100_000):
        event = probe.next_event()
        if isinstance(event, Send):
            kind, data = items.pop(0)
            if data.startswith(b"\x16\x03\x01"):  # a ClientHello: random, its size fixed
                assert (kind, len(data)) == ("C", len(event.data)), transcript.name
                assert event.data.startswith(b"\x16\x03\x01")
                continue
            assert (kind, data) == ("C", event.data), transcript.name
        elif event is NEED_DATA:
            if not pending:
                if not items:
                    probe.receive_data(b"")  # the server closed
                    continue
                assert items[0][0] == "S", (transcript.name, items[0])
                turn = b""
                while items and items[0][0] == "S":
                    turn += items.pop(0)[1]
                pending = list(chunker(turn))
            probe.receive_data(pending.pop(0))
        else:
            assert isinstance(event, Finished)
            if event.farewell:
                assert items.pop(0) == ("C", event.farewell), transcript.name
            assert not items, f"{transcript.name}: left unread: {items}"
            assert not pending or transcript.probe != "greeting"
            return event
    raise AssertionError("the probe never finished")


def check(transcript: Transcript, finished: Finished) -> None:
    guess = finished.guess
    expect = transcript.expect
    assert (guess.name if guess else None) == expect["name"], transcript.name
    if guess is None:
        return
    assert guess.product == expect.get("product"), transcript.name
    assert guess.version == expect.get("version"), transcript.name
    for key, value in transcript.facts.items():
        assert guess.fact(key) == value, (transcript.name, key, guess.facts)
    assert finished.follow_up == expect.get("follow_up")
    assert not finished.by_the_way


@pytest.mark.parametrize("transcript", ALL, ids=[t.name for t in ALL])
def test_transcripts_whole_bytewise_and_split(transcript: Transcript) -> None:
    for chunker in (whole, bytewise, random_splits(1), random_splits(2)):
        check(transcript, replay(transcript, chunker))


def test_every_probe_has_a_transcript_of_a_real_server() -> None:
    recorded = {t.probe for t in ALL if not (TRANSCRIPTS / f"{t.name}.txt").read_text()
                .startswith("# hand-made")}
    assert set(PROBES) <= recorded | {"mqtt-3"}, set(PROBES) - recorded


# --------------------------------------------------------------------------- safety

#: Every message a probe may send: read-only questions and goodbyes. Nothing else, ever.
TEXT_MESSAGES = {
    b"EHLO tcpcli.invalid\r\n", b"LHLO tcpcli.invalid\r\n", b"FEAT\r\n", b"QUIT\r\n",
    b"a1 CAPABILITY\r\n", b"a2 ID NIL\r\n", b"a3 LOGOUT\r\n", b"CAPA\r\n",
    b"CAPABILITIES\r\n", b"LOGOUT\r\n", b"CAP LS 302\r\n", b"PING\r\n", b"INFO server\r\n",
    b"</stream:stream>",
}
FORBIDDEN_WORDS = re.compile(rb"(?i)\b(USER|PASS|AUTH|AUTHENTICATE|LOGIN|APOP|NICK|BIND|"
                             rb"SET|DEL|FLUSHALL|CONFIG|SUBSCRIBE|PUBLISH|REGISTER)\b")


def allowed(probe: str, data: bytes) -> bool:
    """Whether ``data`` is one of the messages probes may send (see the module doc)."""
    if data in TEXT_MESSAGES:
        return True
    if data.startswith((b"HEAD / HTTP/1.1\r\n", b"GET / HTTP/1.0\r\n")):
        return data.endswith(b"\r\n\r\n") and not re.search(
            rb"(?i)^(authorization|cookie|proxy-authorization):", data, re.MULTILINE)
    if data.startswith(b"\x16\x03\x01") and data[5] == 1:  # a TLS ClientHello
        return True
    if data == b"\x00\x00\x00\x08\x04\xd2\x16\x2f":  # PostgreSQL SSLRequest
        return True
    if data == b"\x00\x00\x00\x09\x00\x04\x00\x00\x00":  # startup 4.0 with no parameters
        return True
    if data[:1] == b"\x10":  # MQTT CONNECT: no user name, no password, no will
        level = data[8]
        flags = data[9]
        return level in (4, 5) and flags == 0x02
    if data == b"\xe0\x00":  # MQTT DISCONNECT
        return True
    if data[:1] == b"\x82":  # MQTT SUBSCRIBE: to the broker's version alone, at QoS 0
        return data.endswith(b"\x00\x13$SYS/broker/version\x00") and len(data) <= 27
    if data[:1] == b"\x30":  # LDAP: a search of the root DSE or an unbind, never a bind
        head = ber.header(data)
        assert head is not None
        _, start, length = head
        _, (op, body) = ber.children(data[start : start + length])
        if op == 0x42:  # UnbindRequest
            return body == b""
        return op == 0x63 and ber.children(body)[0] == (ber.OCTET_STRING, b"")
    if data.startswith(b"<?xml version='1.0'?><stream:stream "):
        return b"<auth" not in data and b"<iq" not in data
    return False


def assert_safe(probe: str, sent: list[bytes]) -> None:
    assert len(sent) <= MAX_SENDS + 1, (probe, sent)  # its messages and its goodbye
    for data in sent:
        assert allowed(probe, data), (probe, data)
        if not data.startswith((b"\x16", b"\x10", b"\x30", b"\x00", b"\x82", b"HEAD ",
                                b"GET ")):
            assert not FORBIDDEN_WORDS.search(data), (probe, data)


def drive_with(name: str, chunks: list[bytes], *, max_bytes: int = 4096) -> tuple[Finished,
                                                                                  list[bytes]]:
    probe: ServiceProbe = make_probe(name, host="db.example", max_bytes=max_bytes)
    sent: list[bytes] = []
    queue = list(chunks)
    for _ in range(10_000):
        event = probe.next_event()
        if isinstance(event, Send):
            sent.append(event.data)
        elif event is NEED_DATA:
            probe.receive_data(queue.pop(0) if queue else b"")
            assert len(probe._buffer) <= max_bytes
        else:
            assert isinstance(event, Finished)
            if event.farewell:
                sent.append(event.farewell)
            return event, sent
    raise AssertionError("never finished")


@pytest.mark.parametrize("transcript", ALL, ids=[t.name for t in ALL])
def test_what_the_transcripts_send_is_allowed(transcript: Transcript) -> None:
    assert_safe(transcript.probe, [data for kind, data in transcript.items if kind == "C"])


@pytest.mark.parametrize("name", sorted(PROBES))
def test_any_answer_ends_the_probe_safely(name: str) -> None:
    @PROTOCOL_SETTINGS
    @given(st.lists(st.binary(max_size=300), max_size=8))
    def run(chunks: list[bytes]) -> None:
        finished, sent = drive_with(name, chunks)
        assert_safe(name, sent)
        assert finished.guess is None or isinstance(finished.guess, ServiceGuess)

    run()


@pytest.mark.parametrize("transcript", ALL, ids=[t.name for t in ALL])
def test_mutated_transcripts_end_safely(transcript: Transcript) -> None:
    turns = transcript.server_turns()

    @PROTOCOL_SETTINGS
    @given(st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=6),
           st.sampled_from(["flip", "insert", "truncate"]))
    def run(where: int, payload: bytes, kind: str) -> None:
        chunks = [bytearray(turn) for turn in turns] or [bytearray()]
        turn = chunks[where % len(chunks)]
        pos = where % (len(turn) + 1)
        if kind == "flip" and turn:
            turn[pos % len(turn)] ^= payload[0] or 1
        elif kind == "insert":
            turn[pos:pos] = payload
        else:
            del turn[pos:]
        _, sent = drive_with(transcript.probe, [bytes(c) for c in chunks])
        assert_safe(transcript.probe, sent)

    run()


def test_a_flood_is_cut_at_max_bytes() -> None:
    for name in PROBES:
        finished, _ = drive_with(name, [b"+" * 1000] * 50, max_bytes=1024)
        assert isinstance(finished, Finished)
    with pytest.raises(LocalProtocolError):
        make_probe("redis", max_bytes=10)


# --------------------------------------------------------------------------- behaviour


def test_an_echo_is_an_echo_not_the_protocol_spoken() -> None:
    for name in CLIENT_FIRST_ORDER:
        probe = make_probe(name, address="127.0.0.1")
        opening = probe.next_event()
        assert isinstance(opening, Send)
        probe.receive_data(opening.data[:3])
        if len(opening.data) > 3:
            assert probe.next_event() is NEED_DATA  # the start of an echo, or of an answer
        probe.receive_data(opening.data[3:])
        finished = probe.next_event()
        assert isinstance(finished, Finished)
        assert finished.guess is not None and finished.guess.name == "echo", name


def test_another_protocols_answer_names_it_and_suggests_its_probe() -> None:
    # InspIRCd answers a Redis PING before registration with a numeric.
    finished, _ = drive_with("redis", [b":irc.localhost 461 * PING :Not enough parameters."
                                       b"\r\n"])
    assert finished.guess is not None and finished.guess.name == "irc"
    assert finished.by_the_way and finished.suggests == "irc"
    # An HTTP server's 400 to a ClientHello names HTTP and its server.
    finished, _ = drive_with("tls", [b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.24.0\r\n"
                                     b"\r\n"])
    assert finished.guess is not None and finished.guess.product == "nginx"
    assert finished.suggests == "http"
    # Silence, then the server closes: nothing named.
    finished, _ = drive_with("postgres", [])
    assert finished.guess is None and not finished.by_the_way


def test_the_usual_probe_goes_first_but_every_probe_is_tried() -> None:
    assert client_first_probes(6379)[0] == "redis"
    assert client_first_probes(389)[0] == "ldap"
    assert client_first_probes(5222)[0] == "xmpp"
    assert client_first_probes(None)[0] == "tls"
    for port in (*USUAL_PROBE, None, 12345):
        assert sorted(client_first_probes(port)) == sorted(CLIENT_FIRST_ORDER)
    with pytest.raises(LocalProtocolError, match="unknown service probe"):
        make_probe("finger")


def test_no_server_name_is_sent_for_an_address() -> None:
    hello = make_probe("tls", host="192.0.2.7", address="192.0.2.7").next_event()
    assert isinstance(hello, Send) and b"192.0.2.7" not in hello.data
    named = make_probe("tls", host="db.example", address="192.0.2.7").next_event()
    assert isinstance(named, Send) and b"db.example" in named.data
    head = make_probe("http", address="2001:db8::1").next_event()
    assert isinstance(head, Send) and b"Host: [2001:db8::1]\r\n" in head.data
    # A name that would inject a header is not used as one.
    head = make_probe("http", host="evil\r\nX: 1", address="192.0.2.7").next_event()
    assert isinstance(head, Send) and b"Host: 192.0.2.7\r\n" in head.data


def test_merge_adds_a_follow_ups_findings() -> None:
    first = ServiceGuess("postgres", "SSLRequest answered S", Confidence.HIGH,
                         product="PostgreSQL", facts=(("tls", "available"),))
    more = ServiceGuess("postgres", "an ErrorResponse", Confidence.HIGH, product="PostgreSQL",
                        facts=(("protocol", "3.0"),))
    merged = merge(first, more)
    assert merged.detail == "SSLRequest answered S"
    assert dict(merged.facts) == {"tls": "available", "protocol": "3.0"}
    assert merge(first, None) == first
    assert merge(first, ServiceGuess("http", "", Confidence.HIGH)) == first
    assert merged.how is How.ANSWER
    assert merge(first, ServiceGuess("postgres", "", Confidence.HIGH, "16.2")).how is (
        How.VERSION)


def test_giving_up_finishes_with_what_was_said_and_sends_nothing_more() -> None:
    # Time ran out with a greeting read but not yet acted on: it still names the service.
    probe = make_probe("greeting")
    probe.receive_data(b"220 mail.example.net ESMTP Postfix\r\n")
    finished = probe.give_up()
    assert finished.guess is not None and finished.guess.product == "Postfix"
    assert probe.next_event() is finished and probe.give_up() is finished
    # A greeting trickled in part: what there is, read as far as it goes.
    probe = make_probe("greeting")
    probe.receive_data(b"220 s")
    assert isinstance(probe.give_up(), Finished)
    # An accepted MQTT session is still closed politely.
    probe = make_probe("mqtt")
    probe.next_event()
    probe.receive_data(b"\x20\x03\x00\x00\x00")
    subscribe = probe.next_event()
    assert isinstance(subscribe, Send) and subscribe.data.startswith(b"\x82")
    assert probe.give_up().farewell == b"\xe0\x00"
