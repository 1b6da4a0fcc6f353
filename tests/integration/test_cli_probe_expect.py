"""probe's share of the check language and of the kernel facts: ``--expect`` over the
scan's counts, the open ports' banners and connect times; ``open``/``closed`` as before;
TCP_INFO of each open port with ``-v`` and in ``--json``."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from tests.support.cli import run_cli
from tests.support.peers import serve

ALLOW = ("--allow", "127.0.0.1")
GREETING = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"


def ssh_like(conn: socket.socket) -> None:
    conn.sendall(GREETING)
    conn.recv(1024)


def closed_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


def test_checks_over_counts_banners_and_connect_times() -> None:
    shut = closed_port()
    with serve(ssh_like) as server:
        proc = run_cli("probe", "127.0.0.1", "-p", f"{server.port},{shut}", *ALLOW, "--banner",
                       "--expect", "banner~^SSH-2\\.0-OpenSSH_9", "--expect", "ports.open=1",
                       "--expect", "ports.closed>=1", "--expect", "connect.ms<2s",
                       "--expect", "open")
    assert proc.returncode == 9, proc.stderr
    lines = [line for line in proc.stderr.decode().splitlines() if " check " in line]
    assert [line.split(": ")[2].split(" ")[0] for line in lines] == [
        "ok", "ok", "ok", "ok", "FAILED"]
    assert lines[-1] == "tcpcli: check open: FAILED (no)"  # one of the two is closed


def test_a_banner_check_holds_when_any_open_port_matches() -> None:
    def other(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.test ESMTP Postfix\r\n")
        conn.recv(1024)

    with serve(ssh_like) as ssh, serve(other) as smtp:
        proc = run_cli("probe", "127.0.0.1", "-p", f"{smtp.port},{ssh.port}", *ALLOW,
                       "--banner", "--json", "--expect", "banner~OpenSSH",
                       "--expect", "banner~dropbear")
    assert proc.returncode == 9
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    checks = [(e["check"], e["passed"]) for e in events if e["event"] == "check"]
    assert checks == [("banner~OpenSSH", True), ("banner~dropbear", False)]


def test_open_and_closed_keep_their_meaning() -> None:
    with serve(ssh_like) as server:
        assert run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW, "--expect",
                       "open").returncode == 0
        assert run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW, "--expect",
                       "closed").returncode == 9
    assert run_cli("probe", "127.0.0.1", "-p", str(closed_port()), *ALLOW, "--expect",
                   "closed").returncode == 0


def test_a_bad_check_is_a_usage_error() -> None:
    proc = run_cli("probe", "127.0.0.1", "-p", "1", *ALLOW, "--expect", "loss<1%")
    assert proc.returncode == 2
    assert b"probe does not measure loss" in proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO")
def test_open_ports_carry_the_kernels_facts() -> None:
    with serve(ssh_like) as server:
        as_json = run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW, "--json")
        verbose = run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW, "-v")
        plain = run_cli("probe", "127.0.0.1", "-p", str(server.port), *ALLOW)
    row = next(json.loads(line) for line in as_json.stdout.decode().splitlines()
               if json.loads(line)["event"] == "probe_result")
    assert row["tcp"]["state"] == "established" and row["tcp"]["rtt_ms"] > 0
    assert row["tcp"]["mss"] > 0 and row["tcp"]["retransmits"] == 0
    assert b" kernel_rtt_ms=" in verbose.stdout and b" kernel_mss=" in verbose.stdout
    assert b"kernel_" not in plain.stdout  # read only when asked for
