"""The kernel's facts follow the link: in the tests' own namespace, ``lo`` is given a
smaller MTU and a slow, short-queued token bucket (tc tbf), and ``connect``'s TCP_INFO
facts must show it — MSS and path MTU from the MTU, an RTT that grows with the queue a
bulk send builds, and the retransmits of what overflowed it — where an unshaped link
shows none of that."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.isolated_namespace import (
    in_loopback_namespace,
    isolated_command,
    skip_without_namespace,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO"),
              pytest.mark.skipif(in_loopback_namespace(), reason="already inside")]


def shaped(*args: str) -> dict[str, dict[str, Any]]:
    """connect's ``connected`` and ``close`` events' ``tcp`` facts on a shaped ``lo``."""
    skip_without_namespace()
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (iproute2) is not installed")
    proc = subprocess.run(
        isolated_command(sys.executable, "-m", "tests.support.shaped_link", *args),
        capture_output=True, text=True, timeout=90, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return {event["event"]: event["tcp"] for event in events}


@pytest.mark.timeout(120)
def test_mss_rtt_and_retransmits_follow_the_link() -> None:
    plain = shaped("500000")
    slow = shaped("--mtu", "1400", "--rate", "4mbit", "500000")
    # MSS: the MTU less the IPv4 and TCP headers and the timestamp option (12 bytes).
    assert slow["connected"]["pmtu"] == 1400
    assert slow["connected"]["mss"] == 1400 - 20 - 20 - 12
    assert plain["connected"]["mss"] > 30000  # loopback: a 64 KiB MTU
    # Half a megabyte through a 4 Mbit/s bucket with a 24 KB queue (up to 48 ms of it): the
    # queue fills, so the smoothed RTT grows from the handshake's (tens of microseconds)
    # to milliseconds, and overflows (retransmits).
    assert slow["close"]["rtt_ms"] > 3.0
    assert slow["close"]["rtt_ms"] > 3 * slow["connected"]["rtt_ms"]
    assert slow["close"]["retransmits"] > 0 and slow["close"]["bytes_retrans"] > 0
    assert plain["close"]["retransmits"] == 0
    assert plain["close"]["rtt_ms"] < 1.0
