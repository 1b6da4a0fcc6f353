"""``tcpcli starttls`` runs without an event loop when it can (``tcpcli.core.blockingstarttls``,
the same dialogue coroutine over a blocking connection) and on anyio otherwise. Each
conversation here runs both ways against a loopback peer and must give the same stdout,
stderr (times aside), JSON events (times aside) and exit code."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest

from tests.integration.test_cli_starttls import go_ahead_then_silence, smtp_server
from tests.support.peers import LoopbackServer, serve
from tests.support.two_paths import PATHS, Run, assert_same, both, run_path

pytestmark = pytest.mark.timeout(90)

ALLOW = ("--allow", "127.0.0.0/8")
#: What differs from run to run whatever the path: when things happened.
TIMES = ("t_ms", "start_ms", "duration_ms", "elapsed_ms", "ts")
MEASURED = re.compile(r"^-?\d+(?:\.\d+)? m?s$")


def events_of(run: Run) -> list[dict[str, Any]]:
    """The JSON events on stdout (``--json``), their times left out (a check on a time
    says what it found: masked), and the size of a first read: how much of a reply one
    read gets depends on how the server's writes met the wire (a real server's reply came
    as 156 bytes in one run and 83 in the next)."""
    events = []
    for line in run.stdout.splitlines():
        event = json.loads(line)
        if event.get("event") == "first_byte":
            event.pop("bytes", None)
        events.append({key: MEASURED.sub("T", value) if isinstance(value, str) else value
                       for key, value in event.items() if key not in TIMES})
    return events


def assert_same_events(no_loop: Run, event_loop: Run) -> list[dict[str, Any]]:
    """The same exit code and stderr, and the same events, times aside."""
    assert no_loop.returncode == event_loop.returncode, (no_loop.stderr, event_loop.stderr)
    events = events_of(no_loop)
    assert events == events_of(event_loop)
    assert no_loop.stderr == event_loop.stderr
    return events


# ------------------------------------------------------------------------------ peers


def smtp_slowloris(conn: socket.socket) -> None:
    """Greets, then trickles its answer to EHLO a byte at a time and never finishes it."""
    reader = conn.makefile("rb")
    conn.sendall(b"220 mail.test ESMTP\r\n")
    reader.readline()
    with suppress(OSError):
        for byte in b"250-" + b"s" * 100:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)


def smtp_hang_up_after_ehlo(conn: socket.socket) -> None:
    reader = conn.makefile("rb")
    conn.sendall(b"220 mail.test ESMTP\r\n")
    reader.readline()


def close_at_once(conn: socket.socket) -> None:
    conn.close()


def imap_server(context: ssl.SSLContext) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"* OK imap.test ready\r\n")
        tag = reader.readline().split()[0]  # CAPABILITY
        conn.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + b" OK\r\n")
        tag = reader.readline().split()[0]  # STARTTLS
        conn.sendall(tag + b" OK Begin TLS negotiation now\r\n")
        tls = context.wrap_socket(conn, server_side=True)
        tag = tls.makefile("rb").readline().split()[0]  # CAPABILITY over TLS
        tls.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        with suppress(OSError, ssl.SSLError):
            tls.recv(100)  # until the client's close_notify
    return handler


def postgres_server(context: ssl.SSLContext) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        request = b""
        while len(request) < 8:
            request += conn.recv(8 - len(request))
        assert request == b"\x00\x00\x00\x08\x04\xd2\x16\x2f", request  # SSLRequest
        conn.sendall(b"S")
        tls = context.wrap_socket(conn, server_side=True)
        with suppress(OSError, ssl.SSLError):
            tls.recv(100)
    return handler


def behind_accept_proxy(handler: Callable[[socket.socket], None],
                        headers: list[bytes]) -> Callable[[socket.socket], None]:
    """``handler`` behind a PROXY protocol v1 header, which it keeps in ``headers``."""
    def read_header_first(conn: socket.socket) -> None:
        line = b""
        while not line.endswith(b"\r\n"):
            line += conn.recv(1)
        headers.append(line)
        handler(conn)
    return read_header_first


@contextmanager
def on_a_known_port(handler: Callable[[socket.socket], None], port: int,
                    **kwargs: Any) -> Iterator[LoopbackServer]:
    """A peer on ``port`` (what ``--protocol auto`` goes by), on the first loopback address
    that has it free."""
    for last in range(2, 40):
        try:
            server = LoopbackServer(handler, host=f"127.0.0.{last}", port=port, **kwargs)
        except OSError:
            continue
        with server:
            yield server
        return
    pytest.skip(f"no loopback address has port {port} free")


# ------------------------------------------------------------------------------ tests


def test_an_smtp_upgrade_and_its_report_are_the_same_both_ways(
        server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        runs = both("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW)
    assert runs[0].returncode == 0, runs[0].stderr
    said = runs[0].stderr.decode()
    for expected in ("greeting: mail.test ESMTP Postfix", "starttls offered: yes",
                     "tls verify: ok", "tls handshake", "close"):
        assert expected in said, said
    assert_same(*runs)


def test_the_json_events_are_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        runs = both("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW,
                    "--json")
    events = assert_same_events(*runs)
    assert runs[0].returncode == 0 and runs[0].stderr == b"", runs[0].stderr
    assert [event["event"] for event in events] == [
        "attempt", "first_byte", "starttls", "tls_setup", "tls", "first_byte",
        "socket_close", "starttls_report", "tls_report"]
    (report,) = [event for event in events if event["event"] == "starttls_report"]
    assert report["steps"] == ["EHLO", "STARTTLS", "EHLO"]
    assert report["capabilities_after"] == ["AUTH PLAIN LOGIN", "8BITMIME"]


@pytest.mark.parametrize("json_events", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(("variant", "said"), [
    ({"offer": False}, "does not offer STARTTLS"),
    ({"refuse": True}, "refused STARTTLS: 454"),
    ({"inject": True}, "response injection"),
    ({"hang_up_after_tls": True}, "closed the connection while we waited in step tls_hello"),
], ids=["not-offered", "refused", "injection", "hang-up-after-tls"])
def test_refusals_and_injection_exit_8_the_same_both_ways(
        server_ssl_context: ssl.SSLContext, ca_file: str, variant: dict[str, bool],
        said: str, json_events: bool) -> None:
    with serve(smtp_server(server_ssl_context, **variant)) as server:
        runs = both("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW,
                    *(["--json"] if json_events else []))
    assert runs[0].returncode == 8, runs[0].stderr
    if json_events:
        events = assert_same_events(*runs)
        (error,) = [event for event in events if event["event"] == "error"]
        assert said in error["message"], error
    else:
        assert said in runs[0].stderr.decode().splitlines()[-1], runs[0].stderr
        assert_same(*runs)


@pytest.mark.parametrize("json_events", [False, True], ids=["text", "json"])
def test_a_slowloris_reply_times_out_the_same_both_ways(json_events: bool) -> None:
    with serve(smtp_slowloris) as server:
        started = time.monotonic()
        runs = both("starttls", server.address, "-P", "smtp", *ALLOW, "--timeout", "0.5",
                    *(["--json"] if json_events else []))
    assert time.monotonic() - started < 8  # 0.5 s each, not the 5 s the peer trickles
    assert runs[0].returncode == 6, runs[0].stderr
    if json_events:
        assert_same_events(*runs)
    else:
        assert runs[0].stderr.decode().splitlines() == [
            f"tcpcli: smtp: reply still incomplete from {server.address} after 0.5 s "
            "(at step hello) (allow longer with --timeout SECONDS)"]
        assert_same(*runs)


@pytest.mark.parametrize("json_events", [False, True], ids=["text", "json"])
def test_a_server_closing_mid_dialogue_is_told_the_same_both_ways(json_events: bool) -> None:
    with serve(smtp_hang_up_after_ehlo) as server:
        runs = both("starttls", server.address, "-P", "smtp", *ALLOW,
                    *(["--json"] if json_events else []))
    assert runs[0].returncode == 8, runs[0].stderr
    if json_events:
        events = assert_same_events(*runs)
        # The peer's EOF closed our side at once (Workers' allowHalfOpen: false), inside
        # the dialogue's phase, which then failed.
        names = [event["event"] for event in events]
        assert names[-3:] == ["socket_close", "starttls", "error"], names
    else:
        assert runs[0].stderr.decode().splitlines() == [
            "tcpcli: smtp: the server closed the connection while we waited in step hello"]
        assert_same(*runs)


def test_a_handshake_that_never_ends_times_out_the_same_both_ways() -> None:
    with serve(go_ahead_then_silence) as server:
        runs = both("starttls", server.address, "-P", "smtp", *ALLOW, "--timeout", "0.5")
    assert runs[0].returncode == 6, runs[0].stderr
    assert b"timed out after 0.5 s in the TLS handshake with" in runs[0].stderr
    assert_same(*runs)


@pytest.mark.parametrize("json_events", [False, True], ids=["text", "json"])
def test_a_certificate_that_fails_verification_is_the_same_error_both_ways(
        server_ssl_context: ssl.SSLContext, json_events: bool) -> None:
    with serve(smtp_server(server_ssl_context)) as server:  # certifi does not know its CA
        runs = both("starttls", server.address, "-P", "smtp", *ALLOW,
                    *(["--json"] if json_events else []))
    assert runs[0].returncode == 7, runs[0].stderr
    if json_events:
        events = assert_same_events(*runs)
        # As the Socket: a connection whose handshake failed never opened, so no close.
        assert "socket_close" not in [event["event"] for event in events]
    else:
        assert b"failed verification" in runs[0].stderr
        assert_same(*runs)


def test_insecure_reports_the_verdict_and_goes_on_both_ways(
        server_ssl_context: ssl.SSLContext) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        runs = both("starttls", server.address, "-P", "smtp", "-k", *ALLOW)
    assert runs[0].returncode == 0, runs[0].stderr
    assert b"tls verify: FAILED" in runs[0].stderr or b"not verified" in runs[0].stderr.lower()
    assert_same(*runs)


def test_checks_pass_and_fail_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                 ca_file: str) -> None:
    checks = ("--expect", "starttls", "--expect", "verified", "--expect", "tls>=1.2",
              "--expect", "connect.ms<5s", "--expect", "tls.ms<5s", "--expect", "!chain.complete")
    for extra in ([], ["--json"]):
        with serve(smtp_server(server_ssl_context)) as server:
            runs = both("starttls", server.address, "-P", "smtp", "--ca-file", ca_file,
                        *ALLOW, *checks, *extra)
        assert runs[0].returncode == 9, runs[0].stderr  # (!chain.complete fails)
        if extra:
            events = assert_same_events(*runs)
            passed = [event["passed"] for event in events if event["event"] == "check"]
            assert passed == [True, True, True, True, True, False]
        else:
            assert_same(*runs)


def test_auto_detection_by_greeting_is_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                          ca_file: str) -> None:
    for peer, protocol in ((smtp_server(server_ssl_context), "smtp"),
                           (imap_server(server_ssl_context), "imap")):
        with serve(peer) as server:
            runs = both("starttls", server.address, "--ca-file", ca_file, *ALLOW, "--json")
        events = assert_same_events(*runs)
        assert runs[0].returncode == 0, runs[0].stderr
        (report,) = [event for event in events if event["event"] == "starttls_report"]
        assert report["protocol"] == protocol
        assert report["how"] == f"detected {protocol} by the greeting"


def test_auto_detection_by_port_waits_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                         ca_file: str) -> None:
    # PostgreSQL's server waits for the client: the greeting wait passes in silence and the
    # port decides.
    with on_a_known_port(postgres_server(server_ssl_context), 5432) as server:
        started = time.monotonic()
        runs = both("starttls", server.address, "--ca-file", ca_file, "--sni", "localhost",
                    *ALLOW)
    assert time.monotonic() - started >= 3  # the greeting wait, 1.5 s each way
    assert runs[0].returncode == 0, runs[0].stderr
    assert b"protocol: postgres (detected postgres by port 5432; the server waits for the " \
        b"client)" in runs[0].stderr
    assert_same(*runs)


def test_a_server_closing_at_once_is_told_the_same_both_ways() -> None:
    # Under --protocol auto the greeting wait meets the EOF, which closes our side too; the
    # dialogue the port names then cannot send (postgres) or read (smtp): either way the
    # dialogue says the server closed, and at which step.
    for port in (5432, 587):
        with on_a_known_port(close_at_once, port) as server:
            runs = both("starttls", server.address, *ALLOW)
            json_runs = both("starttls", server.address, *ALLOW, "--json")
        assert runs[0].returncode == 8, runs[0].stderr
        assert b"closed the connection" in runs[0].stderr, runs[0].stderr
        assert_same(*runs)
        assert_same_events(*json_runs)
    with serve(close_at_once) as server:
        runs = both("starttls", server.address, "-P", "imap", *ALLOW)
    assert runs[0].returncode == 8, runs[0].stderr
    assert_same(*runs)


def test_imap_and_postgres_upgrade_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                      ca_file: str) -> None:
    for peer, protocol in ((imap_server(server_ssl_context), "imap"),
                           (postgres_server(server_ssl_context), "postgres")):
        with serve(peer) as server:
            runs = both("starttls", server.address, "-P", protocol, "--ca-file", ca_file,
                        *ALLOW)
            json_runs = both("starttls", server.address, "-P", protocol, "--ca-file",
                             ca_file, *ALLOW, "--json")
        assert runs[0].returncode == 0, runs[0].stderr
        assert f"protocol: {protocol} (--protocol {protocol})" in runs[0].stderr.decode()
        assert_same(*runs)
        assert_same_events(*json_runs)



def test_a_proxy_header_goes_first_the_same_both_ways(server_ssl_context: ssl.SSLContext,
                                                      ca_file: str) -> None:
    headers: list[bytes] = []
    with serve(behind_accept_proxy(smtp_server(server_ssl_context), headers)) as server:
        runs = both("starttls", server.address, "-P", "smtp", "--ca-file", ca_file, *ALLOW,
                    "--send-proxy", "v1", "--proxy-source", "192.0.2.1:4000", "--json")
    events = assert_same_events(*runs)
    assert runs[0].returncode == 0, runs[0].stderr
    assert [event["event"] for event in events][:3] == ["attempt", "proxy_header",
                                                         "first_byte"]
    assert headers[0] == headers[1]
    assert headers[0].startswith(b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 ")


def test_a_refused_connection_is_the_same_error_both_ways() -> None:
    with socket.socket() as unused:  # a port with nothing listening: the kernel refuses
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
        runs = both("starttls", address, "-P", "smtp", *ALLOW)
        json_runs = both("starttls", address, "-P", "smtp", *ALLOW, "--json")
    assert runs[0].returncode == 5, runs[0].stderr
    assert runs[0].stderr.decode().startswith(f"tcpcli: connection to {address} refused")
    assert_same(*runs)
    assert_same_events(*json_runs)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux's TCP_QUICKACK")
@pytest.mark.parametrize("path", PATHS)
def test_a_reply_the_server_holds_for_our_ack_is_not_held(
        server_ssl_context: ssl.SSLContext, ca_file: str, path: str) -> None:
    """The peer writes TLS 1.3's session tickets, then its reply to our EHLO, without
    TCP_NODELAY (as many servers do): Nagle's algorithm holds the reply until the tickets
    are ACKed, and a delayed ACK comes 40 ms or more later. The dialogue ACKs promptly
    while it waits for a reply (``rawsocket.ack_promptly``), so the re-query after TLS
    takes milliseconds, not the ACK timer (the median of three runs, each of which took
    over 44 ms before)."""
    spans = []
    with serve(smtp_server(server_ssl_context)) as server:
        for _ in range(3):
            run = run_path(path, "starttls", server.address, "-P", "smtp", "--ca-file",
                           ca_file, *ALLOW, "--json")
            assert run.returncode == 0, run.stderr
            events = [json.loads(line) for line in run.stdout.splitlines()]
            tls = next(event for event in events if event["event"] == "tls")
            close = next(event for event in events if event["event"] == "socket_close")
            spans.append(close["start_ms"] - tls["start_ms"] - tls["duration_ms"])
    assert sorted(spans)[1] < 30, spans
