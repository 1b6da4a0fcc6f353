"""``tcpcli probe --banner`` as people and scripts read it: the service (product,
version) and how it is known, in the table, the plain lines, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import socket

import pytest

from tests.integration.test_cli_probe import run_probe
from tests.support.peers import serve

pytestmark = pytest.mark.timeout(60)


def ssh(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
    conn.recv(1024)


def nginx(conn: socket.socket) -> None:
    if conn.recv(1024).startswith(b"HEAD / "):
        conn.sendall(b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nContent-Length: 0\r\n\r\n")
    conn.recv(1024)


def silent(conn: socket.socket) -> None:
    conn.recv(1024)


def test_the_service_in_every_output_form() -> None:
    with serve(ssh) as one, serve(nginx) as two, serve(silent) as three:
        ports = f"{one.port},{two.port},{three.port}"
        common = ("127.0.0.1", "-p", ports, "--allow", "127.0.0.1", "--banner",
                  "--banner-wait", "0.3")
        plain = run_probe(*common)
        as_csv = run_probe(*common, "--csv")
        as_json = run_probe(*common, "--json")
        table = run_probe(*common, environ={"FORCE_COLOR": "1", "COLUMNS": "200"})
        narrow = run_probe(*common, environ={"FORCE_COLOR": "1", "COLUMNS": "100"})
    for proc in (plain, as_csv, as_json, table, narrow):
        assert proc.returncode == 0, proc.stderr
    lines = {line.split()[1]: line for line in plain.stdout.splitlines()}
    assert ("service=ssh product=OpenSSH version=9.6p1 "
            'service_confidence="version from banner"') in lines[str(one.port)]
    assert ("service=http product=nginx version=1.24.0 "
            'service_confidence="version from banner"') in lines[str(two.port)]
    assert "product=" not in lines[str(three.port)]
    rows = {int(row["port"]): row for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert (rows[one.port]["service"], rows[one.port]["product"],
            rows[one.port]["version"]) == ("ssh", "OpenSSH", "9.6p1")
    assert rows[two.port]["service_confidence"] == "version from banner"
    events = {e["port"]: e for e in map(json.loads, as_json.stdout.splitlines())
              if e["event"] == "probe_result"}
    assert events[one.port]["service"] == {
        "name": "ssh", "product": "OpenSSH", "version": "9.6p1", "info": "Ubuntu-3ubuntu13",
        "confidence": "version from banner",
        "detail": "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13", "facts": {"protocol": "2.0"}}
    assert "service" not in events[three.port] or events[three.port]["service"][
        "confidence"] == "port default only"
    assert "ssh OpenSSH 9.6p1 (Ubuntu-3ubuntu13)" in table.stdout
    assert "http nginx 1.24.0" in table.stdout and "version from banner" in table.stdout
    # A narrower terminal keeps the service and drops the "identified by" column.
    assert "http nginx 1.24.0" in narrow.stdout and "identified by" not in narrow.stdout
