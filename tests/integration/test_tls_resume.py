"""TLS session resumption (issues #5, #6) against real loopback TLS servers.

Servers: Python ``ssl`` (TLS 1.3 and 1.2, both with tickets — a server context resumes by
default — and TLS 1.3 with ``num_tickets = 0``, which makes resumption impossible; note that
``OP_NO_TICKET`` is *not* enough on TLS 1.3: OpenSSL then issues stateful tickets and still
resumes), and ``openssl s_server`` when installed — the server that ``openssl s_client
-reconnect`` cannot resume on TLS 1.3, because it reconnects before reading the tickets.
The STARTTLS and library peers record whether *they* resumed the session, so the
client's claim is checked against the server's.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import tcpcli
from tcpcli.core.socket import connect
from tcpcli.core.tlsoptions import TLSOptions
from tests.integration.test_cli_bench import bench_json
from tests.support.cli import run_cli
from tests.support.peers import echo, serve

pytestmark = pytest.mark.timeout(60)

ALLOW = ("--allow", "127.0.0.1")
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@pytest.fixture(scope="module")
def leaf(tls_ca: trustme.CA) -> trustme.LeafCert:
    return tls_ca.issue_cert("localhost", "127.0.0.1")


def server_context(leaf: trustme.LeafCert, version: ssl.TLSVersion = TLS13, *,
                   tickets: bool = True) -> ssl.SSLContext:
    """A fresh server context: its own ticket keys, so no test resumes another's session."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    context.maximum_version = version
    if not tickets:
        context.num_tickets = 0  # TLS 1.3: no NewSessionTicket at all, nothing to resume
    return context


def postgres_server(context: ssl.SSLContext,
                    resumed: list[bool]) -> Callable[[socket.socket], None]:
    """SSLRequest → 'S' → TLS, then nothing: the client must read the TLS 1.3 ticket
    itself (no application data will make it do so). Records the server's view."""
    def handler(conn: socket.socket) -> None:
        assert conn.recv(8) == bytes.fromhex("0000000804d2162f")
        conn.sendall(b"S")
        tls = context.wrap_socket(conn, server_side=True)
        resumed.append(tls.session_reused)
        tls.recv(1)  # until the client closes
    return handler


def smtp_server(context: ssl.SSLContext,
                resumed: list[bool]) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 mail.test ESMTP\r\n")
        assert reader.readline().startswith(b"EHLO ")
        conn.sendall(b"250-mail.test\r\n250 STARTTLS\r\n")
        assert reader.readline() == b"STARTTLS\r\n"
        conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
        tls = context.wrap_socket(conn, server_side=True)
        resumed.append(tls.session_reused)
        assert tls.makefile("rb").readline().startswith(b"EHLO ")
        tls.sendall(b"250 mail.test\r\n")
        tls.recv(1)
    return handler


def starttls_resume(address: str, ca_file: str, *args: str,
                    protocol: str = "postgres") -> subprocess.CompletedProcess[bytes]:
    return run_cli("starttls", address, "-P", protocol, "--ca-file", ca_file, *ALLOW,
                   "--resume", *args)


def milliseconds(text: str, label: str) -> float:
    found = re.search(rf"^tcpcli: {label}: (\d+\.\d{{3}}) ms", text, re.M)
    assert found, (label, text)
    return float(found.group(1))


# ----------------------------------------------------------------------------- starttls


@pytest.mark.parametrize(("version", "name"), [(TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")],
                         ids=["tls1.3", "tls1.2"])
def test_starttls_resume_reports_full_and_resumed_handshakes(
        leaf: trustme.LeafCert, ca_file: str, version: ssl.TLSVersion, name: str) -> None:
    resumed: list[bool] = []
    with serve(postgres_server(server_context(leaf, version), resumed)) as server:
        proc = starttls_resume(server.address, ca_file)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert resumed == [False, True]  # the server agrees: one full, one resumed handshake
    assert f"tcpcli: tls session: {name} ticket (lifetime 7200 s)\n" in err
    assert f"tcpcli: server resumed the session ({name})\n" in err
    assert "did not resume" not in err
    full, again = milliseconds(err, "tls handshake full"), milliseconds(err,
                                                                       "tls handshake resumed")
    assert full > 0 and again > 0
    # The first report is the full handshake's; the second connection's waterfall follows.
    assert "tcpcli: tls resumed: no\n" in err
    second = err.split("second connection, offering the session:\n", 1)[1]
    assert re.search(r"tls handshake +127\.0\.0\.1 .* ms  ok", second)


def test_starttls_resume_when_the_server_sends_no_ticket(leaf: trustme.LeafCert,
                                                         ca_file: str) -> None:
    resumed: list[bool] = []
    context = server_context(leaf, tickets=False)
    with serve(postgres_server(context, resumed)) as server:
        proc = starttls_resume(server.address, ca_file)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err  # declining is a finding, not an error
    assert resumed == [False, False]
    assert "tls session: no ticket (the server sent no TLS 1.3 session ticket)" in err
    assert "tcpcli: server did not resume: full handshake\n" in err
    assert milliseconds(err, "tls handshake second") > 0


@pytest.mark.parametrize("tickets", [True, False], ids=["resumed", "declined"])
def test_starttls_resume_events(leaf: trustme.LeafCert, ca_file: str, tickets: bool) -> None:
    resumed: list[bool] = []
    with serve(smtp_server(server_context(leaf, tickets=tickets), resumed)) as server:
        proc = starttls_resume(server.address, ca_file, "--json", protocol="smtp")
    assert proc.returncode == 0, proc.stderr
    assert resumed == [False, tickets]
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    names = [e["event"] for e in events]
    # The first connection's report, then the offer, then the second connection.
    assert names.index("tls_report") < names.index("tls_resume_offer") \
        < names.index("tls_resume") == len(names) - 1
    handshakes = [e for e in events if e["event"] == "tls"]
    assert [e["resumed"] for e in handshakes] == [False, tickets]
    report = next(e for e in events if e["event"] == "tls_report")
    assert report["session_reused"] is False and report["session_offered"] is False
    offer = next(e for e in events if e["event"] == "tls_resume_offer")
    assert offer == {**offer, "session": True, "ticket": tickets,
                     "ticket_lifetime_s": 7200 if tickets else None}
    summary = events[-1]
    assert summary["resumed"] is tickets and summary["offered"] is True
    assert summary["version"] == "TLSv1.3"
    assert summary["full_handshake_ms"] == handshakes[0]["duration_ms"]
    assert summary["second_handshake_ms"] == handshakes[1]["duration_ms"]


# ----------------------------------------------------------------------------- library


@pytest.mark.anyio
@pytest.mark.parametrize("version", [TLS13, TLS12], ids=["tls1.3", "tls1.2"])
async def test_socket_offers_a_session_on_connect(leaf: trustme.LeafCert, ca_file: str,
                                                  version: ssl.TLSVersion) -> None:
    resumed: list[bool] = []

    def hello(conn: socket.socket) -> None:
        tls = context.wrap_socket(conn, server_side=True)
        resumed.append(tls.session_reused)
        tls.sendall(b"hello")
        tls.recv(1)

    context = server_context(leaf, version)
    with serve(hello) as server:
        async with tcpcli.Invocation(policy=tcpcli.Policy.parse("workers",
                                                                  allow=["127.0.0.1"])):
            options = TLSOptions(ca_file=ca_file)
            first = connect(server.address, secure_transport="on", tls=options)
            session = await first.resumable_tls_session()
            assert session is not None and session.has_ticket
            # Data read while waiting for the ticket is not lost.
            assert await first.readable.receive() == b"hello"
            await first.close()
            second = connect(server.address, secure_transport="on", tls=options,
                             tls_session=session)
            assert await second.readable.receive() == b"hello"
            await second.close()
            plain = connect(server.address)
            assert await plain.resumable_tls_session() is None
            await plain.close()
    assert resumed[:2] == [False, True]
    assert first.tls_report is not None and second.tls_report is not None
    assert (first.tls_report.session_reused, first.tls_report.session_offered) == (False, False)
    assert (second.tls_report.session_reused, second.tls_report.session_offered) == (True, True)
    assert second.clock.find("tls")[0].detail["resumed"] is True


# ----------------------------------------------------------------------------- bench


@pytest.mark.parametrize("version", [TLS13, TLS12], ids=["tls1.3", "tls1.2"])
def test_bench_resume_measures_full_and_resumed_handshakes_side_by_side(
        leaf: trustme.LeafCert, ca_file: str, version: ssl.TLSVersion) -> None:
    with serve(echo, ssl_context=server_context(leaf, version)) as server:
        code, summary, out = bench_json(server.address, *ALLOW, "--tls", "--resume",
                                        "--ca-file", ca_file, "-n", "30", "-c", "1")
    assert code == 0, out
    assert summary["errors"] == {} and summary["samples"] == 30
    assert summary["resume"] is True and summary["resume_misses"] == 0
    distributions = summary["distributions"]
    # A worker alternates: a full handshake, then one offering its session.
    assert distributions["tls"]["count"] == 15
    assert distributions["tls-resumed"]["count"] == 15
    assert distributions["connect"]["count"] == 30
    assert distributions["tls-resumed"]["p50_ms"] > 0
    assert "resumption  15 resumed, 0 declined by the server (full handshake)\n" in out
    assert re.search(r"^tls-resumed min=\S+ .* ms \(n=15\)$", out, re.M)
    assert "mode        connect tls resume, concurrency 1\n" in out


def test_bench_resume_counts_declined_sessions(leaf: trustme.LeafCert, ca_file: str) -> None:
    context = server_context(leaf, tickets=False)
    started = time.monotonic()
    with serve(echo, ssl_context=context) as server:
        code, summary, out = bench_json(server.address, *ALLOW, "--tls", "--resume",
                                        "--ca-file", ca_file, "-n", "30", "-c", "2")
    assert code == 0, out
    assert summary["samples"] == 30 and summary["errors"] == {}
    assert summary["distributions"]["tls"]["count"] == 30
    assert summary["distributions"]["tls-resumed"]["count"] == 0
    assert 14 <= summary["resume_misses"] <= 15  # every offer: half of each worker's samples
    assert f"resumption  0 resumed, {summary['resume_misses']} declined by the server " \
        "(full handshake)\n" in out
    # The ticket that never comes is waited for once, not once per sample.
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("args", [("--resume",), ("--tls", "--resume", "--mode", "rr",
                                                   "--send", "x")])
def test_bench_resume_usage_errors(args: tuple[str, ...]) -> None:
    proc = run_cli("bench", "127.0.0.1:9", *ALLOW, *args)
    assert proc.returncode == 2
    assert b"--resume needs" in proc.stderr


# ----------------------------------------------------------------------------- openssl


@pytest.fixture
def openssl_server(leaf: trustme.LeafCert, tmp_path: Path) -> Iterator[Callable[[int], int]]:
    """Start ``openssl s_server`` (TLS 1.3 only) for N connections; yields a starter."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    started: list[subprocess.Popen[bytes]] = []

    def start(connections: int) -> int:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        probe.close()
        proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(chain),
             "-key", str(key), "-tls1_3", "-naccept", str(connections), "-quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + 5
        listening = re.compile(rf"^ *\d+: 0100007F:{port:04X} 00000000:0000 0A ", re.M)
        while time.monotonic() < deadline:  # listening yet? (a probe would use up a slot)
            if listening.search(Path("/proc/net/tcp").read_text()):
                return port
            time.sleep(0.02)
        raise AssertionError("openssl s_server did not start")

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_bench_resumes_tls13_sessions_with_openssl_s_server(
        openssl_server: Callable[[int], int], ca_file: str) -> None:
    port = openssl_server(10)
    code, summary, out = bench_json(f"127.0.0.1:{port}", *ALLOW, "--tls", "--resume",
                                    "--ca-file", ca_file, "-n", "10", "-c", "1")
    assert code == 0, out
    distributions: dict[str, Any] = summary["distributions"]
    assert distributions["tls"]["count"] == 5
    assert distributions["tls-resumed"]["count"] == 5
    assert summary["resume_misses"] == 0
