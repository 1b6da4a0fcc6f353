"""MySQL / MariaDB SSL upgrade (the SSLRequest packet), sans-IO.

    S: [len][seq 0] 0a "8.0.36\\0" conn-id scramble caps(CLIENT_SSL) ... "caching_sha2_password"
    C: [32][seq 1] caps|CLIENT_SSL, max-packet, charset, 23 zero bytes    (the SSLRequest)
    -- TLS --                                     <- no go-ahead: TLS starts right after it

The client sends the full HandshakeResponse over TLS afterwards (that is the application's
business). There is no server reply to wait for, so the greeting packet must be the only
thing in the buffer.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from tcpcli.protocols.base import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_REPLY,
    Goal,
    Outcome,
    Send,
    Table,
    TableDialogue,
    printable,
)
from tcpcli.protocols.errors import LimitExceededError, RemoteProtocolError

CAPABILITY_NAMES = (
    "LONG_PASSWORD", "FOUND_ROWS", "LONG_FLAG", "CONNECT_WITH_DB", "NO_SCHEMA", "COMPRESS",
    "ODBC", "LOCAL_FILES", "IGNORE_SPACE", "PROTOCOL_41", "INTERACTIVE", "SSL",
    "IGNORE_SIGPIPE", "TRANSACTIONS", "RESERVED", "SECURE_CONNECTION", "MULTI_STATEMENTS",
    "MULTI_RESULTS", "PS_MULTI_RESULTS", "PLUGIN_AUTH", "CONNECT_ATTRS",
    "PLUGIN_AUTH_LENENC_CLIENT_DATA", "CAN_HANDLE_EXPIRED_PASSWORDS", "SESSION_TRACK",
    "DEPRECATE_EOF", "OPTIONAL_RESULTSET_METADATA", "ZSTD_COMPRESSION", "QUERY_ATTRIBUTES",
    "MULTI_FACTOR_AUTHENTICATION", "CAPABILITY_EXTENSION", "SSL_VERIFY_SERVER_CERT",
    "REMEMBER_OPTIONS",
)
CLIENT_LONG_PASSWORD = 1 << 0
CLIENT_LONG_FLAG = 1 << 2
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21

#: What we offer in the SSLRequest (intersected with the server's flags).
CLIENT_FLAGS = (
    CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
)
MAX_PACKET = 1 << 24
#: Auth plugins that send the password itself.
CLEARTEXT_PLUGINS = frozenset({"mysql_clear_password", "dialog"})


def capability_names(flags: int) -> list[str]:
    return [name for bit, name in enumerate(CAPABILITY_NAMES) if flags & (1 << bit)]


@dataclass(frozen=True)
class Packet:
    """One MySQL packet: its sequence number and payload."""

    sequence: int
    payload: bytes


@dataclass(frozen=True)
class ServerGreeting:
    """The parts of a HandshakeV10 packet that matter for a report and the SSLRequest."""

    sequence: int
    server_version: str
    connection_id: int
    capabilities: int
    charset: int
    status: int
    auth_plugin: str


@dataclass(frozen=True)
class ServerError:
    """A MySQL ERR packet: the error code and message."""

    code: int
    message: str


def take_packet(buffer: bytearray, max_size: int, name: str = "mysql") -> Packet | None:
    """One packet (3-byte little-endian length, sequence id, payload) or None."""
    if len(buffer) < 4:
        return None
    length = int.from_bytes(buffer[:3], "little")
    if length > max_size:
        raise LimitExceededError(f"{name}: a {length}-byte packet exceeds {max_size} bytes")
    if len(buffer) < 4 + length:
        return None
    packet = Packet(buffer[3], bytes(buffer[4 : 4 + length]))
    del buffer[: 4 + length]
    return packet


def parse_greeting(packet: Packet, name: str = "mysql") -> ServerGreeting | ServerError:
    """Parse a HandshakeV10 packet or an ERR packet; anything else is an error."""
    data = packet.payload
    if data[:1] == b"\xff":
        if len(data) < 3:
            raise RemoteProtocolError(f"{name}: a truncated error packet")
        code = int.from_bytes(data[1:3], "little")
        message = data[3:]
        if message[:1] == b"#":
            message = message[6:]
        return ServerError(code, printable(message))
    if data[:1] != b"\x0a":
        raise RemoteProtocolError(
            f"{name}: not a MySQL handshake (protocol version byte {data[:1].hex() or 'none'})"
        )
    end = data.find(b"\x00", 1)
    if end < 0 or len(data) < end + 1 + 4 + 8 + 1 + 2:
        raise RemoteProtocolError(f"{name}: a truncated handshake packet")
    version = printable(data[1:end])
    pos = end + 1
    connection_id = int.from_bytes(data[pos : pos + 4], "little")
    pos += 4 + 8 + 1  # connection id, auth-plugin-data part 1, filler
    capabilities = int.from_bytes(data[pos : pos + 2], "little")
    pos += 2
    charset = status = 0
    plugin = ""
    if len(data) >= pos + 16:
        charset = data[pos]
        status = int.from_bytes(data[pos + 1 : pos + 3], "little")
        capabilities |= int.from_bytes(data[pos + 3 : pos + 5], "little") << 16
        auth_data_length = data[pos + 5]
        pos += 16  # charset, status, upper capabilities, auth data length, reserved(10)
        if capabilities & CLIENT_SECURE_CONNECTION:
            pos += max(13, auth_data_length - 8)
        if capabilities & CLIENT_PLUGIN_AUTH and pos < len(data):
            # Some servers omit the final NUL (MySQL bug #59453): take up to the end.
            plugin_end = data.find(b"\x00", pos)
            plugin = printable(data[pos : plugin_end if plugin_end >= 0 else len(data)])
    return ServerGreeting(packet.sequence, version, connection_id, capabilities, charset,
                          status, plugin)


def ssl_request(greeting: ServerGreeting) -> bytes:
    """The 32-byte SSLRequest (a HandshakeResponse41 header) with the next sequence id."""
    flags = (CLIENT_FLAGS & greeting.capabilities) | CLIENT_SSL | CLIENT_PROTOCOL_41
    charset = greeting.charset or 33  # 33: utf8_general_ci, what openssl sends
    payload = struct.pack("<IIB23x", flags, MAX_PACKET, charset)
    header = len(payload).to_bytes(3, "little") + bytes([(greeting.sequence + 1) & 0xFF])
    return header + payload


class Step(enum.Enum):
    GREETING = "greeting"
    SSL_REQUEST = "sslrequest"


class MysqlDialogue(TableDialogue[Packet]):
    """MySQL / MariaDB STARTTLS (CLIENT_SSL in the handshake)."""

    name = "mysql"
    default_ports = (3306,)
    server_speaks_first = True
    # The greeting must be alone in the buffer: checked as injection at the upgrade.
    LOCKSTEP = False

    FIRST = Step.GREETING
    AFTER_TLS = Goal.DONE
    NO_REPLY: ClassVar[Mapping[enum.Enum, enum.Enum]] = {Step.SSL_REQUEST: Goal.UPGRADE}
    TABLE: ClassVar[Table] = {
        # Rule 1 — the greeting: CLIENT_SSL set → send the SSLRequest and start TLS at once
        # (MySQL has no go-ahead); not set → not offered. An ERR packet instead of a
        # greeting ("Host ... is not allowed to connect") → the session is refused.
        (Step.GREETING, Outcome.OFFERED): Step.SSL_REQUEST,
        (Step.GREETING, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.GREETING, Outcome.NO): Goal.SESSION_REFUSED,
    }

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE,
                 max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        self._server: ServerGreeting | None = None

    def _partial(self) -> bool:
        return bool(self._buffer)

    def _next_reply(self) -> Packet | None:
        return take_packet(self._buffer, self.max_reply, self.name)

    def _command(self, step: enum.Enum) -> Send | None:
        if step is Step.SSL_REQUEST and self._server is not None:
            return Send(ssl_request(self._server), "SSLRequest")
        return None

    def _classify(self, step: enum.Enum, reply: Packet) -> Outcome:
        parsed = parse_greeting(reply, self.name)
        if isinstance(parsed, ServerError):
            self._last_text = f"error {parsed.code}: {parsed.message}"
            return Outcome.NO
        self._server = parsed
        self._last_text = ""
        self._greeting(parsed.server_version)
        self._detail("server_version", parsed.server_version)
        if "mariadb" in parsed.server_version.lower():
            self._detail("flavor", "MariaDB")
        if parsed.auth_plugin:
            self._detail("auth_plugin", parsed.auth_plugin)
        self._detail("connection_id", str(parsed.connection_id))
        self._capabilities(capability_names(parsed.capabilities))
        self._plaintext_login(parsed.auth_plugin in CLEARTEXT_PLUGINS)
        if not parsed.capabilities & CLIENT_PROTOCOL_41:
            raise RemoteProtocolError(f"{self.name}: a pre-4.1 server (no CLIENT_PROTOCOL_41)")
        offered = bool(parsed.capabilities & CLIENT_SSL)
        self._update(starttls_offered=offered)
        if not offered:
            self._why = "CLIENT_SSL is not set in the server's handshake"
        return Outcome.OFFERED if offered else Outcome.ABSENT
