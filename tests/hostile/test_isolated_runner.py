"""tests/support/isolated: what the namespace tests rely on, and its refusals explained."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.isolated_namespace import isolated_command, skip_without_namespace

#: Inside: the interfaces, and what a connect to TEST-NET-1 (never routed) answers.
REPORT = """
import errno, socket
print([name for _, name in socket.if_nameindex()])
try:
    socket.create_connection(("192.0.2.1", 9), timeout=5)
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
with socket.create_server(("127.0.0.1", 0)) as server:
    socket.create_connection(server.getsockname(), timeout=5).close()
    print("loopback ok")
"""


def test_inside_only_loopback_exists_and_nothing_leaves() -> None:
    skip_without_namespace()
    proc = subprocess.run(isolated_command(sys.executable, "-c", REPORT), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["['lo']", "ENETUNREACH", "loopback ok"]


def test_the_commands_exit_status_is_the_runners() -> None:
    skip_without_namespace()
    proc = subprocess.run(isolated_command("sh", "-c", "exit 7"), timeout=60)
    assert proc.returncode == 7


def test_refusals_say_why() -> None:
    usage = subprocess.run(isolated_command(), capture_output=True, text=True, timeout=30)
    assert (usage.returncode, usage.stderr) == (2, "usage: isolated COMMAND [ARG...]\n")
    no_unshare = subprocess.run(isolated_command("true"), capture_output=True, text=True,
                                timeout=30, env={**os.environ, "PATH": os.devnull})
    assert no_unshare.returncode == 127
    assert no_unshare.stderr == "isolated: unshare (util-linux) is not installed\n"
