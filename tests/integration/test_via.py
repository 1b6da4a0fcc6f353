"""``--via HOST:PORT``: a tunnel's local entry point dialed, the logical target in charge.

Real forwarders on loopback (socat, and haproxy in TCP mode) stand in for ``cloudflared
access tcp``, ``ssh -L`` and ``kubectl port-forward``; behind them a TLS peer whose
certificate names only the logical host. DNS goes to the project's own loopback server
(``--resolver``), never to the system's: the logical names must not leave the machine.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.cli import run_cli
from tests.support.dns_server import NXDOMAIN, DnsServer, serve_dns
from tests.support.peers import echo, serve

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_accepting(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"the forwarder on {port} did not start")


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    """db.internal exists only behind the tunnel (NXDOMAIN here); public.test resolves."""
    with serve_dns({"db.internal": NXDOMAIN, "public.test": [("A", "192.0.2.10")]}) as server:
        yield server


@pytest.fixture
def tls_peer(tls_ca: trustme.CA) -> Iterator[int]:
    """A TLS echo service whose certificate names db.internal and nothing else."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("db.internal").configure_cert(context)

    def handler(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as secure:
                while data := secure.recv(65536):
                    secure.sendall(data)
        except (ssl.SSLError, OSError):
            pass

    with serve(handler) as server:
        yield server.port


def forwarding(port: int, argv: list[str]) -> Iterator[int]:
    """Run the forwarder ``argv`` until the test is done; yield its port once it accepts."""
    process = subprocess.Popen(argv, stderr=subprocess.PIPE)
    try:
        wait_accepting(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def socat_forwarder(to_port: int) -> Iterator[int]:
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed (.ci/run installs it)")
    port = free_port()
    yield from forwarding(port, [socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                                 f"TCP:127.0.0.1:{to_port}"])


def haproxy_forwarder(to_port: int, tmp_path: Path) -> Iterator[int]:
    haproxy = shutil.which("haproxy", path="/usr/sbin:/usr/bin")
    if haproxy is None:
        pytest.skip("haproxy is not installed (.ci/run installs it)")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""\
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
listen tunnel
    bind 127.0.0.1:{port}
    server target 127.0.0.1:{to_port}
""")
    yield from forwarding(port, [haproxy, "-f", str(config), "-db"])


@pytest.fixture(params=["socat", "haproxy"])
def entry(request: pytest.FixtureRequest, tls_peer: int, tmp_path: Path) -> Iterator[int]:
    """A real forwarder on loopback in front of the TLS peer: the tunnel's entry point."""
    if request.param == "socat":
        yield from socat_forwarder(tls_peer)
    else:
        yield from haproxy_forwarder(tls_peer, tmp_path)


def test_the_logical_target_drives_sni_verification_and_reports(
        entry: int, dns: DnsServer, ca_file: str, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = run_cli("connect", "db.internal:5432", "--via", f"127.0.0.1:{entry}", "--tls",
                   "--ca-file", ca_file, "--resolver", dns.address, "--events", str(events),
                   stdin=b"through the tunnel\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"through the tunnel\n"
    # Verified against db.internal (the certificate names nothing else), the entry point
    # dialed without --allow although the default policy refuses loopback.
    assert b"db.internal does not resolve here" in proc.stderr
    assert b"judged it by its name alone" in proc.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    connected = next(e for e in lines if e["event"] == "connected")
    assert connected["target"] == "db.internal:5432"
    assert connected["via"] == f"127.0.0.1:{entry}"
    assert connected["peer"] == f"127.0.0.1:{entry}"
    report = next(e for e in lines if e["event"] == "tls_report")
    assert report["verification"]["verified"] is True
    assert report["sni"] == "db.internal"


def test_a_wrong_logical_name_fails_verification(entry: int, dns: DnsServer,
                                                 ca_file: str) -> None:
    dns.zone["other.internal"] = NXDOMAIN
    proc = run_cli("connect", "other.internal:5432", "--via", f"127.0.0.1:{entry}", "--tls",
                   "--ca-file", ca_file, "--resolver", dns.address, stdin=b"x")
    assert proc.returncode == 7, proc.stderr
    assert b"other.internal" in proc.stderr and b"verif" in proc.stderr


def test_a_denied_logical_target_never_dials_the_entry_point(dns: DnsServer) -> None:
    knocks: list[int] = []

    def count(conn: socket.socket) -> None:
        knocks.append(1)

    with serve(count) as forwarder:
        proc = run_cli("connect", "db.internal:5432", "--via", forwarder.address,
                       "--deny", "db.internal", "--resolver", dns.address, stdin=b"x")
        time.sleep(0.2)
    assert proc.returncode == 3, proc.stderr
    assert b"db.internal" in proc.stderr and b"--deny" in proc.stderr
    assert knocks == []


def test_a_resolving_target_is_judged_by_its_addresses(dns: DnsServer) -> None:
    # public.test resolves here to 192.0.2.10: a --deny of that address refuses it even
    # through the tunnel, as a direct dial would be refused.
    with serve(echo) as forwarder:
        proc = run_cli("connect", "public.test:80", "--via", forwarder.address,
                       "--deny", "192.0.2.10", "--resolver", dns.address, stdin=b"x")
    assert proc.returncode == 3, proc.stderr
    assert b"192.0.2.10" in proc.stderr


def test_port_25_stays_refused_through_a_tunnel(dns: DnsServer) -> None:
    with serve(echo) as forwarder:
        proc = run_cli("connect", "mail.internal:25", "--via", forwarder.address,
                       "--resolver", dns.address, stdin=b"x")
    assert proc.returncode == 3 and b"port 25" in proc.stderr


def test_starttls_through_the_entry_point_detects_by_the_logical_port(
        server_ssl_context: ssl.SSLContext, ca_file: str, dns: DnsServer) -> None:
    from tests.integration.test_cli_starttls import smtp_server

    dns.zone["mail.internal"] = NXDOMAIN
    with serve(smtp_server(server_ssl_context)) as server:
        proc = run_cli("starttls", "mail.internal:587", "--via", server.address,
                       "--ca-file", ca_file, "--sni", "localhost", "--resolver", dns.address,
                       "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    report = next(e for e in events if e["event"] == "starttls_report")
    assert report["protocol"] == "smtp"


@pytest.mark.parametrize(("args", "message"), [
    (["--via", "127.0.0.1"], b"is not HOST:PORT"),
    (["--via", "127.0.0.1:1", "--proxy", "socks5://127.0.0.1:1"], b"exclude each other"),
])
def test_bad_entry_points_are_usage_errors(args: list[str], message: bytes) -> None:
    proc = run_cli("connect", "db.internal:5432", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr or b"entry point" in proc.stderr


def test_a_named_target_carries_its_entry_point(entry: int, dns: DnsServer, ca_file: str,
                                                tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[targets.db]\naddress = "db.internal:5432"\n'
                      f'via = "127.0.0.1:{entry}"\ntls = true\nca_file = "{ca_file}"\n')
    proc = run_cli("connect", "@db", "--config", str(config), "--resolver", dns.address,
                   stdin=b"named\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"named\n"
    # probe goes through the entry point too (its port is the target's).
    proc = run_cli("probe", "@db", "--config", str(config), "--resolver", dns.address)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith(f"db.internal 5432 open address=127.0.0.1:{entry} ")
    check = run_cli("config", "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    # A command that cannot honour how a target is reached refuses it rather than dialing
    # db.internal directly: probe writes no PROXY header.
    config.write_text(config.read_text() + 'send_proxy = "v2"\n')
    proc = run_cli("probe", "@db", "--config", str(config), "--resolver", dns.address)
    assert proc.returncode == 2
    assert b"target db is reached with send_proxy, which probe cannot do yet" in proc.stderr


def test_bench_measures_through_the_entry_point(entry: int, dns: DnsServer, ca_file: str,
                                                tmp_path: Path) -> None:
    # Every sample dials the entry point and verifies the certificate as db.internal.
    events = tmp_path / "events.jsonl"
    proc = run_cli("bench", "db.internal:5432", "--via", f"127.0.0.1:{entry}", "--tls",
                   "--ca-file", ca_file, "--resolver", dns.address, "-n", "12", "-c", "2",
                   "--events", str(events))
    assert proc.returncode == 0, proc.stderr
    summary = next(json.loads(line) for line in events.read_text().splitlines()
                   if json.loads(line)["event"] == "bench_summary")
    assert summary["samples"] == 12 and summary["errors"] == {}
    assert summary["peer"] == f"127.0.0.1:{entry}"
    assert summary["distributions"]["tls"]["count"] == 12
