"""The sans-IO dialogues' own errors: plain exceptions, importing nothing but the stdlib.

    ProtocolError                 a dialogue failed
    ├── RemoteProtocolError       the peer broke the protocol (bad, oversized, injected)
    │   ├── ResponseInjectionError   bytes after the go-ahead, before TLS
    │   └── LimitExceededError       a line, reply, packet or element too large
    ├── LocalProtocolError        we were asked to do something the protocol forbids
    └── StartTlsUnavailableError  the peer spoke correctly but will not start TLS
        ├── StartTlsNotOfferedError
        ├── StartTlsRefusedError
        └── SessionRefusedError

They live here, not in ``tcpcli.core.errors``, so that this package stays free of anyio and
ssl. The core maps them at its boundary (``tcpcli.core.errors.translate``): what callers of
the core catch is the core's ``ProtocolError`` family, whose classes also derive from these,
so ``except tcpcli.protocols.ProtocolError`` catches a protocol failure on either side.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A sans-IO dialogue failed."""

    #: A short stable name for the failure (the ``reason`` of a JSON ``error`` event);
    #: None where the class says all there is to say.
    reason: str | None = None


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol (bad, oversized or injected reply)."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids in its current state."""


class ResponseInjectionError(RemoteProtocolError):
    """The server sent bytes after its go-ahead, before the TLS handshake.

    Such bytes would be taken as the first TLS-protected data (response injection,
    CVE-2011-0411 for SMTP, CVE-2021-23222 for PostgreSQL), so the dialogue stops.
    """

    reason = "injection"


class LimitExceededError(RemoteProtocolError):
    """A line, reply, packet or element exceeded its bound."""

    reason = "too-large"


class StartTlsUnavailableError(ProtocolError):
    """The server speaks the protocol correctly but will not start TLS.

    Never a reason to continue in plaintext: the caller reports it and stops.
    """

    reason = "starttls-unavailable"


class StartTlsNotOfferedError(StartTlsUnavailableError):
    """The server's capabilities (EHLO, CAPA, features, greeting flags, ...) lack STARTTLS."""

    reason = "starttls-not-offered"


class StartTlsRefusedError(StartTlsUnavailableError):
    """The server answered the STARTTLS request negatively (454, -ERR, NO, ``N``, ...)."""

    reason = "starttls-refused"


class SessionRefusedError(StartTlsUnavailableError):
    """The server refused or closed the session before STARTTLS (554 greeting, BYE, ...)."""

    reason = "session-refused"
