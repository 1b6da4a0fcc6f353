"""Data integrity under stress: a large stream through ``tcpcli connect`` and back, via a
peer that reads and writes in random sizes with random pauses; SHA-256 equal both ways.

What CI runs: 1 GiB each way in plain TCP (~10 s on two cores) and 256 MiB each way over
TLS (~9 s; the full gigabyte takes ~33 s, past the suite's time budget).
``TCPCLI_HOSTILE_BYTES=1GiB`` (or ``512MiB``, ``1073741824``...) sets both sizes.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import pytest

from tests.hostile.harness import RSS_LIMIT_MB, assert_clean_exit, run_cli
from tests.support.peers import serve

pytestmark = pytest.mark.timeout(600)

CHUNK = 1 << 20


def _size(text: str) -> int:
    units = {"gib": 1 << 30, "mib": 1 << 20, "kib": 1 << 10}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)]) * factor)
    return int(lowered)


OVERRIDE = os.environ.get("TCPCLI_HOSTILE_BYTES")
PLAIN_BYTES = _size(OVERRIDE or "1GiB")
TLS_BYTES = _size(OVERRIDE or "256MiB")


def chunks(total: int, seed: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """``total`` deterministic pseudo-random bytes (a fresh 1 MiB per chunk), hashed as
    they are made."""
    generator = random.Random(seed)
    left = total
    while left:
        block = generator.randbytes(min(CHUNK, left))
        digest.update(block)
        left -= len(block)
        yield block


def erratic_echo(seen: dict[str, object], seed: int) -> Callable[[socket.socket], None]:
    """Echo with random read sizes (1 B .. 256 KiB), random write splits and pauses."""
    def handler(conn: socket.socket) -> None:
        rng = random.Random(seed)
        digest = hashlib.sha256()
        received = pauses = 0
        conn.settimeout(60)
        while data := conn.recv(rng.choice((1, 7, 512, 4096, 65536, 262144))):
            digest.update(data)
            received += len(data)
            view = memoryview(data)
            while view:
                cut = rng.randint(1, len(view))
                conn.sendall(view[:cut])
                view = view[cut:]
            if rng.random() < 0.002:
                pauses += 1
                time.sleep(rng.uniform(0.001, 0.02))
        seen.update(sha256=digest.hexdigest(), received=received, pauses=pauses)
    return handler


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_stream_survives_an_erratic_peer(tls: bool, server_ssl_context: ssl.SSLContext,
                                         ca_file: str) -> None:
    total = TLS_BYTES if tls else PLAIN_BYTES
    sent = hashlib.sha256()
    seen: dict[str, object] = {}
    tls_args = ["--tls", "--ca-file", ca_file] if tls else []
    with serve(erratic_echo(seen, seed=8), ssl_context=server_ssl_context if tls else None) \
            as server:
        run = run_cli("connect", server.address, "--allow", "127.0.0.1", *tls_args,
                      stdin=chunks(total, seed=8 + tls, digest=sent), stdout="hash", timeout=540)
    assert not run.killed, run.stderr
    assert run.returncode == 0, run.stderr
    assert_clean_exit(run)
    assert seen["received"] == total and seen["sha256"] == sent.hexdigest()
    assert run.stdout_bytes == total and run.stdout_sha256 == sent.hexdigest()
    assert run.peak_rss_mb < RSS_LIMIT_MB, run.peak_rss_mb
    print(f"{total >> 20} MiB each way, tls={tls}: {run.elapsed:.1f} s, "
          f"peak RSS {run.peak_rss_mb:.0f} MB, {seen['pauses']} peer pauses")
