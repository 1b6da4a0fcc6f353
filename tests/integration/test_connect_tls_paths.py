"""``connect --tls`` runs without an event loop when it can (``tcpcli.core.blockingtls``,
the event-loop core's own TLS session driven by ``select``) and on anyio otherwise. Each
conversation here runs both ways against a real TLS peer and must give the same bytes,
exit code, messages, JSON events and waterfall phases (times aside)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from tests.support.peers import serve
from tests.support.two_paths import PATHS, assert_same, both, environment, run_path

pytestmark = pytest.mark.timeout(60)

ALLOW = ("--allow", "127.0.0.1")


def echo_then_close_notify(tls: ssl.SSLSocket) -> None:
    while data := tls.recv(65536):
        tls.sendall(data)
    tls.unwrap()  # our close_notify, after the client's


def greet_then_close_notify(tls: ssl.SSLSocket) -> None:
    tls.sendall(b"220 hello over TLS\r\n")
    tls.unwrap()


def greet_then_cut(tls: ssl.SSLSocket) -> None:
    tls.sendall(b"220 hello, then no close_notify\r\n")
    socket.socket(fileno=tls.detach()).close()  # a TCP FIN, and no close_notify before it


def answer_one_line(tls: ssl.SSLSocket) -> None:
    line = b""
    while not line.endswith(b"\n"):
        chunk = tls.recv(1)
        if not chunk:
            return
        line += chunk
    tls.sendall(b"you said " + line)
    tls.unwrap()


def test_an_echo_round_trip_is_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                  ca_file: str) -> None:
    with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server:
        runs = both("connect", server.address, "--tls", "--ca-file", ca_file, *ALLOW,
                    stdin=b"ping\n" * 1000)
    assert runs[0].returncode == 0 and runs[0].stdout == b"ping\n" * 1000, runs[0].stderr
    assert runs[0].stderr == b""
    assert_same(*runs)


def test_megabytes_each_way_at_once_arrive_whole_both_ways(server_ssl_context: ssl.SSLContext,
                                                           ca_file: str) -> None:
    # More than the socket buffers hold, echoed while it is still being sent: the relay
    # must read while records wait for room, or both sides stall.
    payload = os.urandom(6 * 1024 * 1024)
    with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server:
        runs = both("connect", server.address, "--tls", "--ca-file", ca_file, *ALLOW,
                    stdin=payload, timeout=60)
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert hashlib.sha256(run.stdout).digest() == hashlib.sha256(payload).digest()
    assert_same(*runs)


def test_a_file_on_stdin_goes_through_tls_whole_both_ways(server_ssl_context: ssl.SSLContext,
                                                         ca_file: str, tmp_path: Path) -> None:
    # A regular file on stdin is sent by the kernel (sendfile) in plaintext; over TLS it
    # must be read and encrypted instead.
    payload = os.urandom(3 * 1024 * 1024)
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    runs = []
    for path in PATHS:
        with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server, \
                source.open("rb") as stdin:
            runs.append(run_path(path, "connect", server.address, "--tls", "--ca-file",
                                 ca_file, *ALLOW, stdin=stdin.fileno(), timeout=60))
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert hashlib.sha256(run.stdout).digest() == hashlib.sha256(payload).digest()
    assert_same(*runs)


def test_a_peers_close_notify_and_a_cut_connection_are_told_the_same_both_ways(
        server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    for talk, truncated in ((greet_then_close_notify, False), (greet_then_cut, True)):
        runs = []
        for path in PATHS:
            read_end, write_end = os.pipe()  # stdin stays open: the peer ends first
            try:
                with serve(talk, ssl_context=server_ssl_context) as server:
                    runs.append(run_path(path, "connect", server.address, "--tls",
                                         "--ca-file", ca_file, *ALLOW, stdin=read_end))
            finally:
                os.close(read_end)
                os.close(write_end)
        assert runs[0].stdout.startswith(b"220 hello"), runs[0].stderr
        said = runs[0].stderr.decode()
        assert ("without close_notify" in said) is truncated, said
        assert_same(*runs)


def test_tls_eof_wait_lets_the_server_answer_before_close_notify(
        server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    for how in ("wait", "close-notify"):
        with serve(answer_one_line, ssl_context=server_ssl_context) as server:
            runs = both("connect", server.address, "--tls", "--ca-file", ca_file, *ALLOW,
                        "--tls-eof", how, stdin=b"hello\n")
        assert runs[0].returncode == 0, runs[0].stderr
        assert runs[0].stdout == b"you said hello\n"
        assert_same(*runs)


def test_the_json_events_and_waterfall_phases_are_the_same_both_ways(
        server_ssl_context: ssl.SSLContext, ca_file: str, tmp_path: Path) -> None:
    streams: list[list[tuple[str, list[str]]]] = []
    phases: list[list[str]] = []
    reports = []
    for path in PATHS:
        events_file = tmp_path / f"{path}.jsonl"
        with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server:
            proc = run_path(path, "connect", server.address, "--tls", "--ca-file", ca_file,
                            *ALLOW, "-v", "--events", str(events_file), stdin=b"hello\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"hello\n"
        lines = [json.loads(line) for line in events_file.read_text().splitlines()]
        streams.append([(event["event"], sorted(event)) for event in lines])
        (timing,) = [event for event in lines if event["event"] == "timing"]
        phases.append([row["phase"] for row in timing["rows"]])
        (report,) = [event for event in lines if event["event"] == "tls_report"]
        reports.append({key: value for key, value in report.items()
                        if key not in ("ts", "t_ms", "elapsed_ms")})
    assert streams[0] == streams[1]
    assert {"tls-setup", "tls", "first-byte", "close"} <= set(phases[0])
    assert phases[0] == phases[1]
    assert reports[0]["verification"]["verified"] is True
    assert reports[0]["chain"] == reports[1]["chain"]
    assert reports[0]["version"] == reports[1]["version"]


def test_verification_failures_are_the_same_error_both_ways(
        server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server:
        # certifi does not know the tests' CA; the certificate does not name "wrong.test"
        for extra in ([], ["--ca-file", ca_file, "--sni", "wrong.test"]):
            runs = both("connect", server.address, "--tls", *extra, *ALLOW)
            assert runs[0].returncode == 7, runs[0].stderr
            assert b"failed verification" in runs[0].stderr
            assert_same(*runs)


def test_a_failed_handshake_ends_with_the_same_events_both_ways(
        server_ssl_context: ssl.SSLContext, tmp_path: Path) -> None:
    # A connection whose handshake failed never opened: no close phase, as in Socket.
    streams = []
    with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server:
        for path in PATHS:  # (certifi does not know the tests' CA)
            events_file = tmp_path / f"{path}.jsonl"
            proc = run_path(path, "connect", server.address, "--tls", *ALLOW, "--events",
                            str(events_file))
            assert proc.returncode == 7, proc.stderr
            streams.append([(event["event"], event.get("outcome")) for event in
                            map(json.loads, events_file.read_text().splitlines())])
    assert streams[0] == streams[1]
    assert [name for name, _ in streams[0]][:4] == ["attempt", "tls_setup", "tls", "error"]


def test_insecure_reports_the_verdict_and_goes_on_both_ways(
        server_ssl_context: ssl.SSLContext) -> None:
    with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server:
        runs = both("connect", server.address, "--tls", "-k", *ALLOW, stdin=b"hi\n")
    assert runs[0].returncode == 0 and runs[0].stdout == b"hi\n"
    assert b"certificate NOT verified (20: unable to get local issuer certificate)" \
        in runs[0].stderr
    assert_same(*runs)


def test_a_plaintext_server_and_a_demanded_client_certificate_are_named_both_ways(
        tls_ca: object, ca_file: str) -> None:
    import trustme

    assert isinstance(tls_ca, trustme.CA)

    def plaintext_greeter(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        with suppress(OSError):
            conn.recv(4096)
        conn.close()

    with serve(plaintext_greeter) as server:
        runs = both("connect", server.address, "--tls", "--ca-file", ca_file, *ALLOW)
    assert b"answered in plaintext: 'SSH-2.0-OpenSSH_9.2p1 Debian-2'" in runs[0].stderr
    assert_same(*runs)

    demanding = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(demanding)
    demanding.verify_mode = ssl.CERT_REQUIRED
    tls_ca.configure_trust(demanding)
    for version in ("1.2", "1.3"):
        with serve(echo_then_close_notify, ssl_context=demanding) as server:
            runs = both("connect", server.address, "--tls", "--ca-file", ca_file,
                        "--tls-max", version, *ALLOW)
        assert b"requires a client certificate" in runs[0].stderr, runs[0].stderr
        assert_same(*runs)


def silent(conn: socket.socket) -> None:
    """Reads and never answers: a handshake that never ends (until the client leaves)."""
    with suppress(OSError):
        while conn.recv(4096):
            pass


def test_a_handshake_that_never_ends_times_out_the_same_both_ways(ca_file: str) -> None:
    # (--timeout bounds the handshake too: without it, the core's 10 s reply timeout)
    with serve(silent) as server:
        started = time.monotonic()
        runs = both("connect", server.address, "--tls", "--ca-file", ca_file, *ALLOW, "--timeout", "0.5")
    assert time.monotonic() - started < 8
    assert runs[0].returncode == 6, runs[0].stderr
    assert b"timed out after 0.5 s in the TLS handshake with 127.0.0.1:" in runs[0].stderr
    assert_same(*runs)


def test_a_plain_tls_connect_starts_no_event_loop(server_ssl_context: ssl.SSLContext,
                                                  ca_file: str) -> None:
    """The loop-free path is the one taken: no anyio, no asyncio (a fact, not a time)."""
    with serve(echo_then_close_notify, ssl_context=server_ssl_context) as server:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tcpcli", "connect",
                               server.address, "--tls", "--ca-file", ca_file, *ALLOW],
                              input=b"hi\n", capture_output=True, env=environment(), timeout=30)
    assert proc.returncode == 0 and proc.stdout == b"hi\n", proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "tcpcli.core.blockingtls" in imported
    assert not {"asyncio", "anyio", "tcpcli.core.socket", "tcpcli.core.tls"} & imported



# ---------------------------------------------------------------------- connect --starttls


def test_a_starttls_conversation_is_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                       ca_file: str) -> None:
    """``connect --starttls smtp``: the dialogue, the upgrade, then the user's lines over
    TLS (the tests' SMTP peer echoes them until QUIT), and the JSON events."""
    from tests.integration.test_cli_starttls import smtp_server

    for extra in ((), ("--json",), ("-v",)):
        with serve(smtp_server(server_ssl_context)) as server:
            runs = both("connect", server.address, "--starttls", "smtp", "--ca-file",
                        ca_file, *ALLOW, *extra, stdin=b"hello\r\nQUIT\r\n")
        assert runs[0].returncode == 0, runs[0].stderr
        if extra == ("--json",):  # (connect's events go to stderr, its product to stdout)
            events = [json.loads(line)["event"] for line in runs[0].stderr.splitlines()]
            assert events == [json.loads(line)["event"]
                              for line in runs[1].stderr.splitlines()]
            assert "starttls" in events and "tls" in events
        else:
            assert_same(*runs)
        assert runs[0].stdout == b"echo hello\r\necho QUIT\r\n"


@pytest.mark.parametrize(("variant", "said"), [
    ({"offer": False}, b"does not offer STARTTLS"),
    ({"refuse": True}, b"refused STARTTLS: 454"),
    ({"inject": True}, b"response injection"),
    ({"hang_up_after_tls": True}, b"closed the connection"),
])
def test_a_starttls_refusal_is_the_same_error_both_ways(
        server_ssl_context: ssl.SSLContext, ca_file: str, variant: dict[str, bool],
        said: bytes) -> None:
    from tests.integration.test_cli_starttls import smtp_server

    with serve(smtp_server(server_ssl_context, **variant)) as server:
        runs = both("connect", server.address, "--starttls", "smtp", "--ca-file", ca_file,
                    *ALLOW, stdin=b"")
    assert runs[0].returncode == 8 and said in runs[0].stderr, runs[0].stderr
    assert runs[0].stdout == b""
    assert_same(*runs)


def test_a_starttls_connect_starts_no_event_loop(server_ssl_context: ssl.SSLContext,
                                                 ca_file: str) -> None:
    from tests.integration.test_cli_starttls import smtp_server

    with serve(smtp_server(server_ssl_context)) as server:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tcpcli", "connect",
                               server.address, "--starttls", "smtp", "--ca-file", ca_file,
                               *ALLOW], input=b"QUIT\r\n", capture_output=True,
                              env=environment(), timeout=30)
    assert proc.returncode == 0 and proc.stdout == b"echo QUIT\r\n", proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "tcpcli.core.blockingstarttls" in imported
    assert not {"asyncio", "anyio", "tcpcli.core.socket", "tcpcli.core.starttls"} & imported
