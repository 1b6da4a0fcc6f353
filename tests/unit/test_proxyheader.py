"""The PROXY protocol header codec (``tcpcli.core.proxyheader``): exact bytes against the
spec's layout, framing that never reads past a header, and nothing but ProxyHeaderError
out of any input."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings, strategies as st
from proxyprotocol.result import ProxyResultIPv4
from proxyprotocol.tlv import ProxyProtocolTLV
from proxyprotocol.v2 import ProxyProtocolV2

from tcpcli.core.proxyheader import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderSpec,
    decode,
    encode,
    still_needed,
)

LOCAL, PEER = ("127.0.0.1", 40000), ("127.0.0.1", 5432)


def read_framed(stream: bytes) -> tuple[bytes, bytes]:
    """The header a reader takes from ``stream`` by :func:`still_needed` alone, and what
    it left unread (IndexError-free: a short stream raises ProxyHeaderError)."""
    taken = b""
    while (needed := still_needed(taken)) > 0:
        if len(taken) + needed > len(stream):
            raise ProxyHeaderError("the stream ended before the header did")
        taken += stream[len(taken):len(taken) + needed]
    return taken, stream[len(taken):]


def test_v1_is_the_specs_text_line() -> None:
    header = encode(ProxyHeaderSpec(1), LOCAL, PEER)
    assert header == b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 5432\r\n"


def test_v1_names_a_claimed_source_and_ipv6() -> None:
    assert encode(ProxyHeaderSpec(1, ("203.0.113.7", 4242)), LOCAL, PEER) == \
        b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 5432\r\n"
    assert encode(ProxyHeaderSpec(1), ("::1", 1), ("::1", 2)) == b"PROXY TCP6 ::1 ::1 1 2\r\n"


def test_v2_is_the_specs_binary_layout() -> None:
    header = encode(ProxyHeaderSpec(2, ("203.0.113.7", 4242)), LOCAL, PEER)
    assert header == (V2_SIGNATURE + bytes([0x21, 0x11, 0x00, 0x0C])  # v2 PROXY, TCP4, 12
                      + bytes([203, 0, 113, 7]) + bytes([127, 0, 0, 1])
                      + (4242).to_bytes(2, "big") + (5432).to_bytes(2, "big"))


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("local", "peer"), [(LOCAL, PEER), (("::1", 7), ("::1", 443))])
def test_what_is_encoded_decodes_to_the_same_addresses(
        version: int, local: tuple[str, int], peer: tuple[str, int]) -> None:
    header = encode(ProxyHeaderSpec(version), local, peer)  # type: ignore[arg-type]
    taken, rest = read_framed(header + b"first bytes of the client")
    assert taken == header and rest == b"first bytes of the client"
    assert decode(taken) == ProxyHeader(version, "proxy", local, peer, {},  # type: ignore[arg-type]
                                        len(header))


def test_a_source_of_another_family_is_refused_with_the_fix() -> None:
    with pytest.raises(ProxyHeaderError, match="source 2001:db8::1 is IPv6 but the "
                                               "connection is IPv4.*give an IPv4 source"):
        encode(ProxyHeaderSpec(2, ("2001:db8::1", 1)), LOCAL, PEER)


def test_v2_tlvs_are_named() -> None:
    result = ProxyResultIPv4((IPv4Address("192.0.2.1"), 1), (IPv4Address("192.0.2.2"), 2),
                             tlv=ProxyProtocolTLV(authority="db.internal",
                                                  unique_id=b"\x01\x02", alpn=b"h2"))
    header = ProxyProtocolV2().pack(result)
    decoded = decode(read_framed(header)[0])
    assert decoded.source == ("192.0.2.1", 1) and decoded.destination == ("192.0.2.2", 2)
    assert decoded.tlvs["authority"] == "db.internal"
    assert decoded.tlvs["alpn"] == "h2"
    assert decoded.tlvs["unique_id"] == "0102"
    assert "authority=db.internal" in decoded.describe()


def test_v1_unknown_and_v2_local_have_no_client() -> None:
    unknown = decode(b"PROXY UNKNOWN\r\n")
    assert unknown.command == "unknown" and unknown.source is None
    local = decode(V2_SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00]))
    assert local.command == "local" and "LOCAL" in local.describe()


@pytest.mark.parametrize(("stream", "message"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a PROXY protocol header: it starts with"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not a PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 32, "not a PROXY protocol"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "must end with CRLF"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "malformed PROXY v1 header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "malformed PROXY v1 header"),
    (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "malformed PROXY v1 header"),
    (b"PROXY " + b"A" * 200, f"longer than {V1_MAX_LENGTH} bytes"),
    (V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + b"\0" * 12, "version 1 \\(only 2"),
    (V2_SIGNATURE + bytes([0x2F, 0x11, 0, 12]) + b"\0" * 12, "malformed PROXY v2 header"),
    (V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + b"\0" * 4, "malformed PROXY v2 header"),
])
def test_malformed_headers_are_named(stream: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        decode(read_framed(stream)[0])


def test_a_non_proxy_client_is_told_from_its_first_bytes() -> None:
    # A reader needs no more than the bytes already seen to refuse: no waiting for 15.
    with pytest.raises(ProxyHeaderError, match="not a PROXY"):
        still_needed(b"GET")
    assert still_needed(b"PRO") == 12 and still_needed(b"\r\n\r\n") == 12


def test_framing_never_asks_past_the_shortest_header() -> None:
    assert still_needed(b"") == len(b"PROXY UNKNOWN\r\n")
    assert still_needed(b"PROXY UNKNOWN\r\n") == 0


VALID = [encode(ProxyHeaderSpec(v, src), local, peer)  # type: ignore[arg-type]
         for v in (1, 2) for src in (None, ("192.0.2.9", 65535))
         for local, peer in ((LOCAL, PEER),)]


@settings(max_examples=400, deadline=2000)
@given(st.binary(max_size=300))
def test_any_bytes_frame_and_decode_or_raise_proxy_header_error(data: bytes) -> None:
    try:
        taken, _ = read_framed(data)
        header = decode(taken)
    except ProxyHeaderError:
        return
    assert header.version in (1, 2) and header.length == len(taken)


@settings(max_examples=400, deadline=2000)
@given(st.sampled_from(VALID), st.data())
def test_damaged_valid_headers_decode_or_raise_proxy_header_error(
        header: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(header) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=4))
    damaged = header[:position] + replacement + header[position + 1:]
    with contextlib.suppress(ProxyHeaderError):
        decode(read_framed(damaged + b"tail")[0])
