"""What every benchmark here needs to time a child process: wall time and peak RSS of one
run, tcpcli's JSON events wherever it writes them, and loopback ports to listen on.

Shared by the scripts beside it (each also runs on its own: ``python benchmarks/X.py``
puts this folder first on ``sys.path``) and by ``benchmarks/run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: A run that takes longer than this is stuck, not slow: it is killed and reported.
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Child:
    """One finished run: wall time from spawn to exit, peak resident set, exit status and
    what it printed (when captured)."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def check(self, name: str) -> Child:
        if self.returncode != 0:
            raise RuntimeError(f"{name} exited {self.returncode}: "
                               f"{(self.stderr or self.stdout).strip()[-400:]}")
        return self


#: GNU time, for exact peak RSS (see run_child); Debian's package ``time``.
GNU_TIME = "/usr/bin/time"


def run_child(cmd: list[str], *, stdin: int | IO[bytes] | None = subprocess.DEVNULL,
              capture: bool = True, env: dict[str, str] | None = None,
              timeout: float = DEFAULT_TIMEOUT, exact_rss: bool = False) -> Child:
    """Run ``cmd`` to its end: wall time, peak RSS, exit status and output.

    The peak comes from ``wait4`` on that one child, and Linux carries the high-water
    mark across ``exec``: a child spawned by a large process (this one, after importing
    cryptography) reads at least that process's RSS. ``exact_rss`` runs ``cmd`` under GNU
    time instead, which forks it from its own small image (about 1 ms more per run: for
    the long runs whose memory is a goal, not for start-up timings).

    Output goes to temporary files, not pipes, so nothing has to be drained while waiting
    and the child never blocks on a full pipe."""
    exact = exact_rss and os.access(GNU_TIME, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        argv = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if exact else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin, env=env,
                                stdout=out if capture else subprocess.DEVNULL,
                                stderr=err)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        peak_kib = usage.ru_maxrss
        if exact:
            # The last line: GNU time puts "Command exited with non-zero status" first.
            lines = rss.read().split()
            peak_kib = int(lines[-1]) if lines and lines[-1].isdigit() else peak_kib
        out.seek(0)
        err.seek(0)
        return Child(seconds, peak_kib / 1024, proc.returncode,
                     out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def tcpcli_command() -> list[str]:
    """The tcpcli on PATH, else this interpreter's ``-m tcpcli``."""
    exe = shutil.which("tcpcli")
    return [exe] if exe else [sys.executable, "-m", "tcpcli"]


def tcpcli_event(child: Child, event: str) -> dict[str, Any]:
    """The first tcpcli/1 JSON event named ``event`` the run printed (stdout or stderr:
    the JSON stream's place is the CLI's to choose)."""
    for line in (child.stdout + "\n" + child.stderr).splitlines():
        if f'"{event}"' in line and line.lstrip().startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            if parsed.get("event") == event:
                return parsed
    raise RuntimeError(f"no {event} event in tcpcli's output: "
                       f"{(child.stderr or child.stdout).strip()[-400:]}")


def free_port() -> int:
    """A loopback port nobody listens on right now (for peers that take ``-p PORT``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Whether some socket listens on ``port`` (from /proc: a test connection would be
    taken as a client by one-shot servers such as ``iperf3 -s -1``)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def start_peer(cmd: list[str], port: int, *, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start a peer server and wait until it listens on ``port``."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{cmd[0]} did not listen on {port}")
        time.sleep(0.02)
    return proc


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate ``proc`` and reap it; kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def write_random_file(path: Path, size_mib: int) -> Path:
    """``size_mib`` MiB of incompressible bytes (one random MiB repeated)."""
    with path.open("wb") as file:
        block = os.urandom(1 << 20)
        for _ in range(size_mib):
            file.write(block)
    return path
