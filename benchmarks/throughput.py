#!/usr/bin/env python3
"""How fast is ``tcpcli bench --mode throughput``, and does it count right? Loopback only.

One peer process (threads: a sink that counts what it reads, or a source that sends flat
out) serves every client in turn. Each round runs, in a shuffled order, for ``--seconds``
over ``-c`` connections, up (client sends) and down (client receives):

* ``tcpcli``  — ``tcpcli bench 127.0.0.1:PORT --mode throughput -d S -c C --json``;
* ``python``  — a hand-written loop: C threads, blocking ``send(128 KiB)`` /
  ``recv_into(128 KiB)``, nothing else;
* ``socat``   — C ``socat -u -b 131072`` processes (``/dev/zero`` -> TCP, TCP -> ``/dev/null``)
  stopped after S seconds.

Every client is measured the same way, by the peer: bytes per connection over the time
from accept to close, summed over the connections (their lifetimes overlap). Medians of
the rounds and the median of the per-round ratios to each peer tool are printed. For
tcpcli the script also prints its own figure over the peer's (a counting check: on
loopback they should agree within a few per cent; tcpcli excludes connect and close).

    python benchmarks/throughput.py --rounds 5 --seconds 3 --connections 1
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from measure import run_child, tcpcli_command, tcpcli_event

CHUNK = 128 * 1024


# --------------------------------------------------------------------------- the peer


def serve(mode: str) -> None:
    """Accept forever; per connection print ``{"bytes": n, "seconds": s}`` when it ends."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    print(listener.getsockname()[1], flush=True)
    lock = threading.Lock()

    def handle(conn: socket.socket) -> None:
        start, moved = time.perf_counter(), 0
        try:
            if mode == "sink":
                buffer = bytearray(1 << 20)
                while count := conn.recv_into(buffer):
                    moved += count
            else:
                block = memoryview(os.urandom(1 << 20))
                while True:
                    moved += conn.send(block)
        except OSError:
            pass
        finally:
            seconds = time.perf_counter() - start
            conn.close()
            with lock:
                print(json.dumps({"bytes": moved, "seconds": seconds}), flush=True)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


class Peer:
    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", mode],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.closed: list[dict[str, float]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.closed.append(json.loads(line))

    def measure(self, connections: int, client: Callable[[], float | None]) -> (
            tuple[float, float, float | None]):
        """Run ``client`` (a child process): the peer's bytes/s over the ``connections`` it
        saw close, the client's CPU seconds (user + system) per GB, its own bytes/s."""
        before = len(self.closed)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        reported = client()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        deadline = time.monotonic() + 10
        while len(self.closed) < before + connections and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = self.closed[before:]
        moved = sum(c["bytes"] for c in seen)
        rate = moved / max(c["seconds"] for c in seen)
        seconds = after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime
        return rate, seconds / (moved / 1e9), reported

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# --------------------------------------------------------------------------- clients


def python_loop(direction: str, port: int, seconds: float, connections: int) -> None:
    """The simplest client that could work: blocking sockets, one thread per connection."""
    payload = memoryview(os.urandom(CHUNK))

    def one() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        buffer = bytearray(CHUNK)
        end = time.perf_counter() + seconds
        try:
            if direction == "up":
                while time.perf_counter() < end:
                    sock.send(payload)
                sock.shutdown(socket.SHUT_WR)
                sock.recv(1)
            else:
                while time.perf_counter() < end:
                    sock.recv_into(buffer)
        finally:
            sock.close()

    threads = [threading.Thread(target=one) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_python(direction: str, port: int, seconds: float, connections: int) -> None:
    subprocess.run([sys.executable, __file__, "--client", direction, str(port), str(seconds),
                    str(connections)], check=True)


def run_socat(direction: str, port: int, seconds: float, connections: int) -> None:
    target = f"TCP:127.0.0.1:{port}"
    argv = (["OPEN:/dev/zero", target] if direction == "up" else [target, "OPEN:/dev/null"])
    procs = [subprocess.Popen(["socat", "-u", "-b", str(CHUNK), *argv])
             for _ in range(connections)]
    time.sleep(seconds)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(5)


def run_tcpcli(direction: str, port: int, seconds: float, connections: int) -> float:
    """``tcpcli bench --mode throughput``: its own figure, bytes/s."""
    child = run_child([*tcpcli_command(), "bench", f"127.0.0.1:{port}", "--allow", "127.0.0.1",
                       "--mode", "throughput", "--direction", direction, "-d", str(seconds),
                       "-c", str(connections), "--max-sockets", "unlimited", "--json", "-q"],
                      timeout=seconds + 120).check("tcpcli bench")
    summary = tcpcli_event(child, "bench_summary")
    if summary["errors"]:
        raise RuntimeError(f"tcpcli bench counted errors: {summary['errors']}")
    rate: float = summary[direction]["bytes_per_second"]
    return rate


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", "-c", type=int, default=1)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.client:
        direction, port, seconds, connections = args.client
        python_loop(direction, int(port), float(seconds), int(connections))
        return

    clients: dict[str, Callable[[str, int, float, int], float | None]] = {
        "tcpcli": run_tcpcli, "python": run_python}
    if shutil.which("socat"):
        clients["socat"] = run_socat
    tools = list(clients)
    seconds, connections = args.seconds, args.connections
    print(f"{args.rounds} rounds of {seconds:g} s over {connections} connection(s); GB/s as "
          f"measured by the peer, and the client's CPU seconds per GB moved", flush=True)
    for direction in ("up", "down"):
        peer = Peer("sink" if direction == "up" else "source")
        rates: dict[str, list[float]] = {tool: [] for tool in tools}
        costs: dict[str, list[float]] = {tool: [] for tool in tools}
        ratios: dict[str, list[float]] = {tool: [] for tool in tools[1:]}
        accuracy: list[float] = []
        try:
            for round_ in range(args.rounds):
                order = tools[:]
                random.shuffle(order)
                this: dict[str, float] = {}
                for tool in order:
                    rate, cost, own = peer.measure(connections, functools.partial(
                        clients[tool], direction, peer.port, seconds, connections))
                    if own is not None:
                        accuracy.append(own / rate)
                    this[tool] = rate
                    rates[tool].append(rate)
                    costs[tool].append(cost)
                for tool in ratios:
                    ratios[tool].append(this["tcpcli"] / this[tool])
                print(f"{direction} round {round_ + 1}: " + "  ".join(
                    f"{tool} {this[tool] / 1e9:.2f} GB/s ({costs[tool][-1]:.2f} cpu-s/GB)"
                    for tool in tools), flush=True)
        finally:
            peer.stop()
        print(f"{direction} medians: " + "  ".join(
            f"{tool} {statistics.median(rates[tool]) / 1e9:.2f} GB/s "
            f"({statistics.median(costs[tool]):.2f} cpu-s/GB)" for tool in tools))
        for tool, values in ratios.items():
            print(f"{direction} tcpcli/{tool} rate (median of per-round ratios): "
                  f"{statistics.median(values):.2f}x")
        print(f"{direction} tcpcli's own figure / the peer's (median): "
              f"{statistics.median(accuracy):.3f}", flush=True)

if __name__ == "__main__":
    main()
