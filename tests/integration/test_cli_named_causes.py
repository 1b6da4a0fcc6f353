"""Failures named by their cause, and a waterfall that adds up, as a user meets them: the
installed CLI as a subprocess against loopback peers.

- TLS spoken to a plaintext port names what the server said instead of OpenSSL's
  WRONG_VERSION_NUMBER; probe names a TLS port found by --banner.
- A server that requires a client certificate we did not give says so (exit 8), on TLS 1.3
  (alert 116 at the first read) and TLS 1.2 (a handshake_failure after CertificateRequest).
- ``--resolver SERVER`` asks that server, not the hosts file, and the waterfall and the
  ``resolve`` event say who answered.
- ``-v``'s waterfall accounts for the whole run: its rows add up to its total.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import run_cli
from tests.support.dns_server import serve_dns
from tests.support.peers import Handler, LoopbackServer, recv_all, serve

if TYPE_CHECKING:
    import trustme

SSH_GREETING = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


def ssh_like(conn: socket.socket) -> None:
    """Speaks first, in plaintext, then drops a client that answers with garbage."""
    conn.sendall(SSH_GREETING)
    conn.recv(4096)
    conn.sendall(b"Invalid SSH identification string.\r\n")


def http_like(conn: socket.socket) -> None:
    """Waits for a request; anything that is not one gets a 400, in plaintext."""
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def events(stderr: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]


def error_event(stderr: bytes) -> dict[str, object]:
    return next(record for record in events(stderr) if record["event"] == "error")


# -- TLS to a plaintext port ----------------------------------------------------------------


@pytest.mark.parametrize(("handler", "shown"), [
    (ssh_like, "'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3'"),
    (http_like, "'HTTP/1.1 400 Bad Request'"),
], ids=["server-speaks-first", "client-speaks-first"])
def test_tls_to_a_plaintext_port_names_what_the_server_said(handler: Handler,
                                                            shown: str) -> None:
    with serve(handler) as server:
        plain = run_cli("connect", server.address, "--tls", "--insecure",
                        "--allow", "127.0.0.1")
        as_json = run_cli("connect", server.address, "--tls", "--insecure",
                          "--allow", "127.0.0.1", "--json")
    assert plain.returncode == 8, plain.stderr
    line = plain.stderr.decode().strip()
    assert f"the server answered in plaintext: {shown}" in line
    assert "WRONG_VERSION_NUMBER" not in line and line.count("\n") == 0
    error = error_event(as_json.stderr)
    assert as_json.returncode == 8
    assert (error["kind"], error["reason"], error["exit_code"]) == ("tls", "plaintext-server", 8)


def test_a_long_binary_greeting_is_escaped_and_bounded() -> None:
    def binary(conn: socket.socket) -> None:
        conn.sendall(b"\x4a\x00\x00\x00\x0a8.0.36\x00" + b"A" * 500)
        time.sleep(0.5)

    with serve(binary) as server:
        proc = run_cli("connect", server.address, "--tls", "--insecure",
                       "--allow", "127.0.0.1")
    assert proc.returncode == 8, proc.stderr
    quoted = re.search(r"plaintext: '([^']*)'", proc.stderr.decode())
    assert quoted is not None, proc.stderr
    assert quoted.group(1).startswith("J\\x00\\x00\\x00\\x0a8.0.36\\x00AAA")
    assert quoted.group(1).endswith("…") and len(quoted.group(1)) == 61


def test_probe_banner_names_a_tls_port_and_tls_detect_a_plaintext_one(
        server_ssl_context: ssl.SSLContext) -> None:
    def hold(conn: socket.socket) -> None:
        time.sleep(1)

    with serve(hold, ssl_context=server_ssl_context) as tls, serve(ssh_like) as ssh:
        banner = run_cli("probe", "127.0.0.1", "--ports", f"{tls.port},{ssh.port}",
                         "--banner", "--allow", "127.0.0.1")
        detect = run_cli("probe", "127.0.0.1", "--ports", str(ssh.port), "--tls-detect",
                         "--json", "--allow", "127.0.0.1")
    assert banner.returncode == 0, banner.stderr
    rows = {line.split()[1]: line for line in banner.stdout.decode().splitlines()}
    assert "identified=tls" in rows[str(tls.port)]
    assert "this port speaks TLS: add --tls-detect" in rows[str(tls.port)]
    assert "--tls-detect" not in rows[str(ssh.port)]
    records = [json.loads(line) for line in detect.stdout.decode().splitlines()
               + detect.stderr.decode().splitlines() if line.startswith("{")]
    row = next(r for r in records if r["event"] == "probe_result")
    assert row["tls"] == {"detected": False, "error": "not TLS: the server answered in "
                                                      "plaintext: 'SSH-2.0-OpenSSH_9.2p1 "
                                                      "Debian-2+deb12u3'"}


# -- a client certificate the server requires -------------------------------------------------


def _requiring(tls_ca: trustme.CA, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    tls_ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = context.maximum_version = version
    return context


@pytest.fixture(scope="module")
def client_identity(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client") / "client.pem"
    tls_ca.issue_cert("client@example.test").private_key_and_cert_chain_pem.write_to_path(
        str(path))
    return path


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["tls1.3", "tls1.2"])
@pytest.mark.parametrize("send", [False, True], ids=["silent", "sending"])
def test_a_missing_client_certificate_is_named(tls_ca: trustme.CA, ca_file: str,
                                               client_identity: Path,
                                               version: ssl.TLSVersion, send: bool) -> None:
    def greet(conn: socket.socket) -> None:
        conn.sendall(b"hello, certified client\n")
        recv_all(conn)

    args = ["--tls", "--ca-file", ca_file, "--allow", "127.0.0.1"]
    stdin = b"GET / HTTP/1.0\r\n\r\n" if send else b""
    with serve(greet, ssl_context=_requiring(tls_ca, version)) as server:
        without = run_cli("connect", server.address, *args, stdin=stdin)
        as_json = run_cli("connect", server.address, *args, "--json", stdin=stdin)
        given = run_cli("connect", server.address, *args, "--cert", str(client_identity),
                        "--key", str(client_identity), stdin=stdin)
    assert without.returncode == 8, without.stderr
    assert "the server requires a client certificate and none was given (give one with " \
           "--cert FILE --key FILE)" in without.stderr.decode()
    error = error_event(as_json.stderr)
    assert (error["kind"], error["reason"], error["exit_code"]) == \
        ("tls", "client-certificate-required", 8)
    assert given.returncode == 0, given.stderr
    assert given.stdout == b"hello, certified client\n"


# -- --resolver asks the server it names --------------------------------------------------


def _in_hosts_file(name: str, address: str) -> bool:
    try:
        text = Path("/etc/hosts").read_text()
    except OSError:
        return False
    return any(line.split("#")[0].split()[:1] == [address] and name in line.split("#")[0].split()
               for line in text.splitlines())


@pytest.fixture
def loopback_two() -> Iterator[LoopbackServer]:
    """A peer on 127.0.0.2, where only the DNS server's answer for localhost leads."""
    try:
        server = LoopbackServer(lambda conn: conn.sendall(b"reached 127.0.0.2\n"),
                                host="127.0.0.2")
    except OSError:
        pytest.skip("127.0.0.2 is not usable here")
    with server:
        yield server


def test_resolver_asks_the_named_server_not_the_hosts_file(
        loopback_two: LoopbackServer) -> None:
    if not _in_hosts_file("localhost", "127.0.0.1"):
        pytest.skip("the hosts file does not map localhost to 127.0.0.1")
    target = f"localhost:{loopback_two.port}"
    with serve_dns({"localhost": [("A", "127.0.0.2")]}) as dns:
        asked = run_cli("connect", target, "--resolver", dns.address, "-4", "-v", "--json",
                        "--allow", "localhost", "--allow", "127.0.0.2", "--no-stdin")
        queries = len(dns.queries("localhost"))
    system = run_cli("connect", target, "-4", "--json", "--allow", "localhost",
                     "--no-stdin")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == b"reached 127.0.0.2\n"
    assert queries >= 1
    resolve = next(r for r in events(asked.stderr) if r["event"] == "resolve")
    assert resolve["server"] == dns.address
    # Without --resolver the system's view holds: the hosts file answers (127.0.0.1, where
    # nothing listens on that port) and says so.
    assert system.returncode == 5, system.stderr
    resolve = next(r for r in events(system.stderr) if r["event"] == "resolve")
    assert resolve["server"] == "hosts"


def test_the_waterfall_resolve_line_names_the_server(loopback_two: LoopbackServer) -> None:
    with serve_dns({"peer.test": [("A", "127.0.0.2")]}) as dns:
        proc = run_cli("connect", f"peer.test:{loopback_two.port}", "--resolver", dns.address,
                       "-4", "-v", "--allow", "peer.test", "--allow", "127.0.0.2",
                       "--no-stdin")
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stderr.decode().splitlines()
                if line.startswith("tcpcli: resolve "))
    assert f"peer.test @{dns.address}" in line


# -- the waterfall adds up ---------------------------------------------------------------------

ROW = re.compile(r"^tcpcli: (?P<label>\S+(?: \S+)?) +.*?(?P<start>-?\d+\.\d{3}) ms "
                 r"\+ *(?P<duration>\d+\.\d{3}) ms(?P<rest>.*)$")


def waterfall(stderr: str) -> list[tuple[str, float, float, float]]:
    """(label, start, duration, counted) for every waterfall line of a plain run."""
    rows = []
    for line in stderr.splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        duration = float(match["duration"])
        parallel = re.search(r"in parallel: (\d+\.\d{3}) ms counted", match["rest"])
        rows.append((match["label"], float(match["start"]), duration,
                     float(parallel.group(1)) if parallel else duration))
    return rows


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_the_waterfall_accounts_for_the_whole_run(tls: bool, server_ssl_context: ssl.SSLContext,
                                                  ca_file: str) -> None:
    def greet_late(conn: socket.socket) -> None:
        time.sleep(0.2)  # the first byte takes a while: it must be a row of its own
        conn.sendall(b"hello\n")
        recv_all(conn)

    tls_args = ["--tls", "--ca-file", ca_file] if tls else []
    with serve(greet_late, ssl_context=server_ssl_context if tls else None) as server:
        started = time.monotonic()
        proc = run_cli("connect", server.address, *tls_args, "-v", "--allow", "127.0.0.1")
        wall_ms = (time.monotonic() - started) * 1000
        as_json = run_cli("connect", server.address, *tls_args, "--json",
                          "--allow", "127.0.0.1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello\n"
    rows = waterfall(proc.stderr.decode())
    labels = [label for label, *_ in rows]
    phases = ["tcp connect", *(["tls setup", "tls handshake"] if tls else []), "first byte",
              "close"]
    assert labels[:2] == ["cli start-up", "setup"] and labels[-2:] == ["other", "total"]
    # Between the phases, only named stretches: "transfer" after the first byte, and an
    # "other" for any untimed stretch of a millisecond or more.
    assert [label for label in labels[2:-2] if label not in ("transfer", "other")] == phases
    *parts, (_, total_start, total, _) = rows
    assert abs(sum(counted for *_, counted in parts) - total) <= 0.0005 * len(parts) + 1e-9
    first_byte = next(duration for label, _, duration, _ in rows if label == "first byte")
    assert first_byte >= 190
    # The start-up came before the clock. The kernel dates a process to its clock tick
    # (10 ms; core.timing.process_started_ns), so the total may exceed the wall by one.
    assert total_start < 0 and total <= wall_ms + 10
    # In time order, without overlaps (stretches under a millisecond go to the last row).
    for (_, start, duration, _), (_, next_start, _, _) in pairwise(parts[:-1]):
        assert next_start >= start + duration - 0.002
    assert as_json.returncode == 0, as_json.stderr
    timing = next(r for r in events(as_json.stderr) if r["event"] == "timing")
    json_rows = timing["rows"]
    assert isinstance(json_rows, list)
    assert [row["phase"] for row in json_rows if not row["remainder"]] == \
        ["connect", *(["tls-setup", "tls"] if tls else []), "first-byte", "close"]
    assert abs(sum(row["counted_ms"] for row in json_rows) - timing["total_ms"]) <= 0.01
