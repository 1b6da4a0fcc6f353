"""What tcpcli reports about a TLS session: the certificates, the verdict, the session facts.

Plain frozen data with a JSON form and no cryptography import, so renderers and callers can
name these types cheaply; :mod:`tcpcli.core.certs` fills in a :class:`CertificateSummary`,
:mod:`tcpcli.core.tlsverify` reaches a :class:`Verification`, and
:class:`tcpcli.core.tls.TLSStream` assembles the :class:`TLSReport` after its handshake.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

from tcpcli.core.tlsverdict import Verification
from tcpcli.record import Record, replace, values

__all__ = [
    "OCSP_STAPLING_UNKNOWN",
    "CertificateSummary",
    "TLSReport",
    "Verification",
]

#: Why ``TLSReport.ocsp_stapled`` is always None. Checked on Python 3.11 / OpenSSL 3.0: the
#: ClientHello ``ssl`` sends carries no status_request extension (so a server must not
#: staple, RFC 6066 section 8), and neither ``SSLContext`` nor ``SSLObject`` has a way to ask
#: for one or to read one (tests/integration/test_tls_chain_facts.py checks the ClientHello).
OCSP_STAPLING_UNKNOWN = "Python's ssl module neither requests nor exposes a stapled OCSP response"


class CertificateSummary(Record, frozen=True):
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


class TLSReport(Record, frozen=True):
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
    #: Whether the chain as sent leads from the leaf, through the certificates sent, to a
    #: self-signed one or to one issued by a self-signed anchor of the run's trust store. A
    #: chain that verifies only thanks to an intermediate in the local store is incomplete:
    #: other clients fail on it. None: no chain to judge (a resumed session whose full
    #: handshake this process did not see).
    chain_complete: bool | None = None
    #: One plain sentence (or several joined by "; "): the missing intermediate, and sent
    #: certificates that are out of order or not part of the chain; None when there are none.
    chain_problem: str | None = None
    #: Always None, for the reason in ``ocsp_note`` (:data:`OCSP_STAPLING_UNKNOWN`).
    ocsp_stapled: bool | None = None
    ocsp_note: str = OCSP_STAPLING_UNKNOWN

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
    if isinstance(value, Record):
        return {name: _jsonable(item) for name, item in values(value).items()}
    return value


# How a summary writes its values, whoever reads the certificate: core.dercert from the
# DER, core.certs with cryptography.

#: subjectAltName prefixes, as the report writes each kind of name.
SAN_DNS, SAN_IP, SAN_EMAIL, SAN_URI = "DNS:", "IP:", "email:", "URI:"
SAN_DIRNAME, SAN_RID, SAN_OTHER = "DirName:", "Registered ID:", "othername:<unsupported>"


def serial_text(serial: int) -> str:
    """Upper-case hex with an even number of digits."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def fingerprint_text(der: bytes) -> str:
    """A SHA-256 fingerprint as the report writes it: "AB:CD:..."."""
    return hashlib.sha256(der).digest().hex(":").upper()


def spki_text(spki_der: bytes) -> str:
    """A public key's pin as ``--pin`` takes it: ``sha256/<base64>`` of its SPKI."""
    return "sha256/" + base64.b64encode(hashlib.sha256(spki_der).digest()).decode()


def with_days_left(summary: CertificateSummary) -> CertificateSummary:
    """``summary`` with ``days_left`` counted from now, truncated toward zero ("expired 2
    days ago" is -2, "29.9 days left" is 29)."""
    days = int((summary.not_after - datetime.now(UTC)) / timedelta(days=1))
    return replace(summary, days_left=days)
