"""STARTTLS through the CLI against a loopback SMTP-style server: upgrade, refusal,
absence and response injection, each with its exit code and one clear line."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable

import pytest

from tests.support.cli import run_cli
from tests.support.peers import serve

ALLOW = ("--allow", "127.0.0.1")


def smtp_server(context: ssl.SSLContext, *, offer: bool = True, refuse: bool = False,
                inject: bool = False, hang_up_after_tls: bool = False,
                ) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 mail.test ESMTP Postfix\r\n")
        assert reader.readline().startswith(b"EHLO ")
        conn.sendall(b"250-mail.test\r\n250-PIPELINING\r\n" + (b"250-STARTTLS\r\n" if offer
                     else b"") + b"250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        if not offer:
            reader.readline()
            return
        assert reader.readline() == b"STARTTLS\r\n"
        if refuse:
            conn.sendall(b"454 4.7.0 TLS not available due to local problem\r\n")
            return
        conn.sendall(b"220 2.0.0 Ready to start TLS\r\n" + (b"250 injected\r\n" if inject
                                                             else b""))
        tls = context.wrap_socket(conn, server_side=True)
        tls_reader = tls.makefile("rb")
        assert tls_reader.readline().startswith(b"EHLO ")
        if hang_up_after_tls:
            tls.unwrap()
            return
        tls.sendall(b"250-mail.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        while line := tls_reader.readline():  # then an echo of the user's lines
            tls.sendall(b"echo " + line)
            if line.strip() == b"QUIT":
                break
        tls.unwrap()
    return handler


def test_starttls_report(server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        proc = run_cli("starttls", server.address, "--protocol", "smtp", "--ca-file", ca_file,
                       *ALLOW, "--expect", "verified", "--expect", "tls>=1.2")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    for expected in ("protocol: smtp", "greeting: mail.test ESMTP Postfix",
                     "starttls offered: yes", "plaintext login before tls: yes",
                     "upgrade reply: 220 2.0.0 Ready to start TLS", "starttls",
                     "tls verify: ok", "check verified: ok (yes)"):
        assert expected in err, (expected, err)


def test_auto_detects_smtp_by_greeting(server_ssl_context: ssl.SSLContext,
                                       ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        proc = run_cli("starttls", server.address, "--ca-file", ca_file, *ALLOW, "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    starttls = next(e for e in events if e["event"] == "starttls_report")
    assert starttls["protocol"] == "smtp" and "greeting" in starttls["how"]
    assert "STARTTLS" in " ".join(starttls["capabilities_before"])
    assert any(e["event"] == "tls_report" and e["verification"]["verified"] for e in events)


def test_failed_expectation_exits_9(server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW,
                       "--expect", "days-left>=1000000")
    assert proc.returncode == 9
    assert "check days-left>=1000000: FAILED" in proc.stderr.decode()


def test_checks_in_the_shared_language(server_ssl_context: ssl.SSLContext,
                                       ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW,
                       "--json", "--expect", "starttls", "--expect", "tls>=1.2",
                       "--expect", "chain.days>=1", "--expect", "connect.ms<5s",
                       "--expect", "tls.cipher~'AES|CHACHA'", "--expect", "!chain.complete")
    assert proc.returncode == 9, proc.stderr
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    checks = [e for e in events if e["event"] == "check"]
    assert [(c["check"], c["expectation"], c["passed"]) for c in checks] == [
        ("starttls", "starttls", True),
        ("tls>=1.2", "tls.version>=TLSv1.2", True),
        ("chain.days>=1", "chain.days>=1", True),
        ("connect.ms<5s", "connect.ms<5000ms", True),
        ("tls.cipher~'AES|CHACHA'", "tls.cipher~AES|CHACHA", True),
        # the test CA's chain as sent is complete (the leaf, issued by the trusted root)
        ("!chain.complete", "!chain.complete", False),
    ]
    assert checks[-1]["found"] == "yes"


@pytest.mark.parametrize(("check", "message"), [
    ("days-left>=soon", "cert.days takes a number of days"),
    ("loss<=1%", "starttls does not measure loss"),
    ("banner~(", "banner~("),
])
def test_a_bad_check_is_a_usage_error(check: str, message: str) -> None:
    proc = run_cli("starttls", "127.0.0.1:25", *ALLOW, "--expect", check)
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert any(message in line for line in lines), lines
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize(("variant", "text"), [
    ({"offer": False}, "STARTTLS"),
    ({"refuse": True}, "454"),
    ({"inject": True}, "injection"),
])
def test_refusal_absence_and_injection_exit_8(server_ssl_context: ssl.SSLContext,
                                              ca_file: str, variant: dict[str, bool],
                                              text: str) -> None:
    with serve(smtp_server(server_ssl_context, **variant)) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW)
    err = proc.stderr.decode()
    assert proc.returncode == 8, err
    assert text in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("json_events", [False, True], ids=["text", "json"])
def test_a_failure_after_the_upgrade_keeps_the_tls_report(
        server_ssl_context: ssl.SSLContext, ca_file: str, json_events: bool) -> None:
    # TLS is up and verified; then the server hangs up instead of answering the EHLO
    # over TLS. The report stands, and the failure is the error that ends the run.
    with serve(smtp_server(server_ssl_context, hang_up_after_tls=True)) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW,
                       *(["--json"] if json_events else []))
    err = proc.stderr.decode()
    assert proc.returncode == 8, err
    if json_events:
        events = {e["event"]: e for e in map(json.loads, proc.stdout.splitlines())}
        assert events["tls_report"]["verification"]["verified"] is True
        assert "closed the connection" in events["starttls_report"]["after_tls_error"]
        assert events["error"]["kind"] == "protocol" and events["error"]["exit_code"] == 8
    else:
        lines = err.strip().splitlines()
        assert "tcpcli: tls verify: ok" in lines
        assert "capabilities before tls: PIPELINING, STARTTLS, AUTH PLAIN LOGIN, 8BITMIME" in err
        assert lines[-1] == ("tcpcli: smtp: the server closed the connection while we waited "
                             "in step tls_hello")


def test_connect_starttls_lets_the_user_talk_over_tls(server_ssl_context: ssl.SSLContext,
                                                      ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        proc = run_cli("connect", server.address, "--starttls", "smtp", "--ca-file", ca_file,
                       *ALLOW, stdin=b"NOOP\r\nQUIT\r\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"echo NOOP\r\necho QUIT\r\n"


def test_a_server_that_never_answers_times_out() -> None:
    def mute(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.test ESMTP\r\n")
        time.sleep(5)  # never answers EHLO

    with serve(mute) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", *ALLOW, "--timeout", "0.5")
    assert proc.returncode == 6, proc.stderr
    assert b"no reply" in proc.stderr


def go_ahead_then_silence(conn: socket.socket) -> None:
    """An SMTP server that gives the STARTTLS go-ahead, then never answers the ClientHello."""
    reader = conn.makefile("rb")
    conn.sendall(b"220 mail.test ESMTP\r\n")
    reader.readline()
    conn.sendall(b"250-mail.test\r\n250 STARTTLS\r\n")
    reader.readline()
    conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
    time.sleep(3)


def test_a_server_silent_after_its_go_ahead_times_out_in_the_handshake() -> None:
    with serve(go_ahead_then_silence) as server:
        # Ended by the reply timeout or the connect timeout (both 0.5 s here); either names
        # the handshake. The reply timeout alone is tested on the core below.
        started = time.monotonic()
        proc = run_cli("starttls", server.address, "-P", "smtp", *ALLOW, "--timeout", "0.5")
    assert proc.returncode == 6, proc.stderr
    assert proc.stderr.decode().splitlines() == [
        f"tcpcli: timed out after 0.5 s in the TLS handshake with {server.address} "
        "(allow longer with --timeout SECONDS)"]
    assert time.monotonic() - started < 5


@pytest.mark.anyio
async def test_run_starttls_bounds_the_handshake_by_the_reply_timeout(
        anyio_backend: str) -> None:
    import tcpcli
    from tcpcli.core.errors import ConnectTimeoutError
    from tcpcli.core.starttls import run_starttls
    from tcpcli.protocols import get_dialogue

    policy = tcpcli.Policy.parse("workers", allow=["127.0.0.1"])
    with serve(go_ahead_then_silence) as server:
        async with tcpcli.Invocation(policy=policy):  # no connect timeout at all
            sock = tcpcli.connect(server.address, secure_transport="starttls")
            started = time.monotonic()
            with pytest.raises(ConnectTimeoutError,
                               match="timed out after 0.3 s in the TLS handshake with"):
                await run_starttls(sock, get_dialogue("smtp"), reply_timeout=0.3)
            assert time.monotonic() - started < 2
