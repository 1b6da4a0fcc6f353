"""A minimal BER encoder/decoder: just what LDAP's StartTLS and a RootDSE read need.

LDAP uses definite lengths and single-byte tags only (RFC 4511 §5.1), so the decoder
rejects indefinite lengths, multi-byte tags and lengths over four bytes, and checks every
length against what is there. Decoding failures are remote protocol errors.
"""

from __future__ import annotations

from tcpcli.protocols.errors import RemoteProtocolError

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
ENUMERATED = 0x0A
BOOLEAN = 0x01

TLV = tuple[int, bytes]  # (tag byte, content)


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def integer(value: int, tag: int = INTEGER) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)  # room for the sign bit
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def octets(value: bytes | str, tag: int = OCTET_STRING) -> bytes:
    return tlv(tag, value.encode() if isinstance(value, str) else value)


def boolean(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")


def sequence(*items: bytes, tag: int = SEQUENCE) -> bytes:
    return tlv(tag, b"".join(items))


def header(data: bytes | bytearray, pos: int = 0) -> tuple[int, int, int] | None:
    """``(tag, content_start, content_length)`` of the TLV at ``pos``; None if truncated."""
    if len(data) < pos + 2:
        return None
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise RemoteProtocolError("ldap: a multi-byte BER tag")
    first = data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, first
    count = first & 0x7F
    if count == 0:
        raise RemoteProtocolError("ldap: an indefinite BER length (not allowed in LDAP)")
    if count > 4:
        raise RemoteProtocolError("ldap: a BER length of more than four bytes")
    if len(data) < pos + 2 + count:
        return None
    return tag, pos + 2 + count, int.from_bytes(data[pos + 2 : pos + 2 + count], "big")


def children(content: bytes) -> list[TLV]:
    """The TLVs inside a constructed value; they must fill it exactly."""
    items: list[TLV] = []
    pos = 0
    while pos < len(content):
        head = header(content, pos)
        if head is None:
            raise RemoteProtocolError("ldap: a truncated BER element")
        tag, start, length = head
        if start + length > len(content):
            raise RemoteProtocolError("ldap: a BER element longer than its container")
        items.append((tag, content[start : start + length]))
        pos = start + length
    return items


def decode_integer(content: bytes) -> int:
    if not content or len(content) > 8:
        raise RemoteProtocolError("ldap: a BER integer of bad size")
    return int.from_bytes(content, "big", signed=True)
