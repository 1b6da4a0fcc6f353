#!/usr/bin/env python3
"""Throughput of ``tcpcli connect`` against nc, ncat and socat, interleaved in one run.

Loopback only. Each round runs every tool once per scenario, in a shuffled order, so that
the machine's noise spreads over all of them; the report gives medians and the ratio of
each tool to ``nc -N`` (push) or ``nc`` (pull). Shared, noisy machines: quote the ratios.

    python benchmarks/connect_throughput.py --size-mib 2048 --rounds 5

Scenarios:
  push  a file on stdin -> the peer, which discards it (tcpcli, nc -N, ncat, socat)
  pull  the peer sends SIZE bytes -> stdout -> /dev/null
  tls   push over TLS against an openssl-free Python TLS sink (tcpcli vs openssl s_client)
  startup  ``tcpcli --version`` vs ``python -c "import click"``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

CHUNK = 1024 * 1024


def tcpcli() -> list[str]:
    exe = shutil.which("tcpcli")
    return [exe] if exe else [sys.executable, "-m", "tcpcli"]


class Sink:
    """A loopback server: ``discard`` reads everything; ``source`` sends ``size`` bytes."""

    def __init__(self, mode: str, size: int, context: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.listener.getsockname()[1]
        self.mode, self.size, self.context = mode, size, context
        self.received = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        block = b"\0" * CHUNK
        while True:
            conn, _ = self.listener.accept()
            try:
                if self.context is not None:
                    conn = self.context.wrap_socket(conn, server_side=True)
                if self.mode == "discard":
                    # Read exactly `size` bytes, then close: openssl s_client (with
                    # -quiet, i.e. -ign_eof) only exits when the server closes.
                    # recv_into one buffer: the sink must outrun every client it measures.
                    total, buffer = 0, bytearray(4 * CHUNK)
                    while total < self.size and (got := conn.recv_into(buffer)):
                        total += got
                    self.received = total
                    if self.context is not None:
                        with contextlib.suppress(OSError, ssl.SSLError):
                            conn.unwrap()
                else:
                    left = self.size
                    while left > 0:
                        conn.sendall(block[: min(left, CHUNK)])
                        left -= CHUNK
                    conn.shutdown(socket.SHUT_WR)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()


def timed(cmd: list[str], stdin_path: str | None) -> float:
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=600)
        elapsed = time.perf_counter() - start
    finally:
        if stdin_path:
            stdin.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode()[:300]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenarios", default="push,pull,tls,startup")
    args = parser.parse_args()
    size = args.size_mib * CHUNK
    scenarios = args.scenarios.split(",")
    results: dict[str, list[float]] = {}
    tmp = tempfile.mkdtemp()
    data = Path(tmp) / "data.bin"
    with data.open("wb") as f:
        block = os.urandom(CHUNK)
        for _ in range(args.size_mib):
            f.write(block)

    discard, source = Sink("discard", size), Sink("source", size)
    allow = ["--allow", "127.0.0.1", "-q"]
    runs: list[tuple[str, Callable[[], float]]] = []

    def add(name: str, cmd: list[str], stdin: str | None) -> None:
        if shutil.which(cmd[0]) or cmd[0] == sys.executable:
            runs.append((name, lambda: timed(cmd, stdin)))

    if "push" in scenarios:
        target = ["127.0.0.1", str(discard.port)]
        add("push tcpcli", [*tcpcli(), "connect", *target, *allow], str(data))
        add("push nc -N", ["nc", "-N", *target], str(data))
        add("push ncat", ["ncat", "--send-only", *target], str(data))
        add("push socat", ["socat", "-u", "STDIN", f"TCP:127.0.0.1:{discard.port}"], str(data))
        add("push socat -b256K", ["socat", "-b", "262144", "-u", "STDIN",
                                  f"TCP:127.0.0.1:{discard.port}"], str(data))
    if "pull" in scenarios:
        target = ["127.0.0.1", str(source.port)]
        add("pull tcpcli", [*tcpcli(), "connect", *target, *allow, "--no-stdin"], None)
        add("pull nc", ["nc", "-d", *target], None)
        add("pull ncat", ["ncat", "--recv-only", *target], None)
        add("pull socat", ["socat", "-u", f"TCP:127.0.0.1:{source.port}", "STDOUT"], None)
    if "tls" in scenarios:
        from tcpcli.core.certgen import throwaway_certificate

        certificate = throwaway_certificate("127.0.0.1")
        ca = certificate.write_ca(tmp)
        tls_sink = Sink("discard", size, certificate.server_context())
        add("tls tcpcli", [*tcpcli(), "connect", "127.0.0.1", str(tls_sink.port), "--tls",
                           "--ca-file", ca, *allow], str(data))
        add("tls openssl s_client", ["openssl", "s_client", "-quiet",
                                     "-connect", f"127.0.0.1:{tls_sink.port}",
                                     "-CAfile", ca], str(data))
    if "startup" in scenarios:
        add("startup tcpcli --version", [*tcpcli(), "--version"], None)
        add("startup import click", [sys.executable, "-c", "import click"], None)

    for round_index in range(args.rounds):
        order = runs[:]
        random.shuffle(order)
        for name, run in order:
            results.setdefault(name, []).append(run())
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    baselines = {"push": "push nc -N", "pull": "pull nc", "tls": "tls openssl s_client",
                 "startup": "startup import click"}
    print(f"{'run':<28}{'median s':>10}{'GB/s':>8}{'ratio':>8}  (ratio = time / baseline)")
    for name, times in results.items():
        median = statistics.median(times)
        group = name.split()[0]
        base = results.get(baselines[group])
        ratio = median / statistics.median(base) if base else float("nan")
        rate = "" if group == "startup" else f"{size / median / 1e9:8.2f}"
        print(f"{name:<28}{median:>10.3f}{rate:>8}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
