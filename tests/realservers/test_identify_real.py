"""``tcpcli probe --banner --tls-detect`` against real servers, every one on a free port
(none on its standard one): each is named by what it answers, with the product and the
version its package ships where the protocol discloses one, and TLS is found the way the
server offers it — STARTTLS in its own protocol, or TLS from the first byte — verified
against the session's CA.

One probe run covers every server (they start once per session); the cases read its rows.
"""

from __future__ import annotations

import http.server
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509

from tcpcli.protocols.service import USUAL_PROBE
from tests.realservers.conftest import IN_CI, RealServer, ServerFiles
from tests.support.cli import run_cli

pytestmark = pytest.mark.timeout(120)


def upstream(debian_version: str) -> str:
    """``1:9.2p1-2+deb12u3`` -> ``9.2p1``: the version the software itself reports."""
    return re.sub(r"^\d+:", "", debian_version).rsplit("-", 1)[0]


def package(server: RealServer) -> str:
    return upstream(server.version)


@dataclass(frozen=True)
class Case:
    fixture: str
    listener: str | None
    name: str
    product: str | None
    version: Any = None  # a function of the server: the version its package ships
    tls: str | None = None  # "implicit", a STARTTLS protocol, or None: no TLS there
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.fixture.removesuffix('_server')}-{self.listener or self.name}"


CASES = [
    Case("sshd_server", None, "ssh", "OpenSSH", package, facts={"protocol": "2.0"}),
    Case("redis_server", None, "redis", "Redis", package, facts={"auth": "none"}),
    Case("redis_auth_server", None, "redis", "Redis", facts={"auth": "required"}),
    Case("mosquitto_server", None, "mqtt", "mosquitto", package,
         facts={"protocol": "5.0", "connect": "anonymous accepted"}),
    Case("postgres_server", None, "postgres", "PostgreSQL", tls="postgres",
         facts={"tls": "available", "protocol": "3.0"}),
    Case("mariadb_server", None, "mysql", "MariaDB", package, tls="mysql",
         facts={"tls": "offered"}),
    Case("slapd_server", None, "ldap", "OpenLDAP", tls="ldap",
         facts={"starttls": "offered", "ldap_versions": "3"}),
    Case("dovecot_server", "imap", "imap", "Dovecot", tls="imap",
         facts={"starttls": "offered"}),
    Case("dovecot_server", "pop3", "pop3", "Dovecot", tls="pop3",
         facts={"starttls": "offered"}),
    Case("dovecot_server", "sieve", "sieve", "Dovecot", tls="sieve",
         facts={"starttls": "offered"}),
    # Its greeting names no protocol: LHLO, after EHLO was refused, tells.
    Case("dovecot_server", "lmtp", "lmtp", "Dovecot", tls="lmtp",
         facts={"starttls": "offered", "confirmed": "LHLO answered 250"}),
    Case("postfix_server", None, "smtp", "Postfix", tls="smtp", facts={"starttls": "offered"}),
    Case("vsftpd_server", None, "ftp", "vsftpd", package, tls="ftp",
         facts={"starttls": "offered"}),
    Case("inn_server", None, "nntp", "INN", package, tls="nntp", facts={"starttls": "offered"}),
    Case("prosody_server", "xmpp", "xmpp", None, tls="xmpp",
         facts={"starttls": "required", "domain": "localhost"}),
    Case("prosody_server", "xmpp-server", "xmpp-server", None, tls="xmpp-server",
         facts={"starttls": "required"}),
    Case("inspircd_server", None, "irc", "InspIRCd", tls="irc"),
    Case("http_server", None, "http", "SimpleHTTP",
         lambda _: http.server.SimpleHTTPRequestHandler.server_version.split("/")[1]),
    Case("tls_peer", None, "http", "OpenSSL s_server", tls="implicit",
         facts={"tls": "implicit", "alpn": "http/1.1"}),
]


@dataclass
class Scan:
    rows: dict[int, dict[str, Any]]
    ports: dict[str, int]  # case id -> port
    servers: dict[str, RealServer]
    missing: dict[str, str]  # fixture -> why it could not start


@pytest.fixture(scope="module")
def scan(request: pytest.FixtureRequest, ca_file: str) -> Scan:
    servers: dict[str, RealServer] = {}
    missing: dict[str, str] = {}
    for fixture in dict.fromkeys(case.fixture for case in CASES):
        try:
            servers[fixture] = request.getfixturevalue(fixture)
        except pytest.skip.Exception as exc:  # under CI this is a failure, raised as such
            missing[fixture] = str(exc)
    ports = {case.id: servers[case.fixture].port(case.listener) for case in CASES
             if case.fixture in servers}
    if not ports:
        pytest.skip("no server to probe")
    proc = run_cli("probe", "127.0.0.1", "-p", ",".join(map(str, sorted(set(ports.values())))),
                   "--allow", "127.0.0.1", "--max-sockets", "unlimited", "--banner",
                   "--tls-detect", "--ca-file", ca_file, "--sni", "localhost", "--json",
                   timeout=90)
    assert proc.returncode == 0, proc.stderr.decode()
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    rows = {event["port"]: event for event in events if event["event"] == "probe_result"}
    return Scan(rows, ports, servers, missing)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_named_by_its_answer_on_a_free_port(case: Case, scan: Scan) -> None:
    if case.fixture in scan.missing:
        assert not IN_CI
        pytest.skip(scan.missing[case.fixture])
    port = scan.ports[case.id]
    assert port not in USUAL_PROBE  # a free port: nothing to learn from its number
    row = scan.rows[port]
    service = row["service"]
    assert service["name"] == case.name, row
    assert service.get("product") == case.product, row
    expected_version = case.version(scan.servers[case.fixture]) if case.version else None
    assert service.get("version") == expected_version, row
    assert service["confidence"] == ("version from banner" if expected_version
                                     else "matched by answer")
    for key, value in case.facts.items():
        assert service["facts"].get(key) == value, (key, row)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_tls_is_found_as_the_server_offers_it(case: Case, scan: Scan,
                                              server_files: ServerFiles) -> None:
    if case.fixture in scan.missing:
        pytest.skip(scan.missing[case.fixture])
    tls = scan.rows[scan.ports[case.id]]["tls"]
    if case.tls is None:
        assert tls["detected"] is False, tls
        return
    assert tls["detected"] is True, tls
    assert tls["mode"] == ("implicit" if case.tls == "implicit" else "starttls")
    if case.tls != "implicit":
        assert tls["protocol"] == case.tls
    assert tls["verdict"] == "verified"  # --ca-file and --sni were honoured
    leaf = x509.load_pem_x509_certificate(server_files.cert.read_bytes())
    assert tls["subject"] == leaf.subject.rfc4514_string()
    days = (leaf.not_valid_after_utc - datetime.now(UTC)).days
    assert abs(tls["days_left"] - days) <= 1
    server = scan.servers[case.fixture]
    pinned = server.pinned_tls.get(server.listener(case.listener))
    if pinned is not None:
        assert (tls["version"], tls["cipher"]) == pinned
