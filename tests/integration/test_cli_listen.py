"""``tcpcli listen`` with ``tcpcli connect`` on the other end: byte-exact round trips."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from tests.integration.test_cli_connect import tcpcli_command

ALLOW = ("--allow", "127.0.0.1")


announced: list[dict[str, object]] = []


@contextmanager
def listening(*args: str, stdin: int | None = None) -> Iterator[
        tuple[subprocess.Popen[bytes], int]]:
    """Start a listener; its start-up events are kept in ``announced``."""
    proc = subprocess.Popen([*tcpcli_command(), "listen", "127.0.0.1:0", "--json", *args],
                            stdin=stdin if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
        fingerprint = str(announced[0]["fingerprint_sha256"])
        client = subprocess.run([*tcpcli_command(), "connect", f"127.0.0.1:{port}", *ALLOW,
                                 "--tls", "--insecure", "--no-stdin"], capture_output=True,
                                timeout=30)
    assert client.returncode == 0, client.stderr
    assert client.stdout == b"hi\n"
    assert b"NOT verified" in client.stderr
    assert b"close_notify" not in client.stderr
    assert len(fingerprint.split(":")) == 32


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
