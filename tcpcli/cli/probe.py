"""``tcpcli probe``: which ports answer, how fast, what speaks there, could a Worker reach it.

Results go to stdout: a Rich table on a terminal, ``host port state key=value ...`` lines
when piped, JSON Lines (``--json``: ``probe_result`` events, then ``summary``) or CSV
(``--csv``). The summary line, the ports the policy skipped and diagnostics go to stderr.
The rendering is :mod:`tcpcli.render.probe`; the scan is :mod:`tcpcli.engines.scan`.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.cli.expectations import expect_option
from tcpcli.cli.helpformat import OUTPUT, TIMING, SectionedCommand, option
from tcpcli.cli.options import common_options, target_argument, via_option
from tcpcli.cli.paramtypes import DURATION, PORT_LIST, PROCESSES, Count, Number, ViaMap
from tcpcli.cli.runner import interrupted, run
from tcpcli.record import Record

if TYPE_CHECKING:
    from tcpcli.cli.commonoptions import CommonOptions
    from tcpcli.core.errors import TcpcliError
    from tcpcli.core.expect import Expectation
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.scan import Scanner
    from tcpcli.engines.scan_results import PortState, ProbeResult, ScanOptions, ScanSummary
    from tcpcli.engines.scan_targets import Target
    from tcpcli.render.probe import PolicySkips

EXAMPLES = """
\b
Examples:
  tcpcli probe db.internal --ports postgresql,redis,6432
  tcpcli probe 10.0.0.0/28 --top 20 --policy open --max-sockets unlimited
  tcpcli probe 127.0.0.1 -p- --allow 127.0.0.1 --max-sockets unlimited --timeout 0.5
  tcpcli probe mail.example.com -p smtp,submission,imaps --banner --tls-detect
  tcpcli probe --targets hosts.txt -p 443 --json | jq 'select(.state=="open")'
  tcpcli probe cache:6379 --expect open && echo reachable

\b
Exit status: 0 the scan completed (closed ports and ports the policy skipped are
results, not failures); with --expect open: every probed port is open, with --expect
closed: none is; 9 the --expect check failed, or nothing was probed; 3 every port asked
for was refused by the policy; 4 a name did not resolve; 2 usage.
"""

PROGRESS_AFTER_S = 0.5  # no live line for scans shorter than this


@click.command("probe", cls=SectionedCommand, epilog=EXAMPLES,
               short_help="Scan TCP ports: open, closed or filtered, with banners and TLS.")
@target_argument("targets", nargs=-1)
@click.option("-p", "--ports", "port_specs", multiple=True, metavar="LIST", type=PORT_LIST,
              help="Ports: 22,80-90,ssh,redis; '-' for all 65535 (so -p- works). Repeatable.")
@click.option("--top", type=Count(1, 65535), metavar="N",
              help="The N most common ports (default when no --ports: 100).")
@click.option("--targets", "targets_file", metavar="FILE",
              help="Read more targets from FILE ('-' for stdin), one per line, # comments.")
@click.option("--all-addresses", is_flag=True,
              help="Probe every address a name resolves to, not just the preferred one.")
@option("--concurrency", type=Count(1), default=1024, show_default=True, metavar="N",
        section=TIMING, help="Connects in flight at once (never more than --max-sockets).")
@option("--processes", type=PROCESSES, default="auto", show_default=True, metavar="N|auto",
        section=TIMING,
        help="Spread a plain scan of addresses over N processes, each with its share of the "
             "ports, --concurrency and rates (needs --max-sockets unlimited); auto: one "
             "per 8,192 probes, up to the cores, unless a live line shows progress.")
@option("--rate", type=Number(unit="per second"), metavar="PER_SECOND", section=TIMING,
        help="At most this many new connects per second, overall.")
@option("--host-rate", type=Number(unit="per second"), metavar="PER_SECOND",
        section=TIMING, help="At most this many new connects per second to any one address.")
@option("--retries", type=Count(0, 10), default=0, show_default=True, metavar="N",
        section=TIMING, help="Try a filtered (silent) port again this many times.")
@click.option("--banner", is_flag=True,
              help="Name what speaks on open ports (product, version): the greeting, or "
                   "safe probes (no login, nothing changed) on silent ones.")
@option("--banner-wait", type=DURATION, default=1.0, section=TIMING,
        show_default=True, metavar="SECONDS",
        help="How long --banner and --tls-detect wait for each reply.")
@click.option("--tls-detect", is_flag=True,
              help="TLS on open ports, implicit or STARTTLS: version, cipher, certificate "
                   "subject, days left, verdict.")
@option("--csv", "as_csv", is_flag=True, section=OUTPUT, help="CSV rows on stdout.")
@option("--show", type=click.Choice(["auto", "all", "open"]), default="auto",
        show_default=True, section=OUTPUT,
        help="Rows to print: all states, only open, or auto (all for up to 100 ports).")
@expect_option("probe", what="A check on the scan: open (every port open), closed (none "
               "open), ports.open>=N, banner~REGEX (any open port's), connect.ms<T (median)")
@click.option("--via-map", "via_maps", multiple=True, type=ViaMap(),
              help="Each port of the target through its own tunnel entry point: "
                   "PORT=HOST:PORT,... (ssh -L, cloudflared access tcp, kubectl "
                   "port-forward); --via for a single port.")
@via_option
@click.option("--yes", "-y", "confirmed", is_flag=True,
              help="Confirm a very large scan (over 1,000,000 probes or a CIDR over /16).")
@common_options
@click.pass_obj
def probe_command(env: Environment | None, /, targets: tuple[str, ...],
                  **kwargs: Any) -> None:
    """Probe TCP ports of TARGETS (host, host:port, [v6]:port, IP, CIDR).

    Each port is open (connected), closed (refused), filtered (no answer within --timeout,
    default 1 s), unreachable (an ICMP/route error) or blocked (the policy refused it; no
    packet was sent). Every row also says whether a Worker's connect() would be allowed.

    By default at most 6 sockets are open at once (the Workers cap) and Workers' blocked
    destinations (localhost, port 25, ...) are refused. For big scans lift the cap with
    --max-sockets unlimited; for this machine or private hosts add --allow ADDRESS or
    --policy open.
    """
    from tcpcli.core.errors import AddressError
    from tcpcli.engines.scan_targets import choose_ports, guard, parse_target

    env = env or Environment()
    from tcpcli.cli.commonoptions import CommonOptions

    common = CommonOptions.from_kwargs(kwargs)
    options = ProbeOptions.from_kwargs(kwargs)
    entries = _entry_points(options, targets, common)
    try:
        ports = sorted(entries) if entries and not options.port_specs else \
            choose_ports(options.port_specs, options.top)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ports") from exc
    if options.via is not None:
        from tcpcli.core.errors import AddressError as BadTarget
        from tcpcli.engines.scan_targets import parse_target

        try:  # host:port (a named target's address) names the port behind the entry point
            given = parse_target(targets[0]).port
        except BadTarget:
            given = None  # reported with the other targets' errors below
        if given is not None and not options.port_specs:
            ports = [given]
        elif not options.port_specs or len(ports) != 1:
            raise click.UsageError("--via reaches one port through one entry point: give "
                                   "that port with --ports (--via-map PORT=HOST:PORT,... "
                                   "gives several ports each their own)")
        entries = {ports[0]: options.via}
    elif entries:
        missing = [port for port in ports if port not in entries]
        if missing:
            raise click.UsageError(f"port {missing[0]} has no entry point in --via-map")
    if not targets and not options.targets_file:
        raise click.UsageError("give at least one target (or --targets FILE)")
    parsed = []
    for text in targets:
        try:
            parsed.append(parse_target(text))
        except AddressError as exc:
            raise click.BadParameter(str(exc), param_hint="TARGET") from exc
    if not options.confirmed:
        too_big = guard(parsed, len(ports))
        if too_big:
            raise click.UsageError(f"{too_big}; pass --yes to run it anyway")
    if options.as_csv and common.json:
        raise click.UsageError("--csv and --json exclude each other")
    invocation = common.invocation()
    if options.processes not in (None, 1):
        from tcpcli.engines.cores import can_fork

        if invocation.slots.limit is not None:
            raise click.UsageError("--processes needs --max-sockets unlimited: the socket "
                                   "cap is one process's to keep")
        if not can_fork():
            raise click.UsageError("--processes runs a scan in forked processes, which "
                                   "only Linux offers safely")
    env.start_session("probe", json=common.json, quiet=common.quiet)
    session = ProbeSession(env, common, options, ports, parsed, entries)
    run(lambda: session.main(invocation), env, traceback=common.traceback,
        without_loop=lambda: session.main_now(invocation))


def _entry_points(options: ProbeOptions, targets: tuple[str, ...],
                  common: CommonOptions) -> dict[int, str]:
    """--via / --via-map as {port: entry point}; {} without them. A tunnel's entry point
    forwards to one port of one host: one named target, no scan-wide options."""
    if options.via is None and not options.via_maps:
        return {}
    if options.via is not None and options.via_maps:
        raise click.UsageError("--via and --via-map exclude each other (--via-map covers "
                               "one port too)")
    if len(targets) != 1 or options.targets_file or "/" in targets[0]:
        raise click.UsageError("--via and --via-map reach one target (its ports through "
                               "their entry points): give one host, no --targets or CIDR")
    clash = next((flag for flag, used in (("--tls-detect", options.tls_detect),
                                          ("--all-addresses", options.all_addresses),
                                          ("--proxy", bool(common.proxy)),
                                          ("--top", options.top is not None)) if used), None)
    if clash is not None:
        raise click.UsageError(f"{clash} does not go with --via/--via-map: the entry points "
                               "are the way in")
    entries: dict[int, str] = {}
    for mapping in options.via_maps:
        for port, entry in mapping.items():
            if entries.setdefault(port, entry) != entry:
                raise click.UsageError(f"port {port} has two entry points in --via-map")
    return entries


class ProbeOptions(Record, frozen=True):
    """probe's own options (the shared ones are :class:`CommonOptions`). A Record, not a
    frozen dataclass or NamedTuple: building one at import costs a tenth as much."""

    port_specs: tuple[str, ...]
    top: int | None
    targets_file: str | None
    all_addresses: bool
    concurrency: int
    processes: int | None  # None: auto
    rate: float | None
    host_rate: float | None
    retries: int
    banner: bool
    banner_wait: float
    tls_detect: bool
    as_csv: bool
    show: str
    expectations: tuple[Expectation, ...]
    via_maps: tuple[dict[int, str], ...]
    via: str | None
    confirmed: bool

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> ProbeOptions:
        """Pop probe's own options out of the command's kwargs (click hands them over
        untyped; the decorators above say what each is)."""
        return cls(**{name: kwargs.pop(name) for name in cls.record_fields})


class ProbeSession:
    """One probe run: results streamed to stdout as they come, the summary at the end."""

    def __init__(self, env: Environment, common: CommonOptions, options: ProbeOptions,
                 ports: list[int], targets: list[Target],
                 entries: dict[int, str] | None = None) -> None:
        from tcpcli.render.events import Utf8Lines
        from tcpcli.render.probe import CSV_FIELDS, PolicySkips

        self.env, self.common, self.options = env, common, options
        self.ports, self.targets = ports, targets
        self.entries = entries or {}  # port -> its tunnel entry point (--via, --via-map)
        self.csv: csv.DictWriter[str] | None = None
        if options.as_csv:
            import csv

            self.csv = csv.DictWriter(Utf8Lines(env.stdout), CSV_FIELDS,
                                      extrasaction="ignore", lineterminator="\n")
            self.csv.writeheader()
        self.table = env.stdout_rich and not (common.json or options.as_csv)
        self.rows: list[ProbeResult] = []
        self.skipped: PolicySkips = PolicySkips()
        self.worst_error: ExitCode | None = None
        # What --expect checks beyond the counts (kept only when there are checks).
        self.open_latencies: list[float] = []
        self.open_banners: list[str] = []

    # ------------------------------------------------------------------ targets

    def all_targets(self) -> Iterator[Target]:
        """Command-line targets, then the --targets file, streamed line by line."""
        from tcpcli.core.errors import AddressError
        from tcpcli.engines.scan_targets import GUARD_ADDRESSES, parse_target, read_target_lines

        yield from self.targets
        path = self.options.targets_file
        if not path:
            return
        stream: IO[str]
        if path == "-":
            stream = io.TextIOWrapper(self.env.stdin, encoding="utf-8", errors="replace")
        else:
            try:
                stream = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
            except OSError as exc:
                self.env.warn(f"cannot read --targets {path}: {exc.strerror}")
                self.worst_error = ExitCode.ERROR
                return
        with stream:
            for text in read_target_lines(stream):
                try:
                    target = parse_target(text)
                except AddressError as exc:
                    self.env.warn(f"skipping target {text!r}: {exc}")
                    self.worst_error = self.worst_error or ExitCode.USAGE
                    continue
                if target.address_count > GUARD_ADDRESSES and not self.options.confirmed:
                    self.env.warn(f"skipping {text}: {target.address_count:,} addresses; "
                                  "pass --yes to scan it")
                    self.worst_error = self.worst_error or ExitCode.USAGE
                    continue
                yield target

    # ------------------------------------------------------------------ output

    def shown_states(self) -> frozenset[PortState]:
        """The states --show asks to see as rows."""
        from tcpcli.engines.scan_results import PortState

        show = self.options.show
        if show == "all" or (show == "auto" and len(self.ports) <= 100):
            return frozenset(PortState)
        return frozenset({PortState.OPEN})

    def report_states(self) -> frozenset[PortState]:
        """The rows the scanner passes on: the shown ones, and blocked ones always (the
        summary names them, with the flag that lifts the rule)."""
        from tcpcli.engines.scan_results import PortState

        return self.shown_states() | {PortState.BLOCKED}

    def on_result(self, result: ProbeResult) -> None:
        from tcpcli.engines.scan_results import PortState
        from tcpcli.render.probe import csv_row, plain_line

        if result.state is PortState.BLOCKED:
            self.skipped.add(result)
            if result.state not in self.shown_states():
                return
        if result.state is PortState.OPEN and self.options.expectations:
            if result.latency_ms is not None:
                self.open_latencies.append(result.latency_ms)
            if result.banner:
                self.open_banners.append(result.banner)
        if self.env.events is not None:
            self.env.emit("probe_result", target=f"{result.host}:{result.port}",
                          **result.to_dict())
        elif self.csv is not None:
            self.csv.writerow(csv_row(result))
        elif self.table:
            self.rows.append(result)
        else:
            self.env.write(plain_line(result) + "\n")

    def on_error(self, target: Target, error: TcpcliError) -> None:
        code = exit_code_for(error.kind)
        if self.worst_error is None or self.worst_error == ExitCode.USAGE:
            self.worst_error = code
        self.env.error(error, code, target.text)

    # ------------------------------------------------------------------ progress

    def show_progress(self) -> bool:
        """A live line on stderr for people at a terminal; never in pipes or beside events."""
        return self.env.rich and not self.common.quiet and not self.env.events_on_stderr

    def expected_probes(self) -> int | None:
        """How many probes the scan will make, when the targets say so in advance (a
        --targets file streams, and names may resolve to several addresses)."""
        from tcpcli.engines.scan_targets import estimate_probes

        if self.options.targets_file or self.options.all_addresses:
            return None
        return estimate_probes(self.targets, len(self.ports))

    async def _progress(self, scanner: Scanner) -> None:
        from tcpcli.render.live import show_live
        from tcpcli.render.probe import progress_line

        expected = self.expected_probes()
        started = time.monotonic()
        # Short scans finish before the line would flicker into view.
        await show_live(self.env.console, lambda: progress_line(
            scanner.summary, expected, time.monotonic() - started), after=PROGRESS_AFTER_S)

    # ------------------------------------------------------------------ run

    def scan_options(self) -> ScanOptions:
        from tcpcli.engines.scan_results import ScanOptions

        common, options = self.common, self.options
        return ScanOptions(
            timeout=common.timeout or 1.0, retries=options.retries,
            concurrency=options.concurrency, rate=options.rate, host_rate=options.host_rate,
            all_addresses=options.all_addresses, banner=options.banner,
            banner_wait=options.banner_wait, tls_detect=options.tls_detect,
            family=common.family, local_address=common.source,
            tls=common.tls_options() if options.banner or options.tls_detect else None,
            kernel_facts=bool(common.verbose or common.json))

    def main_now(self, invocation: Invocation) -> int | None:
        """The scan without an event loop (``Scanner.run_now``): addresses given as
        literals, no inspection of open ports, no live line. None, with nothing done,
        when the scan needs the loop."""
        if self.entries or self.options.targets_file:
            return None
        import signal

        from tcpcli.engines.scan import Scanner

        scanner = Scanner(invocation, self.scan_options(), self.on_result,
                          on_error=self.on_error, report=self.report_states())
        if not scanner.runs_without_loop(self.targets):
            return None
        processes = self.processes(invocation)
        if processes == 1 and self.show_progress():
            return None  # the live line runs on the loop (--processes N goes without it)
        try:
            summary = scanner.run_now(self.targets, self.ports, processes=processes)
        except KeyboardInterrupt:
            # As with the loop: once Ctrl-C was pressed no later press may turn the
            # report of what was probed, and exit 130, into a traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._finish(scanner.summary, cut_short=True)
            raise
        return None if summary is None else self._finish(summary)

    def processes(self, invocation: Invocation) -> int:
        """How many processes a scan without the event loop runs in (``scan_shards``)."""
        from tcpcli.engines.cores import auto_processes
        from tcpcli.engines.scan_targets import estimate_probes

        capped = invocation.slots.limit is not None
        asked = self.options.processes
        if asked is None:
            return auto_processes(estimate_probes(self.targets, len(self.ports)),
                                  capped=capped, live_line=self.show_progress())
        return asked

    async def main(self, invocation: Invocation) -> int:
        from tcpcli.engines.scan import Scanner

        if self.options.processes not in (None, 1):
            self.env.warn(f"--processes {self.options.processes}: only a plain scan of "
                          "addresses is spread over processes (not --banner, --tls-detect, "
                          "names, --targets or --via); this one runs in one")
        scan_options = self.scan_options()
        if self.entries:
            return await self._through_entry_points(invocation, scan_options)
        async with invocation:
            scanner = Scanner(invocation, scan_options, self.on_result, on_error=self.on_error,
                              report=self.report_states())
            try:
                if self.show_progress():
                    import anyio

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._progress, scanner)
                        summary = await scanner.run(self.all_targets(), self.ports)
                        tg.cancel_scope.cancel()
                else:
                    summary = await scanner.run(self.all_targets(), self.ports)
            except BaseException as exc:
                if interrupted(exc):  # what was probed so far, then 130/143
                    self._finish(scanner.summary, cut_short=True)
                raise
        return self._finish(summary)

    async def _through_entry_points(self, invocation: Invocation,
                                    scan_options: ScanOptions) -> int:
        """--via / --via-map: each port through its entry point (engines/scan_via)."""
        from collections import Counter

        from tcpcli.engines.scan_results import ScanSummary
        from tcpcli.engines.scan_via import probe_via

        summary = ScanSummary(hosts=1)
        started = time.monotonic()

        def counted(result: ProbeResult) -> None:
            summary.counts[str(result.state)] += 1
            summary.probes += 1
            if result.state in self.report_states():
                self.on_result(result)

        summary.counts = Counter()
        async with invocation:
            try:
                await probe_via(invocation, self.targets[0].host or self.targets[0].text,
                                self.entries, scan_options, counted)
            except BaseException as exc:
                if interrupted(exc):
                    self._finish(summary, cut_short=True)
                raise
            summary.peak_sockets = invocation.slots.peak
        summary.elapsed_ms = (time.monotonic() - started) * 1000
        return self._finish(summary)

    def _finish(self, summary: ScanSummary, *, cut_short: bool = False) -> ExitCode:
        """The table (on a terminal), the summary event and lines; the exit code."""
        from tcpcli.engines.scan_results import PortState
        from tcpcli.render.probe import results_table, summary_line

        if self.table:
            self.env.write_rich([results_table(self.rows, width=self.env.console.width)])
        counts = {str(state): summary.counts.get(state, 0) for state in PortState}
        code = probe_exit_code(counts, self.worst_error)
        self.env.emit("summary", probes=summary.probes, hosts=summary.hosts,
                      elapsed_ms=round(summary.elapsed_ms, 3),
                      peak_sockets=summary.peak_sockets, exit_code=int(code), **counts,
                      # Out of file descriptors (EMFILE...): waited and retried.
                      **({"socket_backoffs": summary.socket_backoffs}
                         if summary.socket_backoffs else {}),
                      **({"unprobed": summary.unprobed} if summary.unprobed else {}),
                      **({"skipped_by_policy": self.skipped.to_json()}
                         if self.skipped.count else {}),
                      # Spread over processes (--processes): how many.
                      **({"processes": summary.processes} if summary.processes > 1 else {}),
                      **({"interrupted": True} if cut_short else {}))
        for name, addresses in summary.unprobed.items():
            self.env.say(f"{name} also has {', '.join(addresses)}: not probed "
                         "(--all-addresses probes each)")
        self.env.say(summary_line(summary, counts, cut_short=cut_short))
        for line in self.skipped.lines():
            self.env.say(line)
        if code == ExitCode.OK and self.options.expectations and not cut_short \
                and not self._checks_hold(counts):
            return ExitCode.CHECK_FAILED
        return code

    def _checks_hold(self, counts: dict[str, int]) -> bool:
        """Every --expect against the scan's facts. A text check (banner) holds when any
        open port's banner satisfies it; the report names that banner, or the first."""
        import statistics

        from tcpcli.cli.expectations import all_passed, banner_text, report_checks

        probed = sum(n for state, n in counts.items() if state != "blocked")
        facts: dict[str, object] = {
            "open": counts.get("open", 0) == probed, "closed": counts.get("open", 0) == 0,
            "ports.open": counts.get("open", 0), "ports.closed": counts.get("closed", 0),
            "ports.filtered": counts.get("filtered", 0)}
        if self.open_latencies:
            facts["connect.ms"] = statistics.median(self.open_latencies)
        verdicts = []
        for expectation in self.options.expectations:
            found = dict(facts)
            banners = [banner_text(b.encode("utf-8", "surrogateescape"))
                       for b in self.open_banners]
            if banners:
                found["banner"] = next((b for b in banners
                                        if expectation.check({"banner": b}).passed),
                                       banners[0])
            verdicts += report_checks(self.env, [expectation], found)
        return all_passed(verdicts)


def probe_exit_code(counts: dict[str, int], worst_error: ExitCode | None) -> ExitCode:
    """What the user asked, answered (the README's probe exit-code table).

    A target that failed (a name that did not resolve...) decides first. Ports the policy
    refused are not failures unless they were everything asked for (3). Otherwise a
    completed scan is 0, and then ``--expect`` has its say (9 when a check fails).
    """
    if worst_error is not None:
        return worst_error
    probed = sum(n for state, n in counts.items() if state != "blocked")
    if probed == 0:
        return ExitCode.BLOCKED if counts.get("blocked") else ExitCode.CHECK_FAILED
    return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(probe_command())
