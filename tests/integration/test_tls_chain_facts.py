"""Whether the chain *as sent* is complete, and what tcpcli says about OCSP stapling.

Real TLS on loopback (root CA → intermediate → leaf from tests/support/certs.PKI), seen
as a user sees it: ``tcpcli connect --tls -v`` stderr and ``tcpcli starttls --json``
stdout; plus the completeness function itself on in-memory certificates.

The key case: a server that sends only its leaf, checked by a client whose trust store
holds the intermediate too. Verification succeeds there, yet clients without that
intermediate fail: the chain as sent is reported incomplete.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tcpcli.core.tlsreport import OCSP_STAPLING_UNKNOWN
from tcpcli.core.tlsverify import assess_chain, chain_completeness
from tests.integration.test_cli_starttls import smtp_server
from tests.support.certs import PKI, ServerCert, from_trustme, same_name_other_key
from tests.support.cli import run_cli
from tests.support.peers import echo, serve

pytestmark = pytest.mark.timeout(60)

ALLOW = ("--allow", "127.0.0.1")
OCSP_LINE = f"tcpcli: tls ocsp stapling: unknown ({OCSP_STAPLING_UNKNOWN})"
CERT_FACTS = ("days_left", "key_type", "key_bits", "curve", "signature_algorithm")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def root_and_intermediate(pki: PKI) -> str:
    """A --ca-file that trusts the root and also holds the intermediate."""
    return pki.write("root-and-intermediate.pem",
                     pki.root_pem + pki.intermediate.cert_pem.bytes())


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def missing_intermediate(pki: PKI) -> str:
    leaf = load(pki.valid.leaf_pem)
    return ("incomplete chain: the server did not send the intermediate for "
            f"{leaf.subject.rfc4514_string()} (issued by {leaf.issuer.rfc4514_string()})")


def chain_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines()
            if line.startswith(("tcpcli: tls verify:", "tcpcli: tls chain:",
                                "tcpcli: tls ocsp stapling:"))]


# ----------------------------------------------------------------------------- the core


def test_completeness_on_in_memory_certificates(pki: PKI) -> None:
    leaf, intermediate = map(load, pki.valid.chain_pem)
    root, other_root = load(pki.root_pem), load(pki.other_root_pem)
    incomplete = missing_intermediate(pki)

    assert assess_chain([leaf, intermediate], [root]) == (True, None)
    assert assess_chain([leaf, intermediate, root], []) == (True, None)  # ends self-signed
    assert assess_chain([leaf], [root]) == (False, incomplete)
    # The intermediate in the trust store does not make the chain as sent complete.
    assert assess_chain([leaf], [root, intermediate]) == (False, incomplete)
    assert assess_chain([load(pki.self_signed.leaf_pem)], []) == (True, None)
    # A leaf the root issued directly needs nothing more.
    direct = load(pki.unknown_ca.leaf_pem)
    assert assess_chain([direct], [other_root]) == (True, None)
    assert assess_chain([], [root]) == (None, None)
    # An anchor is a trusted *self-signed* certificate with the right key, not a name.
    impostor = same_name_other_key(root)
    assert assess_chain([leaf, intermediate], [impostor]) == (False, (
        "incomplete chain: the server did not send the intermediate for "
        f"{intermediate.subject.rfc4514_string()} (issued by {root.subject.rfc4514_string()})"))

    complete, problem = assess_chain([leaf, intermediate, other_root], [root])
    assert complete is True
    assert problem == ("the server also sent a certificate that is not part of the chain: "
                       f"'{other_root.subject.rfc4514_string()}'")
    complete, problem = assess_chain([leaf, root, intermediate], [root])
    assert complete is True
    assert problem == ("the server sent the chain out of order: each certificate should be "
                       "followed by its issuer")
    complete, problem = assess_chain([leaf, other_root], [root, intermediate])
    assert complete is False
    assert problem is not None and problem.startswith(incomplete + "; the server also sent")


def test_completeness_against_the_runs_trust_store(pki: PKI,
                                                   root_and_intermediate: str) -> None:
    def der(*pems: bytes) -> list[bytes]:
        return [load(pem).public_bytes(serialization.Encoding.DER) for pem in pems]

    leaf_pem, intermediate_pem = pki.valid.chain_pem
    verified = der(leaf_pem, intermediate_pem, pki.root_pem)

    def judge(sent: Sequence[bytes], built: Sequence[bytes], ca_file: str) -> object:
        return chain_completeness(sent, built, ca_file=ca_file, system_store=False)

    # With the chain a verifier built, its anchor settles it; without, the store does.
    assert judge(der(leaf_pem, intermediate_pem), verified, pki.ca_file) == (True, None)
    assert judge(der(leaf_pem, intermediate_pem), [], pki.ca_file) == (True, None)
    assert judge(der(leaf_pem), [], pki.ca_file) == (False, missing_intermediate(pki))
    # Verified through the store's intermediate: still incomplete as sent.
    assert judge(der(leaf_pem), verified, root_and_intermediate) == (
        False, missing_intermediate(pki))
    assert judge([], [], pki.ca_file) == (None, None)


def test_python_ssl_neither_requests_nor_exposes_ocsp_stapling() -> None:
    """The claim behind ``ocsp_stapled`` being None: no status_request (extension 5) in
    the ClientHello, so a server must not staple, and no API to ask for or read one."""
    context = ssl.create_default_context()
    outgoing = ssl.MemoryBIO()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="example.com")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()[5:]  # one record; its handshake message
    assert hello[0] == 1  # ClientHello
    position = 4 + 2 + 32  # header, version, random
    position += 1 + hello[position]  # session id
    position += 2 + int.from_bytes(hello[position:position + 2], "big")  # cipher suites
    position += 1 + hello[position]  # compression methods
    end = position + 2 + int.from_bytes(hello[position:position + 2], "big")
    position += 2
    extensions = []
    while position < end:
        extensions.append(int.from_bytes(hello[position:position + 2], "big"))
        position += 4 + int.from_bytes(hello[position + 2:position + 4], "big")
    assert 0 in extensions  # server_name: the walk found the extensions
    assert 5 not in extensions  # status_request
    names = dir(ssl) + dir(ssl.SSLContext) + dir(ssl.SSLObject) + dir(ssl.SSLSocket)
    assert not [name for name in names if "ocsp" in name.lower() or "staple" in name.lower()]


# ----------------------------------------------------------------------------- connect -v


def connect_verbose(cert: ServerCert, pki: PKI, ca_file: str,
                    *extra: str) -> tuple[int, list[str]]:
    with serve(echo, ssl_context=pki.server_context(cert)) as server:
        proc = run_cli("connect", server.address, "--tls", "--ca-file", ca_file, *ALLOW,
                       "-v", *extra, stdin=b"ping")
    return proc.returncode, chain_lines(proc.stderr)


def test_connect_full_chain_is_complete_and_verified(pki: PKI) -> None:
    assert connect_verbose(pki.valid, pki, pki.ca_file) == (0, [
        "tcpcli: tls verify: ok", "tcpcli: tls chain: complete", OCSP_LINE])


def test_connect_leaf_only_against_the_root_is_incomplete_and_fails(pki: PKI) -> None:
    leaf_only = pki.valid.without_intermediates()
    assert connect_verbose(leaf_only, pki, pki.ca_file, "--insecure") == (0, [
        "tcpcli: tls verify: FAILED (20: unable to get local issuer certificate)",
        f"tcpcli: tls chain: INCOMPLETE ({missing_intermediate(pki).removeprefix('incomplete chain: ')})",
        OCSP_LINE])
    code, lines = connect_verbose(leaf_only, pki, pki.ca_file)
    assert (code, lines) == (7, [])  # secure: the verification error ends the run


def test_connect_leaf_only_verified_by_a_local_intermediate_is_still_incomplete(
        pki: PKI, root_and_intermediate: str) -> None:
    leaf_only = pki.valid.without_intermediates()
    assert connect_verbose(leaf_only, pki, root_and_intermediate) == (0, [
        "tcpcli: tls verify: ok",
        f"tcpcli: tls chain: INCOMPLETE ({missing_intermediate(pki).removeprefix('incomplete chain: ')})",
        OCSP_LINE])


def test_connect_self_signed_leaf_is_complete_but_not_verified(pki: PKI) -> None:
    assert connect_verbose(pki.self_signed, pki, pki.ca_file, "--insecure") == (0, [
        "tcpcli: tls verify: FAILED (18: self-signed certificate)",
        "tcpcli: tls chain: complete", OCSP_LINE])


def test_connect_json_tls_report_has_the_chain_facts(pki: PKI,
                                                     root_and_intermediate: str) -> None:
    with serve(echo, ssl_context=pki.server_context(pki.valid.without_intermediates())) \
            as server:
        proc = run_cli("connect", server.address, "--tls", "--ca-file",
                       root_and_intermediate, *ALLOW, "--json", stdin=b"ping")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    report = next(e for e in events if e["event"] == "tls_report")
    assert report["verification"]["verified"] is True
    assert (report["chain_complete"], report["chain_problem"]) == (
        False, missing_intermediate(pki))
    assert (report["ocsp_stapled"], report["ocsp_note"]) == (None, OCSP_STAPLING_UNKNOWN)
    for cert in report["chain"] + report["verified_chain"]:
        assert all(cert[fact] is not None for fact in CERT_FACTS), cert


# ----------------------------------------------------------------------------- starttls


@pytest.mark.parametrize(("which", "trust", "complete"), [
    ("full", "root", True),
    ("leaf-only", "root-and-intermediate", False),
])
def test_starttls_json_tls_report_has_the_chain_facts(
        pki: PKI, root_and_intermediate: str, which: str, trust: str,
        complete: bool) -> None:
    cert = pki.valid if which == "full" else pki.valid.without_intermediates()
    ca_file = pki.ca_file if trust == "root" else root_and_intermediate
    with serve(smtp_server(pki.server_context(cert))) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ca-file", ca_file,
                       *ALLOW, "--json")
    assert proc.returncode == 0, proc.stderr
    events = {e["event"]: e for e in map(json.loads, proc.stdout.splitlines())}
    report = events["tls_report"]
    assert report["verification"]["verified"] is True
    assert report["chain_complete"] is complete
    assert report["chain_problem"] == (None if complete else missing_intermediate(pki))
    assert (report["ocsp_stapled"], report["ocsp_note"]) == (None, OCSP_STAPLING_UNKNOWN)
    # The per-certificate facts, for every certificate sent and every one verified.
    assert len(report["chain"]) == (2 if complete else 1)
    assert len(report["verified_chain"]) == 3
    for cert in report["chain"] + report["verified_chain"]:
        assert all(cert[fact] is not None for fact in CERT_FACTS), cert


def test_starttls_text_report_has_the_chain_lines(pki: PKI,
                                                  root_and_intermediate: str) -> None:
    with serve(smtp_server(pki.server_context(pki.valid.without_intermediates()))) \
            as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ca-file",
                       root_and_intermediate, *ALLOW)
    assert proc.returncode == 0, proc.stderr
    assert chain_lines(proc.stderr) == [
        "tcpcli: tls verify: ok",
        f"tcpcli: tls chain: INCOMPLETE ({missing_intermediate(pki).removeprefix('incomplete chain: ')})",
        OCSP_LINE]


# ----------------------------------------------------------------------------- --expect


def test_expect_catches_a_missing_intermediate_and_a_leaf_near_expiry(
        pki: PKI, root_and_intermediate: str) -> None:
    """What CI wants to hear before users do: verification passes here (the local store
    has the intermediate), yet the chain as sent is incomplete and the leaf expires soon."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    near = from_trustme(pki.intermediate.issue_cert(
        "localhost", "127.0.0.1", not_before=now - dt.timedelta(days=80),
        not_after=now + dt.timedelta(days=9, hours=12))).without_intermediates()
    with serve(echo, ssl_context=pki.server_context(near)) as server:
        proc = run_cli("connect", server.address, "--tls", "--ca-file", root_and_intermediate,
                       *ALLOW, "--json", "--expect", "verified", "--expect", "chain.complete",
                       "--expect", "cert.days>=30", "--expect", "chain.days>=7",
                       stdin=b"ping")
    assert proc.returncode == 9, proc.stderr
    events = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    checks = [(e["check"], e["passed"], e["found"]) for e in events if e["event"] == "check"]
    assert checks == [("verified", True, "yes"), ("chain.complete", False, "no"),
                      ("cert.days>=30", False, "9 days"), ("chain.days>=7", True, "9 days")]
