"""Inside a fresh network namespace (``tests/support/isolated``): shape ``lo`` as asked,
run ``tcpcli connect`` pushing bytes into a discard peer, and print its ``connected`` and
``close`` events (one JSON line each) for the caller to judge.

Usage: python -m tests.support.shaped_link [--mtu N] [--rate RATE] BYTES

``--rate`` puts a token-bucket filter (``tc qdisc ... tbf``) on ``lo``: a slow link with a
short queue, so a bulk sender fills the queue (the RTT grows with it) and loses what
overflows (retransmits). netem would impose a delay and a loss rate directly; kernels
built without it (sch_netem) still have tbf.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

from tests.support.cli import tcpcli_command
from tests.support.isolated_namespace import in_loopback_namespace


def discard(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(1 << 16):
                pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mtu", type=int)
    parser.add_argument("--rate")
    parser.add_argument("size", type=int)
    args = parser.parse_args(argv)
    if not in_loopback_namespace():
        print("shaped_link: refusing to shape a link outside the tests' namespace",
              file=sys.stderr)
        return 2
    if args.mtu:
        subprocess.run(["ip", "link", "set", "lo", "mtu", str(args.mtu)], check=True)
    if args.rate:
        subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", args.rate,
                        "burst", "16kb", "limit", "24kb"], check=True)
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=discard, args=(listener,), daemon=True).start()
    with tempfile.NamedTemporaryFile() as payload:
        payload.write(os.urandom(args.size))
        payload.flush()
        proc = subprocess.run(
            [*tcpcli_command(), "connect", f"127.0.0.1:{listener.getsockname()[1]}",
             "--allow", "127.0.0.1", "--send-file", payload.name, "--json"],
            capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        print(proc.stderr.decode(), file=sys.stderr)
        return proc.returncode
    for line in proc.stderr.decode().splitlines():
        event = json.loads(line)
        if event["event"] in ("connected", "close"):
            print(json.dumps(event))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
