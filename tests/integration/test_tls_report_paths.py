"""The TLS report a user sees is the same whether the DER reader (tcpcli.core.dercert) or
cryptography (tcpcli.core.certs and tlsverify, the reference) built it.

Real TLS on loopback, ``tcpcli connect --tls -v`` and ``--json`` run twice: as shipped,
and with the DER reader switched off in the process (every certificate and chain left to
the reference). The chains cover what the DER reader settles itself (a complete chain, with
or without its root) and what it hands over (a missing intermediate, an extra certificate,
certificates out of order, a self-signed leaf).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.certs import PKI, ServerCert
from tests.support.peers import recv_all, serve

pytestmark = pytest.mark.timeout(120)

#: The command with the DER reader switched off: the reference builds every report.
REFERENCE_ONLY = (
    "import tcpcli.core.dercert as d\n"
    "d._pure_summary = lambda der: None\n"
    "d._settled_chain = lambda sent, verified: None\n"
    "from tcpcli.__main__ import main\n"
    "main()\n"
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def run(port: int, ca_file: str, *extra: str, reference: bool) -> subprocess.CompletedProcess[str]:
    start = [sys.executable, "-c", REFERENCE_ONLY] if reference else [
        sys.executable, "-X", "importtime", "-m", "tcpcli"]
    proc = subprocess.run(  # (--sni: the self-signed and RSA leaves name localhost only)
        [*start, "connect", f"127.0.0.1:{port}", "--tls", "--ca-file", ca_file,
         "--sni", "localhost", "--allow", "127.0.0.1", *extra],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env={**os.environ, "NO_COLOR": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def report_lines(stderr: str) -> list[str]:
    """The report's lines (not the waterfall's timed "tls setup" and "tls handshake")."""
    return [line for line in stderr.splitlines()
            if re.match(r"tcpcli: (tls|cert\[\d+\])( [a-z]+)+: ", line)]


def json_report(stderr: str) -> dict[str, object]:
    """connect's tls_report event (its events go to stderr), without its clock."""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    found = [event for event in events if event.get("event") == "tls_report"]
    assert len(found) == 1, stderr[-2000:]
    found[0].pop("t_ms")
    return found[0]


#: The chains the DER reader settles without cryptography: OpenSSL's verified chain, sent
#: as it is (the root too, or not).
SETTLED = {"complete", "with-root", "rsa"}
CHAINS = ["complete", "with-root", "missing-intermediate", "extra", "out-of-order",
          "self-signed", "rsa"]


def server_cert(pki: PKI, which: str) -> ServerCert:
    return {
        "complete": pki.valid,
        "with-root": pki.valid.with_extra(pki.root_pem),
        "missing-intermediate": pki.valid.without_intermediates(),
        "extra": pki.valid.with_extra(pki.other_root_pem),
        "out-of-order": pki.valid.with_extra(pki.root_pem),
        "self-signed": pki.self_signed,
        "rsa": pki.rsa,
    }[which]


@pytest.fixture(scope="module", params=CHAINS)
def peer(request: pytest.FixtureRequest, pki: PKI) -> Iterator[tuple[int, str, str]]:
    which: str = request.param
    cert = server_cert(pki, which)
    if which == "out-of-order":  # leaf, root, intermediate
        cert = ServerCert((cert.chain_pem[0], pki.root_pem, cert.chain_pem[1]), cert.key_pem)
    ca_file = pki.ca_file
    if which == "missing-intermediate":  # verified thanks to the store's intermediate
        ca_file = pki.write("root-and-intermediate.pem",
                            pki.root_pem + pki.intermediate.cert_pem.bytes())
    elif which == "self-signed":
        ca_file = pki.write("self-signed.pem", cert.leaf_pem)
    with serve(recv_all, ssl_context=pki.server_context(cert)) as server:
        yield server.port, ca_file, which


def test_the_verbose_report_is_the_references(peer: tuple[int, str, str]) -> None:
    port, ca_file, which = peer
    mine = run(port, ca_file, "-v", reference=False)
    shown = report_lines(mine.stderr)
    assert any(line.startswith("tcpcli: tls chain:") for line in shown)
    assert shown == report_lines(run(port, ca_file, "-v", reference=True).stderr)
    loaded = re.findall(r"^import time:.*\| +(cryptography\S*)$", mine.stderr, re.M)
    assert bool(loaded) is (which not in SETTLED), loaded[:3]
    chain = next(line for line in shown if line.startswith("tcpcli: tls chain:"))
    assert chain.startswith("tcpcli: tls chain: complete" if which != "missing-intermediate"
                            else "tcpcli: tls chain: INCOMPLETE")


def test_the_json_report_is_the_references(peer: tuple[int, str, str]) -> None:
    port, ca_file, _ = peer
    mine = json_report(run(port, ca_file, "--json", reference=False).stderr)
    assert mine == json_report(run(port, ca_file, "--json", reference=True).stderr)
    assert mine["verified_chain"]  # (OpenSSL's chain, summarized too)
