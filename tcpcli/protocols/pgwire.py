"""PostgreSQL's start-up, authentication and simple query, sans-IO: what ``bench
--protocol postgres`` needs to open a session the way a client without a pool does, and
to time one query on it (protocol docs §55.2 "Message Flow", §55.7 "Message Formats").

    C: StartupMessage (protocol 3.0, user, database, application_name)
    S: AuthenticationOk | AuthenticationCleartextPassword | AuthenticationMD5Password
       | AuthenticationSASL (SCRAM-SHA-256, RFC 5802 / RFC 7677) ...
    S: ParameterStatus*, BackendKeyData, ReadyForQuery
    C: Query "SELECT 1"
    S: RowDescription, DataRow*, CommandComplete, ReadyForQuery

The password comes from the caller (the CLI reads ``PGPASSWORD``, as libpq does); it is
never sent in clear text over a connection without TLS. TLS itself is negotiated before
this, with the SSLRequest of :mod:`tcpcli.protocols.postgres`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Final

from tcpcli.protocols.errors import RemoteProtocolError

PROTOCOL_3_0: Final = 196608
SCRAM: Final = "SCRAM-SHA-256"
#: ReadyForQuery, and the messages a session's start or a query may send before it.
READY: Final = b"Z"
#: A start-up or a reply is this long at most before the peer is taken for something else.
MAX_MESSAGE: Final = 1 << 20


class PgError(RemoteProtocolError):
    """The server said no: an ErrorResponse (SQLSTATE and message), or an authentication
    this client will not do. ``auth`` is true when it is about credentials."""

    def __init__(self, message: str, *, sqlstate: str = "", auth: bool = False) -> None:
        super().__init__(message)
        self.sqlstate, self.auth = sqlstate, auth
        self.reason = "auth" if auth else "server-error"


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def startup_message(user: str, database: str, application: str = "tcpcli bench") -> bytes:
    fields = b"".join(key.encode() + b"\0" + value.encode() + b"\0" for key, value in
                      (("user", user), ("database", database),
                       ("application_name", application)))
    body = struct.pack("!I", PROTOCOL_3_0) + fields + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def query_message(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


def next_message(buffer: bytearray) -> tuple[bytes, bytes] | None:
    """The first complete message in ``buffer`` as (type, body), removed from it; None
    until one is complete."""
    if len(buffer) < 5:
        return None
    length = struct.unpack_from("!I", buffer, 1)[0]
    if length < 4 or length > MAX_MESSAGE:
        raise RemoteProtocolError(f"not a PostgreSQL message (type {bytes(buffer[:1])!r}, "
                                  f"length {length})")
    if len(buffer) < 1 + length:
        return None
    kind, body = bytes(buffer[:1]), bytes(buffer[5:1 + length])
    del buffer[:1 + length]
    return kind, body


def error_fields(body: bytes) -> dict[str, str]:
    """An ErrorResponse's fields by their one-letter codes (S severity, C SQLSTATE, M ...)."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def error_from(body: bytes, *, trusted: bool) -> PgError:
    """The server's error. Its text is shown only when it can be trusted (after TLS, or
    once the session is authenticated): before that anyone on the path could have written
    it (CVE-2024-10977); the SQLSTATE alone is shown then."""
    fields = error_fields(body)
    code = fields.get("C", "")
    text = fields.get("M", "") if trusted else "(its text is not shown before TLS)"
    return PgError(f"the server refused: SQLSTATE {code or '?'}: {text[:200]}", sqlstate=code,
                   auth=code.startswith("28"))


def reply_end(buffer: bytearray) -> tuple[int, PgError | None] | None:
    """Where a query's reply ends (just past its ReadyForQuery), and the error it carried;
    None until the ReadyForQuery has arrived. ``buffer`` is left as it is."""
    offset, failure = 0, None
    while len(buffer) - offset >= 5:
        kind = buffer[offset:offset + 1]
        length = struct.unpack_from("!I", buffer, offset + 1)[0]
        if length < 4 or length > MAX_MESSAGE:
            raise RemoteProtocolError("not a PostgreSQL reply")
        end = offset + 1 + length
        if end > len(buffer):
            return None
        if kind == b"E" and failure is None:
            failure = error_from(bytes(buffer[offset + 5:end]), trusted=True)
        offset = end
        if kind == READY:
            return offset, failure
    return None


class StartupSession:
    """The client's side of start-up and authentication: :meth:`first` to send, then
    :meth:`receive` each message until :attr:`ready`; each returns the bytes to send."""

    def __init__(self, user: str, database: str, password: str | None, *,
                 encrypted: bool) -> None:
        self.user, self.database, self.password = user, database, password
        self.encrypted = encrypted
        self.ready = False
        self.authenticated = False
        self._scram: _Scram | None = None

    def first(self) -> bytes:
        return startup_message(self.user, self.database)

    def receive(self, kind: bytes, body: bytes) -> bytes:
        if kind == b"E":
            raise error_from(body, trusted=self.encrypted or self.authenticated)
        if kind == READY:
            self.ready = True
            return b""
        if kind != b"R":
            if self.authenticated:
                return b""  # ParameterStatus, BackendKeyData, NoticeResponse
            raise RemoteProtocolError(f"unexpected message {kind!r} before authentication")
        if len(body) < 4:
            raise RemoteProtocolError("a short authentication request")
        code = struct.unpack_from("!I", body)[0]
        if code == 0:
            self.authenticated = True
            return b""
        if code == 3:
            if not self.encrypted:
                raise PgError("the server asks for the password in clear text over a "
                              "connection without TLS; tcpcli will not send it (add --tls)",
                              auth=True)
            return message(b"p", self._password().encode() + b"\0")
        if code == 5:
            salt = body[4:8]
            inner = hashlib.md5((self._password() + self.user).encode()).hexdigest()
            outer = hashlib.md5(inner.encode() + salt).hexdigest()
            return message(b"p", b"md5" + outer.encode() + b"\0")
        if code == 10:
            mechanisms = [m.decode() for m in body[4:].split(b"\0") if m]
            if SCRAM not in mechanisms:
                raise PgError(f"the server offers {', '.join(mechanisms)}; tcpcli speaks "
                              f"{SCRAM}", auth=True)
            self._scram = _Scram(self._password())
            first = self._scram.client_first()
            return message(b"p", SCRAM.encode() + b"\0" + struct.pack("!I", len(first))
                           + first)
        if code == 11 and self._scram is not None:
            return message(b"p", self._scram.client_final(body[4:]))
        if code == 12 and self._scram is not None:
            self._scram.verify_server(body[4:])
            return b""
        raise PgError(f"the server asks for an authentication tcpcli does not speak "
                      f"(request {code})", auth=True)

    def _password(self) -> str:
        if self.password is None:
            raise PgError(f"the server asks {self.user} for a password: set PGPASSWORD",
                          auth=True)
        return self.password


class _Scram:
    """SCRAM-SHA-256's client (RFC 5802, RFC 7677), as PostgreSQL runs it: no channel
    binding, the user name left empty (the StartupMessage gave it)."""

    def __init__(self, password: str, nonce: str | None = None, user: str = "") -> None:
        self._password = password.encode()
        self._nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self._first_bare = f"n={user},r={self._nonce}"
        self._auth_message = b""
        self._salted = b""

    def client_first(self) -> bytes:
        return ("n,," + self._first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        fields = dict(part.split("=", 1) for part in server_first.decode().split(",")
                      if "=" in part)
        nonce, salt, rounds = fields.get("r", ""), fields.get("s", ""), fields.get("i", "")
        if not nonce.startswith(self._nonce) or not salt or not rounds.isdigit():
            raise PgError("the server's SCRAM challenge does not answer ours", auth=True)
        self._salted = hashlib.pbkdf2_hmac("sha256", self._password, base64.b64decode(salt),
                                           int(rounds))
        without_proof = f"c=biws,r={nonce}"
        self._auth_message = (f"{self._first_bare},{server_first.decode()},"
                              f"{without_proof}").encode()
        client_key = hmac.digest(self._salted, b"Client Key", "sha256")
        signature = hmac.digest(hashlib.sha256(client_key).digest(), self._auth_message,
                                "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server(self, server_final: bytes) -> None:
        """The server proves it knew the password too (or it is not the server)."""
        server_key = hmac.digest(self._salted, b"Server Key", "sha256")
        expected = base64.b64encode(hmac.digest(server_key, self._auth_message,
                                                "sha256")).decode()
        if not hmac.compare_digest(server_final.decode().removeprefix("v="), expected):
            raise PgError("the server's SCRAM signature is wrong: it does not know the "
                          "password", auth=True)
