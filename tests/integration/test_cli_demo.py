"""``tcpcli demo``, the quick start's first command: every section runs against the demo's
own loopback peers and shows what it promises, offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time


def test_demo_runs_every_command_against_its_own_peers() -> None:
    exe = shutil.which("tcpcli")
    command = [exe] if exe else [sys.executable, "-m", "tcpcli"]
    started = time.monotonic()
    proc = subprocess.run([*command, "demo"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert elapsed < 60
    # 1-2: the policy refuses loopback first; the demo lifts it for its peers only.
    assert "refused, nothing sent: blocked by policy \"workers\" (rule loopback)" in out
    assert "received b'hello from tcpcli\\n'" in out
    # 3: the TLS report, verified against the throwaway CA.
    assert re.search(r"verification\s+verified", out)
    # 4: the seventh socket queued for a slot.
    assert re.search(r"socket 7: waited \d+ ms for a free slot", out)
    assert "peak simultaneous sockets: 6" in out
    # 5: probe names each peer and blocks port 25 even with loopback allowed.
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"127\.0\.0\.1\s+(\d+)\s+.*", out)}
    states = {port: row.split()[2] for port, row in rows.items()}
    assert states.pop(25) == "blocked" and "port-25" in rows[25]
    assert sorted(states.values()) == ["closed", "open", "open", "open"]
    services = " ".join(rows.values())
    for service in ("echo", "smtp", "tls"):
        assert f" {service} (" in services, service
    # 6: the STARTTLS dialogue, the finding, and the upgraded session.
    assert "starttls offered: yes" in out
    assert "plaintext login before tls: yes" in out
    assert "capabilities after tls: PIPELINING, SIZE 10240000, AUTH PLAIN LOGIN\n" in out
    assert re.search(r"TLS TLSv1\.[23] \S+, verified", out)
    # 7: bench measured every sample, six at a time.
    assert "samples     300 ok, 0 errors" in out
    assert re.search(r"connect\s+min=[\d.]+ .* p99=[\d.]+ .*\(n=300\)", out)
