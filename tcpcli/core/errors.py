"""One exception tree for the whole package, and one place that translates foreign errors.

    TcpcliError
    ├── AddressError          invalid address, raised synchronously by connect()  (TypeError)
    ├── SocketOptionError     invalid option value, e.g. secure_transport          (TypeError)
    ├── StartTlsError         start_tls() misuse, Workers rows 11–16               (TypeError)
    ├── StreamClosedError     a side closed, closing or locked  (TypeError, ClosedResourceError)
    ├── StreamCancelledError  a read on a socket whose connection failed
    ├── PolicyError           the destination policy refused it; no packet was sent
    ├── ConnectError          the connection could not be opened
    │   ├── ResolveError
    │   │   ├── NameNotFoundError     NXDOMAIN
    │   │   ├── NoAddressError        the name exists but has no A/AAAA (for the family)
    │   │   ├── ResolverFailureError  SERVFAIL, REFUSED, malformed or truncated answers
    │   │   └── ResolveTimeoutError
    │   ├── ConnectRefusedError      RST to our SYN
    │   ├── UnreachableError         ICMP / routing errors, with errno
    │   ├── ConnectTimeoutError
    │   └── ProxyError
    ├── TLSError
    │   ├── CertificateVerifyError   verification failed: OpenSSL code and reason
    │   │   └── PinMismatchError
    │   └── TLSHandshakeError        alerts, protocol/version/cipher mismatch, garbage
    │       ├── PlaintextPeerError           the server answered in plaintext, not TLS
    │       └── ClientCertificateRequiredError  the server demands a certificate we lack
    ├── ConnectionLostError   reset or aborted mid-stream ("Network connection lost.")
    ├── SocketCanceledError   evicted by the six-socket deadlock rule
    ├── IdleTimeoutError      no bytes either way for the idle timeout
    └── ProtocolError         a sans-IO dialogue failed
        ├── RemoteProtocolError   the peer broke the protocol
        └── LocalProtocolError    we were asked to do something the protocol forbids

Every error carries ``kind``, an :class:`ErrorKind` (a short stable string) used by JSON
events, bench error counts and the CLI's exit codes, and ``workers_message``, the text a
Worker's ``connect()`` would surface for the same failure
(``shared/reference/workers-sockets-spec.md`` §4).

``map_exceptions()`` is the translation boundary: OSError, ssl, anyio, dnspython, the
dialogues' own errors and exception groups become this tree there and nowhere else.

The dialogues (``tcpcli.protocols``) are pure and cannot import this module (it needs anyio
and ssl), so they raise ``tcpcli.protocols.errors``. The core's three protocol classes
derive from both this tree and theirs: an ``except`` written against either side catches
what the core raises, and ``translate`` turns a dialogue's error into the core class of
the same family, keeping its message and ``reason`` (the original is the ``__cause__``).
Translating, rather than making the dialogues' classes TcpcliErrors, keeps a one-way
dependency: core → protocols, never back.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from tcpcli.protocols import errors as dialogue_errors

if TYPE_CHECKING:
    import ssl

#: Workers spec §4 row 7: a refused, failed or disallowed connection.
PROXY_FAILED = "proxy request failed, cannot connect to the specified address"
#: Workers spec §4 row 7b: appended when the port is 80 or 443.
FETCH_HINT = (
    ". It looks like you might be trying to connect to a HTTP-based service"
    " — consider using fetch instead"
)
#: Workers spec §4 row 10 (production only).
PORT_25_PROHIBITED = "Connections to port 25 are prohibited"
#: Workers spec §4 row 21.
CONNECTION_LOST = "Network connection lost."
#: Workers spec §4 row 18.
WRITABLE_CLOSED = "This WritableStream has been closed."
#: What workerd 1.20261117.1 says after close() (observed by tests/conformance).
WRITABLE_CLOSING = "This WritableStream belongs to an object that is closing."
READABLE_CLOSING = "This ReadableStream belongs to an object that is closing."
SOCKET_CLOSED = "This socket has been closed."
#: After startTls() the old streams stay locked by the upgrade (spec §4 row 19).
WRITER_LOCKED = "This WritableStream is currently locked to a writer."
READER_LOCKED = "This ReadableStream is currently locked to a reader."
#: A write of something that is neither bytes nor a string (workerd, observed).
NOT_BYTES = (
    "This TransformStream is being used as a byte stream, but received an object of"
    " non-ArrayBuffer/ArrayBufferView type on its writable side."
)
#: Workers spec §4 row 20: reads on a socket whose connection failed.
STREAM_CANCELLED = "Stream was cancelled."
#: Our choice (the limits page gives no text): a socket evicted by the deadlock rule.
SOCKET_CANCELED = (
    "This connection was canceled to unblock pending connections "
    "(simultaneous open connections limit)."
)


def proxy_failed_message(port: int | None) -> str:
    """The Workers rejection text for a failed connect, with the fetch hint on 80/443."""
    return PROXY_FAILED + (FETCH_HINT if port in (80, 443) else "")


class ErrorKind(StrEnum):
    """An error's stable category: the ``kind`` of JSON ``error`` events, the keys of
    bench's error counts, and what picks the exit code (``tcpcli.cli.exit_codes``)."""

    ERROR = "error"
    USAGE = "usage"
    CLOSED = "closed"
    BLOCKED = "blocked"
    CONNECT = "connect"
    DNS = "dns"
    DNS_TIMEOUT = "dns-timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    PROXY = "proxy"
    TLS = "tls"
    TLS_VERIFY = "tls-verify"
    RESET = "reset"
    CANCELED = "canceled"
    PROTOCOL = "protocol"


class TcpcliError(Exception):
    """Base of every error tcpcli raises on purpose."""

    kind: ClassVar[ErrorKind] = ErrorKind.ERROR

    @property
    def workers_message(self) -> str:
        """What a Worker would see for the same failure."""
        return str(self)


class AddressError(TcpcliError, TypeError):
    """The address is invalid; the message is the exact Workers text (spec §4 rows 1–4, 6)."""

    kind = ErrorKind.USAGE


class SocketOptionError(TcpcliError, TypeError):
    """A socket option has an unsupported value (spec §4 row 5)."""

    kind = ErrorKind.USAGE


class StartTlsError(TcpcliError, TypeError):
    """start_tls() was misused; the message is the exact Workers text (rows 11–16)."""

    kind = ErrorKind.USAGE


def _define_stream_closed_error() -> type[TcpcliError]:
    import anyio

    class StreamClosedError(TcpcliError, anyio.ClosedResourceError, TypeError):
        """A read or write on a side that is closed, closing or locked (a TypeError, as in
        workerd; also anyio's ClosedResourceError, as anyio stream users expect)."""

        kind = ErrorKind.CLOSED

        def __init__(self, message: str | None = None) -> None:
            super().__init__(message or WRITABLE_CLOSED)

    StreamClosedError.__module__, StreamClosedError.__qualname__ = __name__, "StreamClosedError"
    return StreamClosedError


if TYPE_CHECKING:
    import anyio

    class StreamClosedError(TcpcliError, anyio.ClosedResourceError, TypeError):
        kind = ErrorKind.CLOSED

        def __init__(self, message: str | None = None) -> None: ...
else:
    def __getattr__(name: str) -> object:
        # StreamClosedError derives from anyio's ClosedResourceError, and importing anyio
        # costs a one-shot run without an event loop (core.blocking), which never raises
        # it, a twentieth of its start-up: the class is made on first use.
        if name == "StreamClosedError":
            cls = globals()["StreamClosedError"] = _define_stream_closed_error()
            return cls
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class StreamCancelledError(TcpcliError):
    """A read on a socket whose connection failed: the readable was cancelled (row 20).
    The connection error is the ``__cause__``."""

    kind = ErrorKind.CLOSED

    def __init__(self, message: str = STREAM_CANCELLED) -> None:
        super().__init__(message)


class _TargetedError(TcpcliError):
    """An error about one destination; ``port`` picks the Workers text."""

    def __init__(self, message: str, *, target: str | None = None, port: int | None = None):
        super().__init__(message)
        self.target = target
        self.port = port

    @property
    def workers_message(self) -> str:
        return proxy_failed_message(self.port)


class PolicyError(_TargetedError):
    """The destination policy refused the destination before any packet was sent.

    ``rule`` names the rule that decided, ``lift`` is the option that would allow it.
    """

    kind = ErrorKind.BLOCKED

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        lift: str,
        target: str | None = None,
        port: int | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(message, target=target, port=port)
        self.rule = rule
        self.lift = lift
        self.address = address

    @property
    def workers_message(self) -> str:
        if self.port == 25:
            return PORT_25_PROHIBITED
        return proxy_failed_message(self.port)


class ConnectError(_TargetedError):
    """The connection could not be opened."""

    kind = ErrorKind.CONNECT


class ResolveError(ConnectError):
    kind = ErrorKind.DNS


class NameNotFoundError(ResolveError):
    """NXDOMAIN: the name does not exist."""


class NoAddressError(ResolveError):
    """The name exists but has no address records (of the requested family)."""


class ResolverFailureError(ResolveError):
    """The resolver answered with SERVFAIL/REFUSED or an unusable message."""


class ResolveTimeoutError(ResolveError):
    kind = ErrorKind.DNS_TIMEOUT


class ConnectRefusedError(ConnectError):
    kind = ErrorKind.REFUSED


class UnreachableError(ConnectError):
    kind = ErrorKind.UNREACHABLE

    def __init__(
        self,
        message: str,
        *,
        target: str | None = None,
        port: int | None = None,
        errno_: int | None = None,
    ) -> None:
        super().__init__(message, target=target, port=port)
        self.errno = errno_


class ConnectTimeoutError(ConnectError):
    kind = ErrorKind.TIMEOUT


class ProxyError(ConnectError):
    kind = ErrorKind.PROXY


class TLSError(_TargetedError):
    kind = ErrorKind.TLS


class CertificateVerifyError(TLSError):
    """Certificate verification failed; ``verify_code``/``reason`` come from OpenSSL."""

    kind = ErrorKind.TLS_VERIFY

    def __init__(
        self,
        message: str,
        *,
        verify_code: int | None = None,
        reason: str = "",
        target: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(message, target=target, port=port)
        self.verify_code = verify_code
        self.reason = reason


class PinMismatchError(CertificateVerifyError):
    """No certificate in the chain matches the requested SPKI pin."""


class TLSHandshakeError(TLSError):
    """The handshake failed for a reason other than certificate verification."""


class PlaintextPeerError(TLSHandshakeError):
    """We spoke TLS and the server answered in plaintext (an SSH, SMTP or HTTP port):
    ``banner`` is what it sent first, escaped and bounded. OpenSSL alone would only say
    WRONG_VERSION_NUMBER or UNEXPECTED_MESSAGE."""

    reason = "plaintext-server"

    def __init__(self, message: str, *, banner: str, target: str | None = None,
                 port: int | None = None) -> None:
        super().__init__(message, target=target, port=port)
        self.banner = banner


class ClientCertificateRequiredError(TLSHandshakeError):
    """The server requires a client certificate and we sent none: TLS 1.3 says so with
    alert 116 after our side of the handshake is done (at the first read); TLS 1.2 servers
    answer the empty Certificate with a handshake_failure alert."""

    reason = "client-certificate-required"


class ConnectionLostError(_TargetedError):
    kind = ErrorKind.RESET

    @property
    def workers_message(self) -> str:
        return CONNECTION_LOST


class SocketCanceledError(TcpcliError):
    kind = ErrorKind.CANCELED

    def __init__(self, message: str = SOCKET_CANCELED) -> None:
        super().__init__(message)


class IdleTimeoutError(_TargetedError):
    kind = ErrorKind.TIMEOUT


class ProtocolError(TcpcliError, dialogue_errors.ProtocolError):
    """A sans-IO dialogue failed, or the peer broke an application protocol.

    ``reason`` is the dialogue's name for the failure ("starttls-refused", "injection",
    ...), or None.
    """

    kind = ErrorKind.PROTOCOL

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class RemoteProtocolError(ProtocolError, dialogue_errors.RemoteProtocolError):
    """The peer broke the protocol (bad, oversized or injected reply)."""


class LocalProtocolError(ProtocolError, dialogue_errors.LocalProtocolError):
    """We were asked to do something the protocol forbids in its current state."""


def translate_dialogue_error(exc: BaseException) -> BaseException:
    """A dialogue's error (``tcpcli.protocols.errors``) as the core class of the same
    family, with its message and reason; any other exception as it is.

    ``translate`` does this for everything passing ``map_exceptions``; the CLI's runner
    calls it for a dialogue error raised outside the core (e.g. a bad ``--ehlo-name``).
    """
    if isinstance(exc, TcpcliError) or not isinstance(exc, dialogue_errors.ProtocolError):
        return exc
    family: type[ProtocolError] = ProtocolError
    if isinstance(exc, dialogue_errors.RemoteProtocolError):
        family = RemoteProtocolError
    elif isinstance(exc, dialogue_errors.LocalProtocolError):
        family = LocalProtocolError
    mapped = family(str(exc), reason=exc.reason)
    mapped.__cause__ = exc
    return mapped


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    # Prefer our own errors; a cancellation next to a real error is collateral damage.
    ours = [leaf for leaf in leaves if isinstance(leaf, TcpcliError)]
    if ours:
        return ours[0]
    if len(leaves) == 1:
        return leaves[0]
    return None


def _translate_ssl(exc: ssl.SSLError, where: str, *, target: str | None, port: int | None,
                   phase: str) -> TcpcliError:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateVerifyError(
            f"TLS certificate of {where} failed verification: {exc.verify_message}",
            verify_code=exc.verify_code,
            reason=str(exc.verify_message),
            target=target,
            port=port,
        )
    reason = exc.reason or str(exc)
    if phase == "stream":
        return ConnectionLostError(
            f"TLS connection to {where} failed: {reason}", target=target, port=port
        )
    return TLSHandshakeError(f"TLS handshake with {where} failed: {reason}",
                             target=target, port=port)


def translate(exc: BaseException, *, target: str | None, port: int | None, phase: str) -> (
    BaseException
):
    """Return the tcpcli error for a foreign exception (or the exception itself).

    ``phase`` is "connect", "tls" or "stream": the same OSError means different things
    while dialing and mid-stream (a timeout while dialing is a connect timeout).
    """
    if isinstance(exc, TcpcliError):
        return exc
    if isinstance(exc, dialogue_errors.ProtocolError):
        return translate_dialogue_error(exc)
    if isinstance(exc, BaseExceptionGroup):
        leaf = _single_leaf(exc)
        return exc if leaf is None else translate(leaf, target=target, port=port, phase=phase)
    where = f"{target}" if target else "the peer"
    # ssl is imported by whatever ran TLS; if nothing has, exc is no ssl error, and a
    # plaintext run need not pay for loading it here.
    if "ssl" in sys.modules:
        import ssl

        if isinstance(exc, ssl.SSLError):
            return _translate_ssl(exc, where, target=target, port=port, phase=phase)
    anyio = sys.modules.get("anyio")  # not loaded: exc is none of its errors
    if anyio is not None and phase == "tls" \
            and isinstance(exc, anyio.BrokenResourceError | anyio.EndOfStream):
        return TLSHandshakeError(
            f"TLS handshake with {where} failed: the peer closed the connection",
            target=target, port=port,
        )
    if anyio is not None and isinstance(exc, anyio.BrokenResourceError):
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, anyio.BrokenResourceError):
            return translate(cause, target=target, port=port, phase=phase)
        return ConnectionLostError(f"connection to {where} was lost", target=target, port=port)
    if isinstance(exc, TimeoutError) and not isinstance(exc, OSError):  # ssl's errors too
        return ConnectTimeoutError(f"timed out connecting to {where}", target=target, port=port)
    if isinstance(exc, OSError):
        code = exc.errno
        text = exc.strerror or str(exc)
        from tcpcli.core.errnos import ErrnoClass, errno_class  # only when there is one

        meaning = errno_class(code)
        if meaning is ErrnoClass.REFUSED:
            return ConnectRefusedError(
                f"connection to {where} refused", target=target, port=port
            )
        if meaning is ErrnoClass.LOST or (phase == "stream" and code is not None):
            return ConnectionLostError(
                f"connection to {where} was reset ({text})", target=target, port=port
            )
        if meaning is ErrnoClass.TIMEOUT:
            return ConnectTimeoutError(
                f"timed out connecting to {where}", target=target, port=port
            )
        if meaning is ErrnoClass.UNREACHABLE:
            return UnreachableError(
                f"{where} is unreachable: {text}", target=target, port=port, errno_=code
            )
        return ConnectError(f"cannot connect to {where}: {text}", target=target, port=port)
    return exc


@contextmanager
def map_exceptions(*, target: str | None = None, port: int | None = None,
                   phase: str = "connect") -> Iterator[None]:
    """Translate foreign exceptions raised in the block into the tcpcli tree."""
    try:
        yield
    except BaseException as exc:
        mapped = translate(exc, target=target, port=port, phase=phase)
        if mapped is exc:
            raise
        raise mapped from exc
