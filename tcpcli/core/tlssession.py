"""A TLS client session without I/O: what a TLS connection is, whoever moves its bytes.

``ssl.SSLObject`` over two ``ssl.MemoryBIO`` is sans-I/O already; :class:`ClientTLS` adds
what tcpcli makes of it: the handshake's named failures (a plaintext server, a client
certificate the server requires), the verdict (OpenSSL's, or reached after the handshake
in insecure mode and with pins), the report built on first use, reads that tell a
close_notify from a truncation, and a close_notify that loses no buffered data. Two
drivers move the bytes: :class:`tcpcli.core.tls.TLSStream` over an anyio stream (the
event-loop core) and :class:`tcpcli.core.blockingtls.BlockingTLS` over a non-blocking
socket (a one-shot ``connect --tls``, which starts no event loop). Neither this module
nor what it imports loads anyio or cryptography.
"""

from __future__ import annotations

import base64
import contextlib
import encodings.idna  # noqa: F401 - ssl's server names: not inside a timed handshake
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple, cast

from tcpcli.core.errors import (
    CertificateVerifyError,
    ClientCertificateRequiredError,
    PinMismatchError,
    PlaintextPeerError,
    SocketOptionError,
    TLSHandshakeError,
)
from tcpcli.core.tlscontext import handshake_context
from tcpcli.core.tlsoptions import TLSOptions, _parse_pins, ip_literal, normalize_name
from tcpcli.core.tlsverdict import Verification
from tcpcli.record import replace

if TYPE_CHECKING:
    from tcpcli.core.tlsreport import TLSReport

__all__ = [
    "CLOSE_NOTIFY_TIMEOUT",
    "HANDSHAKE_KEPT",
    "TRANSPORT_READ_SIZE",
    "WRITE_CHUNK",
    "ClientTLS",
    "load_report_builders",
]

#: Bytes asked of the transport per read: big reads keep per-call overhead off the hot path.
TRANSPORT_READ_SIZE = 256 * 1024
#: Plaintext encrypted per flush: bounds the ciphertext buffered for one transport send.
WRITE_CHUNK = 256 * 1024
#: How long closing tries to deliver close_notify before closing the transport anyway.
CLOSE_NOTIFY_TIMEOUT = 0.5
#: How much of the server's handshake bytes are kept, to name a failure afterwards (a
#: plaintext greeting, a TLS 1.2 CertificateRequest after a long chain).
HANDSHAKE_KEPT = 64 * 1024
#: How many characters of a plaintext greeting an error message shows.
GREETING_SHOWN = 60
#: OpenSSL's reasons for the alerts a server sends when a client certificate it requires
#: is missing: certificate_required (116, TLS 1.3); handshake_failure (40) or
#: bad_certificate (42) in TLS 1.2, where only a CertificateRequest tells them apart.
_CERTIFICATE_REQUIRED = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
_TLS12_NO_CERTIFICATE = ("SSLV3_ALERT_HANDSHAKE_FAILURE", "SSLV3_ALERT_BAD_CERTIFICATE")


# --------------------------------------------------------------------------- the chain


_ENCODING_DER = 2  # _ssl.ENCODING_DER; not re-exported by ssl on 3.11


def _peer_chain(ssl_object: ssl.SSLObject, *, verified: bool) -> list[bytes]:
    """DER certificates: as sent (``verified=False``) or as verified, leaf first.

    3.13+ has public ``get_(un)verified_chain()``; 3.11/3.12 have them on the private
    ``_sslobj``. A resumed session has no chain in OpenSSL (only the leaf survives in the
    session), so the unverified chain falls back to the leaf alone.
    """
    method = "get_verified_chain" if verified else "get_unverified_chain"
    public = getattr(ssl_object, method, None)
    if public is not None:
        chain = [bytes(der) for der in public() or ()]
    else:
        private = getattr(getattr(ssl_object, "_sslobj", None), method, None)
        certs = private() if private is not None else None
        chain = [cert.public_bytes(_ENCODING_DER) for cert in certs or ()]
    if chain or verified:
        return chain
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


class _ChainMemory:
    """The chains seen in full handshakes, by leaf, for reports on resumed sessions.

    OpenSSL keeps only the leaf in a session; the chain reported for a resumption is the
    one sent in the full handshake that established it (same leaf).
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._chains: dict[tuple[bytes, bool], tuple[list[bytes], list[bytes]]] = {}

    def remember(self, sent: list[bytes], verified: list[bytes], *, insecure: bool) -> None:
        key = (sent[0], insecure)
        self._chains.pop(key, None)
        self._chains[key] = (sent, verified)
        while len(self._chains) > self._size:
            del self._chains[next(iter(self._chains))]

    def recall(self, leaf: bytes, *, insecure: bool) -> tuple[list[bytes], list[bytes]] | None:
        return self._chains.get((leaf, insecure))


_CHAINS = _ChainMemory()


def _starts_like_tls(data: bytes) -> bool:
    """Whether a server's first bytes are (the start of) a TLS record: handshake or
    alert content type, major version 3."""
    if len(data) >= 5:
        from tcpcli.protocols.tlsrecord import record_header

        return record_header(data) is not None
    return data[0] in (0x15, 0x16) and (len(data) < 2 or data[1] == 3)


def _greeting(data: bytes) -> str:
    """A plaintext server's first line, escaped and bounded: SSH-2.0-OpenSSH_9.2p1 Deb…
    (binary greetings, a MySQL handshake say, are shown from the start, escaped)."""
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not line or not all(32 <= b < 127 or b == 9 for b in line[:GREETING_SHOWN]):
        line = data
    text = "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}"
                   for b in line[:GREETING_SHOWN + 1])
    return text if len(text) <= GREETING_SHOWN else text[:GREETING_SHOWN] + "…"


def _certificate_requested(data: bytes) -> bool:
    """Whether the server's cleartext handshake messages (all of TLS 1.2's, up to its
    ChangeCipherSpec) include a CertificateRequest (handshake type 13)."""
    messages = bytearray()
    position = 0
    while position + 5 <= len(data) and data[position] == 0x16:  # handshake records only
        length = int.from_bytes(data[position + 3:position + 5], "big")
        messages += data[position + 5:position + 5 + length]
        position += 5 + length
    position = 0
    while position + 4 <= len(messages):
        if messages[position] == 13:
            return True
        position += 4 + int.from_bytes(messages[position + 1:position + 4], "big")
    return False


class _HandshakeFacts(NamedTuple):
    """What a stream's report is built from, kept at the handshake: the session's facts
    (cheap to read) and the chains as DER (summarized only when a report is asked for)."""

    version: str
    cipher: str
    cipher_bits: int | None
    alpn: str | None
    sni: str | None
    session_reused: bool
    session_offered: bool
    sent_der: tuple[bytes, ...]
    verified_der: tuple[bytes, ...]
    chain_known: bool  # False: a resumed session whose full handshake was not seen here
    ca_file: str | None
    system_store: bool

    def report(self, verification: Verification) -> TLSReport:
        from tcpcli.core.dercert import chain_completeness, summarize_certificate
        from tcpcli.core.tlsreport import TLSReport

        sent, verified = list(self.sent_der), list(self.verified_der)
        chain_complete, chain_problem = chain_completeness(
            sent, verified, ca_file=self.ca_file,
            system_store=self.system_store) if self.chain_known else (None, None)
        return TLSReport(
            version=self.version,
            cipher=self.cipher,
            cipher_bits=self.cipher_bits,
            alpn=self.alpn,
            sni=self.sni,
            session_reused=self.session_reused,
            chain=tuple(summarize_certificate(der) for der in sent),
            verified_chain=tuple(summarize_certificate(der) for der in verified),
            verification=verification,
            session_offered=self.session_offered,
            chain_complete=chain_complete,
            chain_problem=chain_problem,
        )


def load_report_builders() -> None:
    """Import what building a report takes, for a run that will show one. Called in its
    set-up, so that no timed phase (a first byte, a handshake) pays for it when the report
    is built on first use. Not cryptography (about one ``import click``): the DER reader
    reads the usual chains without it, and imports it only for a certificate or a chain it
    leaves to it."""
    import tcpcli.core.dercert  # noqa: F401


class _Begun(NamedTuple):
    """A client SSLObject ready for its handshake, and what its report will say of it."""

    ssl_object: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    name: str | None  # the name verified (None: none)
    sni: str | None  # the name sent as SNI
    offered: bool  # a session was offered for resumption


class ClientTLS:
    """One client TLS session's state and the steps that need no I/O.

    A driver starts from :meth:`begin`, writes the server's bytes to ``_incoming`` (during
    the handshake through :meth:`_keep_handshake_bytes` too), sends what ``_outgoing``
    holds, and calls :meth:`_finish_handshake` once ``do_handshake()`` has succeeded (or
    :meth:`_named_failure` when it failed); after that, :meth:`_read_available` decrypts
    what has arrived and :meth:`_shutdown` queues close_notify.
    """

    #: The verdict on the peer's certificate, reached during the handshake (cheap: no
    #: certificate is summarized for it in the default, OpenSSL-verified case).
    verification: Verification

    def __init__(self, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, *, target: str | None = None,
                 port: int | None = None) -> None:
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        self._target = target
        self._port = port
        self._certificate_given = False  # whether we have a client certificate to send
        self._handshake_bytes = bytearray()  # what the server sent during the handshake
        self._pending = bytearray()  # plaintext decrypted ahead of a read (send_eof)
        self._buffer = bytearray()
        self._view = memoryview(self._buffer)
        #: The peer ended its side with close_notify.
        self.close_notify_received = False
        #: We sent close_notify (send_eof() or aclose()).
        self.close_notify_sent = False
        #: The transport hit EOF without the peer's close_notify: the data may be cut short.
        self.truncated = False
        self._read_eof = False
        self._read_broken = False  # the TLS layer failed on input: nothing more to read
        self._write_broken = False  # a record was lost on output: nothing more can be sent
        self._facts: _HandshakeFacts | None = None  # set by _finish_handshake()
        self._report: TLSReport | None = None

    @staticmethod
    def begin(hostname: str | None, options: TLSOptions,
              session: ssl.SSLSession | None) -> _Begun:
        """The client's SSLObject for ``hostname`` (SNI and verification; an IP literal
        verifies against IP SANs and sends no SNI; ``options.server_name`` overrides it),
        offering ``session`` for resumption when it can be used."""
        name = normalize_name(options.server_name or hostname)
        if name is None and options.verify_in_handshake:
            raise SocketOptionError(
                "a server name is required to verify the certificate (or use insecure)"
            )
        is_ip = name is not None and ip_literal(name) is not None
        context, server_hostname = handshake_context(options, name)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        ssl_object = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
        offered = False
        if session is not None:
            # Another context's session cannot resume (ValueError): not offered, a full
            # handshake follows.
            with contextlib.suppress(ValueError, TypeError):
                ssl_object.session = session
                offered = True
        return _Begun(ssl_object, incoming, outgoing, name,
                      server_hostname if server_hostname and not is_ip else None, offered)

    def _finish_handshake(self, begun: _Begun, options: TLSOptions) -> None:
        """After ``do_handshake()`` succeeded: the verdict and the report's facts."""
        self._handshake_bytes = bytearray()  # kept only to explain a failed handshake
        self._settle(begun.name, sni=begun.sni, pins=_parse_pins(options.pins),
                     options=options, session_offered=begun.offered)

    def _keep_handshake_bytes(self, chunk: bytes) -> None:
        if len(self._handshake_bytes) < HANDSHAKE_KEPT:
            self._handshake_bytes += chunk[:HANDSHAKE_KEPT - len(self._handshake_bytes)]

    def _named_failure(self, exc: BaseException) -> TLSHandshakeError | None:
        """The failure's real cause, when OpenSSL's reason hides it: a plaintext server
        (WRONG_VERSION_NUMBER, UNEXPECTED_MESSAGE, or just a close), or a client
        certificate the server requires. None: OpenSSL's reason says it already."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return None
        where = self._target or "the peer"
        received = bytes(self._handshake_bytes)
        if received and not _starts_like_tls(received):
            shown = _greeting(received)
            return PlaintextPeerError(
                f"TLS handshake with {where} failed: the server answered in plaintext: "
                f"'{shown}' (this port does not speak TLS: drop --tls, or upgrade with "
                "--starttls PROTO where the protocol has it)",
                banner=shown, target=self._target, port=self._port)
        reason = getattr(exc, "reason", None) or ""
        if not self._certificate_given and (
                reason == _CERTIFICATE_REQUIRED
                or (reason in _TLS12_NO_CERTIFICATE and _certificate_requested(received))):
            return self._certificate_required()
        return None

    def _certificate_required(self) -> ClientCertificateRequiredError:
        where = self._target or "the peer"
        return ClientCertificateRequiredError(
            f"TLS handshake with {where} failed: the server requires a client certificate "
            "and none was given (give one with --cert FILE --key FILE)",
            target=self._target, port=self._port)

    def _settle(self, name: str | None, *, sni: str | None, pins: frozenset[bytes],
                options: TLSOptions, session_offered: bool) -> None:
        """Reach the verdict, and keep what the report is built from (see ``report``).

        Certificates are read here only when the verdict needs them (insecure mode, pins,
        a name checked without SNI); these import cryptography, which ``client_context``
        has already loaded for such options, outside any timed handshake.
        """
        ssl_object = self._ssl
        sent_der = _peer_chain(ssl_object, verified=False)
        unverified = not options.verify_in_handshake  # insecure, or pins: checked below
        openssl_verified = [] if unverified else _peer_chain(ssl_object, verified=True)
        chain_known = bool(sent_der)
        if ssl_object.session_reused:
            remembered = (_CHAINS.recall(sent_der[0], insecure=unverified)
                          if sent_der else None)
            if remembered is not None:
                sent_der, openssl_verified = remembered
            else:  # only the leaf survives in the session: the chain as sent is not known
                chain_known = False
        elif sent_der:
            _CHAINS.remember(sent_der, openssl_verified, insecure=unverified)
        if unverified:
            from tcpcli.core.tlsverify import verify_chain

            verdict, verified_der = verify_chain(
                sent_der, name, ca_file=options.ca_file, system_store=options.system_store,
                now=datetime.now(UTC))
        else:
            if ssl_object.server_hostname is None and name is not None:  # SNI-less
                from tcpcli.core.tlsverify import name_failure

                failure = name_failure(sent_der[0] if sent_der else None, name)
                if failure is not None:
                    raise self._verify_error(*failure)
            verdict = Verification(True, None, "ok", True, None)
            verified_der = openssl_verified
        if pins:
            verdict = self._check_pins(sent_der, pins, verdict, insecure=options.insecure)
        cipher = ssl_object.cipher()
        self.verification = verdict
        self._facts = _HandshakeFacts(
            version=ssl_object.version() or "",
            cipher=cipher[0] if cipher else "",
            cipher_bits=cipher[2] if cipher else None,
            alpn=ssl_object.selected_alpn_protocol(),
            sni=sni,
            session_reused=ssl_object.session_reused,
            session_offered=session_offered,
            sent_der=tuple(sent_der),
            verified_der=tuple(verified_der),
            chain_known=chain_known,
            ca_file=options.ca_file,
            system_store=options.system_store,
        )

    def _check_pins(self, sent_der: list[bytes], pins: frozenset[bytes],
                    verdict: Verification, *, insecure: bool) -> Verification:
        """The verdict once ``pins`` were checked against the chain as sent."""
        from tcpcli.core.dercert import summarize_certificate

        sent = [summarize_certificate(der) for der in sent_der]
        digests = [base64.b64decode(cert.spki_sha256.removeprefix("sha256/")) for cert in sent]
        if not set(digests) & pins:
            where = self._target or "the peer"
            have = ", ".join(f"{cert.spki_sha256} ({cert.subject})" for cert in sent)
            raise PinMismatchError(
                f"TLS certificate of {where} failed verification: no certificate in the "
                f"chain matches the pinned public key (chain: {have or 'empty'})",
                verify_code=None, reason="public key pin mismatch",
                target=self._target, port=self._port)
        if digests[0] not in pins and not verdict.verified and not insecure:
            from tcpcli.core.tlsverify import X509_V_ERR_UNSPECIFIED

            # A CA's key vouches for other keys only through a chain that verifies (the
            # name included): trusting it alone would trust any name it ever signed.
            raise self._verify_error(
                verdict.verify_code or X509_V_ERR_UNSPECIFIED,
                f"{verdict.reason} (the pin matches a CA certificate, which is trusted "
                "only through a chain that verifies; pin the server's own key to trust "
                "it alone)")
        # The server's own key: trusted as ssh trusts a known host key, whatever the
        # chain's verdict (still reported) says.
        return replace(verdict, pin_matched=True)

    @property
    def report(self) -> TLSReport:
        """The session's :class:`TLSReport`, built on first use and kept.

        Summarizing certificates and judging the chain's completeness take work (and
        cryptography, for a certificate or a chain the DER reader leaves to it) that a run
        that shows no report never needs; the facts they are built from were kept at the
        handshake, so the report is the same whenever it is asked for, after ``aclose()``
        too.
        """
        if self._report is None:
            facts = self._facts
            if facts is None:
                raise RuntimeError("no TLS report before the handshake (use TLSStream.wrap)")
            self._report = facts.report(self.verification)
        return self._report

    @property
    def session_reused(self) -> bool:
        """Whether the server resumed the offered session (cheap: no report is built)."""
        assert self._facts is not None
        return self._facts.session_reused

    @property
    def session_offered(self) -> bool:
        """Whether a previous session was offered for resumption."""
        assert self._facts is not None
        return self._facts.session_offered

    def _verify_error(self, code: int, reason: str) -> CertificateVerifyError:
        where = self._target or "the peer"
        return CertificateVerifyError(
            f"TLS certificate of {where} failed verification: {reason}",
            verify_code=code, reason=reason, target=self._target, port=self._port)

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._ssl

    @property
    def session(self) -> ssl.SSLSession | None:
        """The session to pass to a later ``wrap(session=...)`` for resumption.

        TLS 1.3 servers send their tickets *after* the handshake, so right after ``wrap()``
        the session cannot resume yet (``session.has_ticket`` is False). It becomes
        resumable once a ``receive()`` has processed the tickets — or call
        :meth:`resumable_session`, which waits briefly for them without losing data.
        """
        return self._ssl.session

    def _read_available(self, max_bytes: int) -> bytes:
        """Decrypt what is already buffered, up to ``max_bytes``, without awaiting."""
        if self._read_eof:
            return b""
        if len(self._buffer) < max_bytes:
            self._buffer = bytearray(max_bytes)
            self._view = memoryview(self._buffer)
        view, filled = self._view, 0
        # With a buffer, read() returns the byte count (typeshed says bytes).
        read = cast(Callable[[int, memoryview], int], self._ssl.read)
        while filled < max_bytes:
            try:
                count = read(max_bytes - filled, view[filled:max_bytes])
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._read_eof = self.close_notify_received = True
                break
            except ssl.SSLEOFError:
                self._read_eof = self.truncated = True
                break
            except ssl.SSLError as exc:
                if "UNEXPECTED_EOF" in str(exc):
                    self._read_eof = self.truncated = True
                    break
                self._read_broken = True
                if exc.reason == _CERTIFICATE_REQUIRED and not self._certificate_given:
                    # TLS 1.3: our handshake was done before the server saw our (empty)
                    # Certificate; its verdict is the first thing a read finds.
                    raise self._certificate_required() from exc
                raise
            if not count:
                self._read_eof = self.close_notify_received = True
                break
            filled += count
        return bytes(view[:filled]) if filled else b""

    def _drain_into_pending(self) -> None:
        while chunk := self._read_available(TRANSPORT_READ_SIZE):
            self._pending += chunk

    def _shutdown(self) -> None:
        """Queue close_notify without losing buffered application data."""
        self._drain_into_pending()
        self.close_notify_sent = True
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # close_notify is queued; the peer's comes (or not) through receive()
        except ssl.SSLError:
            # After the peer's EOF (a truncation especially) OpenSSL may refuse to shut
            # down: nothing can be queued, and the TCP FIN that follows is all that is left.
            if not self._read_eof:
                raise
