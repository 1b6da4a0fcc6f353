"""``tcpcli ping`` as a user runs it: real loopback peers (plain, TLS, STARTTLS, silent,
refusing), a real DNS server whose answer flips between rounds, Ctrl-C on both backends,
and the exact line formats people grep for."""

from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.integration.test_cli_starttls import smtp_server
from tests.support.cli import run_cli, tcpcli_command
from tests.support.dns_server import NXDOMAIN, Series, serve_dns
from tests.support.peers import echo, filtered_port, serve

ALLOW = ("--allow", "127.0.0.1")
FAST = ("-i", "0.05")

ROUND = re.compile(r"^seq=(\d+) (\S+) (open|tls|starttls)( TLSv1\.[23])? time=(\d+\.\d{3}) ms")
SUMMARY = re.compile(r"^(\d+) sent, (\d+) ok, (\d+\.\d)% loss, time \d+ ms$")
TIMES = re.compile(r"^time min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms$")


@contextmanager
def listening(host: str, port: int) -> Iterator[socket.socket]:
    """A bare listener: the kernel completes handshakes without an accept()."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(8)
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


def events(stdout: bytes) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in stdout.decode().splitlines()]
    assert all(e["schema"] == "tcpcli/1" for e in parsed)
    return parsed


def test_rounds_and_summary_in_pings_own_format() -> None:
    with serve(echo) as server:
        proc = run_cli("ping", server.address, "-c", "3", *FAST, *ALLOW)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == (f"PING {server.address}: tcp handshake every 50 ms, timeout 2 s, "
                        "3 rounds")
    rounds = [ROUND.match(line) for line in lines[1:4]]
    assert all(rounds), lines
    assert [int(m[1]) for m in rounds if m] == [1, 2, 3]
    assert {m[2] for m in rounds if m} == {server.address}
    assert lines[4] == f"--- {server.address} ping statistics ---"
    summary = SUMMARY.match(lines[5])
    assert summary and summary.groups()[:3] == ("3", "3", "0.0"), lines[5]
    times = TIMES.match(lines[6])
    assert times, lines[6]
    low, avg, high, _ = (float(t) for t in times.groups())
    measured = sorted(float(m[5]) for m in rounds if m)
    assert low == measured[0] and high == measured[-1] and low <= avg <= high
    assert lines[7].startswith("time p50/p90/p99 = ")
    assert len(server.connections) == 3  # one handshake per round, each closed


def test_json_lines_on_stdout() -> None:
    with serve(echo) as server:
        proc = run_cli("ping", server.address, "-c", "2", *FAST, *ALLOW, "--json", "-4")
    assert proc.returncode == 0, proc.stderr
    stream = events(proc.stdout)
    assert [e["event"] for e in stream] == ["ping_start", "ping", "ping", "ping_summary"]
    first = stream[1]
    assert first["ok"] is True and first["state"] == "open" and first["seq"] == 1
    assert first["peer"] == server.address and first["time_ms"] > 0
    assert first["connect_ms"] == first["time_ms"]
    summary = stream[-1]
    assert (summary["sent"], summary["ok"], summary["loss_pct"]) == (2, 2, 0.0)
    assert summary["min_ms"] <= summary["avg_ms"] <= summary["max_ms"]
    assert set(summary) >= {"mdev_ms", "p50_ms", "p90_ms", "p99_ms", "elapsed_ms"}


def test_refused_rounds_count_as_loss_and_set_the_exit_code() -> None:
    with serve(echo) as server:
        address = server.address
    proc = run_cli("ping", address, "-c", "2", *FAST, *ALLOW)
    assert proc.returncode == 5, proc.stderr
    out = proc.stdout.decode()
    assert f"seq=1 {address} refused: connection to {address} refused" in out
    assert "2 sent, 0 ok, 100.0% loss" in out and "failures: refused 2" in out
    assert "min/avg/max" not in out  # no success, no timings


def test_max_loss_gates_the_exit_code() -> None:
    with serve(echo) as server:
        address = server.address
    proc = run_cli("ping", address, "-c", "2", *FAST, *ALLOW, "--max-loss", "5")
    assert proc.returncode == 9
    assert "check loss<=5%: FAILED (100 %)" in proc.stdout.decode()
    with serve(echo) as server:
        proc = run_cli("ping", server.address, "-c", "2", *FAST, *ALLOW, "--max-loss", "0",
                       "--max-rtt", "2000")
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout.decode()
    assert "check loss<=0%: ok (0 %)" in out
    assert re.search(r"check max<=2000ms: ok \([\d.]+ ms\)", out), out


def test_max_rtt_fails_on_a_slow_handshake(server_ssl_context: ssl.SSLContext,
                                           ca_file: str) -> None:
    def slow_tls(conn: socket.socket) -> None:
        time.sleep(0.2)  # before the ServerHello: the handshake takes 200 ms at least
        tls = server_ssl_context.wrap_socket(conn, server_side=True)
        tls.recv(1)

    with serve(slow_tls) as server:
        proc = run_cli("ping", server.address, "-c", "1", *ALLOW, "--tls", "--ca-file",
                       ca_file, "--max-rtt", "100")
    assert proc.returncode == 9, proc.stderr
    found = re.search(r"check max<=100ms: FAILED \(([\d.]+) ms\)",
                      proc.stdout.decode())
    assert found and float(found[1]) > 100, proc.stdout


def test_silent_port_times_out_per_round() -> None:
    with filtered_port() as port:
        start = time.monotonic()
        proc = run_cli("ping", f"127.0.0.1:{port}", "-c", "2", "-W", "0.3", *FAST, *ALLOW)
        elapsed = time.monotonic() - start
    assert proc.returncode == 6, proc.stderr
    out = proc.stdout.decode()
    assert f"seq=1 127.0.0.1:{port} timeout:" in out and "failures: timeout 2" in out
    assert elapsed < 10


def test_refused_by_policy_before_any_round() -> None:
    with serve(echo) as server:
        proc = run_cli("ping", server.address, "-c", "3", *FAST)
        assert server.connections == []
    assert proc.returncode == 3
    assert "seq=" not in proc.stdout.decode()
    err = proc.stderr.decode()
    assert "blocked by policy" in err and "--allow 127.0.0.1" in err


def test_tls_rounds(server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    def handshake_then_wait(conn: socket.socket) -> None:
        conn.recv(1)

    with serve(handshake_then_wait, ssl_context=server_ssl_context) as server:
        proc = run_cli("ping", server.address, "-c", "2", *FAST, *ALLOW, "--tls",
                       "--ca-file", ca_file, "-v")
        unverified = run_cli("ping", server.address, "-c", "1", *ALLOW, "--tls")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert "tcp + tls handshake every 50 ms" in lines[0]
    first = ROUND.match(lines[1])
    assert first and first[3] == "tls" and first[4] in (" TLSv1.3", " TLSv1.2"), lines[1]
    assert re.search(r"\(connect [\d.]+, tls [\d.]+\).* cert-days=\d+", lines[1]), lines[1]
    assert unverified.returncode == 7
    assert "tls-verify: TLS certificate of" in unverified.stdout.decode()


def test_starttls_rounds(server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    with serve(smtp_server(server_ssl_context)) as server:
        proc = run_cli("ping", server.address, "-c", "2", *FAST, *ALLOW, "--starttls", "smtp",
                       "--ca-file", ca_file, "--json")
    assert proc.returncode == 0, proc.stderr
    rounds = [e for e in events(proc.stdout) if e["event"] == "ping"]
    assert [r["state"] for r in rounds] == ["starttls", "starttls"]
    assert all(r["tls_version"] and r["verified"] for r in rounds)
    assert all(r["time_ms"] > r["connect_ms"] for r in rounds)


def test_follows_a_dns_flip_and_judges_every_answer() -> None:
    """The name moves from 127.0.0.1 to 127.0.0.2, then to 127.0.0.3, which the policy
    refuses: each change is shown as it happens, and the refused address is never dialed."""
    with serve(echo) as first, listening("127.0.0.2", first.port) as moved, \
            listening("127.0.0.3", first.port) as forbidden:
        port = first.port
        series = Series([("A", "127.0.0.1")], [("A", "127.0.0.1")], [("A", "127.0.0.2")],
                        [("A", "127.0.0.3")])
        with serve_dns({"db.test": series}) as dns:
            proc = run_cli("ping", f"db.test:{port}", "-c", "4", *FAST, "-4",
                           "--resolver", dns.address, "--allow", "127.0.0.1",
                           "--allow", "127.0.0.2", "--json")
            queries = dns.queries("db.test", "A")
        moved.accept()[0].close()  # the kernel completed round 3's handshake here
        with pytest.raises(BlockingIOError):
            forbidden.accept()  # and never one on the refused address
    stream = events(proc.stdout)
    rounds = [e for e in stream if e["event"] == "ping"]
    assert [(r["seq"], r["state"]) for r in rounds] == [
        (1, "open"), (2, "open"), (3, "open"), (4, "blocked")]
    assert [r["peer"] for r in rounds[:3]] == [f"127.0.0.{n}:{port}" for n in (1, 1, 2)]
    assert all(r["resolved"] for r in rounds[:3])
    assert "127.0.0.3" in rounds[3]["error"]
    changes = [(e["before"], e["after"]) for e in stream if e["event"] == "address_change"]
    assert changes == [(["127.0.0.1"], ["127.0.0.2"]), (["127.0.0.2"], ["127.0.0.3"])]
    assert len(queries) == 4
    assert proc.returncode == 0  # three rounds succeeded; the summary says what failed
    summary = stream[-1]
    assert summary["failures"] == {"blocked": 1} and summary["address_changes"] == 2


def test_resolve_every_reuses_the_answer() -> None:
    with serve(echo) as server, serve_dns({"db.test": [("A", "127.0.0.1")]}) as dns:
        proc = run_cli("ping", f"db.test:{server.port}", "-c", "4", *FAST, "-4",
                       "--resolver", dns.address, *ALLOW, "--resolve-every", "2", "-v")
        queries = dns.queries("db.test", "A")
    assert proc.returncode == 0, proc.stderr
    assert len(queries) == 2
    out = proc.stdout.decode()
    assert out.count("(resolved)") == 2 and out.count("(reused answer)") == 2


def test_via_entry_point() -> None:
    # db.internal exists only behind the tunnel: our own DNS server says so (the system's
    # resolver is never asked about a test name).
    with serve(echo) as server, serve_dns({"db.internal": NXDOMAIN}) as dns:
        proc = run_cli("ping", "db.internal:5432", "--via", server.address, "-c", "1",
                       "--resolver", dns.address)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert f"PING db.internal:5432 via {server.address}" in out
    assert f"seq=1 {server.address} open" in out


def test_deadline_ends_an_endless_run() -> None:
    with serve(echo) as server:
        proc = run_cli("ping", server.address, "-i", "0.1", "-w", "0.45", *ALLOW)
    assert proc.returncode == 0, proc.stderr
    summary = next(SUMMARY.match(line) for line in proc.stdout.decode().splitlines()
                   if SUMMARY.match(line))
    assert summary and 4 <= int(summary[1]) <= 5


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_prints_the_summary_and_exits_by_outcome(backend: str) -> None:
    import os

    with serve(echo) as server:
        proc = subprocess.Popen(
            [*tcpcli_command(), "ping", server.address, "-i", "0.05", *ALLOW],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "TCPCLI_BACKEND": backend})
        assert proc.stdout is not None
        seen = [proc.stdout.readline() for _ in range(3)]  # the header and two rounds
        assert seen[2].startswith(b"seq=2 "), seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"ping statistics ---" in out and b"0.0% loss" in out
    assert b"Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (("-W", "1", "--timeout", "2"), "-W and --timeout"),
    (("--starttls", "smtp", "--tls"), "leave out --tls"),
    (("--max-loss", "101"), "--max-loss"),
    (("-c", "0"), "--count"),
])
def test_usage_errors(args: tuple[str, ...], message: str) -> None:
    proc = run_cli("ping", "127.0.0.1:1", *ALLOW, *args)
    assert proc.returncode == 2
    assert message in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_expect_checks_the_whole_run(server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    def handshake_then_wait(conn: socket.socket) -> None:
        conn.recv(1)

    with serve(handshake_then_wait, ssl_context=server_ssl_context) as server:
        proc = run_cli("ping", server.address, "-c", "3", *FAST, *ALLOW, "--tls", "--ca-file",
                       ca_file, "--json", "--max-loss", "0", "--expect", "ok=3",
                       "--expect", "p99<10s", "--expect", "connect.ms<5s",
                       "--expect", "verified", "--expect", "cert.days>=1",
                       "--expect", "mdev<0")
    assert proc.returncode == 9, proc.stderr
    checks = [(e["check"], e["passed"]) for e in events(proc.stdout) if e["event"] == "check"]
    assert checks == [("loss<=0%", True), ("ok=3", True), ("p99<10s", True),
                      ("connect.ms<5s", True), ("verified", True), ("cert.days>=1", True),
                      ("mdev<0", False)]
