"""SIGINT and SIGTERM at every phase: exit 130/143 within 2 s, sockets closed, partial
results printed where the command has them, and no Python noise (traceback, "Task was
destroyed but it is pending", unawaited coroutines)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest

from tests.hostile.harness import SIGNALS, Run, assert_clean_exit, run_cli
from tests.support.dns_server import SILENT, serve_dns
from tests.support.peers import echo, filtered_port, serve

pytestmark = pytest.mark.timeout(60)

ALLOW = ("--allow", "127.0.0.1")
#: From the signal to the exit, on a loaded CI machine.
PROMPT = 2.0


@dataclass
class Phase:
    args: list[str]
    ready: Callable[[Run], bool]  # when to send the signal
    peer_closed: threading.Event | None = None  # set by the peer when our socket closes
    partial: bytes = b""  # what stdout must hold after the interrupt


def _after(seconds: float) -> Callable[[Run], bool]:
    start = time.monotonic()
    return lambda _: time.monotonic() - start >= seconds


def _syn_sent_to(port: int) -> Callable[[Run], bool]:
    """True once one more connect to 127.0.0.1:port hangs in SYN_SENT than now (the
    fillers of ``filtered_port`` hang there already), from /proc/net/tcp."""
    wanted = f"0100007F:{port:04X}"

    def hanging() -> int:
        with open("/proc/net/tcp", encoding="ascii") as table:
            return sum(1 for fields in (line.split() for line in table.readlines()[1:])
                       if fields[2] == wanted and fields[3] == "02")

    before = hanging()
    return lambda _: hanging() > before


def _greet_then_wait(spoke: threading.Event,
                     closed: threading.Event) -> Callable[[socket.socket], None]:
    """An SMTP greeting, then silence: ``spoke`` once our EHLO came, ``closed`` at our close."""
    def handler(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.test ESMTP\r\n")
        conn.settimeout(10)
        try:
            while conn.recv(65536):
                spoke.set()
        except OSError:
            pass
        closed.set()
    return handler


def _streaming(event: threading.Event) -> Callable[[socket.socket], None]:
    """A peer that sends steadily until our side closes (mid-transfer)."""
    def handler(conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            while True:
                conn.sendall(b"t" * 16384)
                time.sleep(0.005)
        except OSError:
            event.set()
    return handler


def _stall_handshake(event: threading.Event) -> Callable[[socket.socket], None]:
    """Take the ClientHello, answer nothing, and notice when we hang up."""
    def handler(conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            conn.recv(65536)
            event.set()  # "reached the TLS phase"
            while conn.recv(65536):
                pass
        except OSError:
            pass
    return handler


PHASES = ["resolving", "connecting", "tls", "mid-transfer", "mid-bench", "mid-bench-rr",
          "mid-probe", "starttls-dialogue"]


@contextmanager
def phase_setup(name: str, ca_file: str) -> Iterator[Phase]:
    with ExitStack() as stack:
        if name == "resolving":
            dns = stack.enter_context(serve_dns({"stuck.test": SILENT}))
            yield Phase(["connect", "stuck.test:80", "--resolver", dns.address],
                        lambda _: bool(dns.queries("stuck.test")))
        elif name == "connecting":
            port = stack.enter_context(filtered_port())
            yield Phase(["connect", f"127.0.0.1:{port}", *ALLOW], _syn_sent_to(port))
        elif name == "tls":
            hello = threading.Event()
            server = stack.enter_context(serve(_stall_handshake(hello)))
            yield Phase(["connect", server.address, *ALLOW, "--tls", "--ca-file", ca_file],
                        lambda _: hello.is_set())
        elif name == "mid-transfer":
            closed = threading.Event()
            server = stack.enter_context(serve(_streaming(closed)))
            yield Phase(["connect", server.address, *ALLOW, "--no-stdin"],
                        lambda run: run.stdout_bytes > 100_000, closed)
        elif name in ("mid-bench", "mid-bench-rr"):
            server = stack.enter_context(serve(echo))
            mode = ["-m", "rr", "--send", "ping"] if name == "mid-bench-rr" else []
            started = _after(1.0)
            yield Phase(["bench", server.address, *ALLOW, "-d", "30", *mode],
                        lambda run: bool(server.connections) and started(run),
                        partial=b"(interrupted)")
        elif name == "mid-probe":
            port = stack.enter_context(filtered_port())
            server = stack.enter_context(serve(echo))
            yield Phase(["probe", "127.0.0.1", "-p", f"{server.port},{port}", *ALLOW,
                         "--timeout", "30"], _syn_sent_to(port),
                        partial=f"127.0.0.1 {server.port} open".encode())
        elif name == "starttls-dialogue":
            spoke, closed = threading.Event(), threading.Event()
            server = stack.enter_context(serve(_greet_then_wait(spoke, closed)))
            yield Phase(["starttls", server.address, *ALLOW, "-P", "smtp"],
                        lambda _: spoke.is_set(), closed)
        else:  # pragma: no cover
            raise ValueError(name)


CASES = [(phase, sig, "asyncio") for phase in PHASES for sig in SIGNALS] + [
    (phase, "SIGTERM", "trio") for phase in ("resolving", "connecting", "tls", "mid-transfer")
]


@pytest.mark.parametrize(("phase", "sig", "backend"), CASES,
                         ids=[f"{p}-{s}-{b}" for p, s, b in CASES])
def test_interrupt(phase: str, sig: str, backend: str, ca_file: str) -> None:
    signum, code = SIGNALS[sig]
    with phase_setup(phase, ca_file) as setup:
        # stdin is a pipe that stays open: connect must not end for want of input.
        run = run_cli(*setup.args, stdin=subprocess.PIPE, stdout="capture", backend=backend, timeout=20,
                      send_signal=(signum, setup.ready))
        if setup.peer_closed is not None:
            assert setup.peer_closed.wait(PROMPT), "the peer never saw our socket close"
    assert run.after_signal is not None, f"never reached {phase}: {run.stderr}"
    assert not run.killed, run.stderr
    assert run.returncode == code, (run.returncode, run.stderr)
    assert run.after_signal < PROMPT, run.after_signal
    assert_clean_exit(run)
    assert setup.partial in run.stdout, run.stdout[-500:]
