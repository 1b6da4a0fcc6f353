"""``probe --via`` / ``--via-map``: a private host's ports, each through its own tunnel
entry point (real socat forwarders on loopback). The logical name exists only behind the
tunnels: the tests' own DNS server answers NXDOMAIN for it, the system's resolver is never
asked. A refused target is never dialed, its entry points included."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.test_via import socat_forwarder
from tests.support.cli import run_cli
from tests.support.dns_server import NXDOMAIN, DnsServer, serve_dns
from tests.support.peers import serve

pytestmark = pytest.mark.timeout(60)


def ssh_like(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    conn.recv(1024)


def silent(conn: socket.socket) -> None:
    conn.recv(1024)


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with serve_dns({"db.internal": NXDOMAIN}) as server:
        yield server


@contextmanager
def tunnel(to_port: int) -> Iterator[int]:
    forwarder = socat_forwarder(to_port)
    port = next(forwarder)
    try:
        yield port
    finally:
        forwarder.close()


def closed_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


def test_each_port_through_its_entry_point(dns: DnsServer) -> None:
    nothing = closed_port()
    with serve(ssh_like) as ssh, serve(silent) as pg, tunnel(ssh.port) as ssh_entry, \
            tunnel(pg.port) as pg_entry:
        proc = run_cli("probe", "db.internal", "--resolver", dns.address, "--banner",
                       "--banner-wait", "0.3", "--json", "--via-map",
                       f"22=127.0.0.1:{ssh_entry},5432=127.0.0.1:{pg_entry}",
                       "--via-map", f"6379=127.0.0.1:{nothing}")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    rows = {e["port"]: e for e in events if e["event"] == "probe_result"}
    assert set(rows) == {22, 5432, 6379}
    assert (rows[22]["state"], rows[22]["via"]) == ("open", f"127.0.0.1:{ssh_entry}")
    assert rows[22]["banner"].startswith("SSH-2.0-OpenSSH_9.2p1")
    assert rows[22]["reason"] == "the entry point accepted; the far side spoke"
    assert (rows[5432]["state"], rows[5432]["reason"]) == ("open", "the entry point accepted")
    assert (rows[6379]["state"], rows[6379]["via"]) == ("closed", f"127.0.0.1:{nothing}")
    assert all(row["host"] == "db.internal" and row["workers_allowed"] for row in rows.values())
    summary = next(e for e in events if e["event"] == "summary")
    assert (summary["open"], summary["closed"], summary["probes"]) == (2, 1, 3)
    # The name was asked of our DNS server only (judged by name: it exists behind the tunnel).
    assert dns.queries("db.internal")


def test_via_for_one_port_and_the_checks(dns: DnsServer) -> None:
    with serve(ssh_like) as ssh, tunnel(ssh.port) as entry:
        proc = run_cli("probe", "db.internal", "-p", "22", "--via", f"127.0.0.1:{entry}",
                       "--resolver", dns.address, "--banner", "--expect", "open",
                       "--expect", "banner~OpenSSH")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("db.internal 22 open address=127.0.0.1:")
    assert f" via=127.0.0.1:{entry} " in proc.stdout.decode()


def test_a_refused_target_never_dials_its_entry_points() -> None:
    with serve(ssh_like) as entry:
        proc = run_cli("probe", "127.0.0.2", "-p", "22", "--via", entry.address)
        assert entry.connections == []
    assert proc.returncode == 3
    assert proc.stdout.decode().startswith("127.0.0.2 22 blocked ")
    assert b"rule loopback" in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "22,23", "--via", "127.0.0.1:1"], "--via reaches one port"),
    (["--via", "127.0.0.1:1"], "--via reaches one port"),
    (["-p", "22,23", "--via-map", "22=127.0.0.1:1"], "port 23 has no entry point"),
    (["--via-map", "22=127.0.0.1:1", "--via-map", "22=127.0.0.1:2"], "two entry points"),
    (["--via-map", "22"], "is not PORT=HOST:PORT"),
    (["--via-map", "22=127.0.0.1:1", "--tls-detect"], "--tls-detect does not go with"),
    (["--via-map", "22=nowhere"], "invalid entry point"),
])
def test_via_usage_errors(args: list[str], message: str) -> None:
    proc = run_cli("probe", "db.internal", *args)
    assert proc.returncode == 2, proc.stderr
    assert message.encode() in proc.stderr and b"Traceback" not in proc.stderr


def test_a_named_target_with_via(dns: DnsServer, tmp_path: Path) -> None:
    with serve(ssh_like) as ssh, tunnel(ssh.port) as entry:
        config = tmp_path / "tcpcli.toml"
        config.write_text(f'[targets.db]\naddress = "db.internal:22"\n'
                          f'via = "127.0.0.1:{entry}"\n', encoding="utf-8")
        probed = run_cli("probe", "@db", "--config", str(config), "--resolver", dns.address)
        pinged = run_cli("ping", "@db", "--config", str(config), "--resolver", dns.address,
                         "-c", "1")
    assert probed.returncode == 0, probed.stderr
    assert probed.stdout.decode().startswith("db.internal 22 open ")
    assert pinged.returncode == 0, pinged.stderr
    assert f"seq=1 127.0.0.1:{entry} open" in pinged.stdout.decode()
