"""TLS detection without a TLS library: a ClientHello builder and a reply classifier.

Enough to tell whether a port speaks TLS and which version it picked (from a ServerHello,
TLS 1.3's supported_versions included) or why it refused (an alert). The certificate and a
real handshake are the core's job (``tcpcli.core.tls``).
"""

from __future__ import annotations

import ipaddress
import os
import struct
from dataclasses import dataclass

from tcpcli.protocols.errors import LocalProtocolError

HANDSHAKE, ALERT = 0x16, 0x15
MAX_RECORD = (1 << 14) + 2048
#: ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
HELLO_RETRY_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
            0x0304: "TLS 1.3"}
CIPHERS = {
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384", 0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0x009C: "AES128-GCM-SHA256", 0x009D: "AES256-GCM-SHA384", 0x002F: "AES128-SHA",
    0x0035: "AES256-SHA", 0xC013: "ECDHE-RSA-AES128-SHA", 0xC014: "ECDHE-RSA-AES256-SHA",
}
ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 47: "illegal_parameter",
    48: "unknown_ca", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 109: "missing_extension", 110: "unsupported_extension",
    112: "unrecognized_name", 116: "certificate_required", 120: "no_application_protocol",
}
_CIPHER_SUITES = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
                  0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035)
_SIGNATURE_ALGORITHMS = (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501,
                         0x0601, 0x0203, 0x0201)
_GROUPS = (0x001D, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1


def _u16s(values: tuple[int, ...]) -> bytes:
    return b"".join(struct.pack("!H", value) for value in values)


def _vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def _extension(kind: int, data: bytes) -> bytes:
    return struct.pack("!H", kind) + _vector(data, 2)


def client_hello(server_name: str | None = None, *, random: bytes | None = None,
                 key_share: bytes | None = None, session_id: bytes | None = None) -> bytes:
    """One TLS record with a ClientHello offering TLS 1.0–1.3 and common suites.

    ``random``, ``key_share`` (an x25519 public key) and ``session_id`` default to fresh
    random bytes; pass them for byte-exact tests. Any 32 bytes are a usable x25519 share
    for a server to answer; we never finish the handshake.
    """
    random = os.urandom(32) if random is None else random
    key_share = os.urandom(32) if key_share is None else key_share
    session_id = os.urandom(32) if session_id is None else session_id
    extensions = b""
    if server_name:
        try:
            ipaddress.ip_address(server_name.strip("[]"))
        except ValueError:  # SNI carries host names only (RFC 6066 §3)
            try:
                name = server_name.rstrip(".").encode("idna")
            except UnicodeError as exc:
                raise LocalProtocolError(f"not a host name for SNI: {server_name!r}") from exc
            extensions += _extension(0, _vector(b"\x00" + _vector(name, 2), 2))
    extensions += _extension(10, _vector(_u16s(_GROUPS), 2))
    extensions += _extension(11, b"\x01\x00")
    extensions += _extension(13, _vector(_u16s(_SIGNATURE_ALGORITHMS), 2))
    extensions += _extension(43, _vector(_u16s((0x0304, 0x0303, 0x0302, 0x0301)), 1))
    extensions += _extension(45, b"\x01\x01")
    extensions += _extension(51, _vector(struct.pack("!H", 0x001D) + _vector(key_share, 2), 2))
    extensions += _extension(0xFF01, b"\x00")
    body = (
        b"\x03\x03" + random + _vector(session_id, 1) + _vector(_u16s(_CIPHER_SUITES), 2)
        + b"\x01\x00" + _vector(extensions, 2)
    )
    handshake = b"\x01" + _vector(body, 3)
    return b"\x16\x03\x01" + _vector(handshake, 2)


@dataclass(frozen=True)
class TlsReply:
    """What the first TLS record of a reply says."""

    kind: str  # "server-hello", "hello-retry-request", "alert", "handshake"
    version: str | None = None  # the negotiated version (ServerHello) or the record's
    cipher: str | None = None
    alert: str | None = None

    @property
    def detail(self) -> str:
        if self.kind == "alert":
            return f"TLS alert {self.alert}"
        parts = [self.version or "TLS", self.kind.replace("-", " ")]
        if self.cipher:
            parts.append(self.cipher)
        return ", ".join(parts)


def record_header(data: bytes) -> tuple[int, int, int] | None:
    """``(content type, record version, length)`` if ``data`` starts like a TLS record."""
    if len(data) < 5 or data[0] not in (HANDSHAKE, ALERT, 0x14, 0x17) or data[1] != 3:
        return None
    version, length = struct.unpack("!HH", data[1:5])
    if data[2] > 4 or length == 0 or length > MAX_RECORD:
        return None
    return data[0], version, length


def parse_tls_reply(data: bytes) -> TlsReply | None:
    """Classify a server's first bytes as TLS; None when they are not a TLS record."""
    header = record_header(data)
    if header is None:
        return None
    content_type, record_version, length = header
    body = data[5 : 5 + length]
    if content_type == ALERT:
        if len(body) < 2:
            return TlsReply("alert", VERSIONS.get(record_version), alert="(truncated)")
        return TlsReply("alert", VERSIONS.get(record_version),
                        alert=ALERTS.get(body[1], str(body[1])))
    if content_type != HANDSHAKE or body[:1] != b"\x02":
        return TlsReply("handshake", VERSIONS.get(record_version))
    return _server_hello(body[4:], record_version)


def _server_hello(hello: bytes, record_version: int) -> TlsReply:
    version = VERSIONS.get(record_version)
    if len(hello) < 35:
        return TlsReply("server-hello", version)
    legacy = struct.unpack("!H", hello[:2])[0]
    version = VERSIONS.get(legacy, version)
    kind = "hello-retry-request" if hello[2:34] == HELLO_RETRY_RANDOM else "server-hello"
    pos = 34
    sid_length = hello[pos]
    pos += 1 + sid_length
    if len(hello) < pos + 3:
        return TlsReply(kind, version)
    suite = struct.unpack("!H", hello[pos : pos + 2])[0]
    cipher = CIPHERS.get(suite, f"0x{suite:04x}")
    pos += 3
    if len(hello) >= pos + 2:
        end = min(len(hello), pos + 2 + struct.unpack("!H", hello[pos : pos + 2])[0])
        pos += 2
        while pos + 4 <= end:
            kind_code, size = struct.unpack("!HH", hello[pos : pos + 4])
            if kind_code == 43 and size == 2 and pos + 6 <= end:
                selected = struct.unpack("!H", hello[pos + 4 : pos + 6])[0]
                version = VERSIONS.get(selected, f"0x{selected:04x}")
            pos += 4 + size
    return TlsReply(kind, version, cipher)
