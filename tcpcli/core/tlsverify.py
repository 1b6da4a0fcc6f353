"""Insecure mode's verdict: the certificate verification OpenSSL would have done, done after
the handshake with ``cryptography.x509.verification``.

An insecure handshake (CERT_NONE) still reports whether the chain would have verified and
why not, as OpenSSL's X509_V_ERR_* code and text: against the same trust store the secure
context loads, with OpenSSL's precedence (building a trusted chain 18/19/20/24, then the
name 62/64, then signatures and validity periods 10/9). The name checks here also serve
secure handshakes sent without SNI, where OpenSSL cannot check the name.

Also here, because it needs the same trust store: whether the chain *as sent* is complete
(:func:`chain_completeness`), in every mode.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification as x509_verification

from tcpcli.core.certs import ip_literal, is_self_signed, issued_by, name_matches
from tcpcli.core.tlsreport import Verification
from tcpcli.core.trustdir import trust_source

__all__ = ["assess_chain", "chain_completeness", "name_failure", "verify_chain"]

# OpenSSL X509_V_ERR_* codes we produce ourselves, with OpenSSL's texts.
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


def verify_chain(sent: Sequence[bytes], name: str | None, *, ca_file: str | None,
                 system_store: bool, now: datetime) -> tuple[Verification, list[bytes]]:
    """The verdict on the DER chain ``sent`` (leaf first) for ``name``, and the chain built
    to a trust anchor (empty when it failed)."""
    chain = [x509.load_der_x509_certificate(der) for der in sent]
    verdict, built = _verify_offline(chain, name, _trust_store(ca_file, system_store), now)
    return verdict, [cert.public_bytes(serialization.Encoding.DER) for cert in built]


def name_failure(leaf: bytes | None, name: str) -> tuple[int, str] | None:
    """OpenSSL's code and message when the DER ``leaf`` (None: none sent) is not valid for
    ``name``; None when it is."""
    if leaf is not None and name_matches(x509.load_der_x509_certificate(leaf), name):
        return None
    return _mismatch(name)


def _mismatch(name: str) -> tuple[int, str]:
    if ip_literal(name) is not None:
        return (X509_V_ERR_IP_ADDRESS_MISMATCH,
                f"IP address mismatch, certificate is not valid for '{name}'.")
    return (X509_V_ERR_HOSTNAME_MISMATCH,
            f"Hostname mismatch, certificate is not valid for '{name}'.")


# --------------------------------------------------------------------------- trust store


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
    certs = _trusted_certificates(ca_file, system_store)
    return x509_verification.Store(list(certs)) if certs else None


@functools.lru_cache(maxsize=8)
def _trusted_certificates(ca_file: str | None, system_store: bool) -> (
    tuple[x509.Certificate, ...]
):
    """Every certificate of the trust store (deduplicated), as the secure context loads it."""
    paths: list[str] = []
    if ca_file is not None and os.path.isdir(ca_file):
        paths += _directory_files(ca_file)
    else:
        paths.append(trust_source(ca_file))
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
    return tuple(certs.values())


@functools.lru_cache(maxsize=8)
def _trusted_by_subject(ca_file: str | None, system_store: bool) -> (
    dict[x509.Name, list[x509.Certificate]]
):
    return _by_subject(_trusted_certificates(ca_file, system_store))


def _by_subject(certs: Iterable[x509.Certificate]) -> dict[x509.Name, list[x509.Certificate]]:
    index: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in certs:
        index.setdefault(cert.subject, []).append(cert)
    return index


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


# --------------------------------------------------------------------------- the verdict


def _verify_offline(
    chain: Sequence[x509.Certificate], name: str | None, store: x509_verification.Store | None,
    now: datetime,
) -> tuple[Verification, list[x509.Certificate]]:
    """The verdict OpenSSL would have reached, in OpenSSL's verify_chain() order (see the
    module docstring)."""
    if not chain:
        return Verification(False, X509_V_ERR_UNSPECIFIED, "the server sent no certificate",
                            None, None), []
    leaf, intermediates = chain[0], list(chain[1:])
    matched = None if name is None else name_matches(leaf, name)
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
        if subject is None and name is not None and not is_self_signed(leaf):
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
    if is_self_signed(chain[0]):
        return X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, None
    if len(chain) > 1 and is_self_signed(chain[-1]):
        return X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, None
    if "basicConstraints" in failure:
        return X509_V_ERR_INVALID_CA, None
    if "signature" in failure.lower():
        return X509_V_ERR_CERT_SIGNATURE_FAILURE, None
    return X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, None


# --------------------------------------------------------------------------- the chain as sent


def chain_completeness(sent: Sequence[bytes], verified: Sequence[bytes], *,
                       ca_file: str | None, system_store: bool) -> tuple[bool | None, str | None]:
    """Whether the DER chain ``sent`` (leaf first, as the server sent it) is complete, and
    its problem as one sentence (see :func:`assess_chain`); (None, None) with no chain.

    ``verified`` is the chain this run built to a trust anchor (OpenSSL's, or ours in
    insecure mode), empty when none. Its anchor is a self-signed certificate of the store,
    which settles a complete chain without reading the store inside the timed handshake;
    only a chain that does not reach it is checked against the whole store.
    """
    return _chain_completeness(tuple(sent), tuple(verified), ca_file, system_store)


@functools.lru_cache(maxsize=64)  # bench sees the same chain thousands of times
def _chain_completeness(sent: tuple[bytes, ...], verified: tuple[bytes, ...],
                        ca_file: str | None, system_store: bool) -> (
    tuple[bool | None, str | None]
):
    if not sent:
        return None, None
    certs = [x509.load_der_x509_certificate(der) for der in sent]
    path = _issuer_path(certs)
    if verified:
        anchor = x509.load_der_x509_certificate(verified[-1])
        if _reaches_anchor([certs[i] for i in path], _by_subject([anchor]).get):
            return True, _chain_notes(certs, path, complete=True)
    return _assess(certs, path, _trusted_by_subject(ca_file, system_store).get)


def assess_chain(sent: Sequence[x509.Certificate], trusted: Iterable[x509.Certificate]) -> (
    tuple[bool | None, str | None]
):
    """Whether the chain ``sent`` (leaf first) is complete against the trust store
    ``trusted``, and its problem as one sentence (None when there is none).

    Complete: following issuer links (name and signature) from the leaf through the
    certificates sent reaches a self-signed certificate, or one issued by a self-signed
    certificate of ``trusted``. An intermediate found only in ``trusted`` does not count:
    verification succeeds here, yet clients without that intermediate fail. Sent
    certificates off that path, or sent out of order, are named in the problem too.
    """
    if not sent:
        return None, None
    return _assess(sent, _issuer_path(sent), _by_subject(trusted).get)


_Lookup = Callable[[x509.Name], list[x509.Certificate] | None]


def _assess(sent: Sequence[x509.Certificate], path: list[int], lookup: _Lookup) -> (
    tuple[bool, str | None]
):
    complete = _reaches_anchor([sent[i] for i in path], lookup)
    return complete, _chain_notes(sent, path, complete=complete)


def _issuer_path(sent: Sequence[x509.Certificate]) -> list[int]:
    """Indexes into ``sent``: the leaf, its issuer among the others, that one's, ..."""
    path = [0]
    while not is_self_signed(sent[path[-1]]):
        current = sent[path[-1]]
        issuer = next((i for i, cert in enumerate(sent)
                       if i not in path and issued_by(current, cert)), None)
        if issuer is None:
            break
        path.append(issuer)
    return path


def _reaches_anchor(path: Sequence[x509.Certificate], lookup: _Lookup) -> bool:
    # Any link may reach an anchor, not only the top one: a cross-signed root sent above
    # an intermediate the store's own root issued (Let's Encrypt's old chain) is complete.
    return any(
        is_self_signed(cert)
        or any(is_self_signed(anchor) and issued_by(cert, anchor)
               for anchor in lookup(cert.issuer) or ())
        for cert in path
    )


def _chain_notes(sent: Sequence[x509.Certificate], path: list[int], *,
                 complete: bool) -> str | None:
    notes: list[str] = []
    if not complete:
        top = sent[path[-1]]
        notes.append("incomplete chain: the server did not send the intermediate for "
                     f"{top.subject.rfc4514_string()} (issued by {top.issuer.rfc4514_string()})")
    extra = [f"'{sent[i].subject.rfc4514_string()}'" for i in range(len(sent)) if i not in path]
    if extra:
        what = "a certificate that is" if len(extra) == 1 else "certificates that are"
        notes.append(f"the server also sent {what} not part of the chain: {', '.join(extra)}")
    if path != sorted(path):
        notes.append("the server sent the chain out of order: each certificate should be "
                     "followed by its issuer")
    return "; ".join(notes) or None
