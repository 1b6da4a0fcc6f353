"""The README's "Output contract" table, checked row by row against real runs: where each
command's product, people's lines and ``--json`` stream go. The table is read from the
README, so it cannot say one thing while the commands do another."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.cli import run_cli, tcpcli_command
from tests.support.peers import echo, serve

README = Path(__file__).resolve().parents[2] / "README.md"
ALLOW = ("--allow", "127.0.0.1")

pytestmark = pytest.mark.timeout(60)


def contract() -> dict[str, dict[str, str]]:
    """The table under "### Output contract": command -> its columns."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Output contract", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        command = cells[0].strip("`")
        table[command] = {"stdout": cells[1], "stderr": cells[2], "json": cells[3]}
    return table


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def run_listen(*args: str) -> subprocess.CompletedProcess[bytes]:
    """``listen`` serving one client that says hello and hangs up."""
    port = free_port()
    proc = subprocess.Popen([*tcpcli_command(), "listen", f"127.0.0.1:{port}", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as client:
                client.sendall(b"hello\n")
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    out, err = proc.communicate(timeout=10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextmanager
def echo_server() -> Iterator[str]:
    with serve(echo) as server:
        yield server.address


#: A run of each command, with or without --json (loopback only, a second or less each).
def runs() -> dict[str, Callable[[bool], subprocess.CompletedProcess[bytes]]]:
    def with_echo(*args: str, stdin: bytes = b"") -> Callable[[bool], subprocess.CompletedProcess[bytes]]:
        def run(as_json: bool) -> subprocess.CompletedProcess[bytes]:
            with echo_server() as address:
                filled = [a.replace("ADDRESS", address) for a in args]
                return run_cli(*filled, *(["--json"] if as_json else []), stdin=stdin)
        return run

    def closed_port(*args: str) -> Callable[[bool], subprocess.CompletedProcess[bytes]]:
        return lambda as_json: run_cli(*args, f"127.0.0.1:{free_port()}", *ALLOW, "-P", "smtp",
                                       *(["--json"] if as_json else []))

    return {
        "connect": with_echo("connect", "ADDRESS", *ALLOW, stdin=b"ping\n"),
        "listen": lambda as_json: run_listen(*(["--json"] if as_json else [])),
        "probe": with_echo("probe", "ADDRESS", *ALLOW),
        "starttls": closed_port("starttls"),
        "bench": with_echo("bench", "ADDRESS", *ALLOW, "-n", "5"),
        "ping": with_echo("ping", "ADDRESS", *ALLOW, "-c", "2", "-i", "0.05"),
        "config": lambda as_json: run_cli("config", "show", "--no-config",
                                          *(["--json"] if as_json else [])),
        "demo": lambda as_json: run_cli("demo", *(["--json"] if as_json else [])),
    }


def json_lines(data: bytes) -> list[dict[str, object]]:
    """Every line parsed; fails on any line that is not a tcpcli/1 event."""
    events = [json.loads(line) for line in data.decode().splitlines()]
    assert events, "no JSON lines"
    for event in events:
        assert event["schema"] == "tcpcli/1" and isinstance(event["event"], str), event
        assert isinstance(event["t_ms"], int | float), event
    return events


def test_the_table_names_every_command_and_a_jq_line_for_each() -> None:
    table = contract()
    assert set(table) == set(runs())
    text = README.read_text(encoding="utf-8")
    for command in table:
        assert re.search(rf"^tcpcli {command} .*\| jq ", text, re.M), command


@pytest.mark.parametrize("command", sorted(runs()))
def test_each_row_holds(command: str) -> None:
    row = contract()[command]
    run = runs()[command]
    plain, as_json = run(False), run(True)
    # --json goes where the table says, and every line of that stream is an event.
    if row["json"].startswith("stdout"):
        json_lines(as_json.stdout)
        assert not any(line.startswith(b"{") for line in as_json.stderr.splitlines()), \
            as_json.stderr
    else:
        assert row["json"].startswith("stderr"), row
        json_lines(as_json.stderr)
    # Without --json: stdout is the product, stderr never carries JSON.
    assert not any(line.startswith(b"{") for line in plain.stderr.splitlines()), plain.stderr
    if row["stdout"].startswith("the peer's bytes"):
        expected = b"ping\n" if command == "connect" else b"hello\n"
        assert plain.stdout == expected and as_json.stdout == expected
    elif row["stdout"].startswith("nothing"):
        assert plain.stdout == b"", plain.stdout
    else:
        assert plain.stdout.strip(), (command, plain.stderr)
        assert not plain.stdout.startswith(b"{"), plain.stdout[:200]


def test_connect_warnings_are_events_once_json_is_on(server_ssl_context: object) -> None:
    """A TLS run with --insecure warns that the certificate was not verified: with --json
    that warning is a ``warning`` event in the stream, not a plain line inside it."""
    import ssl

    assert isinstance(server_ssl_context, ssl.SSLContext)
    with serve(echo, ssl_context=server_ssl_context) as server:
        plain = run_cli("connect", server.address, *ALLOW, "--tls", "--insecure",
                        stdin=b"ping\n")
        as_json = run_cli("connect", server.address, *ALLOW, "--tls", "--insecure", "--json",
                          stdin=b"ping\n")
    assert plain.returncode == 0 and as_json.returncode == 0, as_json.stderr
    assert b"NOT verified" in plain.stderr
    events = json_lines(as_json.stderr)  # fails on any line that is not an event
    warnings = [e for e in events if e["event"] == "warning"]
    assert any("NOT verified" in str(e["message"]) for e in warnings), events
    assert as_json.stdout == b"ping\n"
