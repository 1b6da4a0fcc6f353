"""TLS for the socket core: client contexts, a MemoryBIO TLS stream, and the TLS report.

Why our own stream instead of ``anyio.streams.tls.TLSStream``: we need a true half-close
(``send_eof()`` sends close_notify and keeps reading — anyio raises NotImplementedError),
a truncation flag (peer closed without close_notify), large reads, the chain *as sent*, and
an "insecure" mode that still computes and reports the verification verdict.

Verification, in one table (``Verification.verify_code`` is OpenSSL's X509_V_ERR_* code):

    secure (default)   OpenSSL verifies during the handshake (CERT_REQUIRED + hostname);
                       a failure raises CertificateVerifyError with OpenSSL's code/message.
    insecure           handshake with CERT_NONE, then the verdict is computed with
                       ``cryptography.x509.verification`` against the same trust store and
                       mapped to the code OpenSSL would have given (same precedence:
                       untrusted chain 18/19/20, then name 62/64, then validity 10/9).
    pins               checked against every certificate in the chain as sent (SPKI
                       SHA-256); no match raises PinMismatchError, in both modes.

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
shows the chain sent in the full handshake that established it (remembered by leaf).
"""

from __future__ import annotations

import base64
import contextlib
import encodings.idna  # noqa: F401 - see _WARM below
import functools
import hashlib
import ipaddress
import os
import re
import ssl
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import anyio.abc
import certifi
from anyio.streams.tls import TLSAttribute
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa
from cryptography.x509 import verification as x509_verification

from tcpcli.core.errors import (
    CertificateVerifyError,
    ConnectionLostError,
    PinMismatchError,
    SocketOptionError,
    map_exceptions,
)
from tcpcli.core.tlsoptions import (
    _VERSIONS,
    TLSOptions,
    TLSVersionName,
    _parse_pins,
    parse_pin,
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
    "parse_pin",
    "summarize_certificate",
]

# Imported now, not inside the first timed handshake (~7 ms): ssl encodes every server
# name with the idna codec, and ECDSA() imports cryptography's OpenSSL backend on first use
# (verifying an EC-signed certificate).
_WARM = ec.ECDSA(hashes.SHA256())

#: Bytes asked of the transport per read: big reads keep per-call overhead off the hot path.
TRANSPORT_READ_SIZE = 256 * 1024
#: Plaintext encrypted per flush: bounds the ciphertext buffered for one transport send.
WRITE_CHUNK = 256 * 1024
#: How long aclose() tries to deliver close_notify before closing the transport anyway.
CLOSE_NOTIFY_TIMEOUT = 0.5
#: How long resumable_session() waits for a TLS 1.3 ticket by default: servers send it
#: half a round trip after the handshake, so this covers slow links too.
TICKET_WAIT = 0.5

# OpenSSL X509_V_ERR_* codes we produce ourselves in insecure mode, with OpenSSL's texts.
X509_V_ERR_UNSPECIFIED = 1
X509_V_ERR_CERT_SIGNATURE_FAILURE = 7
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_INVALID_CA = 24
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64

_SELF_SIGNED = "self-signed" if ssl.OPENSSL_VERSION_INFO >= (3,) else "self signed"
_VERIFY_MESSAGES: dict[int, str] = {
    X509_V_ERR_UNSPECIFIED: "unspecified certificate verification error",
    X509_V_ERR_CERT_SIGNATURE_FAILURE: "certificate signature failure",
    X509_V_ERR_CERT_NOT_YET_VALID: "certificate is not yet valid",
    X509_V_ERR_CERT_HAS_EXPIRED: "certificate has expired",
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: f"{_SELF_SIGNED} certificate",
    X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: f"{_SELF_SIGNED} certificate in certificate chain",
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unable to get local issuer certificate",
    X509_V_ERR_INVALID_CA: "invalid CA certificate",
}


# --------------------------------------------------------------------------- contexts


def client_context(options: TLSOptions, *, hostname: str | None = None) -> ssl.SSLContext:
    """The client SSLContext for ``options``, built once per distinct options value.

    Verification is on (CERT_REQUIRED + check_hostname) unless ``options.insecure``. With
    ``send_sni=False`` OpenSSL cannot check the name without also sending it, so that
    context verifies the chain only and :class:`TLSStream` checks the name itself.
    With ``hostname`` it is exactly the context ``TLSStream.wrap()`` uses for that name:
    build it before timing a handshake (loading a trust store takes ~20 ms), and know that
    sessions resume only between handshakes that share it.
    """
    if hostname is None:
        return _context(options, not options.insecure and options.send_sni,
                        os.environ.get("SSLKEYLOGFILE"))
    return _handshake_context(options, _normalize_name(options.server_name or hostname))[0]


def contexts_built() -> int:
    """How many client contexts this process has built (each loads a trust store)."""
    return _context.cache_info().misses


def _handshake_context(options: TLSOptions, name: str | None) -> (
    tuple[ssl.SSLContext, str | None]
):
    """The context for a handshake with ``name``, and the name handed to OpenSSL.

    Python sends no SNI for IP literals; with ``send_sni=False`` we pass no name at all and
    check it ourselves after the handshake.
    """
    is_ip = name is not None and _ip(name) is not None
    server_hostname = name if (options.send_sni or is_ip) else None
    context = _context(options, not options.insecure and server_hostname is not None,
                       os.environ.get("SSLKEYLOGFILE"))
    return context, server_hostname


@functools.lru_cache(maxsize=32)
def _context(options: TLSOptions, check_hostname: bool, keylog_env: str | None) -> (
    ssl.SSLContext
):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Names are matched against subjectAltName only, as browsers do (no CN fallback).
    context.hostname_checks_common_name = False
    # A peer that closes without close_notify must be visible (TLSStream.truncated).
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if options.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = check_hostname
    _load_trust(context, options)  # insecure too: a bad --ca-file is an error either way
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated; here they were asked for
        warnings.simplefilter("ignore", DeprecationWarning)
        if options.min_version is not None:
            context.minimum_version = _VERSIONS[options.min_version]
        elif options.max_version in ("1.0", "1.1"):
            context.minimum_version = ssl.TLSVersion.TLSv1  # Python's floor is 1.2: lower it
        if options.max_version is not None:
            context.maximum_version = _VERSIONS[options.max_version]
    if {options.min_version, options.max_version} & {"1.0", "1.1"}:
        # Asking for TLS 1.0/1.1 explicitly: OpenSSL 3's default security level forbids
        # them (and their SHA-1 signatures), which would make the option a no-op.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if options.alpn:
        context.set_alpn_protocols(list(options.alpn))
    if options.cert_file is not None:
        try:
            context.load_cert_chain(options.cert_file, options.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise SocketOptionError(
                f"cannot load the client certificate {options.cert_file}: {_why(exc)}"
            ) from exc
        context.post_handshake_auth = True
    keylog = options.keylog_file or keylog_env
    if keylog:
        context.keylog_filename = keylog
    return context


def _load_trust(context: ssl.SSLContext, options: TLSOptions) -> None:
    source = options.ca_file or certifi.where()
    try:
        if options.ca_file is not None and os.path.isdir(options.ca_file):
            context.load_verify_locations(capath=options.ca_file)
        else:
            context.load_verify_locations(cafile=source)
    except (OSError, ssl.SSLError) as exc:
        raise SocketOptionError(f"cannot load the CA file {source}: {_why(exc)}") from exc
    if options.system_store:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class CertificateSummary:
    """What a person wants to know about one certificate."""

    subject: str
    issuer: str
    sans: tuple[str, ...]  # "DNS:example.com", "IP:192.0.2.1", ...
    not_before: datetime
    not_after: datetime
    days_left: int  # whole days until not_after (truncated), negative once a day expired
    key_type: str  # "RSA", "EC", "Ed25519", "Ed448", "DSA", ...
    key_bits: int | None
    curve: str | None
    signature_algorithm: str  # OpenSSL's name: "sha256WithRSAEncryption", "ecdsa-with-SHA256"
    spki_sha256: str  # "sha256/<base64>", the value --pin takes
    sha256_fingerprint: str  # "AB:CD:..."
    serial: str  # upper-case hex
    self_signed: bool
    is_ca: bool


def summarize_certificate(der: bytes) -> CertificateSummary:
    """Summarize a DER certificate; ``days_left`` is computed against the current time."""
    summary = _summarize_cached(der)
    # Truncated toward zero: "expired 2 days ago" is -2, "29.9 days left" is 29.
    days_left = int((summary.not_after - datetime.now(UTC)) / timedelta(days=1))
    return replace(summary, days_left=days_left)


@functools.lru_cache(maxsize=256)
def _summarize_cached(der: bytes) -> CertificateSummary:
    # Cached: bench sees the same chain thousands of times.
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    key_type, key_bits, curve = _describe_key(key)
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = basic.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=_sans(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        days_left=0,
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=cert.signature_algorithm_oid._name,
        spki_sha256="sha256/" + base64.b64encode(_spki_digest(cert)).decode(),
        sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        serial=_hex_serial(cert.serial_number),
        self_signed=_is_self_signed(cert),
        is_ca=is_ca,
    )


def _describe_key(key: object) -> tuple[str, int | None, str | None]:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    if isinstance(key, dh.DHPublicKey):
        return "DH", key.key_size, None
    return type(key).__name__, None, None


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out: list[str] = []
    for name in names:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(f"URI:{name.value}")
        elif isinstance(name, x509.DirectoryName):
            out.append(f"DirName:{name.value.rfc4514_string()}")
        elif isinstance(name, x509.RegisteredID):
            out.append(f"Registered ID:{name.value.dotted_string}")
        else:
            out.append("othername:<unsupported>")
    return tuple(out)


def _spki_digest(cert: x509.Certificate) -> bytes:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _hex_serial(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, or a key type that cannot sign
        return False
    return True


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Verification:
    """The verification verdict. ``verify_code``/``reason`` are OpenSSL's when it failed."""

    verified: bool
    verify_code: int | None
    reason: str  # "ok" or the verification message
    hostname_matched: bool | None  # None when there was no name to check
    pin_matched: bool | None  # None when no pins were given


@dataclass(frozen=True)
class TLSReport:
    """Facts about one TLS session, filled in after the handshake."""

    version: str  # "TLSv1.3"
    cipher: str
    cipher_bits: int | None
    alpn: str | None
    sni: str | None  # the name sent as SNI, None when none was sent
    session_reused: bool
    chain: tuple[CertificateSummary, ...]  # as sent by the server, leaf first
    verified_chain: tuple[CertificateSummary, ...]  # leaf to trust anchor, when verified
    verification: Verification
    #: A previous session was offered for resumption; with ``session_reused`` False the
    #: server declined it (a full handshake).
    session_offered: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON-safe: numbers stay numbers, datetimes become ISO 8601 UTC strings."""
        result = _jsonable(self)
        assert isinstance(result, dict)
        return result


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    return value


# --------------------------------------------------------------------------- names


def _normalize_name(name: str | None) -> str | None:
    if not name:
        return None
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    return name or None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None


def _name_matches(cert: x509.Certificate, name: str) -> bool:
    """RFC 6125 matching as OpenSSL does it for Python (SAN only, whole-label wildcard)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    address = _ip(name)
    if address is not None:
        return address in sans.get_values_for_type(x509.IPAddress)
    host = name.lower().rstrip(".")
    labels = host.split(".")
    for pattern in sans.get_values_for_type(x509.DNSName):
        pattern = pattern.lower().rstrip(".")
        if pattern == host:
            return True
        parts = pattern.split(".")
        if (parts[0] == "*" and len(parts) >= 3 and len(parts) == len(labels)
                and parts[1:] == labels[1:] and labels[0]):
            return True
    return False


def _mismatch(name: str) -> tuple[int, str]:
    if _ip(name) is not None:
        return (X509_V_ERR_IP_ADDRESS_MISMATCH,
                f"IP address mismatch, certificate is not valid for '{name}'.")
    return (X509_V_ERR_HOSTNAME_MISMATCH,
            f"Hostname mismatch, certificate is not valid for '{name}'.")


# --------------------------------------------------------------------------- offline verification


def _require_ca(policy: object, cert: x509.Certificate, ext: x509.BasicConstraints) -> None:
    if not ext.ca:
        raise ValueError("basicConstraints.cA must be asserted in a CA certificate")


# OpenSSL-like leniency: only what OpenSSL itself insists on (issuers are CAs, the leaf has
# a SAN to match), not the CA/Browser Forum profile cryptography enforces by default.
_CA_POLICY = x509_verification.ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, x509_verification.Criticality.AGNOSTIC, _require_ca)
_EE_POLICY = x509_verification.ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, x509_verification.Criticality.AGNOSTIC, None)


@functools.lru_cache(maxsize=8)
def _trust_store(ca_file: str | None, system_store: bool) -> x509_verification.Store | None:
    """The insecure-mode trust store: the same sources the secure context loads."""
    paths: list[str] = []
    if ca_file is not None and os.path.isdir(ca_file):
        paths += _directory_files(ca_file)
    else:
        paths.append(ca_file or certifi.where())
    if system_store:
        defaults = ssl.get_default_verify_paths()
        for candidate in (defaults.cafile, defaults.openssl_cafile):
            if candidate and os.path.isfile(candidate):
                paths.append(candidate)
        for directory in (defaults.capath, defaults.openssl_capath):
            if directory and os.path.isdir(directory):
                paths += _directory_files(directory)
    certs: dict[bytes, x509.Certificate] = {}
    for path in paths:
        for cert in _read_pem_certificates(path):
            certs[cert.fingerprint(hashes.SHA256())] = cert
    return x509_verification.Store(list(certs.values())) if certs else None


def _directory_files(directory: str) -> list[str]:
    return sorted(entry.path for entry in os.scandir(directory) if entry.is_file())


_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _read_pem_certificates(path: str) -> Iterable[x509.Certificate]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return
    for block in _PEM_BLOCK.findall(data):
        try:
            with warnings.catch_warnings():  # old roots with odd serials: still usable
                warnings.simplefilter("ignore")
                cert = x509.load_pem_x509_certificate(block)
        except ValueError:
            continue  # a certificate cryptography refuses to parse cannot anchor anything
        yield cert


def _verify_offline(
    chain: Sequence[x509.Certificate], name: str | None, store: x509_verification.Store | None,
    now: datetime,
) -> tuple[Verification, list[x509.Certificate]]:
    """Insecure mode: the verdict OpenSSL would have reached, computed after the fact.

    Precedence follows OpenSSL's verify_chain(): building a trusted chain (18/19/20/24),
    then the name (62/64), then signatures and validity periods (10/9).
    """
    if not chain:
        return Verification(False, X509_V_ERR_UNSPECIFIED, "the server sent no certificate",
                            None, None), []
    leaf, intermediates = chain[0], list(chain[1:])
    matched = None if name is None else _name_matches(leaf, name)
    subject = _verifier_subject(leaf)

    built: list[x509.Certificate] | None = None
    failure = "no trusted certificates to verify against"
    if store is not None and subject is not None:
        try:
            built = _build_chain(store, subject, leaf, intermediates, now)
        except x509_verification.VerificationError as exc:
            failure = str(exc)
            off_time = _valid_time(chain)
            if off_time is not None and off_time != now:
                try:  # was it only a validity period? then the chain itself is trusted
                    built = _build_chain(store, subject, leaf, intermediates, off_time)
                except x509_verification.VerificationError as again:
                    failure = str(again)

    def failed(code: int, reason: str | None = None) -> (
        tuple[Verification, list[x509.Certificate]]
    ):
        return Verification(False, code, reason or _VERIFY_MESSAGES[code], matched, None), []

    if built is None:
        if subject is None and name is not None and not _is_self_signed(leaf):
            return failed(*_mismatch(name))  # no SAN at all: nothing could ever match
        return failed(*_trust_failure(chain, failure))
    if matched is False and name is not None:
        return failed(*_mismatch(name))
    for cert in reversed(built):  # OpenSSL checks validity from the anchor down
        if now > cert.not_valid_after_utc:
            return failed(X509_V_ERR_CERT_HAS_EXPIRED)
        if now < cert.not_valid_before_utc:
            return failed(X509_V_ERR_CERT_NOT_YET_VALID)
    return Verification(True, None, "ok", matched, None), built


def _build_chain(store: x509_verification.Store, subject: x509_verification.Subject,
                 leaf: x509.Certificate, intermediates: list[x509.Certificate],
                 when: datetime) -> list[x509.Certificate]:
    verifier = (
        x509_verification.PolicyBuilder()
        .store(store)
        .time(when)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_server_verifier(subject)
    )
    return verifier.verify(leaf, intermediates)


def _verifier_subject(leaf: x509.Certificate) -> x509_verification.Subject | None:
    """A name the leaf is valid for, taken from its own SANs.

    The requested name is judged separately (62/64 come after chain errors in OpenSSL),
    so chain building must not fail on it.
    """
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for dns in sans.get_values_for_type(x509.DNSName):
        return x509.DNSName("wildcard" + dns[1:] if dns.startswith("*.") else dns)
    for address in sans.get_values_for_type(x509.IPAddress):
        return x509.IPAddress(address)
    return None


def _valid_time(chain: Sequence[x509.Certificate]) -> datetime | None:
    """A moment at which every certificate sent is within its validity period."""
    start = max(cert.not_valid_before_utc for cert in chain)
    end = min(cert.not_valid_after_utc for cert in chain)
    if start > end:
        leaf = chain[0]
        start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    return start + (end - start) / 2 if start <= end else None


def _trust_failure(chain: Sequence[x509.Certificate], failure: str) -> tuple[int, str | None]:
    if _is_self_signed(chain[0]):
        return X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, None
    if len(chain) > 1 and _is_self_signed(chain[-1]):
        return X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, None
    if "basicConstraints" in failure:
        return X509_V_ERR_INVALID_CA, None
    if "signature" in failure.lower():
        return X509_V_ERR_CERT_SIGNATURE_FAILURE, None
    return X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, None


# --------------------------------------------------------------------------- the stream


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
        self._chains: dict[bytes, tuple[list[bytes], list[bytes]]] = {}

    def remember(self, sent: list[bytes], verified: list[bytes], *, insecure: bool) -> None:
        key = hashlib.sha256(sent[0]).digest() + bytes([insecure])
        self._chains.pop(key, None)
        self._chains[key] = (sent, verified)
        while len(self._chains) > self._size:
            del self._chains[next(iter(self._chains))]

    def recall(self, leaf: bytes, *, insecure: bool) -> tuple[list[bytes], list[bytes]] | None:
        return self._chains.get(hashlib.sha256(leaf).digest() + bytes([insecure]))


_CHAINS = _ChainMemory()


def _has_ticket(session: ssl.SSLSession | None) -> bool:
    return session is not None and session.has_ticket


class TLSStream(anyio.abc.ByteStream):
    """TLS over any anyio ByteStream, through ``ssl.MemoryBIO``.

    ``receive()`` raises ``anyio.EndOfStream`` on the peer's close_notify and also on a
    transport EOF without one — then ``truncated`` is True ("peer closed without
    close_notify"). ``send_eof()`` sends close_notify (and a TCP FIN) and keeps reading.
    One task may receive while another sends.
    """

    report: TLSReport

    def __init__(self, transport: anyio.abc.ByteStream, ssl_object: ssl.SSLObject,
                 incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *,
                 target: str | None = None, port: int | None = None) -> None:
        self.transport_stream = transport
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        self._target = target
        self._port = port
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._pending = bytearray()  # plaintext decrypted ahead of receive() (send_eof)
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
        name = _normalize_name(options.server_name or hostname)
        if name is None and not options.insecure:
            raise SocketOptionError(
                "a server name is required to verify the certificate (or use insecure)"
            )
        is_ip = name is not None and _ip(name) is not None
        context, server_hostname = _handshake_context(options, name)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        ssl_object = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
        offered = False
        if session is not None:
            # Another context's session cannot resume (ValueError): not offered, a full
            # handshake follows.
            with contextlib.suppress(ValueError, TypeError):
                ssl_object.session = session
                offered = True
        stream = cls(transport, ssl_object, incoming, outgoing, target=target, port=port)
        with map_exceptions(target=target, port=port, phase="tls"):
            await stream._handshake()
        stream.report = stream._build_report(
            name, sni=server_hostname if server_hostname and not is_ip else None,
            pins=_parse_pins(options.pins), options=options, session_offered=offered)
        return stream

    async def _handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                self._incoming.write(await self.transport_stream.receive(TRANSPORT_READ_SIZE))
            except ssl.SSLError:
                # Deliver our alert (bad certificate, protocol version, ...) so the server
                # logs the real reason instead of an EOF; never let that hide our error.
                with anyio.move_on_after(CLOSE_NOTIFY_TIMEOUT), contextlib.suppress(Exception):
                    await self._flush()
                raise
        await self._flush()  # our Finished (and, in TLS 1.3, the end of our flight)

    def _build_report(self, name: str | None, *, sni: str | None, pins: frozenset[bytes],
                      options: TLSOptions, session_offered: bool) -> TLSReport:
        ssl_object = self._ssl
        sent_der = _peer_chain(ssl_object, verified=False)
        openssl_verified = [] if options.insecure else _peer_chain(ssl_object, verified=True)
        if ssl_object.session_reused:
            remembered = (_CHAINS.recall(sent_der[0], insecure=options.insecure)
                          if sent_der else None)
            if remembered is not None:
                sent_der, openssl_verified = remembered
        elif sent_der:
            _CHAINS.remember(sent_der, openssl_verified, insecure=options.insecure)
        sent = tuple(summarize_certificate(der) for der in sent_der)
        verified_der: list[bytes] = []
        if options.insecure:
            certs = [x509.load_der_x509_certificate(der) for der in sent_der]
            verdict, built = _verify_offline(
                certs, name, _trust_store(options.ca_file, options.system_store),
                datetime.now(UTC))
            verified_der = [cert.public_bytes(serialization.Encoding.DER) for cert in built]
        else:
            matched = True
            if ssl_object.server_hostname is None and name is not None:  # SNI-less
                matched = bool(sent_der) and _name_matches(
                    x509.load_der_x509_certificate(sent_der[0]), name)
                if not matched:
                    code, reason = _mismatch(name)
                    raise self._verify_error(code, reason)
            verdict = Verification(True, None, "ok", matched, None)
            verified_der = openssl_verified
        if pins:
            digests = {base64.b64decode(cert.spki_sha256.removeprefix("sha256/"))
                       for cert in sent}
            if not digests & pins:
                where = self._target or "the peer"
                have = ", ".join(f"{cert.spki_sha256} ({cert.subject})" for cert in sent)
                raise PinMismatchError(
                    f"TLS certificate of {where} failed verification: no certificate in the "
                    f"chain matches the pinned public key (chain: {have or 'empty'})",
                    verify_code=None, reason="public key pin mismatch",
                    target=self._target, port=self._port)
            verdict = replace(verdict, pin_matched=True)
        cipher = ssl_object.cipher()
        return TLSReport(
            version=ssl_object.version() or "",
            cipher=cipher[0] if cipher else "",
            cipher_bits=cipher[2] if cipher else None,
            alpn=ssl_object.selected_alpn_protocol(),
            sni=sni,
            session_reused=ssl_object.session_reused,
            chain=sent,
            verified_chain=tuple(summarize_certificate(der) for der in verified_der),
            verification=verdict,
            session_offered=session_offered,
        )

    def _verify_error(self, code: int, reason: str) -> CertificateVerifyError:
        where = self._target or "the peer"
        return CertificateVerifyError(
            f"TLS certificate of {where} failed verification: {reason}",
            verify_code=code, reason=reason, target=self._target, port=self._port)

    # ------------------------------------------------------------- session

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
                raise
            if not count:
                self._read_eof = self.close_notify_received = True
                break
            filled += count
        return bytes(view[:filled]) if filled else b""

    def _drain_into_pending(self) -> None:
        while chunk := self._read_available(TRANSPORT_READ_SIZE):
            self._pending += chunk

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
