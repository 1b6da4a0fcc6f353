#!/usr/bin/env python3
"""``tcpcli probe`` over all 65,535 ports of 127.0.0.1 against nmap and ``nc -z``.

Loopback only. Each round runs the three scanners once, in a shuffled order (interleaved,
so the machine's noise spreads over all of them); the report gives each tool's median wall
time, the median ratios tcpcli/nmap (target <= 0.5) and tcpcli/nc (target <= 1.3), and
checks that tcpcli and nmap found exactly the same open ports (nc -z prints nothing
useful to compare). The cap is lifted (--max-sockets unlimited, --policy open). With
``--top 1000``: the 1,000 most common ports, against nmap's ``--top-ports 1000``.

    tests/support/isolated python benchmarks/probe_scan.py --rounds 5 --listeners 40
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import socket
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from measure import run_child, tcpcli_command

#: Ports the namespace run listens on, so the scanners have open ports to agree on.
LISTENERS = 40


def scanners(top: int | None) -> dict[str, list[str]]:
    """The commands of one round: every port, or the ``top`` most common (nc has no such
    list, so it is left out then). Those not installed are left out too."""
    ours = ["-p-"] if top is None else ["--top", str(top)]
    theirs = ["-p1-65535"] if top is None else ["--top-ports", str(top)]
    commands = {
        "tcpcli": [*tcpcli_command(), "probe", "127.0.0.1", *ours, "--policy", "open",
                   "--max-sockets", "unlimited", "--show", "open", "-q"],
        "nmap": ["nmap", "-sT", "-T5", "-n", "-Pn", *theirs, "127.0.0.1", "-oG", "-"],
    }
    if top is None:
        commands["nc"] = ["nc", "-z", "127.0.0.1", "1-65535"]
        # probe forks a big scan over the cores by default (--processes auto); this is
        # the same scan held to one process, as nc and nmap run.
        commands["tcpcli-1"] = [*commands["tcpcli"], "--processes", "1"]
    return {name: cmd for name, cmd in commands.items()
            if name == "tcpcli" or shutil.which(cmd[0])}


def tcpcli_ports(out: str) -> set[int]:
    return {int(line.split()[1]) for line in out.splitlines() if " open " in line}


def nmap_ports(out: str) -> set[int]:
    return {int(port) for port in re.findall(r"(\d+)/open/tcp", out)}


#: Ports in every top-N list (tcpcli's and nmap's): the top scans compare these only, as
#: the two lists differ further down (a listener on 49152 is in nmap's top 1000 alone).
WELL_KNOWN = (22, 80, 443, 8080)


def open_listeners(count: int) -> list[socket.socket]:
    """``count`` loopback listeners (closed by the caller): the well-known ports where they
    are free (root, as in the namespace), the rest on ports the kernel picks."""
    listeners = []
    for port in WELL_KNOWN[:count]:
        with contextlib.suppress(OSError):
            listeners.append(socket.create_server(("127.0.0.1", port)))
    while len(listeners) < count:
        listeners.append(socket.create_server(("127.0.0.1", 0)))
    return listeners


@dataclass
class Scans:
    """Per scanner, the wall seconds and peak RSS (MB) of each round; rounds in which
    tcpcli's and nmap's open-port sets differed."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    peak_rss_mb: dict[str, list[float]] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    rounds: int = 0


def measure(rounds: int, top: int | None = None, *,
            report: Callable[[str], None] = print) -> Scans:
    """``rounds`` rounds of every scanner in a shuffled order (interleaved, so the
    machine's noise spreads over all of them)."""
    tools = scanners(top)
    scans = Scans({name: [] for name in tools}, {name: [] for name in tools})
    for round_number in range(1, rounds + 1):
        order = list(tools)
        random.shuffle(order)
        outputs: dict[str, str] = {}
        elapsed: dict[str, float] = {}
        for name in order:
            child = run_child(tools[name], timeout=300, exact_rss=True)
            if not (child.returncode == 0 or (name == "nc" and child.returncode == 1)):
                child.check(name)  # nc -z exits 1 when no port was open
            elapsed[name], outputs[name] = child.seconds, child.stdout
            scans.seconds[name].append(child.seconds)
            scans.peak_rss_mb[name].append(child.peak_rss_mb)
        scans.rounds += 1
        ours, theirs = tcpcli_ports(outputs["tcpcli"]), nmap_ports(outputs.get("nmap", ""))
        if top is not None:
            ours, theirs = ours & set(WELL_KNOWN), theirs & set(WELL_KNOWN)
        if "nmap" in outputs and ours != theirs:
            # Ephemeral listeners come and go on a shared machine: report, don't hide.
            scans.mismatches.append(f"round {round_number}: open ports differ: tcpcli-only "
                                    f"{sorted(ours - theirs)}, nmap-only "
                                    f"{sorted(theirs - ours)}")
            report(scans.mismatches[-1])
        report(f"round {round_number}: "
               + "  ".join(f"{n} {elapsed[n]:.3f}s" for n in order))
    return scans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, help="scan the N most common ports, not all")
    parser.add_argument("--listeners", type=int, default=0,
                        help=f"listen on N loopback ports first (the README's runs: "
                             f"{LISTENERS}, inside a loopback-only namespace)")
    parser.add_argument("--json", action="store_true",
                        help="print the measurements as one JSON object (for benchmarks/run)")
    args = parser.parse_args()
    listeners = open_listeners(args.listeners)
    try:
        scans = measure(args.rounds, args.top,
                        report=lambda line: print(line, file=sys.stderr if args.json
                                                  else sys.stdout, flush=True))
    finally:
        for listener in listeners:
            listener.close()
    if args.json:
        print(json.dumps(asdict(scans)))
        return 0
    print()
    for name, values in scans.seconds.items():
        print(f"{name:7} median {statistics.median(values):.3f} s, peak RSS "
              f"{max(scans.peak_rss_mb[name]):.1f} MB")
    for name, values in scans.seconds.items():
        if not name.startswith("tcpcli"):
            ratios = [ours / theirs for ours, theirs in zip(scans.seconds["tcpcli"], values,
                                                            strict=True)]
            print(f"tcpcli/{name} median ratio {statistics.median(ratios):.2f}")
    matched = scans.rounds - len(scans.mismatches)
    print(f"open-port sets identical in {matched}/{scans.rounds} rounds")
    return 0 if not scans.mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
