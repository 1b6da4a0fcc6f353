"""Reading certificates without cryptography: the report's summary and the chain's
completeness, from the DER itself, for the certificates a report usually shows.

Importing cryptography costs about as much as ``import click`` again; a run that shows a
TLS report (``connect --tls -v``, ``starttls``) needs only a few facts of a few
certificates, all plain DER. This module reads the DER of the usual certificates (RSA,
the NIST curves, Ed25519/Ed448, DSA; strict DER) and checks the signatures that decide
whether a certificate is self-signed and whether the chain as sent is complete (RSA
PKCS#1 v1.5 and ECDSA on the NIST curves, in plain Python: verifying, never signing, so
timing leaks nothing secret).

:mod:`tcpcli.core.certs` and :mod:`tcpcli.core.tlsverify` stay the reference: whatever is
not read here with certainty (an odd encoding, another key or signature algorithm, a
signature that does not check out, a chain other than the verified one) is decided there,
so the results are always theirs. tests/core/test_dercert.py holds the two paths equal.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

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

__all__ = ["chain_completeness", "summarize_certificate"]


# --------------------------------------------------------------------------- the entry points


def summarize_certificate(der: bytes) -> CertificateSummary:
    """:func:`tcpcli.core.certs.summarize_certificate`'s summary, read here when it can be
    (cryptography is imported only for a certificate that cannot)."""
    return with_days_left(_summary(der))


@functools.lru_cache(maxsize=256)  # bench sees the same chain thousands of times
def _summary(der: bytes) -> CertificateSummary:
    summary = _pure_summary(der)
    if summary is None:
        from tcpcli.core.certs import summarize_certificate as reference

        summary = reference(der)
    return summary


def chain_completeness(sent: Sequence[bytes], verified: Sequence[bytes], *,
                       ca_file: str | None, system_store: bool) -> (
    tuple[bool | None, str | None]
):
    """:func:`tcpcli.core.tlsverify.chain_completeness`'s answer, settled here when the
    server sent exactly the verified chain (with or without its anchor) and every link's
    signature checks out; cryptography and the trust store are read for any other."""
    settled = _settled_chain(tuple(sent), tuple(verified))
    if settled is not None:
        return settled
    from tcpcli.core.tlsverify import chain_completeness as reference

    return reference(sent, verified, ca_file=ca_file, system_store=system_store)


def _pure_summary(der: bytes) -> CertificateSummary | None:
    """The summary without ``days_left`` (0), or None when the cryptography path decides."""
    cert = _parse(der)
    if cert is None:
        return None
    self_signed = _self_signed(der)
    if self_signed is None:
        return None
    return CertificateSummary(
        subject=cert.subject_text,
        issuer=cert.issuer_text,
        sans=cert.sans,
        not_before=cert.not_before,
        not_after=cert.not_after,
        days_left=0,
        key_type=cert.key.kind,
        key_bits=cert.key.bits,
        curve=cert.key.curve,
        signature_algorithm=_SIGNATURES[cert.signature_oid][0],
        spki_sha256=spki_text(cert.spki),
        sha256_fingerprint=fingerprint_text(der),
        serial=serial_text(cert.serial),
        self_signed=self_signed,
        is_ca=cert.is_ca,
    )


@functools.lru_cache(maxsize=64)
def _settled_chain(sent: tuple[bytes, ...], verified: tuple[bytes, ...]) -> (
    tuple[bool | None, str | None] | None
):
    """The reference's answer when the verified chain settles it, else None.

    The reference follows issuer links (name, then signature) from the leaf through the
    certificates sent. When ``sent`` is ``verified`` less its anchor (or all of it), every
    link is name-for-name the next certificate, no certificate before the last one is
    self-signed and the anchor is: then its path is every certificate sent, in order, and
    it reaches a self-signed anchor, which it reads as complete with nothing to say.

    The links' signatures are not checked again: ``verified`` is a chain a verifier built
    (OpenSSL in the handshake, or :mod:`tcpcli.core.tlsverify` in insecure mode), and
    checking an ECDSA link in Python costs a millisecond. The anchor's own signature is
    checked: OpenSSL takes an anchor from the store without it.
    """
    if not sent:
        return None, None
    if len(verified) < 2 or sent not in (verified, verified[:-1]):
        return None
    certs = [_parse(der) for der in verified]
    for index, (child, parent) in enumerate(itertools.pairwise(certs)):
        if child is None or parent is None or child.issuer_der != parent.subject_der:
            return None
        if index < len(sent) - 1 and _self_signed(verified[index]) is not False:
            return None
    if _self_signed(verified[-1]) is not True:
        return None
    return True, None


# --------------------------------------------------------------------------- DER


class _Odd(Exception):
    """Something this reader does not read with certainty: cryptography decides."""


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The element at ``pos`` (before ``end``): its tag, and where its content starts and
    ends. Strict DER: one-byte tags, definite and minimal lengths."""
    if pos + 2 > end:
        raise _Odd
    tag, length = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _Odd
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 3 or pos + count > end or data[pos] == 0:
            raise _Odd
        length = int.from_bytes(data[pos:pos + count], "big")
        if length < 0x80:
            raise _Odd
        pos += count
    if pos + length > end:
        raise _Odd
    return tag, pos, pos + length


def _items(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements from ``start`` to exactly ``end``: (tag, content start, content end,
    element start)."""
    items = []
    while start < end:
        tag, content, after = _tlv(data, start, end)
        items.append((tag, content, after, start))
        start = after
    return items


def _only(data: bytes, tag: int) -> tuple[int, int]:
    """The content of ``data``, one element with ``tag`` and nothing after it."""
    found, start, end = _tlv(data, 0, len(data))
    if found != tag or end != len(data):
        raise _Odd
    return start, end


def _oid(content: bytes) -> str:
    if not 0 < len(content) <= 63 or content[-1] & 0x80:
        raise _Odd
    arcs: list[int] = []
    value, fresh = 0, True
    for byte in content:
        if fresh and byte == 0x80:
            raise _Odd  # a subidentifier with a leading zero byte
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    if max(arcs) >= 1 << 63:
        raise _Odd
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, (first, arcs[0] - 40 * first, *arcs[1:])))


def _integer(content: bytes) -> int:
    if not content or (len(content) > 1 and (
            (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF
                                                       and content[1] >= 0x80))):
        raise _Odd
    return int.from_bytes(content, "big", signed=True)


def _unsigned(content: bytes) -> int:
    value = _integer(content)
    if value <= 0:
        raise _Odd
    return value


def _bits(data: bytes, tag: int, start: int, end: int) -> bytes:
    """A BIT STRING's bytes (whole bytes only)."""
    if tag != 0x03 or end == start or data[start] != 0:
        raise _Odd
    return data[start + 1:end]


# --------------------------------------------------------------------------- names

#: The attribute names cryptography's ``Name.rfc4514_string()`` writes short.
_SHORT_NAMES = {
    "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "2.5.4.6": "C", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_PRINTABLE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       b"0123456789 '()+,-./:=?")
_NUMERIC = frozenset(b"0123456789 ")

_Name = tuple[tuple[tuple[str, str], ...], ...]  # RDNs, each its (OID, value) pairs


def _string(tag: int, value: bytes) -> str:
    """An attribute value as cryptography decodes it."""
    if tag == 0x0C:  # UTF8String
        return value.decode("utf-8")
    if tag == 0x13:  # PrintableString
        if not _PRINTABLE.issuperset(value):
            raise _Odd
        return value.decode("ascii")
    if tag in (0x16, 0x1A, 0x14):  # IA5String, VisibleString, T61String: ASCII only here
        if not value.isascii():
            raise _Odd
        return value.decode("ascii")
    if tag == 0x12:  # NumericString
        if not _NUMERIC.issuperset(value):
            raise _Odd
        return value.decode("ascii")
    if tag == 0x1E:  # BMPString
        if len(value) % 2:
            raise _Odd
        return value.decode("utf-16-be")
    if tag == 0x1C:  # UniversalString
        if len(value) % 4:
            raise _Odd
        return value.decode("utf-32-be")
    raise _Odd


def _name(data: bytes, start: int, end: int) -> _Name:
    rdns = []
    for tag, rdn_start, rdn_end, _ in _items(data, start, end):
        if tag != 0x31:
            raise _Odd
        pairs = []
        encodings = []
        for attr_tag, attr_start, attr_end, at in _items(data, rdn_start, rdn_end):
            parts = _items(data, attr_start, attr_end)
            if attr_tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise _Odd
            (_, oid_start, oid_end, _), (value_tag, value_start, value_end, _) = parts
            try:
                text = _string(value_tag, data[value_start:value_end])
            except UnicodeDecodeError:
                raise _Odd from None
            pairs.append((_oid(data[oid_start:oid_end]), text))
            encodings.append(data[at:attr_end])
        # An empty set, a set not in DER order or with a repeated attribute: not read here.
        if not pairs or len(set(pairs)) != len(pairs) or any(
                a >= b or b.startswith(a) for a, b in itertools.pairwise(encodings)):
            raise _Odd
        rdns.append(tuple(pairs))
    return tuple(rdns)


def _escape(value: str) -> str:
    """RFC 4514 escaping exactly as cryptography's ``Name.rfc4514_string()`` does it."""
    if not value:
        return ""
    for special in '\\"+,;<>':
        value = value.replace(special, "\\" + special)
    value = value.replace("\0", "\\00")
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def _rfc4514(name: _Name) -> str:
    return ",".join("+".join(f"{_SHORT_NAMES.get(oid, oid)}={_escape(value)}"
                             for oid, value in rdn) for rdn in reversed(name))


def _same_name(a: _Name, b: _Name) -> bool:
    """Equal as cryptography's ``Name`` objects are: RDN by RDN, each a set of pairs."""
    return len(a) == len(b) and all(set(x) == set(y) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- algorithms

#: Signature algorithm OID: cryptography's name for it, its hash, the key type it takes
#: ("" when this module does not check such signatures: SHA-1 and SHA-224 are among them,
#: as cryptography 48 refuses them in ``verify_directly_issued_by`` and older ones did not).
_SIGNATURES = {
    "1.2.840.113549.1.1.4": ("md5WithRSAEncryption", "", ""),
    "1.2.840.113549.1.1.5": ("sha1WithRSAEncryption", "", ""),
    "1.2.840.113549.1.1.14": ("sha224WithRSAEncryption", "", ""),
    "1.2.840.113549.1.1.11": ("sha256WithRSAEncryption", "sha256", "RSA"),
    "1.2.840.113549.1.1.12": ("sha384WithRSAEncryption", "sha384", "RSA"),
    "1.2.840.113549.1.1.13": ("sha512WithRSAEncryption", "sha512", "RSA"),
    "1.2.840.113549.1.1.10": ("rsassaPss", "", ""),
    "1.2.840.10045.4.1": ("ecdsa-with-SHA1", "", ""),
    "1.2.840.10045.4.3.1": ("ecdsa-with-SHA224", "", ""),
    "1.2.840.10045.4.3.2": ("ecdsa-with-SHA256", "sha256", "EC"),
    "1.2.840.10045.4.3.3": ("ecdsa-with-SHA384", "sha384", "EC"),
    "1.2.840.10045.4.3.4": ("ecdsa-with-SHA512", "sha512", "EC"),
    "1.2.840.10040.4.3": ("dsa-with-sha1", "", ""),
    "2.16.840.1.101.3.4.3.1": ("dsa-with-sha224", "", ""),
    "2.16.840.1.101.3.4.3.2": ("dsa-with-sha256", "", ""),
    "1.3.101.112": ("ed25519", "", ""),
    "1.3.101.113": ("ed448", "", ""),
}
#: The ones whose parameters must be absent (cryptography reads any others there).
_NO_PARAMETERS = frozenset({"1.2.840.10045.4.1", "1.2.840.10040.4.3", "1.3.101.112",
                            "1.3.101.113"})
_NULL = b"\x05\x00"
_HASHES = {"1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.4": "sha224",
           "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
           "2.16.840.1.101.3.4.2.3": "sha512"}
#: PKCS#1 v1.5 DigestInfo prefixes (the hash's AlgorithmIdentifier with NULL parameters).
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


class _Curve:
    """A short Weierstrass curve y² = x³ + ax + b over GF(p)."""

    __slots__ = ("a", "b", "bits", "gx", "gy", "n", "name", "p")

    def __init__(self, name: str, bits: int, p: int, a: int, b: int, gx: int = 0,
                 gy: int = 0, n: int = 0) -> None:
        self.name = name  # cryptography's
        self.bits = bits
        self.p, self.a, self.b = p, a, b  # a is -3 (mod p) where n is given: ECDSA needs it
        self.gx, self.gy, self.n = gx, gy, n  # base point, order (0: no ECDSA checked here)


_P256 = 2**256 - 2**224 + 2**192 + 2**96 - 1
_P384 = 2**384 - 2**128 - 2**96 + 2**32 - 1
_P521 = 2**521 - 1
_CURVES = {
    "1.2.840.10045.3.1.7": _Curve(
        "secp256r1", 256, _P256, _P256 - 3,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
        0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551),
    "1.3.132.0.34": _Curve(
        "secp384r1", 384, _P384, _P384 - 3,
        int("B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF", 16),
        int("AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
            "5502F25DBF55296C3A545E3872760AB7", 16),
        int("3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
            "0A60B1CE1D7E819D7A431D7C90EA0E5F", 16),
        int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
            "581A0DB248B0A77AECEC196ACCC52973", 16)),
    "1.3.132.0.35": _Curve(
        "secp521r1", 521, _P521, _P521 - 3,
        int("0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B50"
            "3F00", 16),
        int("00C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D"
            "3DBAA14B5E77EFE75928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5"
            "BD66", 16),
        int("011839296A789A3BC0045C8A5FB42C7D1BD998F54449579B446817AFBD17273E"
            "662C97EE72995EF42640C550B9013FAD0761353C7086A272C24088BE94769FD1"
            "6650", 16),
        int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E9138"
            "6409", 16)),
    "1.3.132.0.10": _Curve("secp256k1", 256, 2**256 - 2**32 - 977, 0, 7),
}


class _Key:
    """A public key: the summary's facts, and what checking a signature takes."""

    __slots__ = ("bits", "curve", "ec", "kind", "numbers")

    def __init__(self, kind: str, bits: int | None, curve: str | None,
                 numbers: tuple[int, ...] = (), ec: _Curve | None = None) -> None:
        self.kind, self.bits, self.curve = kind, bits, curve  # key_type, key_bits, curve
        self.numbers = numbers  # RSA (n, e); EC (x, y)
        self.ec = ec


def _algorithm(data: bytes, start: int, end: int) -> tuple[str, bytes]:
    """An AlgorithmIdentifier's OID and its parameters' DER (b"" when absent)."""
    parts = _items(data, start, end)
    if not 1 <= len(parts) <= 2 or parts[0][0] != 0x06:
        raise _Odd
    params = data[parts[1][3]:parts[1][2]] if len(parts) == 2 else b""
    return _oid(data[parts[0][1]:parts[0][2]]), params


def _signature_algorithm(data: bytes, start: int, end: int) -> str:
    """A signature AlgorithmIdentifier's OID, when its parameters are as cryptography
    parses them."""
    oid, params = _algorithm(data, start, end)
    if oid not in _SIGNATURES:
        raise _Odd
    if oid == "1.2.840.113549.1.1.10":
        _pss_parameters(params)
    elif params and (oid in _NO_PARAMETERS or params != _NULL):
        raise _Odd
    return oid


def _pss_parameters(params: bytes) -> None:
    """RSASSA-PSS parameters of the usual kind: SHA-2 for both hashes, an explicit salt
    length, the default trailer (anything else is cryptography's to read)."""
    start, end = _only(params, 0x30)
    fields = _items(params, start, end)
    if [tag for tag, *_ in fields] not in ([0xA0, 0xA1, 0xA2], [0xA0, 0xA1]):
        raise _Odd
    (_, h_start, h_end, _), (_, m_start, m_end, _), *salt = fields
    hash_oid = _hash_algorithm(params, *_tlv(params, h_start, h_end), h_end)
    tag, g_start, g_end = _tlv(params, m_start, m_end)
    mgf = _items(params, g_start, g_end)
    if (tag != 0x30 or g_end != m_end or len(mgf) != 2 or mgf[0][0] != 0x06
            or _oid(params[mgf[0][1]:mgf[0][2]]) != "1.2.840.113549.1.1.8"
            or _hash_algorithm(params, *mgf[1][:3], mgf[1][2]) != hash_oid):
        raise _Odd
    if salt:
        tag, s_start, s_end = _tlv(params, salt[0][1], salt[0][2])
        length = _integer(params[s_start:s_end])
        if tag != 0x02 or s_end != salt[0][2] or not 0 <= length < 65536 or length == 20:
            raise _Odd


def _hash_algorithm(data: bytes, tag: int, start: int, end: int, whole: int) -> str:
    """A hash AlgorithmIdentifier (SHA-2) spanning up to ``whole``."""
    if tag != 0x30 or end != whole:
        raise _Odd
    oid, params = _algorithm(data, start, end)
    if _HASHES.get(oid, "sha1") == "sha1" or params not in (b"", _NULL):
        raise _Odd
    return oid


def _public_key(spki: bytes) -> _Key:
    start, end = _only(spki, 0x30)
    parts = _items(spki, start, end)
    if len(parts) != 2 or parts[0][0] != 0x30:
        raise _Odd
    oid, params = _algorithm(spki, parts[0][1], parts[0][2])
    key = _bits(spki, *parts[1][:3])
    if oid == "1.2.840.113549.1.1.1":  # RSA: cryptography writes the NULL back
        if params != _NULL:
            raise _Odd
        k_start, k_end = _only(key, 0x30)
        numbers = _items(key, k_start, k_end)
        if len(numbers) != 2 or any(tag != 0x02 for tag, *_ in numbers):
            raise _Odd
        n, e = (_unsigned(key[s:e]) for _, s, e, _ in numbers)
        if not (n & 1 and e & 1 and 3 <= e < n):
            raise _Odd
        return _Key("RSA", n.bit_length(), None, (n, e))
    if oid == "1.2.840.10045.2.1":  # EC, a named curve with an uncompressed point
        if not params or params[0] != 0x06:
            raise _Odd
        curve = _CURVES.get(_oid(params[slice(*_only(params, 0x06))]))
        size = (curve.bits + 7) // 8 if curve else 0
        if curve is None or len(key) != 1 + 2 * size or key[0] != 4:
            raise _Odd
        x, y = int.from_bytes(key[1:1 + size], "big"), int.from_bytes(key[1 + size:], "big")
        p = curve.p
        if x >= p or y >= p or (y * y - x * x * x - curve.a * x - curve.b) % p:
            raise _Odd  # not on the curve: cryptography refuses the key
        return _Key("EC", curve.bits, curve.name, (x, y), curve)
    if oid in ("1.3.101.112", "1.3.101.113"):  # Ed25519, Ed448
        ed448 = oid == "1.3.101.113"
        if params or len(key) != (57 if ed448 else 32):
            raise _Odd
        return _Key("Ed448", 456, None) if ed448 else _Key("Ed25519", 256, None)
    if oid == "1.2.840.10040.4.1":  # DSA, with its parameters
        p_start, p_end = _only(params, 0x30)
        pqg = _items(params, p_start, p_end)
        y_start, y_end = _only(key, 0x02)
        if len(pqg) != 3 or any(tag != 0x02 for tag, *_ in pqg):
            raise _Odd
        p, _q, _g = (_unsigned(params[s:e]) for _, s, e, _ in pqg)
        _unsigned(key[y_start:y_end])
        return _Key("DSA", p.bit_length(), None)
    raise _Odd


# --------------------------------------------------------------------------- certificates


class _Cert:
    """What this module reads of a certificate."""

    __slots__ = ("is_ca", "issuer", "issuer_der", "issuer_text", "key", "not_after",
                 "not_before", "same_algorithms", "sans", "serial", "signature",
                 "signature_oid", "spki", "subject", "subject_der", "subject_text", "tbs")

    def __init__(self, *, tbs: bytes, signature_oid: str, signature: bytes,
                 same_algorithms: bool, serial: int, issuer_der: bytes, subject_der: bytes,
                 issuer: _Name, subject: _Name, not_before: datetime, not_after: datetime,
                 spki: bytes, key: _Key, sans: tuple[str, ...], is_ca: bool) -> None:
        self.tbs = tbs  # what the signature covers
        self.signature_oid, self.signature = signature_oid, signature
        self.same_algorithms = same_algorithms  # the TBS's algorithm is the outer one
        self.serial = serial
        self.issuer_der, self.subject_der = issuer_der, subject_der
        self.issuer, self.subject = issuer, subject
        self.issuer_text, self.subject_text = _rfc4514(issuer), _rfc4514(subject)
        self.not_before, self.not_after = not_before, not_after
        self.spki, self.key = spki, key
        self.sans, self.is_ca = sans, is_ca


@functools.lru_cache(maxsize=256)
def _parse(der: bytes) -> _Cert | None:
    """The certificate's facts, or None when this reader cannot vouch for them."""
    try:
        return _read_certificate(der)
    except (_Odd, ValueError, IndexError):  # (ValueError: a bad date, a bad string)
        return None


def _read_certificate(der: bytes) -> _Cert:
    start, end = _only(der, 0x30)
    outer = _items(der, start, end)
    if [tag for tag, *_ in outer] != [0x30, 0x30, 0x03]:
        raise _Odd
    (_, tbs_start, tbs_end, tbs_at), (_, alg_start, alg_end, alg_at), signature = outer
    signature_oid = _signature_algorithm(der, alg_start, alg_end)
    fields = _items(der, tbs_start, tbs_end)
    if not fields or fields[0][0] != 0xA0:
        raise _Odd  # v1: cryptography's to read
    _, v_start, v_end, _ = fields.pop(0)
    v_tag, i_start, i_end = _tlv(der, v_start, v_end)
    if v_tag != 0x02 or i_end != v_end or der[i_start:i_end] != b"\x02":
        raise _Odd  # only v3 (cryptography refuses v2)
    if [tag for tag, *_ in fields[:6]] != [0x02, 0x30, 0x30, 0x30, 0x30, 0x30]:
        raise _Odd
    serial_f, inner_alg, issuer_f, validity_f, subject_f, spki_f, *rest = fields
    serial = _integer(der[serial_f[1]:serial_f[2]])
    if serial < 0:
        raise _Odd  # cryptography warns that it will refuse these (zero it only warns of)
    _signature_algorithm(der, inner_alg[1], inner_alg[2])
    times = _items(der, validity_f[1], validity_f[2])
    if len(times) != 2:
        raise _Odd
    not_before, not_after = (_time(der[s:e], tag) for tag, s, e, _ in times)
    issuer = _name(der, issuer_f[1], issuer_f[2])
    subject = _name(der, subject_f[1], subject_f[2])
    spki = der[spki_f[3]:spki_f[2]]
    sans: tuple[str, ...] = ()
    is_ca = False
    if rest:  # extensions; the unique identifiers (v2) are cryptography's to read
        if len(rest) != 1 or rest[0][0] != 0xA3:
            raise _Odd
        sans, is_ca = _extensions(der, *_tlv(der, rest[0][1], rest[0][2]), rest[0][2])
    return _Cert(
        tbs=der[tbs_at:tbs_end], signature_oid=signature_oid,
        signature=_bits(der, *signature[:3]),
        same_algorithms=der[inner_alg[3]:inner_alg[2]] == der[alg_at:alg_end],
        serial=serial, issuer_der=der[issuer_f[3]:issuer_f[2]],
        subject_der=der[subject_f[3]:subject_f[2]], issuer=issuer, subject=subject,
        not_before=not_before, not_after=not_after, spki=spki, key=_public_key(spki),
        sans=sans, is_ca=is_ca,
    )


def _time(value: bytes, tag: int) -> datetime:
    """UTCTime (1950 to 2049) or GeneralizedTime, whole seconds in UTC as DER has them."""
    if value[-1:] != b"Z" or not value[:-1].isdigit():
        raise _Odd
    if tag == 0x17 and len(value) == 13:
        year = int(value[:2])
        year += 1900 if year >= 50 else 2000
        value = value[2:]
    elif tag == 0x18 and len(value) == 15:
        year = int(value[:4])
        value = value[4:]
    else:
        raise _Odd
    month, day, hour, minute, second = (int(value[i:i + 2]) for i in range(0, 10, 2))
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _extensions(der: bytes, tag: int, start: int, end: int, outer_end: int) -> (
    tuple[tuple[str, ...], bool]
):
    if tag != 0x30 or end != outer_end:
        raise _Odd
    seen: set[str] = set()
    sans: tuple[str, ...] = ()
    is_ca = False
    extensions = _items(der, start, end)
    if not extensions:
        raise _Odd
    for ext_tag, ext_start, ext_end, _ in extensions:
        parts = _items(der, ext_start, ext_end)
        if ext_tag != 0x30 or len(parts) not in (2, 3) or parts[0][0] != 0x06 or (
                parts[-1][0] != 0x04):
            raise _Odd
        if len(parts) == 3 and der[parts[1][3]:parts[1][2]] != b"\x01\x01\xff":
            raise _Odd  # critical, DER's one way (FALSE is the default, left out)
        oid = _oid(der[parts[0][1]:parts[0][2]])
        if oid in seen:
            raise _Odd
        seen.add(oid)
        value = der[parts[-1][1]:parts[-1][2]]
        _tlv(value, 0, len(value))  # a value that is at least one element (as DER)
        if oid == "2.5.29.17":
            sans = _subject_alt_names(value)
        elif oid == "2.5.29.19":
            is_ca = _basic_constraints(value)
    return sans, is_ca


def _basic_constraints(value: bytes) -> bool:
    start, end = _only(value, 0x30)
    parts = _items(value, start, end)
    is_ca = False
    if parts and parts[0][0] == 0x01:
        if value[parts[0][3]:parts[0][2]] != b"\x01\x01\xff":
            raise _Odd
        is_ca = True
        parts.pop(0)
    if parts and (len(parts) != 1 or parts[0][0] != 0x02 or parts[0][2] - parts[0][1] > 8
                  or _integer(value[parts[0][1]:parts[0][2]]) < 0):
        raise _Odd
    return is_ca


def _subject_alt_names(value: bytes) -> tuple[str, ...]:
    start, end = _only(value, 0x30)
    names = []
    for tag, s, e, _ in _items(value, start, end) or _odd():
        content = value[s:e]
        if tag == 0x82:
            names.append(SAN_DNS + _ascii(content))
        elif tag == 0x87:
            if len(content) not in (4, 16):
                raise _Odd  # a network (8 or 32 bytes): cryptography's to read
            names.append(SAN_IP + str(ipaddress.ip_address(content)))
        elif tag == 0x81:
            names.append(SAN_EMAIL + _ascii(content))
        elif tag == 0x86:
            names.append(SAN_URI + _ascii(content))
        elif tag == 0xA4:
            n_tag, n_start, n_end = _tlv(value, s, e)
            if n_tag != 0x30 or n_end != e:
                raise _Odd
            names.append(SAN_DIRNAME + _rfc4514(_name(value, n_start, n_end)))
        elif tag == 0x88:
            names.append(SAN_RID + _oid(content))
        elif tag == 0xA0:
            parts = _items(value, s, e)
            if len(parts) != 2 or parts[0][0] != 0x06 or parts[1][0] != 0xA0:
                raise _Odd
            _oid(value[parts[0][1]:parts[0][2]])
            _, v_start, v_end, _ = parts[1]
            if _tlv(value, v_start, v_end)[2] != v_end:
                raise _Odd
            names.append(SAN_OTHER)
        else:
            raise _Odd  # x400Address, ediPartyName: cryptography refuses them
    return tuple(names)


def _odd() -> list[tuple[int, int, int, int]]:
    raise _Odd


def _ascii(content: bytes) -> str:
    if not content.isascii():
        raise _Odd
    return content.decode("ascii")


# --------------------------------------------------------------------------- signatures


@functools.lru_cache(maxsize=256)
def _self_signed(der: bytes) -> bool | None:
    """Whether cryptography would find the certificate self-signed (its issuer is its
    subject and its own key checks its signature); None when only cryptography can say."""
    cert = _parse(der)
    if cert is None:
        return None
    if not _same_name(cert.subject, cert.issuer):
        return False
    if cert.subject_der != cert.issuer_der:
        return None
    return True if _signed_by(cert, cert.key) else None


def _signed_by(cert: _Cert, key: _Key) -> bool:
    """True when ``key`` checks ``cert``'s signature as cryptography's
    ``verify_directly_issued_by`` would; False means "not shown here", not "invalid"."""
    if not cert.same_algorithms:
        return False
    _, hash_name, kind = _SIGNATURES[cert.signature_oid]
    if kind != key.kind:
        return False
    digest = hashlib.new(hash_name, cert.tbs).digest()
    if kind == "RSA":
        return _rsa_pkcs1_checks(key.numbers, cert.signature, _DIGEST_INFO[hash_name] + digest)
    return key.ec is not None and key.ec.n != 0 and _ecdsa_checks(
        key.ec, key.numbers, cert.signature, digest)


def _rsa_pkcs1_checks(numbers: tuple[int, ...], signature: bytes, digest_info: bytes) -> bool:
    n, e = numbers
    size = (n.bit_length() + 7) // 8
    value = int.from_bytes(signature, "big")
    if len(signature) != size or value >= n or size < len(digest_info) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    return pow(value, e, n).to_bytes(size, "big") == expected


def _ecdsa_checks(curve: _Curve, point: tuple[int, ...], signature: bytes,
                  digest: bytes) -> bool:
    try:
        start, end = _only(signature, 0x30)
        parts = _items(signature, start, end)
        if len(parts) != 2 or any(tag != 0x02 for tag, *_ in parts):
            return False
        r, s = (_integer(signature[a:b]) for _, a, b, _ in parts)
    except _Odd:
        return False
    n = curve.n
    if not (0 < r < n and 0 < s < n):
        return False
    e = int.from_bytes(digest, "big")
    excess = 8 * len(digest) - n.bit_length()
    if excess > 0:
        e >>= excess
    w = pow(s, -1, n)
    total = _shamir(curve, e * w % n, r * w % n, point)
    if total is None:
        return False
    x, _, z = total
    p = curve.p
    return (x * pow(z * z, -1, p)) % p % n == r


_Jacobian = tuple[int, int, int]  # (X, Y, Z): the point (X/Z², Y/Z³)


def _double(p: int, point: _Jacobian | None) -> _Jacobian | None:
    """2·point on a curve with a = -3 (the NIST curves; dbl-2001-b)."""
    if point is None or point[1] == 0:
        return None
    x, y, z = point
    delta, gamma = z * z % p, y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    return x3, (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p, ((y + z) ** 2 - gamma
                                                                   - delta) % p


def _add(p: int, one: _Jacobian | None, x2: int, y2: int) -> _Jacobian | None:
    """one + (x2, y2), the latter affine (madd-2004-hmv)."""
    if one is None:
        return x2, y2, 1
    x1, y1, z1 = one
    z1z1 = z1 * z1 % p
    h = (x2 * z1z1 - x1) % p
    r = (y2 * z1 * z1z1 - y1) % p
    if h == 0:
        return _double(p, one) if r == 0 else None
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    return x3, (r * (v - x3) - y1 * hhh) % p, z1 * h % p


def _shamir(curve: _Curve, u1: int, u2: int, point: tuple[int, ...]) -> _Jacobian | None:
    """u1·G + u2·Q, both at once (Shamir's trick), with affine table points."""
    p = curve.p
    both = _add(p, (curve.gx, curve.gy, 1), point[0], point[1])
    if both is not None:  # G + Q, made affine
        z_inverse = pow(both[2], -1, p)
        both = (both[0] * z_inverse ** 2 % p, both[1] * z_inverse ** 3 % p, 1)
    table = (None, (curve.gx, curve.gy), (point[0], point[1]),
             None if both is None else both[:2])
    total: _Jacobian | None = None
    for bit in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        total = _double(p, total)
        addend = table[(u1 >> bit & 1) | (u2 >> bit & 1) << 1]
        if addend is not None:
            total = _add(p, total, *addend)
    return total
