"""Reading certificates with cryptography: the summary a report shows, and the names a
certificate is valid for (RFC 6125 matching as OpenSSL does it for Python).

The summary here is the reference: a report reads the usual certificates without
cryptography (:mod:`tcpcli.core.dercert`, which comes here for any other), with the same
result. Also used for the SNI-less name check and by insecure mode's verification
(:mod:`tcpcli.core.tlsverify`).
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa

from tcpcli.core.tlsoptions import ip_literal, normalize_name
from tcpcli.core.tlsreport import (
    SAN_DIRNAME,
    SAN_DNS,
    SAN_EMAIL,
    SAN_IP,
    SAN_OTHER,
    SAN_RID,
    SAN_URI,
    CertificateSummary,
    fingerprint_text,
    serial_text,
    spki_text,
    with_days_left,
)

__all__ = [
    "ip_literal",
    "is_self_signed",
    "name_matches",
    "normalize_name",
    "summarize_certificate",
]

# Imported now, not inside the first timed handshake: ECDSA() imports cryptography's
# OpenSSL backend on first use (checking an EC-signed certificate's signature).
_WARM = ec.ECDSA(hashes.SHA256())


# --------------------------------------------------------------------------- summaries


def summarize_certificate(der: bytes) -> CertificateSummary:
    """Summarize a DER certificate; ``days_left`` is computed against the current time."""
    return with_days_left(_summarize_cached(der))


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
        spki_sha256=spki_text(_spki(cert)),
        sha256_fingerprint=fingerprint_text(cert.public_bytes(serialization.Encoding.DER)),
        serial=serial_text(cert.serial_number),
        self_signed=is_self_signed(cert),
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
            out.append(SAN_DNS + name.value)
        elif isinstance(name, x509.IPAddress):
            out.append(f"{SAN_IP}{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(SAN_EMAIL + name.value)
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(SAN_URI + name.value)
        elif isinstance(name, x509.DirectoryName):
            out.append(SAN_DIRNAME + name.value.rfc4514_string())
        elif isinstance(name, x509.RegisteredID):
            out.append(SAN_RID + name.value.dotted_string)
        else:
            out.append(SAN_OTHER)
    return tuple(out)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` issued ``cert``: its subject is ``cert``'s issuer and its key checks
    ``cert``'s signature (the name alone is not enough: a re-keyed CA keeps its name)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, or a key type that cannot sign
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issued by itself: same subject and issuer, and its own key checks its signature."""
    return issued_by(cert, cert)


# --------------------------------------------------------------------------- names


def name_matches(cert: x509.Certificate, name: str) -> bool:
    """RFC 6125 matching as OpenSSL does it for Python (SAN only, whole-label wildcard)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    address = ip_literal(name)
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
