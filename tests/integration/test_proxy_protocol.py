"""PROXY protocol as a user meets it: ``connect --send-proxy`` in front of a service that
reads the header, ``listen --accept-proxy`` behind a client that writes one (haproxy itself
is in tests/realservers/test_haproxy_real.py)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.cli import run_cli, tcpcli_command
from tests.support.peers import recv_all, serve

ALLOW = ("--allow", "127.0.0.1")


def read_header_line_or_block(conn: socket.socket) -> bytes:
    """What a server behind accept-proxy reads first: a v1 line or a v2 block, exactly."""
    first = b""
    while len(first) < 16:
        chunk = conn.recv(16 - len(first))
        if not chunk:
            return first
        first += chunk
    if first.startswith(b"PROXY "):
        while not first.endswith(b"\r\n"):
            first += conn.recv(1)
        return first
    length = int.from_bytes(first[14:16], "big")
    rest = b""
    while len(rest) < length:
        rest += conn.recv(length - len(rest))
    return first + rest


def header_then_echo(seen: list[tuple[bytes, tuple[str, int]]]) -> object:
    def handler(conn: socket.socket) -> None:
        seen.append((read_header_line_or_block(conn), conn.getpeername()))
        conn.sendall(recv_all(conn))
    return handler


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_send_proxy_v1_writes_the_specs_line_first(tls: bool, tls_ca: trustme.CA,
                                                   tmp_path: Path) -> None:
    seen: list[tuple[bytes, tuple[str, int]]] = []
    if not tls:
        with serve(header_then_echo(seen)) as server:
            proc = run_cli("connect", server.address, *ALLOW, "--send-proxy", "v1",
                           stdin=b"hello\n")
        port = server.port
    else:
        cert = tls_ca.issue_cert("127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        ca_file = tmp_path / "ca.pem"
        tls_ca.cert_pem.write_to_path(str(ca_file))

        def header_then_tls_echo(conn: socket.socket) -> None:
            seen.append((read_header_line_or_block(conn), conn.getpeername()))
            with context.wrap_socket(conn, server_side=True) as secure:
                secure.sendall(secure.recv(100))

        with serve(header_then_tls_echo) as server:
            proc = run_cli("connect", server.address, *ALLOW, "--send-proxy", "v1",
                           "--tls", "--ca-file", str(ca_file), "--tls-eof", "wait",
                           stdin=b"hello\n")
        port = server.port
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello\n"
    header, client = seen[0]
    assert header == f"PROXY TCP4 127.0.0.1 127.0.0.1 {client[1]} {port}\r\n".encode()


def test_send_proxy_v2_claims_the_given_source_and_times_its_phase(tmp_path: Path) -> None:
    seen: list[tuple[bytes, tuple[str, int]]] = []
    events = tmp_path / "events.jsonl"
    with serve(header_then_echo(seen)) as server:
        proc = run_cli("connect", server.address, *ALLOW, "--send-proxy", "v2",
                       "--proxy-source", "203.0.113.7:4242", "-v", "--events", str(events),
                       stdin=b"x")
    assert proc.returncode == 0, proc.stderr
    header, _ = seen[0]
    assert header[:12] == b"\r\n\r\n\x00\r\nQUIT\n" and header[12:16] == b"\x21\x11\x00\x0c"
    assert header[16:20] == bytes([203, 0, 113, 7]) and header[24:26] == (4242).to_bytes(2, "big")
    assert b"proxy header" in proc.stderr and b"v2" in proc.stderr
    phases = [json.loads(line) for line in events.read_text().splitlines()]
    header_events = [e for e in phases if e["event"] == "proxy_header"]
    assert header_events[-1]["bytes"] == 28 and header_events[-1]["header"] == "v2"


def test_the_header_is_not_counted_as_the_users_bytes(tmp_path: Path) -> None:
    seen: list[tuple[bytes, tuple[str, int]]] = []
    events = tmp_path / "events.jsonl"
    with serve(header_then_echo(seen)) as server:
        proc = run_cli("connect", server.address, *ALLOW, "--send-proxy", "v1",
                       "--events", str(events), stdin=b"12345")
    assert proc.returncode == 0, proc.stderr
    close = next(json.loads(line) for line in events.read_text().splitlines()
             if json.loads(line)["event"] == "close")
    assert close["bytes_sent"] == 5 and close["bytes_received"] == 5


def test_proxy_source_needs_send_proxy() -> None:
    proc = run_cli("connect", "127.0.0.1:9", *ALLOW, "--proxy-source", "203.0.113.7:1")
    assert proc.returncode == 2
    assert b"--proxy-source is the address a PROXY header claims" in proc.stderr


@pytest.mark.parametrize("value", ["localhost:1", "203.0.113.7", "[::1]"])
def test_proxy_source_must_be_an_ip_and_port(value: str) -> None:
    proc = run_cli("connect", "127.0.0.1:9", *ALLOW, "--send-proxy", "v1",
                   "--proxy-source", value)
    assert proc.returncode == 2 and b"is not IP:PORT" in proc.stderr


def test_a_source_of_the_other_family_is_a_usage_error_before_any_byte() -> None:
    seen: list[tuple[bytes, tuple[str, int]]] = []
    with serve(header_then_echo(seen)) as server:
        proc = run_cli("connect", server.address, *ALLOW, "--send-proxy", "v2",
                       "--proxy-source", "[2001:db8::7]:1", stdin=b"data")
    assert proc.returncode == 2
    assert b"IPv6 but the connection is IPv4" in proc.stderr
    assert not seen or seen[0][0] == b""  # nothing was written


# ------------------------------------------------------------------ listen --accept-proxy


class Listen:
    """``tcpcli listen PORT --accept-proxy MODE --json`` in the background."""

    def __init__(self, *args: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen([*tcpcli_command(), "listen", str(self.port),
                                      "--accept-proxy", "--keep-open", "--json", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        self.first = json.loads(self.proc.stderr.readline())  # "listening": it is ready
        assert self.first["event"] == "listening", self.first

    def events(self) -> list[dict[str, object]]:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]


@pytest.fixture
def echo_listener() -> Iterator[Listen]:
    listener = Listen("--echo")
    yield listener
    if listener.proc.poll() is None:
        listener.proc.kill()
        listener.proc.wait()


def talk(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        return recv_all(conn)


def test_accept_proxy_reports_the_client_the_header_names(echo_listener: Listen) -> None:
    got = talk(echo_listener.port, b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 443\r\nping")
    events = echo_listener.events()
    assert got == b"ping"  # the bytes after the header are the client's, untouched
    header = next(e for e in events if e["event"] == "proxy_header")
    assert header["client"] == "198.51.100.9:5555"
    assert header["destination"] == "127.0.0.1:443" and header["version"] == 1
    closed = next(e for e in events if e["event"] == "closed")
    assert str(closed["peer"]).startswith("198.51.100.9:5555 via 127.0.0.1:")


def test_accept_proxy_refuses_a_client_that_is_no_proxy_at_once(echo_listener: Listen) -> None:
    started = time.monotonic()
    got = talk(echo_listener.port, b"GET / HTTP/1.0\r\n\r\n")
    took = time.monotonic() - started
    events = echo_listener.events()
    assert got == b"" and took < 2  # no echo, and no wait for the header timeout
    errors = [e for e in events if e["event"] == "error"]
    assert "refused: not a PROXY protocol header" in str(errors[0]["message"])


def test_accept_proxy_refuses_a_malformed_v2_header(echo_listener: Listen) -> None:
    bad = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 4]) + b"\0" * 4
    assert talk(echo_listener.port, bad + b"data") == b""
    errors = [e for e in echo_listener.events() if e["event"] == "error"]
    assert "malformed PROXY v2 header" in str(errors[0]["message"])


def test_a_server_that_speaks_first_gets_the_header_and_nothing_more() -> None:
    # The client sends only the header and waits for the greeting: the listener must not
    # wait for bytes beyond the header (it reads no more than the header is long).
    listener = Listen("--banner", "220 ready\\r\\n")
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as conn:
            conn.sendall(b"PROXY TCP6 2001:db8::1 ::1 1000 25\r\n")
            assert recv_all(conn) == b"220 ready\r\n"
        header = next(e for e in listener.events() if e["event"] == "proxy_header")
        assert header["client"] == "[2001:db8::1]:1000"
    finally:
        if listener.proc.poll() is None:
            listener.proc.kill()
            listener.proc.wait()


def test_connect_send_proxy_meets_listen_accept_proxy(echo_listener: Listen) -> None:
    proc = run_cli("connect", f"127.0.0.1:{echo_listener.port}", *ALLOW, "--send-proxy", "v2",
                   "--proxy-source", "192.0.2.44:6000", stdin=b"round trip\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"round trip\n"
    header = next(e for e in echo_listener.events() if e["event"] == "proxy_header")
    assert header["client"] == "192.0.2.44:6000" and header["version"] == 2




def test_starttls_sends_the_header_before_the_smtp_dialogue(
        server_ssl_context: ssl.SSLContext, ca_file: str) -> None:
    # Postfix's postscreen behind haproxy: the PROXY line, then SMTP, then STARTTLS.
    from tests.integration.test_cli_starttls import smtp_server

    seen: list[bytes] = []
    smtp = smtp_server(server_ssl_context)

    def header_then_smtp(conn: socket.socket) -> None:
        seen.append(read_header_line_or_block(conn))
        smtp(conn)

    with serve(header_then_smtp) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ca-file", ca_file,
                       *ALLOW, "--send-proxy", "v1", "--proxy-source", "198.51.100.25:2525",
                       "--expect", "verified")
    assert proc.returncode == 0, proc.stderr
    assert seen == [f"PROXY TCP4 198.51.100.25 127.0.0.1 2525 {server.port}\r\n".encode()]
