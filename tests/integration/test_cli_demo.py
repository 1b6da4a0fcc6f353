"""``tcpcli demo``, the quick start's first command: every section runs against the demo's
own loopback peers and shows what it promises, offline, on stdout: plain and at most 80
columns wide when piped (``tcpcli demo | less``), in colour on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def demo_command() -> list[str]:
    exe = shutil.which("tcpcli")
    return [exe, "demo"] if exe else [sys.executable, "-m", "tcpcli", "demo"]


def test_demo_runs_every_command_against_its_own_peers_piped() -> None:
    started = time.monotonic()
    proc = subprocess.run(demo_command(), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert proc.stderr == ""  # the tour is the product: all of it on stdout
    assert elapsed < 60
    # Piped: plain text for less, never wider than 80 columns, no escape codes.
    assert not ANSI.search(out)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert all(line == line.rstrip() for line in out.splitlines())
    flat = " ".join(out.split())  # the same words, whatever the wrapping
    # 1-2: the policy refuses loopback first; the demo lifts it for its peers only.
    assert "refused, nothing sent: blocked by policy \"workers\" (rule loopback)" in flat
    assert "received b'hello from tcpcli\\n'" in out
    # 3: the TLS report, verified against the throwaway CA.
    assert re.search(r"verification\s+verified", out)
    # 4: the seventh socket queued for a slot.
    assert re.search(r"socket 7: waited \d+ ms for a free slot", out)
    assert "peak simultaneous sockets: 6" in out
    # 5: probe names each peer and blocks port 25 even with loopback allowed.
    rows = {int(m.group(1)): m.group(2) for m in
            re.finditer(r"^ *127\.0\.0\.1 +(\d+) +(\w+)", out, re.M)}
    assert rows.pop(25) == "blocked"
    assert sorted(rows.values()) == ["closed", "open", "open", "open"]
    assert "Port 25 stays blocked even with --allow 127.0.0.1" in flat
    services = re.findall(r"^ *127\.0\.0\.1 +\d+ +open +connected +[\d.]+ ms +(\w+)", out,
                          re.M)
    assert sorted(services) == ["echo", "smtp", "tls"], out
    # 6: the STARTTLS dialogue, the finding, and the upgraded session.
    assert "starttls offered: yes" in out
    assert "plaintext login before tls: yes" in out
    assert "capabilities after tls: PIPELINING, SIZE 10240000, AUTH PLAIN LOGIN\n" in out
    assert re.search(r"TLS TLSv1\.[23] \S+, verified", out)
    # 7: bench measured every sample, six at a time.
    assert re.search(r"-c 6 +300 ok +0 errors", flat)
    assert re.search(r"^ *connect +300 +[\d.]+ ", out, re.M)
    # 8: ping's rounds and summary, and its checks held.
    assert len(re.findall(r"^seq=\d 127\.0\.0\.1:\d+ tls TLSv1\.[23] time=", out, re.M)) == 3
    assert "3 sent, 3 ok, 0.0% loss" in out
    assert re.search(r"^check cert\.days>=1: ok \(\d+ days\)$", out, re.M)


def test_demo_json_is_one_event_per_section() -> None:
    proc = subprocess.run([*demo_command(), "--json"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {e["schema"] for e in events} == {"tcpcli/1"}
    assert {e["event"] for e in events} == {"demo_section"}
    titles = [e["title"] for e in events]
    assert titles[0] == "tcpcli demo" and titles[-2].startswith("7. tcpcli bench")
    assert titles[-1].startswith("8. tcpcli ping")
    assert len(titles) == 9
    assert any("peak simultaneous sockets: 6" in line for e in events for line in e["lines"])


def test_demo_on_a_terminal_is_in_colour_and_fits_80_columns() -> None:
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen(demo_command(), stdin=follower, stdout=follower, stderr=follower,
                            env={**env, "FORCE_COLOR": "1", "COLUMNS": "80",
                                 "TERM": "xterm-256color"}, close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(10) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert ANSI.search(text)  # colour and styles on a terminal
    visible = ANSI.sub("", text).replace("\r", "")
    assert max(len(line) for line in visible.splitlines()) <= 80
    assert "peak simultaneous sockets: 6" in visible
