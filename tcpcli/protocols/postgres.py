"""PostgreSQL SSLRequest (protocol docs §55.2.10 "SSL Session Encryption"), sans-IO.

    C: 00 00 00 08 04 d2 16 2f                   (length 8, code 80877103)
    S: S                                          <- nothing may follow it (CVE-2021-23222)
    -- TLS --

``N`` means the server does not do SSL. An ``E`` (ErrorResponse) comes from servers that
predate SSLRequest; its text is unauthenticated and is not shown (CVE-2024-10977).
"""

from __future__ import annotations

import enum
import struct
from typing import ClassVar

from tcpcli.protocols.base import Goal, Outcome, Send, Table, TableDialogue, printable
from tcpcli.protocols.errors import RemoteProtocolError

SSL_REQUEST_CODE = 80877103
SSL_REQUEST = struct.pack("!II", 8, SSL_REQUEST_CODE)


class Step(enum.Enum):
    SSL_REQUEST = "sslrequest"


class PostgresDialogue(TableDialogue[bytes]):
    """PostgreSQL STARTTLS (the SSLRequest message)."""

    name = "postgres"
    default_ports = (5432,)
    server_speaks_first = False

    FIRST = Step.SSL_REQUEST
    AFTER_TLS = Goal.DONE
    TABLE: ClassVar[Table] = {
        # Rule 1 — one byte answers the SSLRequest: S → upgrade (nothing may follow it);
        # N → refused; E (an ErrorResponse from an old server) → refused. Anything else
        # is not PostgreSQL.
        (Step.SSL_REQUEST, Outcome.OK): Goal.UPGRADE,
        (Step.SSL_REQUEST, Outcome.NO): Goal.REFUSED,
    }

    def _next_reply(self) -> bytes | None:
        if not self._buffer:
            return None
        byte = bytes(self._buffer[:1])
        del self._buffer[:1]
        if byte == b"E":
            # The rest is an ErrorResponse we will not show; it is not a go-ahead either.
            self._buffer.clear()
        return byte

    def _command(self, step: enum.Enum) -> Send | None:
        return Send(SSL_REQUEST, "SSLRequest")

    def _classify(self, step: enum.Enum, reply: bytes) -> Outcome:
        self._last_text = printable(reply)
        if reply == b"S":
            # The go-ahead is the only offer PostgreSQL makes: say so, as N says "no".
            self._update(starttls_offered=True)
            return Outcome.OK
        if reply == b"N":
            self._why = "the server answered N: it does not accept SSL connections"
            self._update(starttls_offered=False)
            return Outcome.NO
        if reply == b"E":
            self._last_text = "E"
            self._why = (
                "the server answered with an ErrorResponse (too old for SSL?); its text is"
                " not shown because the server is not authenticated"
            )
            self._update(starttls_offered=False)
            return Outcome.NO
        raise RemoteProtocolError(
            f"{self.name}: the answer to SSLRequest was {self._last_text!r}, not S or N"
        )
