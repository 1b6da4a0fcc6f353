"""``--proxy`` against real proxies from Debian: microsocks (SOCKS5, user/password) and
tinyproxy (HTTP CONNECT, basic auth, port rules), each started by the test on free
loopback ports; their refusals end in a distinct, named error. Every target is on
loopback: the proxies are told to reach nothing else."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.realservers.conftest import (
    RealServer,
    free_port,
    launch,
    package_version,
    require_binary,
    running,
)
from tests.support.cli import run_cli, tcpcli_command
from tests.support.peers import echo, serve

pytestmark = pytest.mark.timeout(60)
ALLOW = ("--allow", "127.0.0.1")


@pytest.fixture(scope="module")
def microsocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """SOCKS5 on loopback with user 'tcpcli' / password 'sesame'."""
    binary = require_binary("microsocks")
    cwd = tmp_path_factory.mktemp("microsocks")
    server = RealServer("microsocks", package_version("microsocks"), {"socks": free_port()})
    launch(server, [binary, "-i", "127.0.0.1", "-p", str(server.port()), "-u", "tcpcli",
                    "-P", "sesame"], cwd=cwd)
    with running(server):
        yield server


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """HTTP CONNECT on loopback with basic auth (no ConnectPort line: every port)."""
    binary = require_binary("tinyproxy")
    cwd = tmp_path_factory.mktemp("tinyproxy")
    server = RealServer("tinyproxy", package_version("tinyproxy"), {"http": free_port()})
    config = cwd / "tinyproxy.conf"
    config.write_text(f"""\
Port {server.port()}
Listen 127.0.0.1
Timeout 10
MaxClients 20
Allow 127.0.0.1
BasicAuth tcpcli sesame
LogLevel Info
LogFile "{cwd / 'tinyproxy.log'}"
PidFile "{cwd / 'tinyproxy.pid'}"
""")
    launch(server, [binary, "-d", "-c", str(config)], cwd=cwd)
    with running(server):
        yield server


def socks(server: RealServer, scheme: str = "socks5", password: str = "sesame") -> str:
    return f"{scheme}://tcpcli:{password}@127.0.0.1:{server.port()}"


def http(server: RealServer, password: str = "sesame") -> str:
    return f"http://tcpcli:{password}@127.0.0.1:{server.port()}"


def answer_then_close(size: int) -> Callable[[socket.socket], None]:
    """A target that reads ``size`` bytes, sends them back and closes."""
    def handler(conn: socket.socket) -> None:
        received = b""
        while len(received) < size and (chunk := conn.recv(100)):
            received += chunk
        conn.sendall(received)
    return handler


def connect_kept_open(*args: str, payload: bytes) -> subprocess.CompletedProcess[bytes]:
    """``tcpcli connect ARGS`` with ``payload`` on a stdin that stays open: microsocks ends
    both sides at the first EOF, so a FIN from us could cut the answer off; the target
    answers and closes first instead."""
    read_end, write_end = os.pipe()
    os.write(write_end, payload)
    try:
        return subprocess.run([*tcpcli_command(), "connect", *args], stdin=read_end,
                              capture_output=True, timeout=30)
    finally:
        os.close(read_end)
        os.close(write_end)


def closed_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_a_round_trip_through_the_proxy(kind: str, microsocks: RealServer,
                                        tinyproxy: RealServer, tmp_path: Path) -> None:
    proxy = socks(microsocks) if kind == "socks5" else http(tinyproxy)
    events = tmp_path / "events.jsonl"
    payload = b"via a real proxy\n"
    with serve(answer_then_close(len(payload))) as target:
        proc = connect_kept_open(target.address, *ALLOW, "--proxy", proxy, "-v",
                                 "--events", str(events), payload=payload)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"via a real proxy\n"
    assert b"sesame" not in proc.stderr and b"sesame" not in events.read_bytes()
    phases = [json.loads(line) for line in events.read_text().splitlines()]
    hop = next(e for e in phases if e["event"] == "proxy")
    port = (microsocks if kind == "socks5" else tinyproxy).port()
    assert hop["outcome"] == "ok" and hop["proxy"].endswith(f"***@127.0.0.1:{port}")


def test_socks5h_hands_the_proxy_the_name(microsocks: RealServer) -> None:
    # localhost is in the hosts file, which microsocks reads; tcpcli never looks it up.
    with serve(answer_then_close(8)) as target:
        proc = connect_kept_open(f"localhost:{target.port}", "--allow", "localhost",
                                 "--proxy", socks(microsocks, "socks5h"), payload=b"by name\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"by name\n"
    assert b"the proxy resolves localhost: the policy judged its name alone" in proc.stderr


def test_socks5h_still_refuses_a_denied_name_before_asking_the_proxy(
        microsocks: RealServer) -> None:
    proc = run_cli("connect", "localhost:7", "--proxy", socks(microsocks, "socks5h"),
                   stdin=b"x")
    assert proc.returncode == 3, proc.stderr  # loopback names: refused by the policy
    assert b"localhost" in proc.stderr


@pytest.mark.parametrize(("kind", "expected"), [
    ("socks5-auth", b"proxy socks5://***@127.0.0.1:"),
    ("http-auth", b"proxy http://***@127.0.0.1:"),
])
def test_a_wrong_password_is_a_named_proxy_error(kind: str, expected: bytes,
                                                 microsocks: RealServer,
                                                 tinyproxy: RealServer) -> None:
    proxy = socks(microsocks, password="wrong") if kind == "socks5-auth" \
        else http(tinyproxy, password="wrong")
    with serve(echo) as target:
        proc = run_cli("connect", target.address, *ALLOW, "--proxy", proxy, stdin=b"x")
    assert proc.returncode == 5, proc.stderr
    assert expected in proc.stderr and b"refused" in proc.stderr
    assert b"wrong" not in proc.stderr  # the password is never shown


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_a_target_the_proxy_cannot_reach_is_a_named_proxy_error(
        kind: str, microsocks: RealServer, tinyproxy: RealServer) -> None:
    proxy = socks(microsocks) if kind == "socks5" else http(tinyproxy)
    proc = run_cli("connect", f"127.0.0.1:{closed_port()}", *ALLOW, "--proxy", proxy,
                   stdin=b"x")
    assert proc.returncode == 5, proc.stderr
    assert b"refused 127.0.0.1:" in proc.stderr


def test_a_proxy_that_never_answers_times_out(tmp_path: Path) -> None:
    # Accepts the TCP connection, then says nothing: bounded by the reply timeout
    # (--timeout here; 10 s by default), exit 6, never a hang.
    def silent(conn: socket.socket) -> None:
        time.sleep(5)

    with serve(silent) as proxy:
        started = time.monotonic()
        proc = run_cli("connect", "127.0.0.1:9", *ALLOW, "--proxy",
                       f"socks5://{proxy.address}", "--timeout", "1", stdin=b"x")
    assert proc.returncode == 6, proc.stderr
    assert time.monotonic() - started < 4
    assert b"did not answer" in proc.stderr or b"timed out" in proc.stderr


def test_a_chain_of_real_proxies(microsocks: RealServer, tinyproxy: RealServer,
                                 tmp_path: Path) -> None:
    """microsocks first, tinyproxy through it, the target through both: each hop is
    timed, and the CONNECT tinyproxy got names the target."""
    events = tmp_path / "events.jsonl"
    payload = b"two real hops\n"
    with serve(answer_then_close(len(payload))) as target:
        proc = connect_kept_open(target.address, *ALLOW, "--proxy",
                                 f"{socks(microsocks)},{http(tinyproxy)}",
                                 "--events", str(events), payload=payload)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == payload
    phases = [json.loads(line) for line in events.read_text().splitlines()]
    hops = [(e["event"], e.get("port"), e["outcome"]) for e in phases
            if e["event"] in ("attempt", "proxy")]
    assert hops == [("attempt", microsocks.port(), "ok"), ("proxy", tinyproxy.port(), "ok"),
                    ("proxy", target.port, "ok")]
    assert b"sesame" not in proc.stderr and b"sesame" not in events.read_bytes()


def test_ping_through_a_real_proxy(microsocks: RealServer) -> None:
    with serve(echo) as target:
        proc = run_cli("ping", target.address, *ALLOW, "--proxy", socks(microsocks), "-c",
                       "2", "-i", "0.05", "--json")
    assert proc.returncode == 0, proc.stderr
    rounds = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    rounds = [e for e in rounds if e["event"] == "ping"]
    assert [r["state"] for r in rounds] == ["open", "open"]
    assert all(r["time_ms"] > 0 for r in rounds)
