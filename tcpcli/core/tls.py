"""TLS for the socket core: the TLS stream, and the front door to the TLS modules.

Why our own stream instead of ``anyio.streams.tls.TLSStream``: we need a true half-close
(``send_eof()`` sends close_notify and keeps reading — anyio raises NotImplementedError),
a truncation flag (peer closed without close_notify), large reads, the chain *as sent*, and
an "insecure" mode that still computes and reports the verification verdict.

The TLS modules, all importable from here (this one is what the rest of tcpcli imports):

    tlsoptions   TLSOptions and pin parsing (no cryptography: plain-TCP runs stay cheap)
    tlscontext   client SSL contexts, the trust store they load, their cache
    tlsreport    TLSReport, Verification, CertificateSummary: the facts, as data
    certs        summarizing a certificate, and the names it is valid for (cryptography:
                 imported only when a report or a verdict needs it)
    tlsverify    insecure mode's verdict, computed as OpenSSL would have
    tlssession   ClientTLS: the session without I/O (named failures, verdict, report,
                 reads, close_notify), shared with the loop-free driver (blockingtls)
    tls          this module: TLSStream, ClientTLS over an anyio stream (handshake,
                 sessions, half-close)

Verification, in one table (``Verification.verify_code`` is OpenSSL's X509_V_ERR_* code):

    secure (default)   OpenSSL verifies during the handshake (CERT_REQUIRED + hostname);
                       a failure raises CertificateVerifyError with OpenSSL's code/message.
                       Without SNI OpenSSL cannot check the name: the stream does, after.
    insecure           handshake with CERT_NONE, then :mod:`tcpcli.core.tlsverify`
                       computes the verdict against the same trust store, with the code
                       OpenSSL would have given.
    pins               checked against every certificate in the chain as sent (SPKI
                       SHA-256); no match raises PinMismatchError, in both modes. With
                       pins the handshake runs as in insecure mode (the chain's verdict
                       is computed and reported). A pin of the server's own key (the
                       leaf) is trusted on its own, as ssh trusts a known host key; a pin
                       of a CA's key only narrows trust, so the chain must verify too.

Half-close, measured with OpenSSL 3.0 through ``ssl.SSLObject`` (tests/core/test_tls.py
proves it on loopback): after ``SSLObject.unwrap()`` has sent close_notify (it raises
SSLWantReadError waiting for the peer's), ``SSLObject.read()`` still returns application
data and post-handshake messages (TLS 1.3 tickets) until the peer's close_notify — on TLS
1.2 *and* 1.3. The one trap: unwrap() calls SSL_shutdown() twice, and the second call reads
records; a complete application-data record already in the incoming BIO then fails with
APPLICATION_DATA_AFTER_CLOSE_NOTIFY and the bytes are lost. So ``send_eof()`` first
decrypts everything buffered into a plaintext queue, then calls unwrap(); later reads
serve the queue first. Whether the *peer* may keep sending after our close_notify is up to
the peer: RFC 8446 allows it in TLS 1.3, RFC 5246 tells 1.2 peers to answer with
close_notify at once (OpenSSL peers nevertheless can keep writing on both). After
close_notify, send_eof() also sends a TCP FIN, for peers that watch the socket rather than
the TLS layer.

Sessions: OpenSSL keeps only the leaf in a session, so the report of a resumed connection
shows the chain sent in the full handshake that established it (remembered by leaf), and
judges that chain's completeness; with no such handshake remembered, completeness is None.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from tcpcli.core.errors import ConnectionLostError, map_exceptions
from tcpcli.core.tlscontext import client_context, contexts_built
from tcpcli.core.tlsoptions import TLSOptions, TLSVersionName, parse_pin
from tcpcli.core.tlsreport import CertificateSummary, TLSReport, Verification
from tcpcli.core.tlssession import (
    CLOSE_NOTIFY_TIMEOUT,
    TRANSPORT_READ_SIZE,
    WRITE_CHUNK,
    ClientTLS,
)

__all__ = [
    "CLOSE_NOTIFY_TIMEOUT",
    "TICKET_WAIT",
    "CertificateSummary",
    "TLSOptions",
    "TLSReport",
    "TLSStream",
    "TLSVersionName",
    "Verification",
    "client_context",
    "contexts_built",
    "parse_pin",
]

#: How long resumable_session() waits for a TLS 1.3 ticket by default: servers send it
#: half a round trip after the handshake, so this covers slow links too.
TICKET_WAIT = 0.5


def _has_ticket(session: ssl.SSLSession | None) -> bool:
    return session is not None and session.has_ticket


class TLSStream(ClientTLS, anyio.abc.ByteStream):
    """TLS over any anyio ByteStream, through ``ssl.MemoryBIO``.

    ``receive()`` raises ``anyio.EndOfStream`` on the peer's close_notify and also on a
    transport EOF without one — then ``truncated`` is True ("peer closed without
    close_notify"). ``send_eof()`` sends close_notify (and a TCP FIN) and keeps reading.
    One task may receive while another sends.
    """

    def __init__(self, transport: anyio.abc.ByteStream, ssl_object: ssl.SSLObject,
                 incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *,
                 target: str | None = None, port: int | None = None) -> None:
        super().__init__(ssl_object, incoming, outgoing, target=target, port=port)
        self.transport_stream = transport
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._closed = False

    # ------------------------------------------------------------- handshake

    @classmethod
    async def wrap(
        cls,
        transport: anyio.abc.ByteStream,
        *,
        hostname: str | None,
        options: TLSOptions,
        session: ssl.SSLSession | None = None,
        target: str | None = None,
        port: int | None = None,
    ) -> TLSStream:
        """Run the client handshake over ``transport`` and return the stream with ``report``.

        ``hostname`` is the *original* name (SNI and verification); the transport is already
        dialed to the checked address. An IP-literal name verifies against IP SANs and sends
        no SNI. ``options.server_name`` overrides ``hostname``. A ``session`` from a previous
        stream with equal options is offered for resumption (``report.session_reused``);
        one that cannot be used is ignored. On failure the transport is left open for the
        caller to close. ``target``/``port`` only shape error messages.
        """
        begun = cls.begin(hostname, options, session)
        stream = cls(transport, begun.ssl_object, begun.incoming, begun.outgoing,
                     target=target, port=port)
        stream._certificate_given = options.cert_file is not None
        with map_exceptions(target=target, port=port, phase="tls"):
            try:
                await stream._handshake()
            except (ssl.SSLError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                named = stream._named_failure(exc)
                if named is None:
                    raise
                raise named from exc
        stream._finish_handshake(begun, options)
        return stream

    async def _handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                chunk = await self.transport_stream.receive(TRANSPORT_READ_SIZE)
                self._keep_handshake_bytes(chunk)
                self._incoming.write(chunk)
            except ssl.SSLError:
                # Deliver our alert (bad certificate, protocol version, ...) so the server
                # logs the real reason instead of an EOF; never let that hide our error.
                with anyio.move_on_after(CLOSE_NOTIFY_TIMEOUT), contextlib.suppress(Exception):
                    await self._flush()
                raise
        await self._flush()  # our Finished (and, in TLS 1.3, the end of our flight)

    # ------------------------------------------------------------- session

    async def resumable_session(self, wait: float = TICKET_WAIT) -> ssl.SSLSession | None:
        """The session, after waiting up to ``wait`` seconds for a TLS 1.3 ticket.

        Application data read meanwhile is kept for the next ``receive()``. Do not call
        this while another task is receiving.
        """
        session = self._ssl.session
        if session is None or session.has_ticket or self._ssl.version() != "TLSv1.3":
            return session
        with map_exceptions(target=self._target, port=self._port, phase="stream"):
            self._drain_into_pending()
            with anyio.move_on_after(wait):
                while not self._read_eof and not _has_ticket(self._ssl.session):
                    try:
                        chunk = await self.transport_stream.receive(TRANSPORT_READ_SIZE)
                    except anyio.EndOfStream:
                        self._incoming.write_eof()
                    else:
                        self._incoming.write(chunk)
                    self._drain_into_pending()
        return self._ssl.session

    # ------------------------------------------------------------- data

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._closed:
            raise anyio.ClosedResourceError
        if self._read_broken and not self._pending:
            raise anyio.BrokenResourceError
        with map_exceptions(target=self._target, port=self._port, phase="stream"):
            while True:
                if self._pending:  # decrypted ahead by send_eof() or resumable_session()
                    data = bytes(self._pending[:max_bytes])
                    del self._pending[:max_bytes]
                    return data
                data = self._read_available(max_bytes)
                if (self._outgoing.pending and not self._send_lock.locked()
                        and not self._write_broken):
                    # Post-handshake replies (KeyUpdate, renegotiation). If a sender holds
                    # the lock, its flush loop picks these bytes up after its current send.
                    await self._flush()
                if data:
                    return data
                if self._read_eof:
                    raise anyio.EndOfStream
                try:
                    chunk = await self.transport_stream.receive(TRANSPORT_READ_SIZE)
                except anyio.EndOfStream:
                    self._incoming.write_eof()
                else:
                    self._incoming.write(chunk)

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._write_broken:
            raise anyio.BrokenResourceError
        if self.close_notify_sent:
            raise anyio.ClosedResourceError("the TLS write side was closed (close_notify sent)")
        view = memoryview(item)
        with map_exceptions(target=self._target, port=self._port, phase="stream"):
            async with self._send_lock:
                for start in range(0, len(view), WRITE_CHUNK):
                    try:
                        self._ssl.write(view[start:start + WRITE_CHUNK])
                    except ssl.SSLError:
                        self._write_broken = True
                        raise
                    await self._flush_locked()

    async def send_eof(self) -> None:
        """Send close_notify and a TCP FIN; keep reading until the peer ends its side.

        Everything already received but not yet decrypted is decrypted first (see the
        module docstring: unwrap() would otherwise lose it).
        """
        if self.close_notify_sent:
            return
        if self._closed:
            raise anyio.ClosedResourceError
        if self._write_broken:
            raise anyio.BrokenResourceError
        peer_done = self._read_eof
        try:
            with map_exceptions(target=self._target, port=self._port, phase="stream"):
                async with self._send_lock:
                    self._shutdown()
                    await self._flush_locked()
                # A transport that cannot half-close: close_notify alone ends our side.
                with contextlib.suppress(NotImplementedError):
                    await self.transport_stream.send_eof()
        except ConnectionLostError:
            # The peer already ended its side and may have closed its socket: a reset in
            # answer to our close_notify/FIN says nothing about the data, which is all in.
            if not peer_done:
                raise

    async def aclose(self) -> None:
        """Best-effort close_notify (bounded by CLOSE_NOTIFY_TIMEOUT), then close."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.close_notify_sent and not self._write_broken:
                with anyio.move_on_after(CLOSE_NOTIFY_TIMEOUT, shield=True):
                    try:
                        self._shutdown()
                        async with self._send_lock:
                            await self._flush_locked()
                    except (ssl.SSLError, OSError, anyio.BrokenResourceError,
                            anyio.ClosedResourceError):
                        pass
        finally:
            await self.transport_stream.aclose()

    async def _flush(self) -> None:
        async with self._send_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        outgoing = self._outgoing
        while outgoing.pending:
            data = outgoing.read()
            try:
                await self.transport_stream.send(data)
            except BaseException:
                # The records' sequence numbers are spent: nothing after them can be read.
                self._write_broken = True
                raise

    # ------------------------------------------------------------- attributes

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        from anyio.streams.tls import TLSAttribute  # (imports asyncio: only when asked)

        ssl_object = self._ssl
        return {
            **self.transport_stream.extra_attributes,
            TLSAttribute.alpn_protocol: ssl_object.selected_alpn_protocol,
            TLSAttribute.channel_binding_tls_unique: ssl_object.get_channel_binding,
            TLSAttribute.cipher: ssl_object.cipher,
            TLSAttribute.peer_certificate: lambda: ssl_object.getpeercert(False),
            TLSAttribute.peer_certificate_binary: lambda: ssl_object.getpeercert(True),
            TLSAttribute.server_side: lambda: False,
            TLSAttribute.shared_ciphers: lambda: None,
            TLSAttribute.standard_compatible: lambda: True,
            TLSAttribute.ssl_object: lambda: ssl_object,
            TLSAttribute.tls_version: ssl_object.version,
        }
