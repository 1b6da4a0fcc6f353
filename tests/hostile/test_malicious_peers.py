"""Malicious and broken peers on loopback, met by the real CLI.

Each peer is a small server written for the test. Every run must end within a bounded
wait, keep its peak resident memory under ``RSS_LIMIT_MB`` (the 100 MB banner alone is
more than that), exit with the documented code and say what happened in one clear line.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.hostile.harness import RSS_LIMIT_MB, Run, assert_clean_exit, run_cli
from tests.support.peers import reset, serve

pytestmark = pytest.mark.timeout(90)

ALLOW = ("--allow", "127.0.0.1")
BANNER_SIZE = 100 * 1024 * 1024
RESET_AFTER = 100_000


def bounded(run: Run, seconds: float) -> None:
    assert not run.killed, f"still running after the harness deadline: {run.stderr}"
    assert run.elapsed < seconds, run.elapsed
    assert 0 < run.peak_rss_mb < RSS_LIMIT_MB, run.peak_rss_mb
    assert_clean_exit(run)


# ----------------------------------------------------------------------------- the peers


def endless_line(conn: socket.socket) -> None:
    """One line that never ends: no newline, ever."""
    chunk = b"a" * 65536
    while True:
        conn.sendall(chunk)


def huge_banner(conn: socket.socket) -> None:
    """A 100 MB SMTP-looking greeting line, then the close."""
    chunk = b"b" * (1024 * 1024)
    conn.sendall(b"220 ")
    for _ in range(BANNER_SIZE // len(chunk)):
        conn.sendall(chunk)
    conn.sendall(b"\r\n")


def slowloris(conn: socket.socket) -> None:
    """A greeting that trickles in at one byte every 100 ms and never finishes."""
    for byte in b"220 " + b"s" * 10_000:
        conn.sendall(bytes([byte]))
        time.sleep(0.1)


def tls_garbage(conn: socket.socket) -> None:
    """Answer the ClientHello with random bytes."""
    conn.recv(65536)
    conn.sendall(os.urandom(4096))
    time.sleep(2)


def tls_stall(conn: socket.socket) -> None:
    """Start a ServerHello record (a 5-byte header announcing 100 bytes), send 10, stall."""
    conn.recv(65536)
    conn.sendall(b"\x16\x03\x03\x00\x64" + b"\x02" + b"\x00" * 9)
    time.sleep(10)


def reset_after_n_bytes(conn: socket.socket) -> None:
    conn.sendall(b"r" * RESET_AFTER)
    time.sleep(0.2)
    reset(conn)


def never_reads(conn: socket.socket) -> None:
    time.sleep(15)


@pytest.fixture(scope="module")
def stdin_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """64 MiB to push at a peer that never reads (far more than the socket buffers)."""
    path = tmp_path_factory.mktemp("hostile") / "stdin.bin"
    path.write_bytes(os.urandom(64 * 1024 * 1024))
    return str(path)


@pytest.fixture
def no_close_notify(server_ssl_context: ssl.SSLContext) -> Iterator[int]:
    """A TLS server that answers, then drops TCP without close_notify."""
    def handler(conn: socket.socket) -> None:
        tls = server_ssl_context.wrap_socket(conn, server_side=True)
        try:
            tls.sendall(b"partial answer\n")
            time.sleep(0.2)
            tls.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown: TCP only, no close_notify
        finally:
            tls.close()

    with serve(handler) as server:
        yield server.port


# ----------------------------------------------------------------------------- the runs


def test_endless_line() -> None:
    with serve(endless_line) as server:
        streamed = run_cli("connect", server.address, *ALLOW, "--no-stdin", stdout="hash",
                           send_signal=(signal.SIGTERM, lambda p: p.stdout_bytes > 50_000_000))
        banner = run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW, "--banner",
                         "--banner-wait", "0.3", stdout="capture")
        starttls = run_cli("starttls", server.address, *ALLOW, "-P", "smtp", "--timeout", "2")
    # connect streams it (memory flat) until the user stops it.
    bounded(streamed, 15)
    assert streamed.returncode == 143 and streamed.stdout_bytes > 50_000_000
    # probe keeps the first 200 characters of a banner and moves on.
    bounded(banner, 5)
    assert banner.returncode == 0, banner.stderr
    assert "open" in banner.stdout.decode() and "a" * 200 in banner.stdout.decode()
    assert "a" * 201 not in banner.stdout.decode()
    # The SMTP dialogue refuses a line past its limit.
    bounded(starttls, 5)
    assert starttls.returncode == 8, starttls.stderr
    assert starttls.lines == ["tcpcli: smtp: a line is longer than 8192 bytes"]


def test_100_mb_banner() -> None:
    expected = hashlib.sha256(b"220 " + b"b" * BANNER_SIZE + b"\r\n").hexdigest()
    with serve(huge_banner) as server:
        streamed = run_cli("connect", server.address, *ALLOW, "--no-stdin", stdout="hash")
        banner = run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW, "--banner",
                         "--banner-wait", "0.3", stdout="capture")
        starttls = run_cli("starttls", server.address, *ALLOW, "-P", "smtp", "--timeout", "2")
    bounded(streamed, 20)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout_bytes == BANNER_SIZE + 6 and streamed.stdout_sha256 == expected
    bounded(banner, 5)
    assert banner.returncode == 0 and "identified=smtp" in banner.stdout.decode(), banner.stdout
    bounded(starttls, 5)
    assert starttls.returncode == 8, starttls.stderr
    assert "a line is longer than 8192 bytes" in starttls.stderr


def test_slowloris_connect_and_probe() -> None:
    with serve(slowloris) as server:
        # A trickle is activity: --idle-timeout must not fire; the user ends it.
        trickle = run_cli("connect", server.address, *ALLOW, "--no-stdin", "--idle-timeout",
                          "0.5", stdout="capture", send_signal=(signal.SIGINT, 1.5))
        banner = run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW, "--banner",
                         "--banner-wait", "0.3", stdout="capture")
    bounded(trickle, 5)
    assert trickle.returncode == 130, trickle.stderr
    assert trickle.stdout.startswith(b"220 s") and 8 <= len(trickle.stdout) <= 25
    bounded(banner, 3)
    assert banner.returncode == 0 and " open " in banner.stdout.decode(), banner.stderr


def test_slowloris_starttls_ends_within_its_timeout() -> None:
    with serve(slowloris) as server:
        run = run_cli("starttls", server.address, *ALLOW, "-P", "smtp", "--timeout", "1",
                      timeout=3.5)
    bounded(run, 4)
    assert run.returncode == 6, run.stderr
    assert "smtp: reply still incomplete from" in run.stderr


def test_tls_peers_that_break_the_handshake(ca_file: str) -> None:
    with serve(tls_garbage) as garbage, serve(tls_stall) as stall:
        garbled = run_cli("connect", garbage.address, *ALLOW, "--tls", "--ca-file", ca_file)
        stalled = run_cli("connect", stall.address, *ALLOW, "--tls", "--ca-file", ca_file,
                          "--timeout", "1")
        detect = run_cli("probe", "127.0.0.1", "-p", f"{garbage.port},{stall.port}", *ALLOW,
                         "--tls-detect", "--timeout", "0.5", "--banner-wait", "0.3",
                         "--json", stdout="capture")
    bounded(garbled, 5)
    assert garbled.returncode == 8, garbled.stderr
    assert garbled.lines[0].startswith(f"tcpcli: TLS handshake with {garbage.address} failed")
    bounded(stalled, 4)
    assert stalled.returncode == 6, stalled.stderr
    assert stalled.lines == ["tcpcli: timed out after 1 s in the TLS handshake with "
                             f"{stall.address} (allow longer with --timeout SECONDS)"]
    bounded(detect, 5)
    rows = [json.loads(line) for line in detect.stdout.splitlines()]
    tls = [row["tls"] for row in rows if row["event"] == "probe_result"]
    assert [facts["detected"] for facts in tls] == [False, False], tls


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_tls_close_without_close_notify_is_said(no_close_notify: int, ca_file: str,
                                                backend: str) -> None:
    run = run_cli("connect", f"127.0.0.1:{no_close_notify}", *ALLOW, "--tls", "--ca-file",
                  ca_file, "--no-stdin", stdout="capture", backend=backend)
    bounded(run, 5)
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"partial answer\n"
    assert run.lines == ["tcpcli: warning: the peer closed the TLS connection without "
                         "close_notify; what arrived may be truncated"]
    events = run_cli("connect", f"127.0.0.1:{no_close_notify}", *ALLOW, "--tls", "--ca-file",
                     ca_file, "--no-stdin", "--json", backend=backend)
    records = [json.loads(line) for line in events.lines]  # stderr stays pure JSON Lines
    assert records[-1]["event"] == "close" and records[-1]["truncated"] is True


def test_reset_after_n_bytes_keeps_every_byte_before_it() -> None:
    with serve(reset_after_n_bytes) as server:
        run = run_cli("connect", server.address, *ALLOW, "--no-stdin", stdout="capture")
    bounded(run, 5)
    assert run.returncode == 10, run.stderr
    assert run.stdout == b"r" * RESET_AFTER
    assert run.lines == [f"tcpcli: connection to {server.address} was reset "
                         "(Connection reset by peer)"]


def test_peer_that_never_reads(stdin_file: str) -> None:
    """Our writes block once the socket buffers fill: the idle timeout ends it, and the
    64 MiB waiting on stdin is not read into memory meanwhile."""
    with serve(never_reads) as server, open(stdin_file, "rb") as stdin:
        run = run_cli("connect", server.address, *ALLOW, "--idle-timeout", "1", stdin=stdin)
    bounded(run, 5)
    assert run.returncode == 6, run.stderr
    assert run.lines == ["tcpcli: no data for 1 s: idle timeout"]
