#!/usr/bin/env python3
"""``tcpcli probe`` over all 65,535 ports of 127.0.0.1 against nmap and ``nc -z``.

Loopback only. Each round runs the three scanners once, in a shuffled order (interleaved,
so the machine's noise spreads over all of them); the report gives each tool's median wall
time, the median ratios tcpcli/nmap (target <= 0.5) and tcpcli/nc (target <= 1.3), and
checks that tcpcli and nmap found exactly the same open ports (nc -z prints nothing
useful to compare). The cap is lifted (--max-sockets unlimited, --policy open).

    python benchmarks/probe_scan.py --rounds 5
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

TCPCLI = [sys.executable, "-m", "tcpcli", "probe", "127.0.0.1", "-p-", "--policy", "open",
          "--max-sockets", "unlimited", "--show", "open", "-q"]
NMAP = ["nmap", "-sT", "-T5", "-n", "-Pn", "-p1-65535", "127.0.0.1", "-oG", "-"]
NC = ["nc", "-z", "127.0.0.1", "1-65535"]


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - start, proc.stdout


def tcpcli_ports(out: str) -> set[int]:
    return {int(line.split()[1]) for line in out.splitlines() if " open " in line}


def nmap_ports(out: str) -> set[int]:
    return {int(port) for port in re.findall(r"(\d+)/open/tcp", out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tools = {"tcpcli": TCPCLI}
    if shutil.which("nmap"):
        tools["nmap"] = NMAP
    if shutil.which("nc"):
        tools["nc"] = NC
    times: dict[str, list[float]] = {name: [] for name in tools}
    ratios: dict[str, list[float]] = {name: [] for name in tools if name != "tcpcli"}
    mismatches = 0
    for round_number in range(1, args.rounds + 1):
        order = list(tools)
        random.shuffle(order)
        outputs: dict[str, str] = {}
        elapsed: dict[str, float] = {}
        for name in order:
            elapsed[name], outputs[name] = timed(tools[name])
            times[name].append(elapsed[name])
        for name in ratios:
            ratios[name].append(elapsed["tcpcli"] / elapsed[name])
        ours = tcpcli_ports(outputs["tcpcli"])
        if "nmap" in outputs and ours != nmap_ports(outputs["nmap"]):
            # Ephemeral listeners come and go on a shared machine: report, don't hide.
            mismatches += 1
            print(f"round {round_number}: open ports differ: tcpcli-only "
                  f"{sorted(ours - nmap_ports(outputs['nmap']))}, nmap-only "
                  f"{sorted(nmap_ports(outputs['nmap']) - ours)}")
        print(f"round {round_number}: " + "  ".join(f"{n} {elapsed[n]:.3f}s" for n in order))
    print()
    for name, values in times.items():
        print(f"{name:7} median {statistics.median(values):.3f} s")
    for name, values in ratios.items():
        print(f"tcpcli/{name} median ratio {statistics.median(values):.2f}")
    print(f"open-port sets identical in {args.rounds - mismatches}/{args.rounds} rounds")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
