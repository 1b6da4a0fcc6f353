#!/usr/bin/env python3
"""Is ``tcpcli bench`` fast and accurate enough? Loopback only, ratios in one run.

Against one loopback echo server (its own process), each round runs, in a shuffled order:

* ``reference`` — a minimal hand-written asyncio loop: ``-c`` tasks, each a non-blocking
  socket + ``loop.sock_connect`` + close per sample, timed with perf_counter_ns (the
  heavier ``asyncio.open_connection`` takes three loop turns per connect, and its p50
  grows with them);
* ``tcpcli`` — ``tcpcli bench 127.0.0.1:PORT -n N -c 64 --max-sockets unlimited --json``;
* ``kernel`` — one blocking socket after another, each ``connect()`` timed alone: what a
  loopback connect itself costs, with no event loop queueing in it.

and reports median connection rates and the ratio to the reference loop (issue 16's
target: >= 1.5x), and the p50 connect latencies. Accuracy is judged against ``kernel``:
tcpcli's p50 should be the connect, not its own queueing (target: 0.5-2x the kernel's
p50; the asyncio loop's p50 is mostly its queue, 64 in flight over its rate). Then the peak
RSS of a process that records 1,000,000 samples in the bench histograms (target < 100 MB).

    python benchmarks/bench_accuracy.py --rounds 5 --count 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from measure import run_child, tcpcli_command, tcpcli_event

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- server


def _serve(port_file: str) -> None:
    """A selectors echo server: cheap enough per connection that the client is what is
    measured (an asyncio server falls behind, its accept queue overflows, and SYN
    retransmits add 1 s stalls to whichever client connects fastest)."""
    sel = selectors.DefaultSelector()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    Path(port_file).write_text(str(listener.getsockname()[1]))
    while True:
        for key, _ in sel.select():
            if key.data is None:
                for _ in range(256):
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, True)
                continue
            conn = key.fileobj  # type: ignore[assignment]
            try:
                data = conn.recv(65536)
                if data:
                    conn.send(data)
                    continue
            except OSError:
                pass
            sel.unregister(conn)
            conn.close()


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = tmp / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    deadline = time.monotonic() + 10
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the echo server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


# --------------------------------------------------------------------------- reference


async def _reference(port: int, count: int, concurrency: int) -> dict[str, float]:
    latencies: list[int] = []
    remaining = count
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter_ns()
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            latencies.append(time.perf_counter_ns() - start)
            sock.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {"per_second": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) / 1e6}


def kernel_p50_ms(port: int, count: int) -> float:
    """The p50 of ``count`` blocking loopback connects, each timed alone."""
    latencies = []
    for _ in range(count):
        with socket.socket() as sock:
            start = time.perf_counter_ns()
            sock.connect(("127.0.0.1", port))
            latencies.append(time.perf_counter_ns() - start)
    return statistics.median(latencies) / 1e6


def run_reference(port: int, count: int, concurrency: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--reference", str(port), str(count),
                          str(concurrency)], capture_output=True, check=True, text=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def run_tcpcli(port: int, count: int, concurrency: int, *,
               duration: float | None = None) -> dict[str, float]:
    """``tcpcli bench`` for ``count`` samples (or ``duration`` seconds): its rate, p50,
    errors and the process's peak RSS."""
    amount = ["-d", str(duration)] if duration is not None else ["-n", str(count)]
    child = run_child([*tcpcli_command(), "bench", f"127.0.0.1:{port}", "--allow", "127.0.0.1",
                       *amount, "-c", str(concurrency), "--max-sockets", "unlimited",
                       "--json", "-q"], env={**os.environ, "NO_COLOR": "1"},
                      timeout=(duration or 0) + 300, exact_rss=True).check("tcpcli bench")
    summary = tcpcli_event(child, "bench_summary")
    return {"per_second": summary["per_second"],
            "p50_ms": summary["distributions"]["connect"]["p50_ms"],
            "errors": sum(summary["errors"].values()),
            "peak_rss_mb": child.peak_rss_mb}


# --------------------------------------------------------------------------- memory


def memory_probe(samples: int) -> None:
    """Record ``samples`` latencies the way the engine does; print peak RSS (MB)."""
    sys.path.insert(0, str(ROOT))
    from tcpcli.engines.histogram import Histogram

    rng = random.Random(1)
    histograms = {"connect": Histogram(), "tls": Histogram()}
    for _ in range(samples):
        histograms["connect"].record(int(rng.lognormvariate(12.5, 0.6)))
        histograms["tls"].record(int(rng.lognormvariate(14.0, 0.4)))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": peak_kib / 1024,
                      "counters": sum(h.memory_counters for h in histograms.values())}))


def run_memory(samples: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--memory", str(samples)],
                         capture_output=True, check=True, text=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--memory-samples", type=int, default=1_000_000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--reference", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    if args.reference:
        port, count, concurrency = args.reference
        print(json.dumps(asyncio.run(_reference(port, count, concurrency))))
        return
    if args.memory:
        memory_probe(args.memory)
        return

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(Path(tmp))
        try:
            runs: dict[str, list[dict[str, float]]] = {"reference": [], "tcpcli": []}
            ratios_rate: list[float] = []
            ratios_p50: list[float] = []
            kernel: list[float] = []
            for round_ in range(args.rounds):
                order = ["reference", "tcpcli"]
                random.shuffle(order)
                this: dict[str, dict[str, float]] = {}
                for tool in order:
                    run = run_reference if tool == "reference" else run_tcpcli
                    this[tool] = run(port, args.count, args.concurrency)
                    runs[tool].append(this[tool])
                ratios_rate.append(this["tcpcli"]["per_second"]
                                   / this["reference"]["per_second"])
                kernel.append(kernel_p50_ms(port, min(args.count, 2000)))
                ratios_p50.append(this["tcpcli"]["p50_ms"] / kernel[-1])
                print(f"round {round_ + 1}: reference {this['reference']['per_second']:8.0f} "
                      f"conn/s p50 {this['reference']['p50_ms']:.3f} ms | tcpcli "
                      f"{this['tcpcli']['per_second']:8.0f} conn/s p50 "
                      f"{this['tcpcli']['p50_ms']:.3f} ms "
                      f"errors {this['tcpcli'].get('errors', 0):.0f} | kernel p50 "
                      f"{kernel[-1]:.3f} ms", flush=True)
        finally:
            server.terminate()
            server.wait(5)
    for tool, results in runs.items():
        print(f"{tool:<10} median {statistics.median(r['per_second'] for r in results):8.0f} "
              f"conn/s, p50 {statistics.median(r['p50_ms'] for r in results):.3f} ms")
    rate = statistics.median(ratios_rate)
    p50 = statistics.median(ratios_p50)
    print(f"kernel     p50 {statistics.median(kernel):.3f} ms (blocking connects, each alone)")
    print(f"rate ratio tcpcli/reference (median): {rate:.2f}x (target >= 1.50) "
          f"{'PASS' if rate >= 1.5 else 'FAIL'}")
    print(f"p50 ratio tcpcli/kernel (median):     {p50:.2f}x (target 0.50-2.00) "
          f"{'PASS' if 0.5 <= p50 <= 2.0 else 'FAIL'}")
    memory = run_memory(args.memory_samples)
    print(f"peak memory for {args.memory_samples:,} samples: {memory['peak_mb']:.1f} MB "
          f"({memory['counters']:.0f} counters; target < 100 MB) "
          f"{'PASS' if memory['peak_mb'] < 100 else 'FAIL'}")


if __name__ == "__main__":
    main()
