"""certifi's bundle as a hashed directory: OpenSSL's file names, built once, used by TLS.

The names are checked against OpenSSL itself (``openssl x509 -subject_hash``): every CA of
the certifi bundle installed, and names made to exercise each canonicalization rule.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from tcpcli.core.tlscontext import client_context
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.core.trustdir import hashed_directory, subject_hash
from tests.support.peers import serve

pytestmark = pytest.mark.timeout(60)

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")


def openssl_hash(pem: bytes) -> int:
    assert OPENSSL is not None
    out = subprocess.run([OPENSSL, "x509", "-subject_hash", "-noout"], input=pem,
                         capture_output=True, check=True).stdout
    return int(out.strip(), 16)


def certifi_pems() -> list[bytes]:
    bundle = Path(certifi.where()).read_bytes()
    return re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", bundle,
                      re.S)


def der_of(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


@needs_openssl
def test_every_certifi_ca_gets_openssls_file_name() -> None:
    pems = certifi_pems()
    assert len(pems) > 100
    wrong = [pem[:80] for pem in pems if subject_hash(der_of(pem)) != openssl_hash(pem)]
    assert wrong == []


def made(subject: x509.Name) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def attribute(oid: x509.ObjectIdentifier, value: str,
              kind: _ASN1Type | None = None) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value) if kind is None else \
        x509.NameAttribute(oid, value, _type=kind)


NAMES = {
    "case and spaces": x509.Name([attribute(NameOID.COMMON_NAME, "  Mixed\t Case   CA  ")]),
    "printable country": x509.Name([attribute(NameOID.COUNTRY_NAME, "DE"),
                                    attribute(NameOID.ORGANIZATION_NAME, "ÄÖÜ Straße GmbH")]),
    "bmp": x509.Name([attribute(NameOID.COMMON_NAME, "BMP Name ÉÈ", _ASN1Type.BMPString)]),
    "universal": x509.Name([attribute(NameOID.COMMON_NAME, "Universal X",
                                      _ASN1Type.UniversalString)]),
    "t61": x509.Name([attribute(NameOID.COMMON_NAME, "T61 Name", _ASN1Type.T61String)]),
    "ia5 email": x509.Name([attribute(NameOID.EMAIL_ADDRESS, "CA@Example.ORG")]),
    "multi-valued": x509.Name([x509.RelativeDistinguishedName([
        attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Zeta Unit"),
        attribute(NameOID.COMMON_NAME, "Alpha"),
    ])]),
    "non-ascii space kept": x509.Name([attribute(NameOID.COMMON_NAME, "a\u00a0B  c")]),
    "empty": x509.Name([]),
}


@needs_openssl
@pytest.mark.parametrize("case", list(NAMES))
def test_canonical_names_hash_as_openssl_does(case: str) -> None:
    pem = made(NAMES[case])
    assert subject_hash(der_of(pem)) == openssl_hash(pem)


@pytest.mark.parametrize("junk", [b"", b"\x30", b"\x30\x05\x30\x03", b"\x30\x84\xff\xff\xff\xff"])
def test_junk_is_refused_not_misread(junk: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        subject_hash(junk)


# --------------------------------------------------------------------------- the directory


@pytest.fixture
def cache(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, trustme.CA]:
    """certifi's CAs plus a throwaway one, as one bundle file."""
    ca = trustme.CA()
    path = tmp_path / "bundle.pem"
    path.write_bytes(Path(certifi.where()).read_bytes() + ca.cert_pem.bytes())
    return path, ca


def test_the_directory_holds_each_ca_once_under_its_hash(
        bundle: tuple[Path, trustme.CA], cache: dict[str, str]) -> None:
    path, ca = bundle
    directory = hashed_directory(str(path), cache)
    assert directory is not None
    assert directory.startswith(cache["XDG_CACHE_HOME"] + os.sep + os.path.join("tcpcli", "trust"))
    files = sorted(os.listdir(directory))
    assert len(files) == len(certifi_pems()) + 1
    assert all(re.fullmatch(r"[0-9a-f]{8}\.\d+", name) for name in files)
    mine = f"{subject_hash(der_of(ca.cert_pem.bytes())):08x}.0"
    assert Path(directory, mine).read_bytes() == ca.cert_pem.bytes()
    assert hashed_directory(str(path), cache) == directory  # built once


def test_a_changed_bundle_gets_a_new_directory_and_the_old_one_goes(
        bundle: tuple[Path, trustme.CA], cache: dict[str, str]) -> None:
    path, _ = bundle
    first = hashed_directory(str(path), cache)
    path.write_bytes(path.read_bytes() + trustme.CA().cert_pem.bytes())
    os.utime(path, ns=(0, 1_000_000_000))
    second = hashed_directory(str(path), cache)
    assert first is not None and second is not None and first != second
    assert not os.path.exists(first) and os.path.isdir(second)


def test_no_writable_cache_means_no_directory(bundle: tuple[Path, trustme.CA],
                                              tmp_path: Path) -> None:
    path, _ = bundle
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert hashed_directory(str(path), {"XDG_CACHE_HOME": str(blocker)}) is None
    assert hashed_directory(str(path), {"XDG_CACHE_HOME": "relative", "HOME": "rel"}) is None
    assert hashed_directory(str(tmp_path / "missing.pem"), {"XDG_CACHE_HOME": str(tmp_path)}) \
        is None


@pytest.fixture
def tls_server(bundle: tuple[Path, trustme.CA]) -> Iterator[int]:
    _, ca = bundle
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(context)
    with serve(lambda tls: tls.recv(1), ssl_context=context) as server:
        yield server.port


def handshake(context: ssl.SSLContext, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            context.wrap_socket(raw, server_hostname="localhost"):
        pass


def test_openssl_finds_the_issuer_in_the_directory_and_reads_only_it(
        bundle: tuple[Path, trustme.CA], cache: dict[str, str], tls_server: int) -> None:
    path, _ = bundle
    directory = hashed_directory(str(path), cache)
    assert directory is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(capath=directory)
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing read up front
    handshake(context, tls_server)
    assert context.cert_store_stats()["x509_ca"] == 1  # the one issuer the chain named


def test_tcpclis_default_trust_is_certifi_through_the_directory(
        monkeypatch: pytest.MonkeyPatch, cache: dict[str, str], tls_server: int) -> None:
    for name, value in cache.items():
        monkeypatch.setenv(name, value)
    # (an ALPN no other test asks for: a context of its own, not one cached before)
    context = client_context(TLSOptions(alpn=("x-trustdir",)), hostname="localhost")
    trust = Path(cache["XDG_CACHE_HOME"], "tcpcli", "trust")
    (directory,) = (path for path in trust.iterdir() if path.is_dir())
    assert len(list(directory.iterdir())) == len(certifi_pems())
    assert context.cert_store_stats()["x509_ca"] == 0
    with pytest.raises(ssl.SSLCertVerificationError) as failed:
        handshake(context, tls_server)  # a throwaway CA is no certifi CA
    assert failed.value.verify_code == 20  # unable to get local issuer certificate


def where_in_a_fresh_interpreter(cache: dict[str, str]) -> tuple[str, bool]:
    """certifi's bundle as tcpcli finds it, and whether finding it imported certifi."""
    # (an interpreter's start-up may have imported certifi already: forget it first)
    code = ("import os, sys; from tcpcli.core.trustdir import certifi_bundle; "
            "[sys.modules.pop(name) for name in list(sys.modules) if name.startswith('certifi')]; "
            "print(certifi_bundle(os.environ)); print('certifi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, **cache}).stdout.split()
    return out[0], out[1] == "True"


def test_certifis_bundle_is_remembered_so_later_runs_do_not_import_it(
        cache: dict[str, str]) -> None:
    assert where_in_a_fresh_interpreter(cache) == (certifi.where(), True)
    assert where_in_a_fresh_interpreter(cache) == (certifi.where(), False)
    memo = Path(cache["XDG_CACHE_HOME"], "tcpcli", "trust", "certifi-where")
    key, where = memo.read_text().split("\n")
    assert where == certifi.where() and os.path.dirname(certifi.__file__) in key
    memo.write_text("another certifi\n/elsewhere/cacert.pem")  # (an upgrade changes the key)
    assert where_in_a_fresh_interpreter(cache) == (certifi.where(), True)
