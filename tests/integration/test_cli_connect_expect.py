"""``connect --expect``: checks on what a connection showed, against real loopback peers,
on both of connect's paths (without an event loop and with one), in text and JSON."""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from tests.integration.test_connect_paths import PATHS, assert_same, both, run_path
from tests.support.cli import run_cli
from tests.support.peers import serve

ALLOW = ("--allow", "127.0.0.1")
GREETING = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"


def ssh_like(conn: socket.socket) -> None:
    conn.sendall(GREETING)
    conn.recv(1024)


@pytest.mark.parametrize("path", PATHS)
def test_banner_and_timing_checks_pass(path: str) -> None:
    with serve(ssh_like) as server:
        proc = run_path(path, "connect", server.address, *ALLOW,
                        "--expect", "banner~^SSH-2\\.0-OpenSSH_9", "--expect", "connect.ms<2s",
                        "--expect", "total.ms<30s", "--expect", "rtt.ms<1s")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == GREETING  # the product is untouched
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == ("tcpcli: check banner~^SSH-2\\.0-OpenSSH_9: ok "
                        "('SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n')")
    assert lines[1].startswith("tcpcli: check connect.ms<2s: ok (") and lines[1].endswith(" ms)")
    assert [line.split(":")[1] for line in lines[2:]] == [" check total.ms<30s",
                                                         " check rtt.ms<1s"]


def test_both_paths_agree() -> None:
    with serve(ssh_like) as server:
        runs = both("connect", server.address, *ALLOW, "--expect", "banner~dropbear",
                    "--expect", "cert.days>=1")
    assert_same(*runs)
    assert runs[0].returncode == 9


@pytest.mark.parametrize("path", PATHS)
def test_a_failed_check_exits_9_and_quiet_still_names_it(path: str) -> None:
    with serve(ssh_like) as server:
        proc = run_path(path, "connect", server.address, *ALLOW, "-q",
                        "--expect", "banner~^SSH", "--expect", "banner~dropbear")
    assert proc.returncode == 9
    assert proc.stdout == GREETING
    assert proc.stderr.decode().splitlines() == [
        "tcpcli: check banner~dropbear: FAILED ('SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n')"]


def test_tls_facts(server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    def greet(conn: socket.socket) -> None:
        conn.sendall(b"hello\n")

    with serve(greet, ssl_context=server_ssl_context) as server:
        proc = run_cli("connect", server.address, *ALLOW, "--tls", "--ca-file", ca_file,
                       "--json", "--expect", "verified", "--expect", "tls.version>=1.2",
                       "--expect", "cert.days>=1", "--expect", "chain.complete",
                       "--expect", "tls.ms<10s", "--expect", "alpn=h2")
    assert proc.returncode == 9, proc.stderr
    assert proc.stdout == b"hello\n"
    stream = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    checks = {e["check"]: (e["passed"], e["found"]) for e in stream if e["event"] == "check"}
    assert checks["verified"] == (True, "yes")
    assert checks["tls.version>=1.2"][0] is True
    assert checks["cert.days>=1"][0] is True and checks["cert.days>=1"][1].endswith(" days")
    assert checks["chain.complete"] == (True, "yes")
    assert checks["tls.ms<10s"][0] is True
    assert checks["alpn=h2"] == (False, "not measured")  # no ALPN was negotiated


@pytest.mark.parametrize(("check", "message"), [
    ("loss<=1%", "connect does not measure loss (only bench, ping)"),
    ("cert.days>=soon", "cert.days takes a number of days"),
    ("banner~[", "banner~["),
    ("connect.ms<", "connect.ms<"),
])
def test_a_bad_check_is_a_usage_error_before_dialing(check: str, message: str) -> None:
    with serve(ssh_like) as server:
        proc = run_cli("connect", server.address, *ALLOW, "--expect", check)
        assert server.connections == []
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert len(err.splitlines()) >= 1 and message in err, err
    assert "Traceback" not in err
