"""``tcpcli probe`` as a user runs it: loopback listeners with real greetings, one TLS."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.isolated_namespace import isolated_command, skip_without_namespace
from tests.support.peers import filtered_port as filtered_listener, serve

pytestmark = pytest.mark.timeout(60)


def run_probe(*args: str, stdin: bytes = b"",
              environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("tcpcli")
    command = [exe] if exe else [sys.executable, "-m", "tcpcli"]
    env = {**os.environ, "NO_COLOR": "1", **(environ or {})}
    return subprocess.run([*command, "probe", *args], input=stdin.decode(), capture_output=True,
                          text=True, timeout=60, env=env)


def greeter(greeting: bytes) -> object:
    def handler(conn: socket.socket) -> None:
        conn.sendall(greeting)
        conn.recv(1024)
    return handler


def answering(expected: bytes, answer: bytes) -> object:
    def handler(conn: socket.socket) -> None:
        if conn.recv(1024) == expected:
            conn.sendall(answer)
        conn.recv(1024)
    return handler


def silent(conn: socket.socket) -> None:
    conn.recv(1024)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def filtered_port() -> Iterator[int]:
    with filtered_listener() as port:
        yield port


def test_states_services_and_tls(server_ssl_context: ssl.SSLContext, closed_port: int,
                                 filtered_port: int) -> None:
    from tcpcli.protocols.banner import REDIS_PING, SSL_REQUEST

    with serve(greeter(b"SSH-2.0-OpenSSH_9.6\r\n")) as ssh, \
            serve(greeter(b"220 mail.test ESMTP Postfix\r\n")) as smtp, \
            serve(silent) as quiet, \
            serve(answering(REDIS_PING, b"+PONG\r\n")) as redis, \
            serve(answering(SSL_REQUEST, b"N")) as postgres, \
            serve(silent, ssl_context=server_ssl_context) as tls:
        ports = [ssh.port, smtp.port, quiet.port, tls.port, closed_port, filtered_port]
        proc = run_probe("127.0.0.1", "-p", ",".join(map(str, ports)), "--allow", "127.0.0.1",
                         "--banner", "--banner-wait", "0.3", "--tls-detect", "--timeout", "0.5",
                         "--json")
        redis_proc = run_probe(f"127.0.0.1:{redis.port}", f"127.0.0.1:{postgres.port}",
                               "--allow", "127.0.0.1", "--banner", "--banner-wait", "0.3",
                               "--json", "-p", "1")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(e["schema"] == "tcpcli/1" for e in events)
    rows = {e["port"]: e for e in events if e["event"] == "probe_result"}
    assert rows[ssh.port]["state"] == "open" and rows[ssh.port]["identified"] == "ssh"
    assert rows[smtp.port]["identified"] == "smtp"
    assert rows[quiet.port]["state"] == "open" and "identified" not in rows[quiet.port]
    assert rows[tls.port]["tls"]["detected"] is True
    assert rows[tls.port]["identified"] == "tls" and "banner" not in rows[tls.port]  # binary
    assert rows[ssh.port]["banner"].startswith("SSH-2.0-OpenSSH_9.6")
    assert rows[tls.port]["tls"]["version"].startswith("TLSv1")
    assert "not_after" in rows[tls.port]["tls"]
    assert rows[ssh.port]["tls"]["detected"] is False
    assert rows[closed_port]["state"] == "closed" and rows[closed_port]["reason"] == "refused"
    assert rows[filtered_port]["state"] == "filtered"
    for row in rows.values():
        assert row["workers_allowed"] is False and row["workers_rule"] == "loopback"
        assert (row.get("latency_ms", 0) > 0) == (row["state"] == "open")
    summary = events[-1]
    assert summary["event"] == "summary" and summary["open"] == 4 and summary["closed"] == 1
    # A completed scan answers what was asked: closed and filtered ports are results.
    assert summary["filtered"] == 1 and summary["exit_code"] == 0
    assert proc.returncode == 0, proc.stderr
    # Redis and PostgreSQL stay silent until asked; on unusual ports they are named by
    # what they answer, not by their number.
    assert redis_proc.returncode == 0, redis_proc.stderr
    found = {e["port"]: e for e in map(json.loads, redis_proc.stdout.splitlines())
             if e["event"] == "probe_result"}
    assert found[redis.port]["identified"] == "redis"
    assert found[postgres.port]["identified"] == "postgres"
    assert found[postgres.port]["service"]["facts"]["tls"] == "off"


def test_plain_and_csv_parse_back_and_exit_codes(closed_port: int) -> None:
    with serve(silent) as one, serve(silent) as two:
        both = f"{one.port},{two.port}"
        plain = run_probe("127.0.0.1", "-p", both, "--allow", "127.0.0.1")
        mixed = run_probe("127.0.0.1", "-p", f"{both},{closed_port}", "--policy", "open",
                          "--csv", "--expect", "open")
        expect_closed = run_probe("127.0.0.1", "-p", str(closed_port), "--allow", "127.0.0.1",
                                  "--expect", "closed")
        blocked = run_probe("127.0.0.1", "-p", both)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert sorted(int(line.split()[1]) for line in lines) == sorted([one.port, two.port])
    assert all(line.split()[0] == "127.0.0.1" and line.split()[2] == "open" for line in lines)
    assert "workers=blocked:loopback" in lines[0]
    assert "2 open" in plain.stderr

    assert mixed.returncode == 9
    rows = list(csv.DictReader(io.StringIO(mixed.stdout)))
    states = {int(row["port"]): row["state"] for row in rows}
    assert states == {one.port: "open", two.port: "open", closed_port: "closed"}

    assert expect_closed.returncode == 0, expect_closed.stderr
    assert blocked.returncode == 3
    assert "rule=loopback" in blocked.stdout


def test_usage_errors_are_one_line() -> None:
    for args in (["127.0.0.1", "-p", "99999"], ["10.0.0.0/8", "-p", "1"], [],
                 ["127.0.0.1", "--json", "--csv"]):
        proc = run_probe(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--yes" in run_probe("10.0.0.0/8", "-p", "1").stderr


def test_targets_from_stdin_and_dedupe() -> None:
    with serve(silent) as server:
        text = f"# loopback\n127.0.0.1:{server.port}   # the listener\n\n"
        proc = run_probe("--targets", "-", "--allow", "127.0.0.1", stdin=text.encode())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:3] == ["127.0.0.1", str(server.port), "open"]
    assert run_probe("127.0.0.1", "-p", "1,1,1-1", "--policy", "open",
                     "--show", "all").stdout.count("\n") == 1


def test_cap_is_respected_and_said_in_help() -> None:
    help_text = run_probe("--help").stdout
    assert "--max-sockets unlimited" in help_text
    proc = run_probe("127.0.0.1", "-p", "1-2000", "--policy", "open", "--json", "--show", "open")
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["probes"] == 2000 and summary["peak_sockets"] <= 6


def test_self_connect_is_never_open() -> None:
    """In a private network namespace whose only ephemeral port is P, connecting to
    127.0.0.1:P must use P as the source: a self-connect, which is not "open"."""
    skip_without_namespace()
    script = ("sysctl -q -w net.ipv4.ip_local_port_range='40000 40000' && "
              f"{sys.executable} -m tcpcli probe 127.0.0.1 -p 40000 --policy open --json")
    proc = subprocess.run(isolated_command("sh", "-c", script), capture_output=True,
                          text=True, timeout=60, cwd=os.getcwd())
    if proc.returncode not in (0, 9):
        pytest.skip(f"cannot run in a network namespace here: {proc.stderr.strip()}")
    row = json.loads(proc.stdout.splitlines()[0])
    assert row["state"] == "closed" and row["reason"].startswith("self-connect")


def test_long_scans_show_live_progress_only_at_a_terminal(filtered_port: int,
                                                          closed_port: int) -> None:
    # The filtered port holds the scan open past the point where the live line appears.
    args = ("127.0.0.1", "-p", f"{closed_port},{filtered_port}", "--allow", "127.0.0.1",
            "--timeout", "1.2")
    rich = run_probe(*args, environ={"FORCE_COLOR": "1"})
    piped = run_probe(*args)
    assert rich.returncode == piped.returncode == 0
    assert "1/2 probes (50%)" in rich.stderr and "/s" in rich.stderr
    assert "probes (" not in piped.stderr
    assert "probed 2 port(s)" in piped.stderr


def test_a_silent_service_gets_the_safe_probes_at_once_each_on_its_own_connection() -> None:
    from tcpcli.protocols.banner import REDIS_PING
    from tcpcli.protocols.service import CLIENT_FIRST_ORDER, make_probe

    heard_on: dict[socket.socket, list[bytes]] = {}  # what the probe sent, per connection

    def redis_only(conn: socket.socket) -> None:
        # Says nothing first and hangs up on anything but PING, as a strict server would:
        # only the Redis probe gets an answer, whichever connection it comes on.
        heard = heard_on.setdefault(conn, [])
        heard.append(conn.recv(1024))
        if heard[0] == REDIS_PING:
            conn.sendall(b"+PONG\r\n")
            heard.append(conn.recv(1024))

    with serve(redis_only) as server:
        proc = run_probe(f"127.0.0.1:{server.port}", "-p", "1", "--allow", "127.0.0.1",
                         "--banner", "--banner-wait", "0.3", "--json")
    # In the order the connections were accepted (not the order their first bytes came:
    # the TLS probe builds its context before its ClientHello, the others speak at once)
    said = [heard_on[conn] for conn in server.connections if heard_on.get(conn)]
    assert proc.returncode == 0, proc.stderr
    row = next(json.loads(line) for line in proc.stdout.splitlines()
               if '"probe_result"' in line)
    assert row["identified"] == "redis" and row["banner"].startswith("+PONG")
    assert row["service"]["name"] == "redis" and row["service"]["product"] == "Redis"
    # Each connection carried one probe's opening, none twice (or none at all: the search
    # ended before that one spoke); the scan's own connection (the first) carried the first
    # probe; PING was followed by INFO server only.
    openings = [heard[0] for heard in said if heard[0]]
    probes = {make_probe(name, address="127.0.0.1").next_event().data: name  # type: ignore[union-attr]
              for name in CLIENT_FIRST_ORDER if name != "tls"}
    named = [probes.get(opening, "tls" if opening.startswith(b"\x16\x03") else "?")
             for opening in openings]
    assert b"localhost" not in openings[0]  # no server name for an address
    assert "?" not in named and len(set(named)) == len(named), named
    assert named[0] == "tls" and "redis" in named
    assert next(heard for heard in said if heard[0] == REDIS_PING)[1:] in (
        [b"INFO server\r\n"], [b""])
    assert len(said) <= len(CLIENT_FIRST_ORDER)


def test_inspections_under_the_workers_cap_cannot_starve_each_other() -> None:
    # More open ports than the cap's six slots, each inspected (banner probes on fresh
    # connections, then a TLS check): an inspection holding its slot while asking for
    # another would wait for ever once six of them did.
    listeners = []
    for _ in range(9):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listeners.append(listener)
    ports = ",".join(str(listener.getsockname()[1]) for listener in listeners)
    try:
        proc = run_probe("127.0.0.1", "-p", ports, "--allow", "127.0.0.1", "--banner",
                         "--banner-wait", "0.1", "--tls-detect", "--timeout", "0.5", "--json")
    finally:
        for listener in listeners:
            listener.close()
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["open"] == 9 and summary["peak_sockets"] <= 6


def test_ctrl_c_prints_what_was_probed_so_far(filtered_port: int) -> None:
    # One open port answers at once; the filtered one holds the scan for 30 s.
    with serve(silent) as server:
        exe = shutil.which("tcpcli")
        command = [exe] if exe else [sys.executable, "-m", "tcpcli"]
        proc = subprocess.Popen(
            [*command, "probe", "127.0.0.1", "-p", f"{server.port},{filtered_port}",
             "--allow", "127.0.0.1", "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "NO_COLOR": "1"})
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the open port's row: the scan is under way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert f"127.0.0.1 {server.port} open" in first
    assert proc.returncode == 130, err
    assert "probed 1 port(s) in " in err and "(interrupted): 1 open" in err
    assert "Traceback" not in err


def test_a_name_with_several_addresses_probes_the_first_and_says_so() -> None:
    from tests.support.dns_server import Records, serve_dns

    zone = {"multi.test": Records([("A", "127.0.0.1"), ("A", "127.0.0.2")])}
    with serve(greeter(b"hello\r\n")) as server, serve_dns(zone) as dns:
        common = ("multi.test", "-p", str(server.port), "--resolver", dns.address,
                  "--policy", "open")
        first = run_probe(*common)
        first_json = run_probe(*common, "--json")
        every = run_probe(*common, "--all-addresses", "--json")
    assert first.returncode == 0, first.stderr
    assert [line.split()[:3] for line in first.stdout.splitlines()] == [
        ["multi.test", str(server.port), "open"]]
    assert "address=127.0.0.1" in first.stdout
    assert ("tcpcli: multi.test also has 127.0.0.2: not probed (--all-addresses probes each)"
            in first.stderr.splitlines())
    summary = json.loads(first_json.stdout.splitlines()[-1])
    assert summary["event"] == "summary" and summary["unprobed"] == {"multi.test": ["127.0.0.2"]}
    # The listener is on 127.0.0.1 only: the second address refuses.
    events = [json.loads(line) for line in every.stdout.splitlines()]
    assert sorted((e["address"], e["state"]) for e in events if e["event"] == "probe_result") \
        == [("127.0.0.1", "open"), ("127.0.0.2", "closed")]
    summary = next(e for e in events if e["event"] == "summary")
    assert "unprobed" not in summary
