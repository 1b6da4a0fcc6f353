"""``tcpcli listen`` with ``tcpcli connect`` on the other end: byte-exact round trips."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tcpcli.cli.exit_codes import ExitCode
from tests.support.cli import tcpcli_command

ALLOW = ("--allow", "127.0.0.1")


announced: list[dict[str, object]] = []


@contextmanager
def listening(*args: str, stdin: int | None = None, backend: str = "asyncio") -> Iterator[
        tuple[subprocess.Popen[bytes], int]]:
    """Start a listener; its start-up events are kept in ``announced``."""
    proc = subprocess.Popen([*tcpcli_command(), "listen", "127.0.0.1:0", "--json", *args],
                            stdin=stdin if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TCPCLI_BACKEND": backend})
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        announced[:] = [first]
        if first["event"] == "certificate":
            first = json.loads(proc.stderr.readline())
            announced.append(first)
        assert first["event"] == "listening"
        yield proc, int(first["address"].rsplit(":", 1)[1])
    finally:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("listen") / "64mib.bin"
    data = os.urandom(64 * 1024 * 1024)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def round_trip(port: int, payload: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    with payload.open("rb") as stdin:
        return subprocess.run([*tcpcli_command(), "connect", f"127.0.0.1:{port}", *ALLOW,
                               *extra], stdin=stdin, capture_output=True, timeout=120)


def test_echo_round_trip_64_mib(payload: tuple[Path, str]) -> None:
    path, digest = payload
    with listening("--echo") as (_, port):
        proc = round_trip(port, path)
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(proc.stdout).hexdigest() == digest


def test_tls_echo_round_trip_64_mib(payload: tuple[Path, str], tmp_path: Path) -> None:
    path, digest = payload
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    with listening("--echo", "--tls", "--cert", str(cert), "--key", str(key)) as (_, port):
        proc = round_trip(port, path, "--tls", "--ca-file", str(ca_file))
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(proc.stdout).hexdigest() == digest
    assert b"close_notify" not in proc.stderr  # listen says goodbye properly over TLS


def test_throwaway_certificate_is_announced_and_reported_unverified() -> None:
    with listening("--banner", r"hi\n", "--tls") as (_, port):
        pin = str(announced[0]["pin"])
        client = subprocess.run([*tcpcli_command(), "connect", f"127.0.0.1:{port}", *ALLOW,
                                 "--tls", "--insecure", "--no-stdin", "--json"],
                                capture_output=True, timeout=30)
    assert client.returncode == 0, client.stderr
    assert client.stdout == b"hi\n"
    report = next(json.loads(line) for line in client.stderr.splitlines()
                  if b'"tls_report"' in line)
    assert report["verification"]["verified"] is False
    assert report["chain"][0]["spki_sha256"] == pin  # the very form --pin takes


def test_pipe_mode_is_byte_exact_both_ways() -> None:
    """The listener's stdin stays open; the client's EOF ends the connection."""
    with listening(stdin=subprocess.PIPE) as (proc, port):
        assert proc.stdin is not None
        proc.stdin.write(b"from the listener")
        proc.stdin.flush()
        client = subprocess.run([*tcpcli_command(), "connect", f"127.0.0.1:{port}", *ALLOW],
                                input=b"from the client", capture_output=True, timeout=30)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(10)
    assert client.returncode == 0, client.stderr
    assert client.stdout == b"from the listener"
    assert out == b"from the client"
    assert proc.returncode == 0


def test_keep_open_logs_each_connection() -> None:
    with listening("--discard", "--max-conns", "2") as (proc, port):
        for text in (b"one", b"three"):
            subprocess.run([*tcpcli_command(), "connect", f"127.0.0.1:{port}", *ALLOW],
                           input=text, capture_output=True, timeout=30, check=True)
        proc.wait(10)
        assert proc.stderr is not None
        events = [json.loads(line) for line in proc.stderr.read().splitlines()]
    closed = [e for e in events if e["event"] == "closed"]
    assert [e["bytes_received"] for e in closed] == [3, 5]
    assert proc.returncode == 0


def test_usage_errors_are_one_line() -> None:
    for argv in (["70000"], ["host:"], ["9000", "--keep-open"], ["9000", "--key", __file__],
                 ["9000", "--echo", "--banner", "x"]):
        proc = subprocess.run([*tcpcli_command(), "listen", *argv], capture_output=True,
                              timeout=30)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert len(proc.stderr.decode().strip().splitlines()) == 1


# ------------------------------------------------------------ a server people can lean on


def connect_echo(port: int, text: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*tcpcli_command(), "connect", f"127.0.0.1:{port}", *ALLOW, *extra],
                          input=text, capture_output=True, timeout=30)


def reset_client(port: int, send: bytes = b"") -> None:
    """Connect, maybe send, and abort with RST (SO_LINGER 0), as scanners and crashes do."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if send:
            sock.sendall(send)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def half_close_client(port: int, text: bytes) -> bytes:
    """Send, half-close (FIN), then read the echo until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(text)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_keep_open_survives_resets_and_half_closes(tls: bool) -> None:
    extra = ("--tls",) if tls else ()
    with listening("--echo", "--keep-open", *extra) as (proc, port):
        reset_client(port)
        reset_client(port, b"x" * 100_000)
        if not tls:
            assert half_close_client(port, b"half a conversation") == b"half a conversation"
        time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        client = connect_echo(port, b"still here", *(("--tls", "-k") if tls else ()))
        assert proc.poll() is None
    assert client.returncode == 0, client.stderr
    assert client.stdout == b"still here"


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
def test_keep_open_survives_a_port_scan() -> None:
    with listening("--echo", "--keep-open") as (proc, port):
        scan = subprocess.run(["nmap", "-sT", "-Pn", "-p", str(port), "127.0.0.1"],
                              capture_output=True, timeout=60)
        assert f"{port}/tcp open".encode() in scan.stdout, scan.stdout
        time.sleep(0.2)
        assert proc.poll() is None
        client = connect_echo(port, b"after the scan")
    assert client.returncode == 0, client.stderr
    assert client.stdout == b"after the scan"


def test_a_port_in_use_is_one_line_with_its_own_exit_code() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra in ((), ("--json",)):
            proc = subprocess.run([*tcpcli_command(), "listen", f"127.0.0.1:{port}", "--echo",
                                   *extra], capture_output=True, timeout=30)
            assert proc.returncode == ExitCode.ADDRESS_IN_USE, proc.stderr
            lines = proc.stderr.decode().strip().splitlines()
            assert len(lines) == 1, lines
            assert "already in use" in lines[0]
            assert "unexpected" not in lines[0]
            if extra:
                assert json.loads(lines[0])["exit_code"] == ExitCode.ADDRESS_IN_USE


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_ends_keep_open_with_130(backend: str) -> None:
    with listening("--echo", "--keep-open", backend=backend) as (proc, port):
        assert connect_echo(port, b"one").stdout == b"one"
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(2) == 130
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()


# ------------------------------------------------- from listen --tls to a verified connect


def spki_pin_of(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_listen_tls_to_a_verified_connect_without_insecure(tmp_path: Path) -> None:
    """The CA written by --ca-out verifies the chain; the printed pin alone is trusted, as
    ssh trusts a known host key; a wrong pin, a CA's pin alone, or no trust at all is 7."""
    ca_file = tmp_path / "listen-ca.pem"
    with listening("--echo", "--keep-open", "--tls", "--ca-out", str(ca_file)) as (_, port):
        pin = str(announced[0]["pin"])
        assert announced[0]["ca_file"] == str(ca_file)
        by_ca = connect_echo(port, b"by CA", "--tls", "--ca-file", str(ca_file), "--json")
        by_pin = connect_echo(port, b"by pin", "--tls", "--pin", pin, "--json")
        wrong_pin = connect_echo(port, b"", "--tls", "--pin", "sha256/" + "A" * 43 + "=")
        ca_pin = connect_echo(port, b"", "--tls", "--pin", spki_pin_of(ca_file.read_bytes()))
        untrusted = connect_echo(port, b"", "--tls")
    for run, text in ((by_ca, b"by CA"), (by_pin, b"by pin")):
        assert run.returncode == 0, run.stderr
        assert run.stdout == text
        assert b"NOT verified" not in run.stderr
    verdicts = [json.loads(line)["verification"] for line in
                (by_ca.stderr + by_pin.stderr).splitlines() if b'"tls_report"' in line]
    assert [v["verified"] for v in verdicts] == [True, False]  # the chain, reported as is
    assert verdicts[1]["pin_matched"] is True
    assert wrong_pin.returncode == 7, wrong_pin.stderr
    assert b"pinned public key" in wrong_pin.stderr
    assert ca_pin.returncode == 7, ca_pin.stderr
    assert b"pin the server's own key" in ca_pin.stderr
    assert untrusted.returncode == 7, untrusted.stderr
    assert b"--pin" in untrusted.stderr  # the way out is named


def test_ca_out_needs_a_throwaway_certificate() -> None:
    for argv in (["9000", "--echo", "--ca-out", "ca.pem"],
                 ["9000", "--echo", "--tls", "--cert", __file__, "--ca-out", "ca.pem"]):
        proc = subprocess.run([*tcpcli_command(), "listen", *argv], capture_output=True,
                              timeout=30)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert b"--ca-out" in proc.stderr
