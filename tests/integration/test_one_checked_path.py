"""Every dial the CLI makes goes through the one checked path, for every command.

Each command runs in a subprocess whose ``Connector`` and sockets are recorded
(``tests/support/recording_cli.py``). For an allowed target every connector dial must be to an
address the policy allows, and every socket connect of the process must be one a connector
dial stands behind (nothing dials around the seam); for a refused target nothing may be dialed
or even looked up, and the run exits 3.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from tcpcli.core.policy import Policy
from tests.integration.test_cli_starttls import smtp_server
from tests.integration.test_proxy import Socks5
from tests.support.peers import LoopbackServer, echo, serve

REPOSITORY = Path(__file__).resolve().parents[2]
ALLOW = ("--allow", "127.0.0.1")
POLICY = Policy.parse("workers", allow=["127.0.0.1"])
#: Allowed by nothing but --allow 127.0.0.1's absence: loopback, so the test stays local.
REFUSED = "127.0.0.2"


def record(tmp_path: Path, *args: str, stdin: bytes = b"") -> tuple[int, list[dict[str, Any]],
                                                                    str]:
    """Run the CLI recorded: its exit code, its dials, and what it printed (both streams)."""
    log = tmp_path / f"dials-{len(list(tmp_path.iterdir()))}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.recording_cli", str(log), *args],
        input=stdin, capture_output=True, timeout=60, cwd=REPOSITORY,
        env={**os.environ, "NO_COLOR": "1", "TCPCLI_NO_CONFIG": "1"})
    lines = log.read_text().splitlines() if log.exists() else []
    printed = proc.stdout.decode() + proc.stderr.decode()
    return proc.returncode, [json.loads(line) for line in lines], printed


def assert_one_checked_path(dials: list[dict[str, Any]], port: int) -> None:
    via_connector = [d for d in dials if d["via"] == "connector"]
    assert via_connector, "the command dialed nothing through the Connector"
    for dial in via_connector:
        assert POLICY.check_address(ip_address(dial["address"]), dial["port"]).allowed, dial
        assert dial["port"] == port, dial
    behind = {(d["address"], d["port"]) for d in via_connector}
    around = [d for d in dials if d["via"] == "socket" and (d["address"], d["port"]) not in behind]
    assert not around, f"dialed around the Connector: {around}"
    assert not [d for d in dials if d["via"] == "getaddrinfo"], dials


@contextmanager
def peer(kind: str, server_ssl_context: ssl.SSLContext) -> Iterator[LoopbackServer]:
    if kind == "smtp":
        with serve(smtp_server(server_ssl_context)) as server:
            yield server
    elif kind == "tls":
        def tls_echo(conn: Any) -> None:
            with server_ssl_context.wrap_socket(conn, server_side=True) as tls:
                echo(tls)
        with serve(tls_echo) as server:
            yield server
    else:
        with serve(echo) as server:
            yield server


#: (name, peer kind, arguments after the target, exit code expected with the peer up).
COMMANDS: list[tuple[str, str, Callable[[str, str], list[str]], int]] = [
    ("connect", "echo", lambda target, ca: ["connect", target, "--send", "hi"], 0),
    ("connect --tls", "tls",
     lambda target, ca: ["connect", target, "--tls", "--ca-file", ca, "--send", "hi"], 0),
    ("probe", "echo", lambda target, ca: ["probe", target], 0),
    ("probe --banner --tls-detect", "echo",
     lambda target, ca: ["probe", target, "--banner", "--tls-detect"], 0),
    ("starttls", "smtp",
     lambda target, ca: ["starttls", target, "--protocol", "smtp", "--ca-file", ca], 0),
    ("bench connect", "echo", lambda target, ca: ["bench", target, "-n", "20"], 0),
    ("bench rr", "echo",
     lambda target, ca: ["bench", target, "-m", "rr", "--send", "x", "-n", "20"], 0),
    ("bench rr --fresh", "echo",
     lambda target, ca: ["bench", target, "-m", "rr", "--fresh", "--send", "x", "-n", "20"], 0),
    ("bench --tls", "tls",
     lambda target, ca: ["bench", target, "--tls", "--ca-file", ca, "-n", "10"], 0),
    ("bench throughput", "echo",
     lambda target, ca: ["bench", target, "-m", "throughput", "-c", "2", "-d", "0.3"], 0),
]


@pytest.mark.parametrize(("name", "kind", "arguments", "code"), COMMANDS,
                         ids=[name for name, *_ in COMMANDS])
def test_every_dial_is_checked(name: str, kind: str, arguments: Callable[[str, str], list[str]],
                               code: int, server_ssl_context: ssl.SSLContext, ca_file: str,
                               tmp_path: Path) -> None:
    with peer(kind, server_ssl_context) as server:
        args = arguments(server.address, ca_file)
        if args[0] == "probe":  # probe takes its ports apart from the host
            args = ["probe", "127.0.0.1", "--ports", str(server.port), *args[2:]]
        exit_code, dials, stderr = record(tmp_path, *args, *ALLOW)
    assert exit_code == code, stderr
    assert_one_checked_path(dials, server.port)


@pytest.mark.parametrize(("name", "kind", "arguments", "code"), COMMANDS,
                         ids=[name for name, *_ in COMMANDS])
def test_a_refused_target_is_never_dialed(name: str, kind: str,
                                          arguments: Callable[[str, str], list[str]], code: int,
                                          ca_file: str, tmp_path: Path) -> None:
    args = arguments(f"{REFUSED}:7", ca_file)
    if args[0] == "probe":
        args = ["probe", REFUSED, "--ports", "7", *args[2:]]
    exit_code, dials, printed = record(tmp_path, *args, *ALLOW)
    assert exit_code == 3, printed
    assert "rule loopback" in printed, printed
    assert dials == [], dials


def test_a_refused_name_is_not_even_resolved(tmp_path: Path) -> None:
    exit_code, dials, stderr = record(tmp_path, "connect", "metadata.google.internal:80",
                                      "--send", "x")
    assert exit_code == 3, stderr
    assert "rule cloud-metadata" in stderr, stderr
    assert dials == []


def test_via_dials_the_entry_point_alone_and_never_for_a_refused_target(
        tmp_path: Path) -> None:
    # --via: the one dial goes to the entry point (the user named it, so the policy does
    # not judge it); the logical target, a literal the policy refuses, is never dialed, and
    # its refusal stops the run before the entry point is dialed either.
    with serve(echo) as entry:
        exit_code, dials, printed = record(tmp_path, "connect", "192.0.2.80:5432", "--via",
                                           entry.address, "--send", "hi")
        assert exit_code == 0, printed
        assert [(d["via"], d["address"], d["port"]) for d in dials if d["via"] != "socket"] \
            == [("connector", "127.0.0.1", entry.port)]
        exit_code, dials, printed = record(tmp_path, "connect", f"{REFUSED}:7", "--via",
                                           entry.address, "--send", "hi")
    assert exit_code == 3, printed
    assert dials == []


def test_a_proxy_is_dialed_through_the_connector_and_never_for_a_refused_target(
        tmp_path: Path) -> None:
    # --proxy: the CLI's one dial is the first proxy's, through the Connector; the target
    # is reached by the proxy (asked for the checked literal), and a refused target stops
    # the run before the proxy is dialed.
    socks = Socks5()
    with serve(echo) as target, serve(socks) as proxy:
        exit_code, dials, printed = record(tmp_path, "connect", target.address, "--proxy",
                                           f"socks5://127.0.0.1:{proxy.port}", "--send", "hi",
                                           *ALLOW)
        assert exit_code == 0, printed
        assert [(d["via"], d["address"], d["port"]) for d in dials] == [
            ("connector", "127.0.0.1", proxy.port), ("socket", "127.0.0.1", proxy.port)]
        assert socks.requests == [("127.0.0.1", target.port)]
        exit_code, dials, printed = record(tmp_path, "connect", f"{REFUSED}:7", "--proxy",
                                           f"socks5://127.0.0.1:{proxy.port}", "--send", "hi",
                                           *ALLOW)
    assert exit_code == 3, printed
    assert dials == []


def test_probe_via_dials_each_entry_point_alone(tmp_path: Path) -> None:
    with serve(echo) as first, serve(echo) as second:
        exit_code, dials, printed = record(
            tmp_path, "probe", "192.0.2.80", "--via-map",
            f"5432={first.address},6379={second.address}")
    assert exit_code == 0, printed
    assert sorted((d["via"], d["address"], d["port"]) for d in dials if d["via"] != "socket") \
        == sorted([("connector", "127.0.0.1", first.port),
                   ("connector", "127.0.0.1", second.port)])
