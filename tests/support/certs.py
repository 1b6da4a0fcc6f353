"""Certificate factories for TLS tests: one PKI with every kind of bad certificate.

trustme makes the chains (root → intermediate → leaf, including expired and not-yet-valid
leaves); cryptography makes what trustme cannot (a self-signed leaf). ``server_context``
builds the server side, optionally omitting the intermediate to simulate a broken server.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServerCert:
    """A server certificate: PEM chain as the server would send it, plus its key."""

    chain_pem: tuple[bytes, ...]  # leaf first
    key_pem: bytes

    @property
    def leaf_pem(self) -> bytes:
        return self.chain_pem[0]

    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem[0])

    def without_intermediates(self) -> ServerCert:
        return ServerCert(self.chain_pem[:1], self.key_pem)

    def with_extra(self, *pems: bytes) -> ServerCert:
        return ServerCert((*self.chain_pem, *pems), self.key_pem)


def from_trustme(leaf: trustme.LeafCert) -> ServerCert:
    return ServerCert(tuple(blob.bytes() for blob in leaf.cert_chain_pems),
                      leaf.private_key_pem.bytes())


def self_signed(*names: str, days: int = 30) -> ServerCert:
    """A self-signed end-entity certificate (no CA anywhere) for ``names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ServerCert((cert.public_bytes(serialization.Encoding.PEM),), key_pem)


@dataclass
class PKI:
    """A root CA, an intermediate, and leaves for every verification outcome.

    All leaves except ``unknown_ca`` and ``self_signed`` are issued by the intermediate
    and valid for ``localhost`` and ``127.0.0.1``.
    """

    directory: Path
    root: trustme.CA = field(default_factory=trustme.CA)
    other_root: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.intermediate = self.root.create_child_ca()
        self.valid = from_trustme(self.intermediate.issue_cert("localhost", "127.0.0.1"))
        self.expired = from_trustme(self.intermediate.issue_cert(
            "localhost", "127.0.0.1",
            not_before=now - dt.timedelta(days=60), not_after=now - dt.timedelta(days=2)))
        self.not_yet_valid = from_trustme(self.intermediate.issue_cert(
            "localhost", "127.0.0.1",
            not_before=now + dt.timedelta(days=2), not_after=now + dt.timedelta(days=60)))
        self.unknown_ca = from_trustme(self.other_root.issue_cert("localhost", "127.0.0.1"))
        self.self_signed = self_signed("localhost")
        self.rsa = from_trustme(self.intermediate.issue_cert(
            "localhost", key_type=trustme.KeyType.RSA))
        self.client_ca = trustme.CA()
        client = self.client_ca.issue_cert("client.example", common_name="client.example")
        self.client_cert_file = self.write("client-cert.pem", client.cert_chain_pems[0].bytes())
        self.client_key_file = self.write("client-key.pem", client.private_key_pem.bytes())
        self.ca_file = self.write("root.pem", self.root.cert_pem.bytes())

    @property
    def root_pem(self) -> bytes:
        return self.root.cert_pem.bytes()

    @property
    def other_root_pem(self) -> bytes:
        return self.other_root.cert_pem.bytes()

    def write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        return str(path)

    def server_context(
        self,
        cert: ServerCert,
        *,
        minimum_version: ssl.TLSVersion | None = None,
        maximum_version: ssl.TLSVersion | None = None,
        alpn: Sequence[str] = (),
        require_client_cert: bool = False,
    ) -> ssl.SSLContext:
        """A server context presenting ``cert`` (exactly the PEMs in its chain)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        stem = f"server-{id(cert)}"
        chain_file = self.write(f"{stem}-chain.pem", b"".join(cert.chain_pem))
        key_file = self.write(f"{stem}-key.pem", cert.key_pem)
        context.load_cert_chain(chain_file, key_file)
        if minimum_version is not None:
            context.minimum_version = minimum_version
        if maximum_version is not None:
            context.maximum_version = maximum_version
        if alpn:
            context.set_alpn_protocols(list(alpn))
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.client_ca.configure_trust(context)
        return context


def same_name_other_key(cert: x509.Certificate) -> x509.Certificate:
    """A self-signed certificate with ``cert``'s name and a key of its own."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder()
            .subject_name(cert.subject).issuer_name(cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(cert.not_valid_before_utc)
            .not_valid_after(cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
