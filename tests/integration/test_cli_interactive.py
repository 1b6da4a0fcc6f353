"""Interactive ``tcpcli connect`` on a terminal: Ctrl-C typed at a real pty.

The CLI runs as a user meets it: stdin, stdout and stderr on a pseudo-terminal that is its
controlling terminal, so writing ``\\x03`` to the master makes the line discipline send
SIGINT to it, exactly as pressing Ctrl-C does.
"""

from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tests.support.cli import tcpcli_command
from tests.support.peers import LoopbackServer, echo, serve

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["asyncio", "trio"]
#: From the Ctrl-C to the exit, on a loaded CI machine.
PROMPT_S = 2.0

#: Makes the pty its controlling terminal, then becomes tcpcli: ``start_new_session``
#: already made the child a session leader, which TIOCSCTTY needs.
_TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


@dataclass
class Terminal:
    """A tcpcli process on a pty, and everything it has written there so far."""

    proc: subprocess.Popen[bytes]
    master: int
    screen: bytearray = field(default_factory=bytearray)

    def pump(self, seconds: float) -> None:
        """Read what the process writes for up to ``seconds`` (less once it has exited)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], min(left, 0.05))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError as exc:  # EIO: every slave end is closed
                    if exc.errno != errno.EIO:
                        raise
                    chunk = b""
                if not chunk:
                    return
                self.screen += chunk
            elif self.proc.poll() is not None:
                return

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_exit(self, seconds: float) -> float | None:
        """Seconds until the process exited, or None if it was still running after them."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            self.pump(0.05)
            if self.proc.poll() is not None:
                self.pump(0.2)  # what it wrote last
                return time.monotonic() - start
        return None

    @property
    def text(self) -> str:
        return self.screen.decode("utf-8", "replace")


@contextmanager
def on_a_terminal(*args: str, backend: str) -> Iterator[Terminal]:
    master, slave = os.openpty()
    env = {**os.environ, "TCPCLI_BACKEND": backend, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _TAKE_TERMINAL, *tcpcli_command(), *args],
                            stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    terminal = Terminal(proc, master)
    try:
        yield terminal
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        os.close(master)


def _connected(server: LoopbackServer, terminal: Terminal) -> None:
    """Wait until tcpcli has connected (and settled into reading the terminal)."""
    deadline = time.monotonic() + 20
    while not server.connections:
        assert time.monotonic() < deadline, terminal.text
        assert terminal.proc.poll() is None, terminal.text
        terminal.pump(0.05)
    terminal.pump(0.3)


@pytest.mark.parametrize("presses", [1, 3], ids=["one-ctrl-c", "three-ctrl-c"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_on_an_idle_terminal_ends_connect_at_once(backend: str, presses: int) -> None:
    """Nothing typed, no Enter: Ctrl-C still ends the run, with 130 and no traceback."""
    with serve(echo) as server, \
            on_a_terminal("connect", server.address, "--allow", "127.0.0.1",
                          backend=backend) as terminal:
        _connected(server, terminal)
        for press in range(presses):
            if press:
                time.sleep(0.02)  # the later ones land while the first is unwinding
            terminal.type(b"\x03")
        took = terminal.wait_exit(PROMPT_S)
        assert took is not None, f"still running {PROMPT_S} s after Ctrl-C: {terminal.text}"
        assert terminal.proc.returncode == 130, terminal.text
        for noise in ("Traceback", "KeyboardInterrupt", "Exception ignored"):
            assert noise not in terminal.text, terminal.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_typed_lines_are_sent_and_echoed_before_ctrl_c(backend: str) -> None:
    """The terminal path still carries what is typed, line by line."""
    with serve(echo) as server, \
            on_a_terminal("connect", server.address, "--allow", "127.0.0.1",
                          backend=backend) as terminal:
        _connected(server, terminal)
        terminal.type(b"hello there\n")
        deadline = time.monotonic() + 10
        # The terminal echoes the typed line once; the peer's echo makes it twice.
        while terminal.text.count("hello there") < 2:
            assert time.monotonic() < deadline, terminal.text
            terminal.pump(0.05)
        terminal.type(b"\x03")
        assert terminal.wait_exit(PROMPT_S) is not None, terminal.text
        assert terminal.proc.returncode == 130, terminal.text
        assert "Traceback" not in terminal.text, terminal.text
