"""The DER reader's certificate summaries are cryptography's, field for field.

tcpcli.core.dercert reads a report's certificates without cryptography; tcpcli.core.certs
reads them with it and is the reference. For every certificate here (certifi's roots,
trustme's and certgen's, and ones built to cover each key type, signature algorithm, name
encoding, subjectAltName kind, time encoding and serial), the DER reader either gives the
reference's summary or hands the certificate over (None), and hands over only what is
expected of it: the tests name which certificates must be read without cryptography.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import warnings
from collections.abc import Sequence
from dataclasses import fields

import certifi
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat._oid import _OID_NAMES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.name import _NAMEOID_TO_NAME, _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import HealthCheck, given, settings, strategies as st

from tcpcli.core import certs, dercert
from tcpcli.core.certgen import throwaway_certificate
from tcpcli.core.tlsreport import CertificateSummary

pytestmark = pytest.mark.timeout(300)

SHA256 = hashes.SHA256()
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dercert test CA")])
LEAF_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dercert test leaf")])


def reference(der: bytes) -> CertificateSummary:
    with warnings.catch_warnings():  # (old roots: a zero serial)
        warnings.simplefilter("ignore")
        return certs._summarize_cached(der)


def assert_same(der: bytes, *, read: bool = True) -> CertificateSummary | None:
    """The DER reader's summary of ``der`` is the reference's, or None (handed over) when
    ``read`` is False. The public entry point agrees either way."""
    mine = dercert._pure_summary(der)
    theirs = reference(der)
    if read:
        assert mine is not None, f"handed over: {theirs.subject}"
    if mine is not None:
        differ = {f.name: (getattr(mine, f.name), getattr(theirs, f.name))
                  for f in fields(CertificateSummary)
                  if getattr(mine, f.name) != getattr(theirs, f.name)}
        assert not differ
        assert repr(mine) == repr(theirs)  # the same types too (tz-aware UTC datetimes...)
    else:
        assert not read
    public = dercert.summarize_certificate(der)
    assert public == certs.summarize_certificate(der) or public.days_left != theirs.days_left
    return mine


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def build(subject: x509.Name = LEAF_NAME, *, issuer: x509.Name | None = None,
          key: object = None, signer: object = CA_KEY,
          algorithm: hashes.HashAlgorithm | None = SHA256,
          sans: Sequence[x509.GeneralName] = (), ca: bool | None = None,
          not_before: dt.datetime = NOW - dt.timedelta(days=1),
          not_after: dt.datetime = NOW + dt.timedelta(days=30), serial: int = 0x1234,
          rsa_padding: padding.AsymmetricPadding | None = None) -> bytes:
    public = (key or ec.generate_private_key(ec.SECP256R1())).public_key()  # type: ignore[attr-defined]
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer or CA_NAME)
               .public_key(public).serial_number(serial)
               .not_valid_before(not_before).not_valid_after(not_after))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                        critical=True)
    if isinstance(signer, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = None
    cert = builder.sign(signer, algorithm, rsa_padding=rsa_padding)  # type: ignore[arg-type]
    return der_of(cert)


def self_signed(key: object, name: str = "self-signed", **kwargs: object) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return build(subject, issuer=subject, key=key, signer=key, ca=True, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the tables


def test_the_tables_name_what_cryptography_names() -> None:
    for oid, (name, _, _) in dercert._SIGNATURES.items():
        assert _OID_NAMES[ObjectIdentifier(oid)] == name
    assert {ObjectIdentifier(k): v for k, v in dercert._SHORT_NAMES.items()} == _NAMEOID_TO_NAME
    for oid, curve in dercert._CURVES.items():
        assert ec._OID_TO_CURVE[ObjectIdentifier(oid)].name == curve.name
        assert ec._OID_TO_CURVE[ObjectIdentifier(oid)].key_size == curve.bits


@pytest.mark.parametrize("oid", [oid for oid, c in dercert._CURVES.items() if c.n])
def test_the_curves_base_points(oid: str) -> None:
    curve = dercert._CURVES[oid]
    assert (curve.gy ** 2 - curve.gx ** 3 - curve.a * curve.gx - curve.b) % curve.p == 0
    assert dercert._shamir(curve, curve.n, 0, (curve.gx, curve.gy)) is None  # n·G = O
    assert dercert._shamir(curve, curve.n - 1, 0, (curve.gx, curve.gy)) is not None


# --------------------------------------------------------------------------- real certificates


def certifi_roots() -> list[bytes]:
    with open(certifi.where(), "rb") as handle:
        pem = handle.read()
    return [base64.b64decode(b"".join(block.split(b"\n")[1:-1])) for block in
            re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)]


def test_every_certifi_root() -> None:
    roots = certifi_roots()
    handed_over = []
    for der in roots:
        theirs = reference(der)
        # Self-signed with SHA-1 or SHA-224: cryptography decides (and 48 says no).
        weak = theirs.signature_algorithm in ("sha1WithRSAEncryption", "sha224WithRSAEncryption",
                                              "ecdsa-with-SHA1", "ecdsa-with-SHA224")
        if assert_same(der, read=not weak) is None:
            handed_over.append(theirs.subject)
    assert len(handed_over) < len(roots) / 10, handed_over


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def test_trustme_certificates(key_type: trustme.KeyType) -> None:
    root = trustme.CA(key_type=key_type, organization_name="Org, with \"specials\" + more")
    intermediate = root.create_child_ca(key_type=key_type)
    leaves = [
        intermediate.issue_cert("localhost", "127.0.0.1", "::1", "*.example.com",
                                "user@example.com", key_type=key_type),
        root.issue_cert("example.org", common_name="example.org", key_type=key_type,
                        organization_name="Ünïcode Org", organization_unit_name=" spaced "),
        root.issue_cert("xn--bcher-kva.example", not_before=dt.datetime(1950, 1, 1, tzinfo=dt.UTC),
                        not_after=dt.datetime(2050, 1, 1, tzinfo=dt.UTC), key_type=key_type),
    ]
    for pem in (root.cert_pem, intermediate.cert_pem):
        assert_same(x509.load_pem_x509_certificate(pem.bytes()).public_bytes(
            serialization.Encoding.DER))
    for leaf in leaves:
        for blob in leaf.cert_chain_pems:
            assert_same(der_of(x509.load_pem_x509_certificate(blob.bytes())))


def test_certgen_certificates() -> None:
    made = throwaway_certificate("127.0.0.1", "localhost", "::1")
    for pem in (made.ca_pem, *re.findall(
            rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", made.cert_pem,
            re.S)):
        assert_same(der_of(x509.load_pem_x509_certificate(pem)))


# --------------------------------------------------------------------------- keys and signatures

KEYS = {
    "rsa1024": lambda: rsa.generate_private_key(65537, 1024),
    "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
    "rsa4096": lambda: rsa.generate_private_key(65537, 4096),
    "rsa-e3": lambda: rsa.generate_private_key(3, 2048),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
    "brainpoolP256r1": lambda: ec.generate_private_key(ec.BrainpoolP256R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
    "dsa": lambda: dsa.generate_private_key(2048),
}
#: Keys whose certificates cryptography reads: the DER reader cannot tell a valid point of
#: these curves (cryptography refuses an invalid one).
UNREAD_KEYS = {"brainpoolP256r1"}
#: Keys whose own signatures the DER reader does not check: self-signed ones are handed over.
UNCHECKED_SIGNERS = {"secp256k1", "brainpoolP256r1", "ed25519", "ed448", "dsa"}


@pytest.fixture(scope="module", params=sorted(KEYS))
def key(request: pytest.FixtureRequest) -> tuple[str, object]:
    return request.param, KEYS[request.param]()


def test_each_key_as_a_leaf(key: tuple[str, object]) -> None:
    name, private = key
    assert_same(build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]),
                      key=private, ca=False), read=name not in UNREAD_KEYS)


def test_each_key_self_signed(key: tuple[str, object]) -> None:
    name, private = key
    mine = assert_same(self_signed(private), read=name not in UNCHECKED_SIGNERS)
    assert mine is None or mine.self_signed


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
@pytest.mark.parametrize("signer", ["rsa2048", "p256", "p384", "p521"])
def test_each_checked_signature(signer: str, algorithm: hashes.HashAlgorithm) -> None:
    private = KEYS[signer]()
    mine = assert_same(self_signed(private, algorithm=algorithm))
    assert mine is not None and mine.self_signed


def test_weak_self_signatures_are_cryptographys_to_judge() -> None:
    """SHA-224 (cryptography 48 signs no SHA-1; certifi's SHA-1 roots are above)."""
    for private in (KEYS["rsa2048"](), KEYS["p256"]()):
        assert_same(self_signed(private, algorithm=hashes.SHA224()), read=False)
        assert_same(build(key=private, signer=private, algorithm=hashes.SHA224()))


@pytest.mark.parametrize("salt", [padding.PSS.DIGEST_LENGTH, padding.PSS.MAX_LENGTH, 20])
def test_rsa_pss_signatures(salt: int) -> None:
    private = KEYS["rsa2048"]()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    leaf = build(key=KEYS["p256"](), signer=private, rsa_padding=pss)
    assert_same(leaf, read=salt != 20)  # (a salt of 20 is the default, written out: odd DER)
    assert_same(self_signed(private, rsa_padding=pss), read=False)  # (PSS not checked here)


def test_subject_is_issuer_yet_signed_by_another_key() -> None:
    """Same name, another key: not self-signed, and only a signature check can tell."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twin")])
    der = build(name, issuer=name, key=KEYS["p256"](), signer=KEYS["p256"](), ca=True)
    assert_same(der, read=False)
    assert not dercert.summarize_certificate(der).self_signed
    rsa_twin = build(name, issuer=name, key=KEYS["rsa2048"](), signer=KEYS["rsa2048"]())
    assert_same(rsa_twin, read=False)


def test_self_signed_leaf() -> None:
    private = KEYS["p256"]()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    mine = assert_same(build(name, issuer=name, key=private, signer=private, ca=False,
                             sans=[x509.DNSName("localhost")]))
    assert mine is not None and mine.self_signed and not mine.is_ca


# --------------------------------------------------------------------------- names


def attr(oid: ObjectIdentifier, value: str, kind: _ASN1Type | None = None) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value, kind) if kind else x509.NameAttribute(oid, value)


NAMES = {
    "specials": [attr(NameOID.COMMON_NAME, 'a,b+c"d\\e;f<g>h=i')],
    "leading-hash": [attr(NameOID.COMMON_NAME, "#not hex")],
    "spaces": [attr(NameOID.ORGANIZATION_NAME, "  both ends  "),
               attr(NameOID.ORGANIZATIONAL_UNIT_NAME, " ")],
    "nul": [attr(NameOID.ORGANIZATION_NAME, "nul\0inside")],
    "every-short-name": [attr(oid, "v") for oid in _NAMEOID_TO_NAME if oid not in (
        NameOID.COUNTRY_NAME,)] + [attr(NameOID.COUNTRY_NAME, "DE")],
    "unknown-oid": [attr(ObjectIdentifier("1.2.3.4.5.6789"), "private"),
                    attr(NameOID.EMAIL_ADDRESS, "who@example.com"),
                    attr(NameOID.SERIAL_NUMBER, "12345")],
    "bmp": [attr(NameOID.COMMON_NAME, "Bmp Ünï ☃", _ASN1Type.BMPString)],
    "bmp-astral": [attr(NameOID.COMMON_NAME, "astral 𝄞", _ASN1Type.BMPString)],
    "universal": [attr(NameOID.COMMON_NAME, "univ 𝄞 ü", _ASN1Type.UniversalString)],
    "utf8": [attr(NameOID.LOCALITY_NAME, "Zürich 北京 🙂")],
    "teletex-ascii": [attr(NameOID.COMMON_NAME, "teletex", _ASN1Type.T61String)],
    "printable": [attr(NameOID.COMMON_NAME, "Print (able) 'x' +,-./:=?",
                       _ASN1Type.PrintableString)],
    "ia5": [attr(NameOID.COMMON_NAME, "ia5 ~`!@", _ASN1Type.IA5String)],
    "visible": [attr(NameOID.COMMON_NAME, "visible", _ASN1Type.VisibleString)],
    "numeric": [attr(NameOID.COMMON_NAME, "0123 456", _ASN1Type.NumericString)],
    "empty": [],
}


@pytest.mark.parametrize("which", sorted(NAMES))
def test_names(which: str) -> None:
    name = x509.Name(NAMES[which])
    assert_same(build(name))
    assert_same(build(LEAF_NAME, issuer=name, sans=[x509.DirectoryName(name)] if NAMES[which]
                      else [x509.DNSName("x")]))


def test_multi_valued_rdns() -> None:
    name = x509.Name([
        x509.RelativeDistinguishedName([attr(NameOID.COMMON_NAME, "one"),
                                        attr(NameOID.ORGANIZATION_NAME, "two"),
                                        attr(NameOID.DOMAIN_COMPONENT, "three")]),
        x509.RelativeDistinguishedName([attr(NameOID.COUNTRY_NAME, "US")]),
    ])
    mine = assert_same(build(name, sans=[x509.DirectoryName(name)]))
    assert mine is not None and "+" in mine.subject


def test_teletex_beyond_ascii_is_cryptographys_to_read() -> None:
    name = x509.Name([attr(NameOID.COMMON_NAME, "tëlétex", _ASN1Type.T61String)])
    assert_same(build(name), read=False)


# --------------------------------------------------------------------------- extensions, times, serials


def test_every_kind_of_subject_alt_name() -> None:
    sans = [
        x509.DNSName("example.com"), x509.DNSName("*.wild.example"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.IPAddress(ipaddress.ip_address("::ffff:192.0.2.1")),
        x509.IPAddress(ipaddress.ip_address("::")),
        x509.RFC822Name("user@example.com"),
        x509.UniformResourceIdentifier("https://example.com/path?q=1"),
        x509.DirectoryName(x509.Name([attr(NameOID.COMMON_NAME, "dir, name")])),
        x509.RegisteredID(ObjectIdentifier("1.3.6.1.4.1.99999.1")),
        x509.OtherName(ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x05upn@x"),
    ]
    mine = assert_same(build(sans=sans))
    assert mine is not None and len(mine.sans) == len(sans)


def test_networks_in_a_subject_alt_name_are_cryptographys_to_read() -> None:
    der = build(sans=[x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))])
    assert_same(der, read=False)


@pytest.mark.parametrize(("before", "after"), [
    ("19491231235959Z", "20500102000000Z"),  # both GeneralizedTime
    ("19500101000000Z", "20491231235959Z"),  # both UTCTime
    ("20491231235959Z", "20500101000000Z"),  # UTCTime, then GeneralizedTime
    ("00010101000000Z", "99991231235959Z"),
    ("19700101000000Z", "20380119031408Z"),
])
def test_times(before: str, after: str) -> None:
    """Before 1950 cryptography's builder writes nothing: a GeneralizedTime after 2049 is
    built, then its digits changed (the signature is not read for a certificate that is
    not self-signed)."""
    def when(text: str) -> dt.datetime:
        return dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)

    placeholder = "20500101000000Z"
    der = build(not_before=when(placeholder if before < "1950" else before),
                not_after=when(after))
    if before < "1950":
        assert der.count(b"\x18\x0f" + placeholder.encode()) == 1
        der = der.replace(b"\x18\x0f" + placeholder.encode(), b"\x18\x0f" + before.encode())
    mine = assert_same(der)
    assert mine is not None and (mine.not_before, mine.not_after) == (when(before), when(after))


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF, 0x100, 0x123, 0x8000,
                                    2**64 + 1, 2**151, 2**159 - 1])
def test_serials(serial: int) -> None:
    assert_same(build(serial=serial))


@pytest.mark.parametrize("ca", [None, True, False])
def test_basic_constraints(ca: bool | None) -> None:
    mine = assert_same(build(ca=ca))
    assert mine is not None and mine.is_ca is bool(ca)


# --------------------------------------------------------------------------- generated


NAME_TYPES = [None, _ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.UniversalString]
NAME_OIDS = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
             NameOID.LOCALITY_NAME, NameOID.STREET_ADDRESS, NameOID.DOMAIN_COMPONENT,
             NameOID.USER_ID, NameOID.EMAIL_ADDRESS, ObjectIdentifier("2.999.1")]
values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    list(" #\\\"+,;<>=\0")), min_size=1, max_size=12)
attributes = st.builds(lambda oid, value, kind: attr(oid, value, kind),
                       st.sampled_from(NAME_OIDS), values, st.sampled_from(NAME_TYPES))
rdns = st.lists(attributes, min_size=1, max_size=3, unique_by=lambda a: (a.oid, a.value)).map(
    x509.RelativeDistinguishedName)
names = st.lists(rdns, max_size=4).map(x509.Name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=names, issuer=names)
def test_generated_names(subject: x509.Name, issuer: x509.Name) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a CN longer than 64 characters)
        der = build(subject, issuer=issuer if len(issuer) else CA_NAME)
    ia5 = (NameOID.EMAIL_ADDRESS, NameOID.DOMAIN_COMPONENT)  # (IA5String: ASCII only here)
    ascii_ia5 = all(a.value.isascii() for a in (*subject, *issuer)
                    if a.oid in ia5 and a._type.value == 22)
    assert_same(der, read=subject != issuer and ascii_ia5)


@pytest.fixture(scope="module")
def sample_certificates() -> list[bytes]:
    private = KEYS["rsa2048"]()
    name = x509.Name([attr(NameOID.COMMON_NAME, "mutated")])
    return [
        build(sans=[x509.DNSName("a.example"), x509.IPAddress(ipaddress.ip_address("::1"))],
              ca=True),
        build(name, issuer=name, key=private, signer=private, ca=True),
        build(name, key=KEYS["p384"](), ca=False),
    ]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, 2), where=st.integers(0, 10**6), byte=st.integers(0, 255))
def test_a_changed_byte_is_read_as_cryptography_reads_it_or_handed_over(
        sample_certificates: list[bytes], which: int, where: int, byte: int) -> None:
    """Never a guess: whatever the DER reader returns, cryptography returns too.

    The one difference allowed: an extension the report does not show that cryptography
    cannot parse (reading ``extensions`` raises), which the DER reader does not parse."""
    original = sample_certificates[which]
    changed = bytearray(original)
    changed[where % len(original)] = byte
    der = bytes(changed)
    mine = dercert._pure_summary(der)
    if mine is None:
        return
    try:
        theirs = reference(der)
    except ValueError:
        try:  # (the allowed difference)
            _ = x509.load_der_x509_certificate(der).extensions
        except ValueError:
            return
        raise
    assert mine == theirs
