"""PROXY protocol against haproxy from Debian: tcpcli's header is accepted by haproxy's
``accept-proxy``, and haproxy's ``send-proxy``/``send-proxy-v2`` (with TLVs) is read by
``tcpcli listen --accept-proxy``. Each test starts its own haproxy on free loopback ports;
the addresses the headers claim (documentation ranges) are labels only, never dialed."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
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
from tests.support.peers import recv_all

pytestmark = pytest.mark.timeout(60)

DEFAULTS = """\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
"""


def haproxy(tmp_path: Path, frontend_port: int, config: str) -> Iterator[RealServer]:
    binary = require_binary("haproxy")
    cwd = tmp_path / "haproxy"
    cwd.mkdir()
    (cwd / "haproxy.cfg").write_text(DEFAULTS + config)
    server = RealServer("haproxy", package_version("haproxy"), {"front": frontend_port})
    launch(server, [binary, "-f", str(cwd / "haproxy.cfg"), "-db"], cwd=cwd)
    with running(server):
        yield server


def read_v1_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n") and len(line) < 107:
        byte = conn.recv(1)
        if not byte:
            break
        line += byte
    return line


@pytest.fixture
def backend() -> Iterator[tuple[int, list[bytes]]]:
    """A service behind haproxy's ``send-proxy``: records the v1 line, then echoes each
    request as it comes (a connection of its own thread, so bench's workers can share it)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    lines: list[bytes] = []

    def echo(conn: socket.socket) -> None:
        with conn:
            lines.append(read_v1_line(conn))
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], lines
    listener.close()


def accept_proxy_in_front_of(front: int, backend_port: int) -> str:
    """haproxy reading a PROXY header on ``front`` and writing its own (v1) to the backend."""
    return f"""\
frontend fe
    bind 127.0.0.1:{front} accept-proxy
    default_backend be
backend be
    server s1 127.0.0.1:{backend_port} send-proxy
"""


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_haproxy_accept_proxy_takes_tcpclis_header(
        version: str, tmp_path: Path, backend: tuple[int, list[bytes]]) -> None:
    # tcpcli --send-proxy -> haproxy (accept-proxy) -> send-proxy (v1) -> the backend:
    # haproxy passes on the client tcpcli claimed, so it read our header as we meant it.
    backend_port, lines = backend
    front = free_port()
    config = accept_proxy_in_front_of(front, backend_port)
    for _ in haproxy(tmp_path, front, config):
        proc = run_cli("connect", f"127.0.0.1:{front}", "--allow", "127.0.0.1",
                       "--send-proxy", version, "--proxy-source", "203.0.113.7:4242",
                       stdin=b"through haproxy\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"through haproxy\n"
    assert lines == [f"PROXY TCP4 203.0.113.7 127.0.0.1 4242 {front}\r\n".encode()]


def test_haproxy_drops_a_connection_without_the_header(
        tmp_path: Path, backend: tuple[int, list[bytes]]) -> None:
    # The control: without --send-proxy, accept-proxy refuses us, so the test above is
    # not passing because haproxy ignores what comes first.
    backend_port, lines = backend
    front = free_port()
    config = accept_proxy_in_front_of(front, backend_port)
    for _ in haproxy(tmp_path, front, config):
        proc = run_cli("connect", f"127.0.0.1:{front}", "--allow", "127.0.0.1",
                       stdin=b"no header\n")
        assert proc.stdout == b""
    assert lines == []


@pytest.mark.parametrize("fresh", [(), ("--fresh",)])
def test_bench_through_accept_proxy(fresh: tuple[str, ...], tmp_path: Path,
                                    backend: tuple[int, list[bytes]]) -> None:
    # A service behind accept-proxy can be benchmarked: every connection bench opens
    # starts with the header, and haproxy hands the claimed client on to the backend.
    backend_port, lines = backend
    front = free_port()
    config = accept_proxy_in_front_of(front, backend_port)
    for _ in haproxy(tmp_path, front, config):
        proc = run_cli("bench", f"127.0.0.1:{front}", "--allow", "127.0.0.1", "-m", "rr",
                       "--send", "ping", "-n", "20", "-c", "2", *fresh, "--send-proxy", "v2",
                       "--proxy-source", "203.0.113.9:5151", "--json")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout.decode().splitlines()[-1])
        assert summary["samples"] == 20 and summary["errors"] == {}, summary
    assert lines == [f"PROXY TCP4 203.0.113.9 127.0.0.1 5151 {front}\r\n".encode()] * (
        20 if fresh else 2)


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_listen_accept_proxy_reads_haproxys_header(send: str, tmp_path: Path) -> None:
    # A client -> haproxy (send-proxy[-v2], v2 with a unique-id TLV) -> tcpcli listen.
    listen_port, front = free_port(), free_port()
    options = " proxy-v2-options unique-id" if send == "send-proxy-v2" else ""
    config = f"""\
frontend fe
    bind 127.0.0.1:{front}
    unique-id-format tcpcli-test-%rt
    default_backend be
backend be
    server s1 127.0.0.1:{listen_port} {send}{options}
"""
    listener = subprocess.Popen([*tcpcli_command(), "listen", str(listen_port), "--echo",
                                 "--keep-open", "--accept-proxy", "--json"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        assert listener.stderr is not None
        assert json.loads(listener.stderr.readline())["event"] == "listening"
        for _ in haproxy(tmp_path, front, config):
            with socket.create_connection(("127.0.0.1", front), timeout=5) as client:
                client_address = client.getsockname()
                client.sendall(b"hello behind haproxy")
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == b"hello behind haproxy"
    finally:
        listener.terminate()
        _, err = listener.communicate(timeout=10)
    events = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    # (the fixture's readiness check made a connection too: ours is the one from our port)
    headers = {e["client"]: e for e in events if e["event"] == "proxy_header"}
    header = headers[f"127.0.0.1:{client_address[1]}"]
    assert header["destination"] == f"127.0.0.1:{front}"
    assert header["version"] == (2 if send == "send-proxy-v2" else 1)
    if send == "send-proxy-v2":
        assert bytes.fromhex(str(header["tlvs"]["unique_id"])).startswith(b"tcpcli-test-")
