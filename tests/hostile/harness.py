"""Run the real CLI against hostile peers and measure what a user would notice.

``run_cli`` starts ``tcpcli`` as a subprocess and reports its exit code, stderr, wall time
and peak resident memory (``VmHWM`` from /proc, polled while it runs: ``wait4``'s
``ru_maxrss`` would also count the pages a fork copies from this test process). stdout is
discarded, captured, or hashed on the fly (for streams of a gigabyte).
"""

from __future__ import annotations

import hashlib
import os
import signal as signals
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from tests.support.cli import tcpcli_command

#: The resident-memory ceiling for one tcpcli run, whatever the peer does. Measured peaks:
#: ~28 MB for a plain ``connect``, ~45 MB with TLS loaded, ~65 MB after streaming 1 GiB
#: (allocator high-water, flat from there); a run that buffered the 100 MB banner could
#: not stay under it.
RSS_LIMIT_MB = 100


@dataclass
class Run:
    returncode: int
    stderr: str
    elapsed: float  # seconds from start (or from the signal, see ``after_signal``)
    peak_rss_mb: float
    stdout: bytes = b""
    stdout_bytes: int = 0
    stdout_sha256: str = ""
    after_signal: float | None = None  # seconds from the signal to the exit
    killed: bool = False  # the harness had to kill it (it did not end by itself)

    @property
    def lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def _peak_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_cli(*args: str,
            stdin: int | IO[bytes] | bytes | Iterable[bytes] | None = subprocess.DEVNULL,
            stdout: str = "discard", timeout: float = 30.0, backend: str = "asyncio",
            send_signal: tuple[int, Callable[[Run], bool] | float] | None = None,
            preexec_fn: Callable[[], None] | None = None) -> Run:
    """Run ``tcpcli ARGS``; ``stdout`` is "discard", "capture" or "hash"; ``stdin`` bytes
    or an iterable of chunks is fed through a pipe, then closed.

    ``send_signal=(SIGINT, 0.8)`` signals after 0.8 s; with a predicate instead of a delay,
    once ``predicate(progress)`` is true (``progress.stdout_bytes`` grows as output comes).
    A run still going after ``timeout`` is killed and marked ``killed``.
    """
    env = {**os.environ, "TCPCLI_BACKEND": backend, "NO_COLOR": "1"}
    feed: Iterable[bytes] | None = None
    if isinstance(stdin, bytes):
        feed = [stdin]
    elif stdin is not None and not isinstance(stdin, int) and not hasattr(stdin, "fileno"):
        feed = stdin
    proc = subprocess.Popen(
        [*tcpcli_command(), *args],
        stdin=subprocess.PIPE if feed is not None else stdin,  # type: ignore[arg-type]
        stdout=subprocess.DEVNULL if stdout == "discard" else subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn,
    )
    start = time.monotonic()
    progress = Run(0, "", 0.0, 0.0)
    digest = hashlib.sha256()
    captured: list[bytes] = []
    err: list[bytes] = []
    peak = [0]

    def pump_stdout() -> None:
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 1 << 20):
            progress.stdout_bytes += len(chunk)
            if stdout == "hash":
                digest.update(chunk)
            else:
                captured.append(chunk)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        err.append(proc.stderr.read())

    def feed_stdin() -> None:
        assert proc.stdin is not None and feed is not None
        try:
            for chunk in feed:
                proc.stdin.write(chunk)
            proc.stdin.close()
        except OSError:
            pass

    def watch_memory() -> None:
        while proc.poll() is None:
            kb = _peak_rss_kb(proc.pid)
            if kb is not None:
                peak[0] = max(peak[0], kb)
            time.sleep(0.01)

    threads = [threading.Thread(target=pump_stderr, daemon=True),
               threading.Thread(target=watch_memory, daemon=True)]
    if stdout != "discard":
        threads.append(threading.Thread(target=pump_stdout, daemon=True))
    if feed is not None:
        threads.append(threading.Thread(target=feed_stdin, daemon=True))
    for thread in threads:
        thread.start()

    signalled_at: float | None = None
    killed = False
    deadline = start + timeout
    while proc.poll() is None:
        now = time.monotonic()
        if now > deadline:
            proc.kill()
            killed = True
            break
        if send_signal is not None and signalled_at is None:
            signum, when = send_signal
            due = when(progress) if callable(when) else now - start >= when
            if due:
                proc.send_signal(signum)
                signalled_at = time.monotonic()
        time.sleep(0.005)
    proc.wait()
    end = time.monotonic()
    for thread in threads:
        thread.join(timeout=10)
    return Run(
        returncode=proc.returncode,
        stderr=b"".join(err).decode("utf-8", "replace"),
        elapsed=end - start,
        peak_rss_mb=peak[0] / 1024,
        stdout=b"".join(captured),
        stdout_bytes=progress.stdout_bytes,
        stdout_sha256=digest.hexdigest() if stdout == "hash" else "",
        after_signal=None if signalled_at is None else end - signalled_at,
        killed=killed,
    )


def assert_clean_exit(run: Run) -> None:
    """No Python noise on stderr, whatever went wrong."""
    for noise in ("Traceback", "Task was destroyed", "Exception ignored", "coroutine ",
                  "RuntimeWarning", "ResourceWarning"):
        assert noise not in run.stderr, run.stderr


SIGNALS = {"SIGINT": (signals.SIGINT, 130), "SIGTERM": (signals.SIGTERM, 143)}
