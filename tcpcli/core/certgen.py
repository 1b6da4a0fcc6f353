"""Throwaway certificates: a private CA and a leaf, made on the spot (demo, listen --tls).

Nothing here is for production trust: the CA lives as long as the process that made it,
unless ``listen --ca-out`` writes it down so that a client can verify against it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Throwaway:
    """A throwaway CA and a leaf it issued, as PEM, with the leaf's key."""

    ca_pem: bytes
    cert_pem: bytes  # leaf first, then the CA
    key_pem: bytes
    fingerprint_sha256: str  # of the leaf certificate, "AB:CD:..."

    @property
    def pin(self) -> str:
        """The leaf's public key pin, exactly as ``--pin`` takes it."""
        return spki_pin(self.cert_pem)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(self.cert_pem)
            key.write_bytes(self.key_pem)
            context.load_cert_chain(cert, key)
        return context

    def write_ca(self, directory: str) -> str:
        path = Path(directory) / "throwaway-ca.pem"
        path.write_bytes(self.ca_pem)
        return str(path)


def spki_pin(cert_pem: bytes) -> str:
    """``sha256/<base64>`` of the first certificate in ``cert_pem``: its public key's pin."""
    from tcpcli.core.certs import summarize_certificate

    leaf = x509.load_pem_x509_certificate(cert_pem)
    return summarize_certificate(leaf.public_bytes(serialization.Encoding.DER)).spki_sha256


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def throwaway_certificate(*names: str, days: int = 7) -> Throwaway:
    """A CA and a leaf valid for ``names`` (DNS names or IP literals)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("tcpcli throwaway CA"))
        .issuer_name(_name("tcpcli throwaway CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0] if names else "localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Throwaway(
        ca_pem=ca_cert.public_bytes(pem),
        cert_pem=leaf.public_bytes(pem) + ca_cert.public_bytes(pem),
        key_pem=leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
    )
