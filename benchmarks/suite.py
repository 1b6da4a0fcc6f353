"""Every figure of issue 16's goals in one run: tcpcli against its peer tools, interleaved
(each round runs a case's tools in a shuffled order, so the machine's noise spreads over
all of them), medians of the rounds, one table. ``benchmarks/run`` is its command line.

Loopback only; every loop is bounded and every peer is stopped. The measuring is the
scripts' beside this one (connect_throughput, probe_scan, bench_accuracy, throughput):
this module picks sizes, pairs each tcpcli run with its peer and checks the goals.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bench_accuracy
import connect_throughput
import probe_scan
import service_scan
import throughput
from measure import (
    Child,
    free_port,
    run_child,
    start_peer,
    stop,
    tcpcli_event,
    write_random_file,
)

REPOSITORY = Path(__file__).resolve().parents[1]
ISOLATED = REPOSITORY / "tests" / "support" / "isolated"

# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Goal:
    """Issue 16's bound for one row: on the ratio tcpcli/peer, or on tcpcli's own figure
    (memory, which has no peer)."""

    bound: float | None  # None: a row shown for information, with no goal of its own
    at_most: bool = True
    on_ratio: bool = True

    def text(self) -> str:
        if self.bound is None:
            return "—"
        sign = "≤" if self.at_most else "≥"
        return f"{sign} {self.bound:g}×" if self.on_ratio else f"< {self.bound:g} MB"

    def met(self, tcpcli: float, ratio: float | None) -> bool | None:
        if self.bound is None:
            return None
        if not self.on_ratio:
            return tcpcli < self.bound
        assert ratio is not None
        return ratio <= self.bound if self.at_most else ratio >= self.bound


@dataclass(frozen=True)
class Case:
    """One row: its id (for ``--only``), what it measures, against what, and the goal.
    ``unit`` says how its figures read: s, ms, us, GB/s, conn/s or MB; ``higher`` whether a
    larger figure is better (the ratio is always tcpcli's figure over the peer's)."""

    id: str
    title: str
    peer: str
    goal: Goal
    unit: str
    needs: tuple[str, ...] = ()


STARTUP_TOOLS = {  # tool name in the start-up group -> case id, title, goal
    "connect": ("startup-connect", "start-up: `connect` to a loopback peer, empty stdin",
                Goal(1.6)),
    "probe": ("startup-probe", "start-up: `probe`, one port", Goal(1.6)),
    "tls": ("startup-tls", "start-up: `connect --tls`, verified against certifi's store",
            Goal(2.2)),
    "tls-insecure": ("startup-tls-insecure", "start-up: `connect --tls -k` (its verdict "
                     "reached after the handshake, with cryptography)", Goal(None)),
    "bench": ("startup-bench", "start-up: `bench -n 1`", Goal(2.5)),
    "starttls": ("startup-starttls", "start-up: `starttls` to a local SMTP peer", Goal(2.5)),
}
#: The commands whose ``--help`` is timed ("" is ``tcpcli --help``); a new command needs a
#: line here, and the start-up group checks that none is missing.
HELP_COMMANDS = ("", "bench", "completion", "config", "connect", "demo", "listen", "ping", "probe",
                 "starttls")
CLICK = '`python -c "import click"`'

CASES: tuple[Case, ...] = (
    *(Case(case_id, title, CLICK, goal, "ms")
      for case_id, title, goal in STARTUP_TOOLS.values()),
    *(Case(f"startup-help-{command or 'tcpcli'}",
           f"start-up: `tcpcli {command + ' ' if command else ''}--help`", CLICK, Goal(1.3),
           "ms") for command in HELP_COMMANDS),
    Case("probe-full-nc", "probe: all 65,535 ports of 127.0.0.1", "`nc -z`", Goal(1.0), "s",
         ("nc",)),
    Case("probe-full-nmap", "probe: all 65,535 ports of 127.0.0.1", "`nmap -sT -T5`",
         Goal(0.4), "s", ("nmap",)),
    Case("probe-full-nmap-1", "probe: the same scan in one process (`--processes 1`)",
         "`nmap -sT -T5`", Goal(0.4), "s", ("nmap",)),
    Case("probe-top1000", "probe: the top 1,000 ports (`--top 1000`)",
         "`nmap -sT -T5 --top-ports 1000`", Goal(0.4), "s", ("nmap",)),
    Case("probe-sv-standard", "probe: `--banner --tls-detect`, 19 real servers on their "
         "standard ports", "`nmap -sV`", Goal(0.2), "s", ("nmap",)),
    Case("probe-sv-free", "probe: `--banner --tls-detect`, the same servers on free ports",
         "`nmap -sV`", Goal(0.2), "s", ("nmap",)),
    Case("connect-push", "connect: file on stdin → sink", "`nc -N`", Goal(0.8), "s",
         ("nc",)),
    Case("connect-pull", "connect: source → stdout", "`nc -d`", Goal(1.0), "s", ("nc",)),
    Case("connect-tls", "connect: TLS push, file → sink", "`openssl s_client -quiet`",
         Goal(0.8), "s", ("openssl",)),
    Case("bench-rate", "bench: connections/s at `-c 64`", "bare asyncio loop",
         Goal(1.5, at_most=False), "conn/s"),
    Case("bench-throughput", "bench: `-m throughput`, 1 connection", "`iperf3`",
         Goal(1.0, at_most=False), "GB/s", ("iperf3",)),
    Case("bench-rr", "bench: `-m rr` p50 against a socat echo, 1 connection",
         "`sockperf ping-pong`", Goal(1.2), "us", ("socat", "sockperf")),
    Case("memory-push", "memory: peak RSS of the push", "`nc -N`",
         Goal(64, on_ratio=False), "MB", ("nc",)),
    Case("memory-scan", "memory: peak RSS of the full scan", "`nc -z`",
         Goal(64, on_ratio=False), "MB", ("nc",)),
    Case("memory-bench", "memory: peak RSS of a timed `bench -c 64`", "",
         Goal(64, on_ratio=False), "MB"),
)
BY_ID = {case.id: case for case in CASES}

#: Debian's package for each peer command.
PACKAGES = {"nc": "netcat-openbsd", "ncat": "ncat", "socat": "socat", "nmap": "nmap",
            "iperf3": "iperf3", "sockperf": "sockperf", "openssl": "openssl"}


@dataclass
class Row:
    """One line of the table. The figures are medians of the rounds (memory: the largest
    peak of any round); ``ratio`` is tcpcli's median over the peer's."""

    case: str
    title: str
    unit: str
    goal: str
    peer_name: str
    tcpcli: float | None = None
    peer: float | None = None
    ratio: float | None = None
    met: bool | None = None
    rounds: int = 0
    note: str = ""

    @classmethod
    def of(cls, case: Case, tcpcli: float, peer: float | None, rounds: int,
           note: str = "") -> Row:
        ratio = tcpcli / peer if peer and case.goal.on_ratio else None
        return cls(case.id, case.title, case.unit, case.goal.text(), case.peer, tcpcli, peer,
                   ratio, case.goal.met(tcpcli, ratio), rounds, note)

    @classmethod
    def skipped(cls, case: Case, why: str) -> Row:
        return cls(case.id, case.title, case.unit, case.goal.text(), case.peer, note=why)


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Sizes and round counts: the issue's (full) or the one-minute ``--quick`` subset."""

    quick: bool
    rounds: int
    startup_rounds: int
    scan_rounds: int
    push_mib: int
    bench_count: int
    stream_seconds: int
    memory_bench_seconds: int
    tcpcli: list[str] = field(default_factory=list)
    python: str = sys.executable
    tmp: Path = Path()
    instructions: bool = False  # also count start-up instructions (callgrind)

    @classmethod
    def make(cls, quick: bool, rounds: int | None) -> Settings:
        if quick:
            return cls(True, rounds or 3, rounds or 3, rounds or 1, 256, 10000, 1, 5)
        return cls(False, rounds or 5, rounds or 9, rounds or 5, 2048, 20000, 5, 60)


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {tool: statistics.median(values) for tool, values in samples.items()}


def interleaved(tools: dict[str, Callable[[], float]], rounds: int, *,
                warm_up: bool = False) -> dict[str, list[float]]:
    """``rounds`` rounds of every tool, each round in a new shuffled order."""
    if warm_up:  # page cache, bytecode, sockets: not counted
        for run in tools.values():
            run()
    samples: dict[str, list[float]] = {tool: [] for tool in tools}
    for _ in range(rounds):
        order = list(tools)
        random.shuffle(order)
        for tool in order:
            samples[tool].append(tools[tool]())
    return samples


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- peers


def smtp_starttls_peer(conn: socket.socket, context: ssl.SSLContext) -> None:
    """The smallest SMTP server ``tcpcli starttls`` completes against: greeting, EHLO
    offering STARTTLS, the go-ahead, the handshake, then whatever comes until close."""
    conn.settimeout(10)
    conn.sendall(b"220 bench.invalid ESMTP\r\n")
    reader = conn.makefile("rb")
    while line := reader.readline():
        verb = line.split()[0].upper() if line.split() else b""
        if verb in (b"EHLO", b"HELO"):
            conn.sendall(b"250-bench.invalid\r\n250 STARTTLS\r\n")
        elif verb == b"STARTTLS":
            conn.sendall(b"220 go ahead\r\n")
            secure = context.wrap_socket(conn, server_side=True)
            with contextlib.suppress(OSError, ssl.SSLError):
                while data := secure.recv(4096):
                    if data.upper().startswith(b"QUIT"):
                        secure.sendall(b"221 bye\r\n")
                        break
                    secure.sendall(b"250 ok\r\n")
            return
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"502 no\r\n")


@contextlib.contextmanager
def threaded_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback listener serving each connection in a thread; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.1)
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            handle(conn)

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        acceptor.join(2)
        listener.close()


def sink(peers: contextlib.ExitStack, mode: str, size: int,
         context: ssl.SSLContext | None = None,
         source: Path | None = None) -> connect_throughput.Sink:
    """connect_throughput.py's sink or source, closed with ``peers``."""
    server = connect_throughput.Sink(mode, size, context, source)
    peers.callback(server.close)
    return server


@contextlib.contextmanager
def process_peer(cmd: list[str], port: int) -> Iterator[int]:
    proc = start_peer(cmd, port)
    try:
        yield port
    finally:
        stop(proc)


# --------------------------------------------------------------------------- groups


def timed_ms(cmd: list[str]) -> Callable[[], float]:
    def run() -> float:
        child = run_child(cmd, env=connect_throughput.CHILD_ENV, timeout=60)
        return child.check(" ".join(cmd[:3])).seconds * 1000

    return run


@contextlib.contextmanager
def certifi_also_trusting(settings: Settings, ca_file: str) -> Iterator[bool]:
    """The benchmark venv's certifi bundle with ``ca_file``'s CA appended, for as long as
    the start-up rows run: a verified ``connect --tls`` then pays for a trust store of
    certifi's size, as a user's does, against a loopback peer. Never another environment's
    bundle: False when tcpcli is not the one installed in the benchmark's venv."""
    found = subprocess.run([settings.python, "-c", "import certifi; print(certifi.where())"],
                           capture_output=True, text=True, check=False).stdout.strip()
    if not found or settings.tmp not in Path(found).resolve().parents:
        yield False
        return
    bundle = Path(found)
    original = bundle.read_bytes()
    stat = bundle.stat()
    try:
        bundle.write_bytes(original + Path(ca_file).read_bytes())
        yield True
    finally:
        bundle.write_bytes(original)
        os.utime(bundle, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def startup_group(settings: Settings, wanted: list[Case]) -> list[Row]:
    """One-shot runs against loopback peers, each against ``python -c "import click"``."""
    from tcpcli.core.certgen import throwaway_certificate

    certificate = throwaway_certificate("127.0.0.1")
    ca = certificate.write_ca(str(settings.tmp))
    allow = ["--allow", "127.0.0.1"]
    tcpcli = settings.tcpcli
    listed = run_child([*tcpcli, "--help"]).check("tcpcli --help").stdout
    commands = re.findall(r"^  (\w+)  ", listed.split("Commands:", 1)[-1], re.MULTILINE)
    unlisted = set(commands) - set(HELP_COMMANDS)
    with contextlib.ExitStack() as peers:
        trusting = peers.enter_context(certifi_also_trusting(settings, ca))
        if not trusting:
            wanted = [case for case in wanted if case.id != "startup-tls"]
            say("start-up: `connect --tls` verified needs the benchmark's own venv (its "
                "certifi bundle gains the peer's CA): skipped with --tcpcli current")
        plain = sink(peers, "discard", 1 << 62)
        tls = sink(peers, "discard", 1 << 62, certificate.server_context())
        smtp = peers.enter_context(threaded_server(
            lambda conn: smtp_starttls_peer(conn, certificate.server_context())))
        commands_by_tool = {
            "connect": [*tcpcli, "connect", "127.0.0.1", str(plain.port), *allow],
            "probe": [*tcpcli, "probe", "127.0.0.1", "--ports", str(plain.port), *allow],
            "tls": [*tcpcli, "connect", "127.0.0.1", str(tls.port), "--tls", *allow],
            "tls-insecure": [*tcpcli, "connect", "127.0.0.1", str(tls.port), "--tls", "-k",
                             *allow],
            "bench": [*tcpcli, "bench", "127.0.0.1", str(plain.port), "-n", "1", *allow],
            "starttls": [*tcpcli, "starttls", "127.0.0.1", str(smtp), "--protocol", "smtp",
                         "--ca-file", ca, *allow],
            **{f"startup-help-{command or 'tcpcli'}": [*tcpcli, *([command] if command else []),
                                                      "--help"]
               for command in HELP_COMMANDS},
        }
        ids = {tool: STARTUP_TOOLS[tool][0] if tool in STARTUP_TOOLS else tool
               for tool in commands_by_tool}
        tools = {tool: timed_ms(cmd) for tool, cmd in commands_by_tool.items()
                 if ids[tool] in {case.id for case in wanted}}
        tools["click"] = timed_ms([settings.python, "-c", "import click"])
        samples = interleaved(tools, settings.startup_rounds, warm_up=True)
        counted: dict[str, int | None] = {}
        if settings.instructions:  # while the peers still run
            say("start-up: counting instructions with callgrind")
            counted = {tool: instructions(commands_by_tool[tool]) for tool in tools
                       if tool != "click"}
            counted["click"] = instructions([settings.python, "-c", "import click"])
    middle = medians(samples)
    rows = []
    for tool in tools:
        if tool != "click":
            row = Row.of(BY_ID[ids[tool]], middle[tool], middle["click"],
                         settings.startup_rounds)
            mine, base = counted.get(tool), counted.get("click")
            if mine and base:
                row.note = f"instructions {mine / base:.2f}× import click's"
            rows.append(row)
    if unlisted:
        say(f"note: no --help row for {sorted(unlisted)}: add them to HELP_COMMANDS")
    return rows


def instructions(cmd: list[str]) -> int | None:
    """The instructions one whole run of ``cmd`` executes, counted by callgrind: the same
    figure on a busy machine as on an idle one, where a 2-core machine's wall-clock medians
    of a 50 ms run drift by a fifth (None without valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    proc = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           *cmd], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    return int(found.group(1)) if found else None


def in_namespace(argv: list[str]) -> tuple[list[str], str]:
    """``argv`` run in a loopback-only namespace when one can be made (no other process's
    ports come and go mid-scan there), else as it is, with a note saying so."""
    probe = subprocess.run([sys.executable, str(ISOLATED), "true"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode == 0:
        return [sys.executable, str(ISOLATED), *argv], ""
    return argv, f"not isolated ({probe.stderr.strip()[:80] or 'no namespace'})"


def probe_group(settings: Settings, wanted: list[Case]) -> list[Row]:
    """probe_scan.py's rounds, in a namespace holding its 40 listeners."""
    rows = []
    scans: dict[str, dict[str, object]] = {}
    ids = {case.id for case in wanted}
    for label, top in (("full", None), ("top", 1000)):
        if label == "full" and not ids & {"probe-full-nc", "probe-full-nmap",
                                          "probe-full-nmap-1", "memory-scan"}:
            continue
        if label == "top" and "probe-top1000" not in ids:
            continue
        rounds = settings.scan_rounds if label == "full" else settings.rounds
        argv, note = in_namespace([sys.executable, str(Path(probe_scan.__file__)), "--json",
                                   "--rounds", str(rounds), "--listeners",
                                   str(probe_scan.LISTENERS),
                                   *(["--top", str(top)] if top else [])])
        say(f"probe: {label} scan, {rounds} round(s)")
        child = run_child(argv, env=connect_throughput.CHILD_ENV, timeout=1800).check(
            "probe_scan.py")
        scans[label] = json.loads(child.stdout)
        scans[label]["note"] = note
    for case in wanted:
        scan = scans["full" if case.id != "probe-top1000" else "top"]
        seconds: dict[str, list[float]] = scan["seconds"]  # type: ignore[assignment]
        peak: dict[str, list[float]] = scan["peak_rss_mb"]  # type: ignore[assignment]
        mismatches: list[str] = scan["mismatches"]  # type: ignore[assignment]
        note = "; ".join(filter(None, [str(scan["note"]), *(
            [f"open ports differed from nmap's in {len(mismatches)} round(s)"]
            if mismatches else [])]))
        peer = {"probe-full-nc": "nc", "memory-scan": "nc"}.get(case.id, "nmap")
        ours = "tcpcli-1" if case.id == "probe-full-nmap-1" else "tcpcli"
        rounds = len(seconds["tcpcli"])
        if case.id == "memory-scan":
            rows.append(Row.of(case, max(peak["tcpcli"]), max(peak.get(peer, [0])) or None,
                               rounds, note))
        else:
            rows.append(Row.of(case, statistics.median(seconds[ours]),
                               statistics.median(seconds[peer]), rounds, note))
    return rows


#: Tables printed after the main one (the service comparison's, per listener).
DETAILS: list[str] = []


def service_group(settings: Settings, wanted: list[Case]) -> list[Row]:
    """service_scan.py in a namespace of its own (the standard ports are free there):
    tcpcli's identification against nmap -sV on the same real servers."""
    layouts = [case.id.removeprefix("probe-sv-") for case in wanted]
    rounds = max(1, min(settings.scan_rounds, 3))
    argv, note = in_namespace([sys.executable, str(Path(service_scan.__file__)), "--json",
                               "--rounds", str(rounds), "--layouts", ",".join(layouts)])
    if note and "standard" in layouts:
        layouts = [layout for layout in layouts if layout != "standard"]
        argv = [*argv[:-1], ",".join(layouts)] if layouts else []
    say(f"probe: service identification against nmap -sV, {rounds} round(s) of {layouts}")
    results = {}
    if argv:
        child = run_child(argv, env=connect_throughput.CHILD_ENV, timeout=7200).check(
            "service_scan.py")
        results = {item["layout"]: item for item in json.loads(child.stdout)["layouts"]}
    rows = []
    for case in wanted:
        layout = case.id.removeprefix("probe-sv-")
        if layout not in results:
            rows.append(Row.skipped(case, note or "not measured"))
            continue
        item = results[layout]
        counts = item["counts"]
        seconds = item["seconds"]
        summary = (f"products named: tcpcli {counts['tcpcli_products']}/{counts['listeners']}, "
                   f"nmap {counts['nmap_products']}, the same {counts['same_product']}; "
                   f"STARTTLS found on {counts['tcpcli_starttls']}, nmap -sV: none")
        rows.append(Row.of(case, statistics.median(seconds["tcpcli"]),
                           statistics.median(seconds["nmap"]) if seconds["nmap"] else None,
                           len(seconds["tcpcli"]),
                           "; ".join(filter(None, [summary, item["note"], note]))))
        DETAILS.append(item["table"])
    return rows


def connect_group(settings: Settings, wanted: list[Case]) -> list[Row]:
    """connect_throughput.py's sinks and timing: push, pull and TLS push of one file."""
    data = write_random_file(settings.tmp / "data.bin", settings.push_mib)
    with contextlib.ExitStack() as peers:
        return connect_rows(settings, wanted, peers, data)


def connect_rows(settings: Settings, wanted: list[Case], peers: contextlib.ExitStack,
                 data: Path) -> list[Row]:
    from tcpcli.core.certgen import throwaway_certificate

    ids = {case.id for case in wanted}
    size = settings.push_mib << 20
    discard = sink(peers, "discard", size)
    source = sink(peers, "source", size, source=data)
    allow = ["--allow", "127.0.0.1", "-q"]
    tcpcli = settings.tcpcli
    commands: dict[str, tuple[list[str], str | None]] = {}
    if ids & {"connect-push", "memory-push"}:
        commands["push tcpcli"] = ([*tcpcli, "connect", "127.0.0.1", str(discard.port),
                                    *allow], str(data))
        commands["push nc"] = (["nc", "-N", "127.0.0.1", str(discard.port)], str(data))
    if "connect-pull" in ids:
        commands["pull tcpcli"] = ([*tcpcli, "connect", "127.0.0.1", str(source.port), *allow,
                                    "--no-stdin"], None)
        commands["pull nc"] = (["nc", "-d", "127.0.0.1", str(source.port)], None)
    if "connect-tls" in ids:
        certificate = throwaway_certificate("127.0.0.1")
        ca = certificate.write_ca(str(settings.tmp))
        tls = sink(peers, "discard", size, certificate.server_context())
        commands["tls tcpcli"] = ([*tcpcli, "connect", "127.0.0.1", str(tls.port), "--tls",
                                   "--ca-file", ca, *allow], str(data))
        commands["tls openssl"] = (["openssl", "s_client", "-quiet", "-connect",
                                    f"127.0.0.1:{tls.port}", "-CAfile", ca], str(data))
    peaks: dict[str, list[float]] = {tool: [] for tool in commands}

    def runner(tool: str) -> Callable[[], float]:
        cmd, stdin = commands[tool]

        def run() -> float:
            child: Child = connect_throughput.timed(cmd, stdin)
            peaks[tool].append(child.peak_rss_mb)
            return child.seconds

        return run

    say(f"connect: {settings.push_mib} MiB, {settings.rounds} round(s) of {list(commands)}")
    samples = interleaved({tool: runner(tool) for tool in commands}, settings.rounds,
                          warm_up=True)
    middle = medians(samples)
    rows = []
    for case in wanted:
        if case.id == "memory-push":
            rows.append(Row.of(case, max(peaks["push tcpcli"]), max(peaks["push nc"]),
                               settings.rounds, f"{settings.push_mib} MiB"))
        else:
            kind = case.id.removeprefix("connect-")
            peer = "tls openssl" if kind == "tls" else f"{kind} nc"
            rows.append(Row.of(case, middle[f"{kind} tcpcli"], middle[peer], settings.rounds,
                               f"{settings.push_mib} MiB"))
    return rows


def bench_connect_group(settings: Settings, wanted: list[Case]) -> list[Row]:
    """bench_accuracy.py's echo server, reference loop and tcpcli run."""
    ids = {case.id for case in wanted}
    rows = []
    server, port = bench_accuracy.start_server(settings.tmp)
    try:
        if "bench-rate" in ids:
            count = settings.bench_count
            say(f"bench: {count} connects at -c 64, {settings.rounds} round(s)")
            samples = interleaved({
                "tcpcli": lambda: bench_accuracy.run_tcpcli(port, count, 64)["per_second"],
                "reference": lambda: bench_accuracy.run_reference(port, count, 64)[
                    "per_second"]}, settings.rounds)
            middle = medians(samples)
            rows.append(Row.of(BY_ID["bench-rate"], middle["tcpcli"], middle["reference"],
                               settings.rounds, f"{count} connections"))
        if "memory-bench" in ids:
            seconds = settings.memory_bench_seconds
            say(f"bench: {seconds} s at -c 64 for its peak RSS")
            result = bench_accuracy.run_tcpcli(port, 0, 64, duration=seconds)
            rows.append(Row.of(BY_ID["memory-bench"], result["peak_rss_mb"], None, 1,
                               f"{seconds} s, {result['per_second']:,.0f} conn/s"))
    finally:
        server.terminate()
        server.wait(5)
    return rows


def iperf3_rate(seconds: int) -> float:
    """One ``iperf3 -s -1`` and its client over loopback: the receiver's bytes/s."""
    port = free_port()
    with process_peer(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)], port):
        child = run_child(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds),
                           "-J"], timeout=seconds + 60).check("iperf3")
    rate: float = json.loads(child.stdout)["end"]["sum_received"]["bits_per_second"] / 8
    return rate


def bench_throughput_group(settings: Settings, wanted: list[Case]) -> list[Row]:
    """tcpcli's own figure (throughput.py's sink) against iperf3's, same duration."""
    seconds = settings.stream_seconds
    say(f"bench: throughput, {seconds} s, {settings.rounds} round(s)")
    peer = throughput.Peer("sink")
    try:
        samples = interleaved({
            "tcpcli": lambda: throughput.run_tcpcli("up", peer.port, seconds, 1) / 1e9,
            "iperf3": lambda: iperf3_rate(seconds) / 1e9}, settings.rounds)
    finally:
        peer.stop()
    middle = medians(samples)
    return [Row.of(BY_ID["bench-throughput"], middle["tcpcli"], middle["iperf3"],
                   settings.rounds, f"{seconds} s each")]


#: The rr request, the size sockperf sends too (``-m``).
RR_BYTES = 16


def tcpcli_rr_p50_us(settings: Settings, port: int, seconds: int) -> float:
    child = run_child([*settings.tcpcli, "bench", f"127.0.0.1:{port}", "--allow", "127.0.0.1",
                       "-m", "rr", "-c", "1", "-d", str(seconds), "--send", "x" * RR_BYTES,
                       "--reply-bytes", str(RR_BYTES), "--json", "-q"],
                      timeout=seconds + 60).check("tcpcli bench -m rr")
    p50_ms: float = tcpcli_event(child, "bench_summary")["distributions"]["rr"]["p50_ms"]
    return p50_ms * 1000


def sockperf_p50_us(port: int, seconds: int) -> float:
    """sockperf's p50 round trip (``--full-rtt``: by default it prints half of it)."""
    child = run_child(["sockperf", "ping-pong", "--tcp", "-i", "127.0.0.1", "-p", str(port),
                       "-t", str(seconds), "-m", str(RR_BYTES), "--full-rtt"],
                      timeout=seconds + 60).check("sockperf ping-pong")
    found = re.search(r"percentile 50\.0+ =\s*([\d.]+)", child.stdout)
    if not found:
        raise RuntimeError(f"no p50 in sockperf's output: {child.stdout[-400:]}")
    return float(found.group(1))


def bench_rr_group(settings: Settings, wanted: list[Case]) -> list[Row]:
    """tcpcli against a socat echo, sockperf against its own server: round-trip p50."""
    seconds = settings.stream_seconds
    say(f"bench: rr, {seconds} s, {settings.rounds} round(s)")
    echo, server = free_port(), free_port()
    with process_peer(["socat", f"TCP-LISTEN:{echo},bind=127.0.0.1,reuseaddr,fork", "PIPE"],
                      echo), \
         process_peer(["sockperf", "server", "--tcp", "-i", "127.0.0.1", "-p", str(server)],
                      server):
        samples = interleaved({"tcpcli": lambda: tcpcli_rr_p50_us(settings, echo, seconds),
                               "sockperf": lambda: sockperf_p50_us(server, seconds)},
                              settings.rounds)
    middle = medians(samples)
    return [Row.of(BY_ID["bench-rr"], middle["tcpcli"], middle["sockperf"], settings.rounds,
                   f"{seconds} s each, {RR_BYTES}-byte messages")]


Group = Callable[[Settings, list[Case]], list[Row]]
GROUPS: tuple[tuple[Group, tuple[str, ...]], ...] = (
    (startup_group, tuple(case.id for case in CASES if case.id.startswith("startup-"))),
    (probe_group, ("probe-full-nc", "probe-full-nmap", "probe-full-nmap-1", "probe-top1000",
                   "memory-scan")),
    (service_group, ("probe-sv-standard", "probe-sv-free")),
    (connect_group, ("connect-push", "connect-pull", "connect-tls", "memory-push")),
    (bench_connect_group, ("bench-rate", "memory-bench")),
    (bench_throughput_group, ("bench-throughput",)),
    (bench_rr_group, ("bench-rr",)),
)
#: Left out of ``--quick`` (unless named with ``--only``): the slowest rows.
SLOW = ("probe-full-nmap", "probe-full-nmap-1", "memory-scan", "probe-full-nc",
        "probe-sv-standard", "probe-sv-free")


# --------------------------------------------------------------------------- peers


def install_peers(commands: set[str], allowed: bool) -> dict[str, str]:
    """Install the missing peer commands from Debian's packages when possible; return why
    each one still missing is (no root, no apt-get, or the install failed)."""
    missing = sorted(command for command in commands if not shutil.which(command))
    if not missing:
        return {}
    packages = [PACKAGES[command] for command in missing]
    if not allowed:
        return {command: f"{command} is not installed (--no-install)" for command in missing}
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return {command: f"{command} is not installed (as root: apt-get install "
                         f"{PACKAGES[command]})" for command in missing}
    say(f"installing {' '.join(packages)} (apt-get)")
    policy, own_policy = Path("/usr/sbin/policy-rc.d"), False
    try:
        if not policy.exists():  # no package may start its daemon (iperf3's would)
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            own_policy = True
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                       timeout=600)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env,
                              capture_output=True, text=True, timeout=900)
    finally:
        if own_policy:
            policy.unlink()
    reason = (done.stderr.strip().splitlines() or ["apt-get failed"])[-1]
    return {command: f"{command} is not installed (apt-get install {PACKAGES[command]}: "
                     f"{reason})" for command in missing if not shutil.which(command)}


# --------------------------------------------------------------------------- the table


def figure(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "conn/s":
        return f"{value:,.0f}/s"
    if unit == "us":
        return f"{value:.0f} µs"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.2f} {unit}"


MET = {True: "yes", False: "no", None: "—"}


def table(rows: list[Row]) -> str:
    """The rows as a markdown table (what the README quotes)."""
    lines = ["| case | tcpcli median | peer median | ratio | goal | met? |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if row.tcpcli is None:
            lines.append(f"| {row.title} | skipped: {row.note} | {row.peer_name} | — | "
                         f"{row.goal} | — |")
            continue
        peer = f"{row.peer_name} {figure(row.peer, row.unit)}" if row.peer_name else "—"
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else "—"
        note = f" ({row.note})" if row.note else ""
        lines.append(f"| {row.title}{note} | {figure(row.tcpcli, row.unit)} | {peer} | "
                     f"{ratio} | {row.goal} | {MET[row.met]} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def select(only: str | None, quick: bool) -> list[Case]:
    """The cases ``--only`` names (an id, or a prefix such as ``startup`` or ``bench``), or
    every case (``--quick``: less the slowest)."""
    if not only:
        return [case for case in CASES if not (quick and case.id in SLOW)]
    tokens = [token.strip() for token in only.split(",") if token.strip()]
    unknown = [token for token in tokens
               if not any(case.id == token or case.id.startswith(token + "-")
                          for case in CASES)]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; the cases: "
                         + ", ".join(case.id for case in CASES))
    return [case for case in CASES
            if any(case.id == token or case.id.startswith(token + "-") for token in tokens)]


def prepare_tcpcli(settings: Settings, how: str) -> None:
    """tcpcli as users run it (the wheel, installed and byte-compiled in a fresh venv), or
    the one installed here (``current``: an editable install pays its finder at start)."""
    if how == "wheel":
        say("building the wheel and installing it in a fresh venv")
        bin_dir = connect_throughput.installed_wheel(settings.tmp)
        settings.tcpcli, settings.python = [str(bin_dir / "tcpcli")], str(bin_dir / "python")
        # The scripts reused here find tcpcli on PATH: make it this one.
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    else:
        found = shutil.which("tcpcli")
        settings.tcpcli = [found] if found else [sys.executable, "-m", "tcpcli"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run", description=__doc__.split("\n\n")[0],
        epilog="cases: " + ", ".join(case.id for case in CASES))
    parser.add_argument("--quick", action="store_true",
                        help="the one-minute subset: fewer rounds, smaller sizes, without "
                             + ", ".join(SLOW))
    parser.add_argument("--only", metavar="CASES",
                        help="comma-separated case ids or prefixes (startup, probe, connect, "
                             "bench, memory)")
    parser.add_argument("--rounds", type=int, help="rounds per case (default: 5, start-up 9; "
                                                   "--quick: 3, full scan 1)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also save the rows here")
    parser.add_argument("--tcpcli", choices=("wheel", "current"), default="wheel",
                        help="wheel: build it and install it in a fresh venv (default); "
                             "current: the tcpcli installed here")
    parser.add_argument("--no-install", action="store_true",
                        help="never apt-get a missing peer: skip its rows")
    parser.add_argument("--instructions", action="store_true",
                        help="start-up rows also count instructions with callgrind "
                             "(valgrind): a ratio that machine noise does not move")
    args = parser.parse_args(argv)
    wanted = select(args.only, args.quick)
    settings = Settings.make(args.quick, args.rounds)
    settings.instructions = args.instructions
    missing = install_peers({need for case in wanted for need in case.needs},
                            not args.no_install)
    started = time.monotonic()
    rows: dict[str, Row] = {}
    with tempfile.TemporaryDirectory(prefix="tcpcli-bench-") as tmp:
        settings.tmp = Path(tmp)
        # What tcpcli caches (certifi's hashed directory) stays in the run's directory,
        # built by the warm-up round as a user's first run builds it.
        cache = str(settings.tmp / "cache")
        os.environ["XDG_CACHE_HOME"] = connect_throughput.CHILD_ENV["XDG_CACHE_HOME"] = cache
        try:
            prepare_tcpcli(settings, args.tcpcli)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"cannot build and install the wheel ({exc}: {exc.stderr}); "
                             "measure the installed tcpcli with --tcpcli current") from exc
        for group, ids in GROUPS:
            cases = [case for case in wanted if case.id in ids]
            runnable = []
            for case in cases:
                absent = [missing[need] for need in case.needs if need in missing]
                if absent:
                    rows[case.id] = Row.skipped(case, "; ".join(absent))
                else:
                    runnable.append(case)
            if not runnable:
                continue
            try:
                for row in group(settings, runnable):
                    rows[row.case] = row
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                say(f"{group.__name__} failed: {exc}")
                for case in runnable:
                    rows.setdefault(case.id, Row.skipped(case, "failed: " + " ".join(
                        str(exc).split())[:160]))
    ordered = [rows[case.id] for case in wanted if case.id in rows]
    print(table(ordered))
    skipped = [row for row in ordered if row.tcpcli is None]
    print(f"\n{len(ordered) - len(skipped)} measured, {len(skipped)} skipped, "
          f"{sum(1 for row in ordered if row.met)} goals met, in "
          f"{time.monotonic() - started:.0f} s; ratio = tcpcli median / peer median "
          f"(rates: higher is better, times: lower)")
    for row in skipped:
        print(f"skipped {row.case}: {row.note}")
    for details in DETAILS:
        print()
        print(details)
    if args.json:
        args.json.write_text(json.dumps({"quick": settings.quick,
                                         "rows": [asdict(row) for row in ordered]}, indent=1))
    return 0
