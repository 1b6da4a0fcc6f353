#!/usr/bin/env python3
"""Throughput of ``tcpcli connect`` against nc, ncat and socat, interleaved in one run.

Loopback only. Each round runs every tool once per scenario, in a shuffled order, so that
the machine's noise spreads over all of them; the report gives medians and the ratio of
each tool to ``nc -N`` (push) or ``nc`` (pull). Shared, noisy machines: quote the ratios.

    python benchmarks/connect_throughput.py --size-mib 2048 --rounds 5

Scenarios:
  push  a file on stdin -> the peer, which discards it (tcpcli, nc -N, ncat, socat)
  pipe  the same through a pipe (cat FILE | tool); cat's 128 KiB writes set the pace
  pull  the peer sends SIZE bytes -> stdout -> /dev/null
  tls   push over TLS against an openssl-free Python TLS sink (tcpcli vs openssl s_client)
  startup  ``tcpcli --version`` vs ``python -c "import click"``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
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
from collections.abc import Callable
from pathlib import Path
from typing import IO

from measure import Child, run_child, write_random_file

CHUNK = 1024 * 1024


REPOSITORY = Path(__file__).resolve().parents[1]


def quiet_run(cmd: list[str]) -> None:
    """Run a setup step; its output (pip's warnings about this machine's index settings)
    is shown only when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise subprocess.CalledProcessError(done.returncode, cmd, done.stdout,
                                            done.stderr[-1000:])


def installed_wheel(root: Path) -> Path:
    """The project's wheel in a fresh venv, as users install it (pip byte-compiles it; no
    editable-install finder or other .pth hooks of this environment run at start-up).
    Returns the venv's bin directory."""
    dist, prefix = root / "dist", root / "venv"
    quiet_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
               str(dist), str(REPOSITORY)])
    quiet_run([sys.executable, "-m", "venv", str(prefix)])
    quiet_run([str(prefix / "bin" / "python"), "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check", *map(str, dist.glob("tcpcli-*.whl"))])
    return prefix / "bin"


class Sink:
    """A loopback server: ``discard`` reads everything; ``source`` sends ``size`` bytes.

    Both must outrun every client they measure, or the benchmark measures them: the plain
    source sends from the page cache with sendfile, and the plain sink splices the socket
    through a pipe into /dev/null (Linux), so neither copies the bytes to user space."""

    def __init__(self, mode: str, size: int, context: ssl.SSLContext | None = None,
                 source: Path | None = None) -> None:
        self.source = source
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.listener.getsockname()[1]
        self.mode, self.size, self.context = mode, size, context
        self.received = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def close(self) -> None:
        """Stop accepting (a connection being served ends with its client). Shut down
        first: on Linux that wakes the thread blocked in accept, a close alone does not."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _loop(self) -> None:
        block = b"\0" * CHUNK
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                if self.context is not None:
                    conn = self.context.wrap_socket(conn, server_side=True)
                if self.mode == "discard" and self.context is None and SPLICE:
                    self.received = splice_to_null(conn, self.size)
                elif self.mode == "discard":
                    # Read exactly `size` bytes, then close: openssl s_client (with
                    # -quiet, i.e. -ign_eof) only exits when the server closes.
                    # recv_into one buffer: no allocation per chunk.
                    total, buffer = 0, bytearray(4 * CHUNK)
                    while total < self.size and (got := conn.recv_into(buffer)):
                        total += got
                    self.received = total
                    if self.context is not None:
                        with contextlib.suppress(OSError, ssl.SSLError):
                            conn.unwrap()
                elif self.source is not None and self.context is None:
                    with self.source.open("rb") as file:
                        conn.sendfile(file, count=self.size)
                    conn.shutdown(socket.SHUT_WR)
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


#: The tools run as a user's would: pip byte-compiles an installed wheel, so bytecode may be
#: written (and is, by the warm-up round) even where the shell sets PYTHONDONTWRITEBYTECODE.
#: Without it every run recompiles tcpcli from source, about 40 ms that no user pays.
CHILD_ENV = {key: value for key, value in os.environ.items()
             if key != "PYTHONDONTWRITEBYTECODE"}


SPLICE = hasattr(os, "splice")
F_SETPIPE_SZ = 1031  # Linux; not in the fcntl module before Python 3.12


def splice_to_null(conn: socket.socket, size: int) -> int:
    """Discard ``size`` bytes (or up to EOF) without copying them out of the kernel."""
    total = 0
    pipe_read, pipe_write = os.pipe()
    with contextlib.suppress(OSError):  # a 1 MiB pipe: fewer, larger moves
        fcntl.fcntl(pipe_write, F_SETPIPE_SZ, 1 << 20)
    with open(os.devnull, "wb") as null:
        try:
            while total < size:
                moved = os.splice(conn.fileno(), pipe_write, min(size - total, 1 << 20))
                if not moved:
                    break
                total += moved
                while moved:
                    moved -= os.splice(pipe_read, null.fileno(), moved)
        finally:
            os.close(pipe_read)
            os.close(pipe_write)
    return total


def timed(cmd: list[str], stdin_path: str | None, *, through_pipe: bool = False) -> Child:
    """One run of ``cmd`` with the file on stdin (or ``cat FILE |`` with through_pipe):
    its wall time and peak RSS. A failed run raises."""
    with contextlib.ExitStack() as cleanup:
        stdin: int | IO[bytes] = subprocess.DEVNULL
        if stdin_path:
            stdin = cleanup.enter_context(open(stdin_path, "rb"))
        if through_pipe:
            cat = subprocess.Popen(["cat"], stdin=stdin, stdout=subprocess.PIPE)
            cleanup.callback(cat.wait)
            cleanup.callback(cat.kill)
            assert cat.stdout is not None
            stdin = cleanup.enter_context(cat.stdout)
        child = run_child(cmd, stdin=stdin, capture=False, env=CHILD_ENV,
                          exact_rss=True)
    return child.check(cmd[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenarios", default="push,pipe,pull,tls,startup")
    parser.add_argument("--tcpcli", choices=("wheel", "current"), default="wheel",
                        help="wheel: build and install it in a fresh venv (default); current:"
                             " the tcpcli on PATH (an editable install pays its finder)")
    args = parser.parse_args()
    size = args.size_mib * CHUNK
    scenarios = args.scenarios.split(",")
    results: dict[str, list[float]] = {}
    tmp = tempfile.mkdtemp()
    data = Path(tmp) / "data.bin"
    write_random_file(data, args.size_mib)

    if args.tcpcli == "wheel":
        try:
            bin_dir = installed_wheel(Path(tmp))
        except subprocess.CalledProcessError as exc:
            sys.exit(f"cannot build and install the wheel ({exc}); without a package index,"
                     " measure the installed checkout with --tcpcli current")
        tcpcli, python = [str(bin_dir / "tcpcli")], str(bin_dir / "python")
    else:
        found = shutil.which("tcpcli")
        tcpcli = [found] if found else [sys.executable, "-m", "tcpcli"]
        python = sys.executable
    discard, source = Sink("discard", size), Sink("source", size, source=data)
    allow = ["--allow", "127.0.0.1", "-q"]
    runs: list[tuple[str, Callable[[], float]]] = []

    def add(name: str, cmd: list[str], stdin: str | None, *, through_pipe: bool = False) -> None:
        if shutil.which(cmd[0]):
            runs.append((name, lambda: timed(cmd, stdin, through_pipe=through_pipe).seconds))

    if "push" in scenarios:
        target = ["127.0.0.1", str(discard.port)]
        add("push tcpcli", [*tcpcli, "connect", *target, *allow], str(data))
        add("push nc -N", ["nc", "-N", *target], str(data))
        add("push ncat", ["ncat", "--send-only", *target], str(data))
        add("push socat", ["socat", "-u", "STDIN", f"TCP:127.0.0.1:{discard.port}"], str(data))
        add("push socat -b256K", ["socat", "-b", "262144", "-u", "STDIN",
                                  f"TCP:127.0.0.1:{discard.port}"], str(data))
    if "pipe" in scenarios:
        target = ["127.0.0.1", str(discard.port)]
        add("pipe tcpcli", [*tcpcli, "connect", *target, *allow], str(data), through_pipe=True)
        add("pipe nc -N", ["nc", "-N", *target], str(data), through_pipe=True)
        add("pipe socat -b256K", ["socat", "-b", "262144", "-u", "STDIN",
                                  f"TCP:127.0.0.1:{discard.port}"], str(data), through_pipe=True)
    if "pull" in scenarios:
        target = ["127.0.0.1", str(source.port)]
        add("pull tcpcli", [*tcpcli, "connect", *target, *allow, "--no-stdin"], None)
        add("pull nc", ["nc", "-d", *target], None)
        add("pull ncat", ["ncat", "--recv-only", *target], None)
        add("pull socat", ["socat", "-u", f"TCP:127.0.0.1:{source.port}", "STDOUT"], None)
    if "tls" in scenarios:
        from tcpcli.core.certgen import throwaway_certificate

        certificate = throwaway_certificate("127.0.0.1")
        ca = certificate.write_ca(tmp)
        tls_sink = Sink("discard", size, certificate.server_context())
        add("tls tcpcli", [*tcpcli, "connect", "127.0.0.1", str(tls_sink.port), "--tls",
                           "--ca-file", ca, *allow], str(data))
        add("tls openssl s_client", ["openssl", "s_client", "-quiet",
                                     "-connect", f"127.0.0.1:{tls_sink.port}",
                                     "-CAfile", ca], str(data))
    if "startup" in scenarios:
        add("startup tcpcli --version", [*tcpcli, "--version"], None)
        add("startup import click", [python, "-c", "import click"], None)

    for _, run in runs:  # warm-up, not counted: page cache, bytecode, sockets
        run()
    for round_index in range(args.rounds):
        order = runs[:]
        random.shuffle(order)
        for name, run in order:
            results.setdefault(name, []).append(run())
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    baselines = {"push": "push nc -N", "pipe": "pipe nc -N", "pull": "pull nc",
                 "tls": "tls openssl s_client",
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
