"""tcpcli.core.tls over real TLS on loopback, on both anyio backends.

Servers are anyio TLS listeners on 127.0.0.1 (the stdlib's server side); the client is
our TLSStream. Every verification case is run twice — secure (must raise OpenSSL's code and
reason) and insecure (must report the same code and reason, and keep the connection).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSListener, TLSStream as ServerStream
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tcpcli.core.certs import summarize_certificate
from tcpcli.core.errors import (
    CertificateVerifyError,
    ClientCertificateRequiredError,
    PinMismatchError,
    PlaintextPeerError,
    SocketOptionError,
    TLSHandshakeError,
)
from tcpcli.core.tls import (
    TLSOptions,
    TLSStream,
    Verification,
    client_context,
    parse_pin,
)
from tests.support import peers
from tests.support.certs import PKI, ServerCert

pytestmark = pytest.mark.timeout(30)

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
QUIET = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError,
         ssl.SSLError)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def spki_pin(pem: bytes) -> bytes:
    key = x509.load_pem_x509_certificate(pem).public_key()
    return hashlib.sha256(key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()


# ----------------------------------------------------------------------------- peers

Handler = Callable[[ServerStream], Awaitable[None]]


@dataclass
class Server:
    port: int
    sni: list[str | None] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


@asynccontextmanager
async def serve(context: ssl.SSLContext, handler: Handler) -> AsyncIterator[Server]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server = Server(listener.extra(SocketAttribute.local_port))
    context.sni_callback = lambda _obj, name, _ctx: server.sni.append(name)

    async def guarded(stream: ServerStream) -> None:
        try:
            await handler(stream)
        except QUIET as exc:
            server.events.append(f"error:{type(exc).__name__}")
        finally:
            await anyio.aclose_forcefully(stream)

    async with anyio.create_task_group() as group:
        group.start_soon(TLSListener(listener, context, handshake_timeout=5).serve, guarded)
        yield server
        group.cancel_scope.cancel()


async def echo(stream: ServerStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive(1 << 18))
    except anyio.EndOfStream:
        await stream.aclose()


async def dial(server: Server, options: TLSOptions, *, hostname: str = "localhost",
               session: ssl.SSLSession | None = None) -> TLSStream:
    transport = await anyio.connect_tcp("127.0.0.1", server.port)
    try:
        return await TLSStream.wrap(transport, hostname=hostname, options=options,
                                    session=session, target=f"{hostname}:{server.port}",
                                    port=server.port)
    except BaseException:
        await anyio.aclose_forcefully(transport)
        raise


async def read_all(stream: TLSStream) -> bytes:
    chunks = []
    try:
        while True:
            chunks.append(await stream.receive(1 << 20))
    except anyio.EndOfStream:
        return b"".join(chunks)


async def ping(stream: TLSStream) -> bytes:
    await stream.send(b"ping")
    return await stream.receive()


# ----------------------------------------------------------------------------- verification


@pytest.mark.anyio
async def test_valid_chain_is_verified_and_reported_as_sent(pki: PKI) -> None:
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        assert await ping(tls) == b"ping"
        await tls.aclose()
    report = tls.report
    assert report.verification == Verification(True, None, "ok", True, None)
    assert report.version == "TLSv1.3"
    assert report.cipher.startswith("TLS_")
    assert report.cipher_bits in (128, 256)
    assert report.sni == "localhost"
    assert server.sni == ["localhost"]
    assert report.session_reused is False
    assert report.alpn is None
    # As sent: leaf + intermediate; as verified: leaf + intermediate + root.
    sent = [der(pem) for pem in pki.valid.chain_pem]
    assert [c.sha256_fingerprint for c in report.chain] == [
        hashlib.sha256(d).digest().hex(":").upper() for d in sent]
    leaf, intermediate = report.chain
    assert leaf.sans == ("DNS:localhost", "IP:127.0.0.1")
    assert leaf.issuer == intermediate.subject
    assert intermediate.is_ca
    assert not leaf.is_ca
    assert [c.sha256_fingerprint for c in report.verified_chain[:2]] == [
        c.sha256_fingerprint for c in report.chain]
    assert len(report.verified_chain) == 3
    assert report.verified_chain[2].self_signed
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verification"]["verified"] is True
    assert data["chain"][0]["not_after"].endswith("Z")
    assert isinstance(data["cipher_bits"], int)


CASES = {
    # id: (server certificate, name to verify, OpenSSL code, stable fragment of its reason)
    "expired": ("expired", "localhost", 10, "certificate has expired"),
    "not-yet-valid": ("not_yet_valid", "localhost", 9, "certificate is not yet valid"),
    "wrong-host": ("valid", "wrong.example", 62,
                   "Hostname mismatch, certificate is not valid for 'wrong.example'."),
    "wrong-ip": ("valid", "127.0.0.2", 64,
                 "IP address mismatch, certificate is not valid for '127.0.0.2'."),
    "self-signed-leaf": ("self_signed", "localhost", 18, "certificate"),
    "unknown-ca": ("unknown_ca", "localhost", 20, "unable to get local issuer certificate"),
    "incomplete-chain": ("incomplete", "localhost", 20, "unable to get local issuer certificate"),
    "self-signed-in-chain": ("untrusted_root_sent", "localhost", 19,
                             "certificate in certificate chain"),
    # OpenSSL's precedence: an untrusted chain beats the name, the name beats the dates.
    "expired-and-wrong-host": ("expired", "wrong.example", 62, "Hostname mismatch"),
    "unknown-ca-and-wrong-host": ("unknown_ca", "wrong.example", 20, "unable to get local"),
}


#: Whether each case's chain as sent is complete against the root: only the ones without a
#: sent path to a trusted or self-signed certificate are not.
CHAIN_COMPLETE = {"unknown_ca": False, "incomplete": False}


def case_cert(pki: PKI, which: str) -> ServerCert:
    if which == "incomplete":
        return pki.valid.without_intermediates()
    if which == "untrusted_root_sent":
        return pki.unknown_ca.with_extra(pki.other_root_pem)
    cert = getattr(pki, which)
    assert isinstance(cert, ServerCert)
    return cert


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(CASES))
async def test_verification_failure_secure_raises_insecure_reports(pki: PKI, case: str) -> None:
    which, name, code, fragment = CASES[case]
    async with serve(pki.server_context(case_cert(pki, which)), echo) as server:
        with pytest.raises(CertificateVerifyError) as raised:
            await dial(server, TLSOptions(ca_file=pki.ca_file), hostname=name)
        assert type(raised.value) is CertificateVerifyError
        assert raised.value.verify_code == code
        assert fragment in raised.value.reason
        assert raised.value.reason in str(raised.value)

        tls = await dial(server, TLSOptions(ca_file=pki.ca_file, insecure=True), hostname=name)
        assert await ping(tls) == b"ping"  # insecure: reported, but the connection goes on
        await tls.aclose()
    verdict = tls.report.verification
    assert (verdict.verified, verdict.verify_code, verdict.reason) == (
        False, code, raised.value.reason)
    assert verdict.hostname_matched is (name == "localhost")
    assert verdict.pin_matched is None
    assert tls.report.verified_chain == ()
    assert tls.report.chain_complete is CHAIN_COMPLETE.get(which, True)
    assert (tls.report.chain_problem is None) is tls.report.chain_complete


@pytest.mark.anyio
async def test_insecure_valid_chain_is_verified_by_the_offline_verifier(pki: PKI) -> None:
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file, insecure=True))
        await tls.aclose()
    assert tls.report.verification == Verification(True, None, "ok", True, None)
    assert len(tls.report.verified_chain) == 3
    assert tls.report.verified_chain[-1].sha256_fingerprint == summarize_certificate(
        der(pki.root_pem)).sha256_fingerprint


@pytest.mark.anyio
async def test_the_report_is_built_on_first_use_from_the_handshakes_facts(pki: PKI) -> None:
    """The verdict is there at once; the report (certificates summarized, the chain judged)
    only when asked for, after the connection closed too, and once."""
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        assert tls.verification == Verification(True, None, "ok", True, None)
        assert (tls.session_reused, tls.session_offered) == (False, False)
        assert await ping(tls) == b"ping"
        await tls.aclose()
    report = tls.report
    assert report is tls.report
    assert report.verification is tls.verification
    assert report.version in ("TLSv1.2", "TLSv1.3") and report.cipher
    assert len(report.chain) == 2 and len(report.verified_chain) == 3
    assert report.chain[0].sans == ("DNS:localhost", "IP:127.0.0.1")
    assert report.chain_complete is True


@pytest.mark.anyio
async def test_ip_literal_verifies_ip_san_and_sends_no_sni(pki: PKI) -> None:
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file), hostname="127.0.0.1")
        await tls.aclose()
    assert tls.report.verification.verified
    assert tls.report.sni is None
    assert server.sni == [None]


@pytest.mark.anyio
async def test_no_sni_still_verifies_the_name(pki: PKI) -> None:
    options = TLSOptions(ca_file=pki.ca_file, send_sni=False)
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, options)
        await tls.aclose()
        with pytest.raises(CertificateVerifyError) as raised:
            await dial(server, options, hostname="wrong.example")
    assert server.sni == [None, None]
    assert tls.report.sni is None
    assert tls.report.verification == Verification(True, None, "ok", True, None)
    assert raised.value.verify_code == 62
    assert raised.value.reason == "Hostname mismatch, certificate is not valid for 'wrong.example'."


@pytest.mark.anyio
async def test_without_a_name_only_insecure_mode_connects(pki: PKI) -> None:
    async with serve(pki.server_context(pki.valid), echo) as server:
        transport = await anyio.connect_tcp("127.0.0.1", server.port)
        with pytest.raises(SocketOptionError, match="server name is required"):
            await TLSStream.wrap(transport, hostname=None, options=TLSOptions())
        tls = await TLSStream.wrap(transport, hostname=None,
                                   options=TLSOptions(ca_file=pki.ca_file, insecure=True))
        await tls.aclose()
    assert server.sni == [None]
    assert tls.report.sni is None
    assert tls.report.verification == Verification(True, None, "ok", None, None)


@pytest.mark.anyio
async def test_server_name_overrides_sni_and_verification(pki: PKI) -> None:
    options = TLSOptions(ca_file=pki.ca_file, server_name="localhost")
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, options, hostname="db.internal")
        await tls.aclose()
    assert server.sni == ["localhost"]
    assert tls.report.verification.verified


# ----------------------------------------------------------------------------- pins


@pytest.mark.anyio
async def test_pins_match_any_certificate_in_the_chain_in_any_spelling(pki: PKI) -> None:
    leaf_pin = spki_pin(pki.valid.chain_pem[0])
    intermediate_pin = spki_pin(pki.valid.chain_pem[1])
    spellings = [
        "sha256/" + base64.b64encode(leaf_pin).decode(),
        "sha256//" + base64.b64encode(intermediate_pin).decode(),
        base64.b64encode(leaf_pin).decode(),
        intermediate_pin.hex(),
        intermediate_pin.hex(":").upper(),
    ]
    async with serve(pki.server_context(pki.valid), echo) as server:
        for pin in spellings:
            tls = await dial(server, TLSOptions(ca_file=pki.ca_file, pins=(pin,)))
            assert tls.report.verification.pin_matched is True, pin
            await tls.aclose()
    assert tls.report.chain[0].spki_sha256 == "sha256/" + base64.b64encode(leaf_pin).decode()


@pytest.mark.anyio
async def test_pin_mismatch_raises_even_when_insecure(pki: PKI) -> None:
    wrong = "sha256/" + base64.b64encode(b"\x01" * 32).decode()
    async with serve(pki.server_context(pki.valid), echo) as server:
        for insecure in (False, True):
            with pytest.raises(PinMismatchError) as raised:
                await dial(server, TLSOptions(ca_file=pki.ca_file, pins=(wrong,),
                                              insecure=insecure))
            assert raised.value.reason == "public key pin mismatch"
            leaf = "sha256/" + base64.b64encode(spki_pin(pki.valid.chain_pem[0])).decode()
            assert leaf in str(raised.value)  # the message shows what the chain does have


@pytest.mark.anyio
async def test_insecure_reports_failed_verification_and_matched_pin(pki: PKI) -> None:
    pin = base64.b64encode(spki_pin(pki.expired.chain_pem[0])).decode()
    async with serve(pki.server_context(pki.expired), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file, insecure=True, pins=(pin,)))
        await tls.aclose()
    assert tls.report.verification == Verification(
        False, 10, "certificate has expired", True, True)


def test_pin_parsing() -> None:
    for digest in (bytes(range(32)), b"\xfc" + bytes(31)):  # the second: base64 starts "/"
        b64 = base64.b64encode(digest).decode()
        for text in (f"sha256/{b64}", f"sha256//{b64}", b64, digest.hex(), digest.hex(":"),
                     f'pin-sha256="{b64}"'):
            assert parse_pin(text) == digest, text
    TLSOptions(pins=(f"sha256/{b64};{bytes(32).hex()}",))  # curl's ";"-separated lists
    with pytest.raises(SocketOptionError):
        TLSOptions(pins=(f"sha256/{b64};junk",))
    for bad in ("sha256/abc", "nothex" * 8, "sha1/" + b64, ""):
        with pytest.raises(SocketOptionError):
            TLSOptions(pins=(bad,))


# ----------------------------------------------------------------------------- negotiation


@pytest.mark.anyio
async def test_alpn_is_negotiated(pki: PKI) -> None:
    context = pki.server_context(pki.valid, alpn=["h2", "http/1.1"])
    async with serve(context, echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file, alpn=("http/1.1",)))
        assert tls.extra(TLSAttribute.alpn_protocol) == "http/1.1"
        await tls.aclose()
    assert tls.report.alpn == "http/1.1"


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_version_limits(pki: PKI) -> None:
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file, max_version="1.2"))
        assert await ping(tls) == b"ping"
        await tls.aclose()
    assert tls.report.version == "TLSv1.2"

    # A stdlib server thread: unlike anyio's server side it sends its alert before closing.
    only13 = pki.server_context(pki.valid, minimum_version=TLS13)
    with (peers.serve(peers.echo, ssl_context=only13) as thread_server,
          pytest.raises(TLSHandshakeError, match="PROTOCOL_VERSION")):
        await dial(Server(thread_server.port), TLSOptions(ca_file=pki.ca_file,
                                                          max_version="1.2"))

    # Asking for 1.1 lowers Python's 1.2 floor and OpenSSL's security level, or it could
    # never be negotiated.
    legacy = pki.server_context(pki.rsa, minimum_version=ssl.TLSVersion.TLSv1,
                                maximum_version=ssl.TLSVersion.TLSv1_1)
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    async with serve(legacy, echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file, max_version="1.1"))
        assert await ping(tls) == b"ping"
        await tls.aclose()
    assert tls.report.version == "TLSv1.1"

    with pytest.raises(SocketOptionError):
        TLSOptions(min_version="1.3", max_version="1.2")
    with pytest.raises(SocketOptionError):
        TLSOptions(min_version="1.4")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_client_certificate(pki: PKI) -> None:
    def whoami(conn: socket.socket) -> None:
        assert isinstance(conn, ssl.SSLSocket)
        der_cert = conn.getpeercert(binary_form=True)
        assert der_cert is not None
        name = x509.load_der_x509_certificate(der_cert).subject
        conn.sendall(str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value).encode())
        conn.unwrap()

    context = pki.server_context(pki.valid, require_client_cert=True)
    with peers.serve(whoami, ssl_context=context) as thread_server:
        server = Server(thread_server.port)
        options = TLSOptions(ca_file=pki.ca_file, cert_file=pki.client_cert_file,
                             key_file=pki.client_key_file)
        tls = await dial(server, options)
        assert await read_all(tls) == b"client.example"
        await tls.aclose()

        # Without one: TLS 1.2 fails in the handshake (a handshake_failure alert after the
        # server's CertificateRequest); TLS 1.3 on the first read, since the server's alert
        # (certificate_required) comes after the client has finished its handshake. Both
        # are named for what they are.
        required = "the server requires a client certificate and none was given"
        with pytest.raises(ClientCertificateRequiredError, match=required) as v12:
            await dial(server, TLSOptions(ca_file=pki.ca_file, max_version="1.2"))
        assert isinstance(v12.value.__cause__, ssl.SSLError)
        assert "HANDSHAKE_FAILURE" in str(v12.value.__cause__)
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        with pytest.raises(ClientCertificateRequiredError, match=required) as v13:
            await tls.receive()
        assert v13.value.kind == "tls" and v13.value.reason == "client-certificate-required"
        await tls.aclose()


@pytest.mark.anyio
async def test_a_plaintext_server_is_named_with_what_it_said() -> None:
    def banner(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.example ESMTP Postfix\r\n")
        conn.recv(4096)

    said = "the server answered in plaintext: '220 mail.example ESMTP Postfix'"
    with peers.serve(banner) as thread_server, \
            pytest.raises(PlaintextPeerError, match=said) as info:
        await dial(Server(thread_server.port), TLSOptions(insecure=True))
    assert isinstance(info.value, TLSHandshakeError) and info.value.reason == "plaintext-server"
    assert info.value.banner == "220 mail.example ESMTP Postfix"


def test_bad_client_certificate_path_is_an_option_error(tmp_path: Path) -> None:
    with pytest.raises(SocketOptionError, match="client certificate"):
        client_context(TLSOptions(cert_file=str(tmp_path / "missing.pem")))
    with pytest.raises(SocketOptionError, match="CA file"):
        client_context(TLSOptions(ca_file=str(tmp_path / "missing.pem")))


# ----------------------------------------------------------------------------- stream


@pytest.mark.anyio
async def test_round_trip_is_byte_exact(pki: PKI) -> None:
    payload = bytes(range(256)) * (4 * 4096 + 7)  # 4 MiB and change, not record-aligned
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))

        async def push() -> None:
            for start in range(0, len(payload), 300_000):
                await tls.send(payload[start:start + 300_000])
            await tls.send_eof()

        async with anyio.create_task_group() as group:
            group.start_soon(push)
            echoed = await read_all(tls)
        await tls.aclose()
    assert len(echoed) == len(payload)
    assert echoed == payload
    assert tls.close_notify_received
    assert not tls.truncated


@pytest.mark.anyio
@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
async def test_send_eof_is_a_true_half_close(pki: PKI, version: ssl.TLSVersion) -> None:
    """close_notify reaches the peer as EOF, and its reply still reaches us afterwards —
    including bytes it sent *before* our close_notify that we had not read yet."""
    before = b"early " * 50_000
    after = b"late " * 200_000

    async def talker(stream: ServerStream) -> None:
        await stream.send(before)
        received = 0
        try:
            while True:
                received += len(await stream.receive())
        except anyio.EndOfStream:
            pass
        await stream.send(f"got {received}\n".encode() + after)
        await stream.aclose()

    context = pki.server_context(pki.valid, maximum_version=version)
    async with serve(context, talker) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        await tls.send(b"x" * 100_000)
        first = await tls.receive(1)  # the rest of `before` now sits decrypted-or-not in the BIO
        await anyio.sleep(0.05)  # let more records arrive unread
        await tls.send_eof()
        with pytest.raises(anyio.ClosedResourceError):
            await tls.send(b"more")
        rest = await read_all(tls)
        await tls.aclose()
    assert first + rest == before + b"got 100000\n" + after
    assert tls.close_notify_sent
    assert tls.close_notify_received
    assert not tls.truncated
    assert tls.report.version == ("TLSv1.2" if version is TLS12 else "TLSv1.3")


@pytest.mark.anyio
async def test_eof_without_close_notify_is_flagged_truncated(pki: PKI) -> None:
    async def abrupt(stream: ServerStream) -> None:
        await stream.send(b"partial")
        await stream.transport_stream.aclose()  # TCP FIN, no close_notify

    async with serve(pki.server_context(pki.valid), abrupt) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        assert await read_all(tls) == b"partial"
        with pytest.raises(anyio.EndOfStream):
            await tls.receive()
        await tls.send_eof()  # allow_half_open=False closes our side after the peer's EOF
        await tls.aclose()
    assert tls.truncated
    assert not tls.close_notify_received


@pytest.mark.anyio
async def test_aclose_sends_close_notify(pki: PKI) -> None:
    closed = anyio.Event()

    async def wait_for_eof(stream: ServerStream) -> None:
        try:
            await stream.receive()
        except anyio.EndOfStream:  # close_notify; a bare FIN would be BrokenResourceError
            server.events.append("close_notify")
        closed.set()

    async with serve(pki.server_context(pki.valid), wait_for_eof) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        await tls.aclose()
        await tls.aclose()  # idempotent
        with anyio.fail_after(5):
            await closed.wait()
        with pytest.raises(anyio.ClosedResourceError):
            await tls.receive()
    assert server.events == ["close_notify"]


@pytest.mark.anyio
async def test_extra_attributes_pass_through_the_transport(pki: PKI) -> None:
    async with serve(pki.server_context(pki.valid), echo) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        assert tls.extra(SocketAttribute.remote_address) == ("127.0.0.1", server.port)
        assert tls.extra(TLSAttribute.tls_version) == "TLSv1.3"
        assert tls.extra(TLSAttribute.ssl_object) is tls.ssl_object
        await tls.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
async def test_session_resumption(pki: PKI, version: ssl.TLSVersion) -> None:
    options = TLSOptions(ca_file=pki.ca_file)
    async with serve(pki.server_context(pki.valid, maximum_version=version), echo) as server:
        first = await dial(server, options)
        session = await first.resumable_session()
        assert session is not None
        assert session.has_ticket
        await first.aclose()
        second = await dial(server, options, session=session)
        assert await ping(second) == b"ping"
        await second.aclose()
    assert first.report.session_reused is False
    assert second.report.session_reused is True
    assert second.report.chain == first.report.chain  # the report survives resumption


@pytest.mark.anyio
async def test_a_resumed_session_judges_the_chain_of_its_full_handshake(
        pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    from tcpcli.core import tlssession as tls_module
    from tcpcli.render.report import tls_lines

    both = pki.write("root-and-intermediate.pem",
                     pki.root_pem + pki.intermediate.cert_pem.bytes())
    options = TLSOptions(ca_file=both)
    async with serve(pki.server_context(pki.valid.without_intermediates()), echo) as server:
        first = await dial(server, options)
        session = await first.resumable_session()
        await first.aclose()
        second = await dial(server, options, session=session)
        await second.aclose()
        # A session whose full handshake this process did not see: only the leaf is known.
        monkeypatch.setattr(tls_module, "_CHAINS", tls_module._ChainMemory())
        third = await dial(server, options, session=session)
        await third.aclose()
    assert first.report.chain_complete is False and first.report.verification.verified
    assert second.report.session_reused
    assert (second.report.chain_complete, second.report.chain_problem) == (
        first.report.chain_complete, first.report.chain_problem)
    assert third.report.session_reused
    assert (third.report.chain_complete, third.report.chain_problem) == (None, None)
    assert "tls chain: unknown (resumed session: no chain was sent)" in tls_lines(third.report)


@pytest.mark.anyio
async def test_resumable_session_keeps_data_that_arrived_with_the_ticket(pki: PKI) -> None:
    async def hello(stream: ServerStream) -> None:
        await stream.send(b"hello")
        await stream.aclose()

    async with serve(pki.server_context(pki.valid), hello) as server:
        tls = await dial(server, TLSOptions(ca_file=pki.ca_file))
        assert tls.session is not None
        assert not tls.session.has_ticket
        session = await tls.resumable_session(wait=2)
        assert session is not None
        assert session.has_ticket
        assert await read_all(tls) == b"hello"
        await tls.aclose()


@pytest.mark.anyio
async def test_a_declined_or_foreign_session_means_a_full_handshake(pki: PKI) -> None:
    options = TLSOptions(ca_file=pki.ca_file)
    no_tickets = pki.server_context(pki.valid)
    no_tickets.num_tickets = 0  # TLS 1.3 without tickets: nothing can resume
    async with serve(no_tickets, echo) as server:
        first = await dial(server, options)
        session = await first.resumable_session(wait=0.2)
        assert session is not None and not session.has_ticket
        await first.aclose()
        declined = await dial(server, options, session=session)
        await declined.aclose()
    assert (declined.report.session_offered, declined.report.session_reused) == (True, False)
    assert declined.report.to_dict()["session_offered"] is True

    async with serve(pki.server_context(pki.valid), echo) as server:
        first = await dial(server, options)
        session = await first.resumable_session()
        await first.aclose()
        # Sessions belong to their SSLContext: another options value cannot offer it.
        foreign = await dial(server, TLSOptions(ca_file=pki.ca_file, alpn=("x",)),
                             session=session)
        await foreign.aclose()
    assert (foreign.report.session_offered, foreign.report.session_reused) == (False, False)


@pytest.mark.anyio
async def test_handshake_failures_are_tls_handshake_errors(pki: PKI) -> None:
    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        await stream.aclose()

    async def speak_http(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await stream.aclose()

    for handler, expected in ((hang_up, "the peer closed the connection"),
                              (speak_http, "the server answered in plaintext: "
                                           "'HTTP/1.1 400 Bad Request'")):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, handler)
            transport = await anyio.connect_tcp("127.0.0.1", port)
            with pytest.raises(TLSHandshakeError, match=expected) as raised:
                await TLSStream.wrap(transport, hostname="localhost", target=f"localhost:{port}",
                                     options=TLSOptions(ca_file=pki.ca_file))
            await transport.aclose()
            group.cancel_scope.cancel()
        assert f"localhost:{port}" in str(raised.value)


# ----------------------------------------------------------------------------- contexts


def test_client_context_is_built_once_per_options(pki: PKI) -> None:
    secure = client_context(TLSOptions(ca_file=pki.ca_file))
    assert client_context(TLSOptions(ca_file=pki.ca_file)) is secure
    assert secure.verify_mode is ssl.CERT_REQUIRED
    assert secure.check_hostname
    insecure = client_context(TLSOptions(ca_file=pki.ca_file, insecure=True))
    assert insecure is not secure
    assert insecure.verify_mode is ssl.CERT_NONE
    assert not insecure.check_hostname
    no_sni = client_context(TLSOptions(ca_file=pki.ca_file, send_sni=False))
    assert no_sni.verify_mode is ssl.CERT_REQUIRED
    assert not no_sni.check_hostname
    default = client_context(TLSOptions())
    assert default is client_context(TLSOptions())
    # certifi's CAs, read from its hashed directory as a chain needs them (trustdir)
    assert default.cert_store_stats()["x509_ca"] == 0


@pytest.mark.anyio
async def test_client_context_for_a_hostname_is_the_handshakes_context(pki: PKI) -> None:
    options = TLSOptions(ca_file=pki.ca_file)
    no_sni = replace(options, send_sni=False)
    async with serve(pki.server_context(pki.valid), echo) as server:
        for tls_options, name in ((options, "localhost"), (no_sni, "127.0.0.1"),
                                  (no_sni, "localhost")):
            tls = await dial(server, tls_options, hostname=name)
            assert tls.ssl_object.context is client_context(tls_options, hostname=name)
            await tls.aclose()
    # An IP literal is checked by OpenSSL even without SNI; a name is not (we check it).
    assert client_context(no_sni, hostname="127.0.0.1").check_hostname
    assert not client_context(no_sni, hostname="localhost").check_hostname


def test_keylog_file_defaults_to_sslkeylogfile(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "keys.log")
    monkeypatch.setenv("SSLKEYLOGFILE", path)
    assert client_context(TLSOptions()).keylog_filename == path
    explicit = str(tmp_path / "explicit.log")
    assert client_context(TLSOptions(keylog_file=explicit)).keylog_filename == explicit


# ----------------------------------------------------------------------------- summaries


def test_summarize_certificates(pki: PKI) -> None:
    leaf_pem, intermediate_pem = pki.valid.chain_pem
    leaf = summarize_certificate(der(leaf_pem))
    assert (leaf.key_type, leaf.key_bits, leaf.curve) == ("EC", 256, "secp256r1")
    assert leaf.signature_algorithm == "ecdsa-with-SHA256"
    assert leaf.sans == ("DNS:localhost", "IP:127.0.0.1")
    assert leaf.spki_sha256 == "sha256/" + base64.b64encode(spki_pin(leaf_pem)).decode()
    assert leaf.sha256_fingerprint == hashlib.sha256(der(leaf_pem)).hexdigest().upper()[:2] + (
        ":" + ":".join(hashlib.sha256(der(leaf_pem)).hexdigest().upper()[i:i + 2]
                       for i in range(2, 64, 2)))
    parsed = x509.load_pem_x509_certificate(leaf_pem)
    assert int(leaf.serial, 16) == parsed.serial_number
    assert len(leaf.serial) % 2 == 0
    assert leaf.not_after == parsed.not_valid_after_utc
    assert leaf.days_left > 300
    assert not leaf.self_signed
    assert not leaf.is_ca

    intermediate = summarize_certificate(der(intermediate_pem))
    assert intermediate.is_ca
    assert not intermediate.self_signed
    assert leaf.issuer == intermediate.subject
    root = summarize_certificate(der(pki.root_pem))
    assert root.is_ca
    assert root.self_signed

    rsa = summarize_certificate(der(pki.rsa.leaf_pem))
    assert (rsa.key_type, rsa.key_bits, rsa.curve) == ("RSA", 2048, None)
    assert rsa.signature_algorithm == "ecdsa-with-SHA256"  # signed by the EC intermediate
    assert summarize_certificate(der(pki.expired.leaf_pem)).days_left == -2
    assert summarize_certificate(der(pki.not_yet_valid.leaf_pem)).days_left == 59
    self_signed = summarize_certificate(der(pki.self_signed.leaf_pem))
    assert self_signed.self_signed
    assert not self_signed.is_ca
