"""``tcpcli probe``: which ports answer, how fast, what speaks there, could a Worker reach it.

Results go to stdout: a Rich table on a terminal, ``host port state key=value ...`` lines
when piped, JSON Lines (``--json``: ``probe_result`` events, then ``summary``) or CSV
(``--csv``). The summary and diagnostics go to stderr.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.cli.options import CommonOptions, common_options, target_argument
from tcpcli.cli.runner import interrupted, report_error, run

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

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
Exit status: 0 every probed port is open (with --expect closed: none is open);
9 the check failed (some port closed, filtered or unreachable); 3 a destination was
blocked by the policy; 4 a name did not resolve; 2 usage.
"""

CSV_FIELDS = ("host", "address", "port", "state", "reason", "errno", "latency_ms", "attempts",
              "service", "identified", "identified_detail", "banner", "tls_version",
              "tls_subject", "tls_not_after", "workers_allowed", "workers_rule", "rule")

PROGRESS_AFTER_S = 0.5  # no live line for scans shorter than this

STATE_STYLES = {"open": "green", "closed": "red", "filtered": "yellow",
                "unreachable": "magenta", "blocked": "cyan"}


@click.command("probe", epilog=EXAMPLES)
@target_argument("targets", nargs=-1)
@click.option("-p", "--ports", "port_specs", multiple=True, metavar="LIST",
              help="Ports: 22,80-90,ssh,redis; '-' for all 65535 (so -p- works). Repeatable.")
@click.option("--top", type=click.IntRange(1, 65535), metavar="N",
              help="The N most common ports (default when no --ports: 100).")
@click.option("--targets", "targets_file", metavar="FILE",
              help="Read more targets from FILE ('-' for stdin), one per line, # comments.")
@click.option("--all-addresses", is_flag=True,
              help="Probe every address a name resolves to, not just the preferred one.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Connects in flight at once (never more than --max-sockets).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), metavar="PER_SECOND",
              help="At most this many new connects per second, overall.")
@click.option("--host-rate", type=click.FloatRange(min=0, min_open=True), metavar="PER_SECOND",
              help="At most this many new connects per second to any one address.")
@click.option("--retries", type=click.IntRange(0, 10), default=0, show_default=True,
              help="Try a filtered (silent) port again this many times.")
@click.option("--banner", is_flag=True,
              help="Read what open ports say first; send harmless probes to silent ones.")
@click.option("--banner-wait", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, metavar="SECONDS", help="How long to wait for a banner.")
@click.option("--tls-detect", is_flag=True,
              help="Try a TLS handshake on open ports: version, certificate subject, expiry.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV rows on stdout.")
@click.option("--show", type=click.Choice(["auto", "all", "open"]), default="auto",
              show_default=True,
              help="Rows to print: all states, only open, or auto (all for up to 100 ports).")
@click.option("--expect", type=click.Choice(["open", "closed"]),
              help="Exit 0 only if every port is open / none is open (else 9).")
@click.option("--yes", "-y", "confirmed", is_flag=True,
              help="Confirm a very large scan (over 1,000,000 probes or a CIDR over /16).")
@common_options
@click.pass_obj
def probe_command(env: Environment | None, /, targets: tuple[str, ...], **kwargs: Any) -> None:
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
    common = CommonOptions.from_kwargs(kwargs)
    try:
        ports = choose_ports(kwargs["port_specs"], kwargs["top"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ports") from exc
    if not targets and not kwargs["targets_file"]:
        raise click.UsageError("give at least one target (or --targets FILE)")
    parsed = []
    for text in targets:
        try:
            parsed.append(parse_target(text))
        except AddressError as exc:
            raise click.BadParameter(str(exc), param_hint="TARGET") from exc
    if not kwargs["confirmed"]:
        too_big = guard(parsed, len(ports))
        if too_big:
            raise click.UsageError(f"{too_big}; pass --yes to run it anyway")
    if kwargs["as_csv"] and common.json:
        raise click.UsageError("--csv and --json exclude each other")
    invocation = common.invocation()
    session = ProbeSession(env, common, ports, parsed, **kwargs)
    run(lambda: session.main(invocation), env, traceback=common.traceback)


class ProbeSession:
    def __init__(self, env: Environment, common: CommonOptions, ports: list[int],
                 targets: list[Any], **kwargs: Any) -> None:
        from tcpcli.render.events import EventWriter

        self.env, self.common, self.ports, self.targets = env, common, ports, targets
        self.options = kwargs
        self.out: IO[str] = io.TextIOWrapper(env.stdout, encoding="utf-8", newline="",
                                             line_buffering=True, write_through=True)
        self.events = EventWriter(self.out) if common.json else None
        self.csv: Any = None
        if kwargs["as_csv"]:
            self.csv = csv.DictWriter(self.out, CSV_FIELDS, extrasaction="ignore",
                                      lineterminator="\n")
            self.csv.writeheader()
        self.table = env.stdout_isatty or bool(env.environ.get("FORCE_COLOR"))
        self.table = self.table and not (common.json or kwargs["as_csv"])
        self.rows: list[Any] = []
        self.all_open = True
        self.any_open = False
        self.worst_error: ExitCode | None = None

    # ------------------------------------------------------------------ targets

    def all_targets(self) -> Iterator[Any]:
        """Command-line targets, then the --targets file, streamed line by line."""
        from tcpcli.core.errors import AddressError
        from tcpcli.engines.scan_targets import GUARD_ADDRESSES, parse_target, read_target_lines

        yield from self.targets
        path = self.options["targets_file"]
        if not path:
            return
        stream: IO[str]
        if path == "-":
            stream = io.TextIOWrapper(self.env.stdin, encoding="utf-8", errors="replace")
        else:
            try:
                stream = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
            except OSError as exc:
                self._note(f"cannot read --targets {path}: {exc.strerror}")
                self.worst_error = ExitCode.ERROR
                return
        with stream:
            for text in read_target_lines(stream):
                try:
                    target = parse_target(text)
                except AddressError as exc:
                    self._note(f"skipping target {text!r}: {exc}")
                    self.worst_error = self.worst_error or ExitCode.USAGE
                    continue
                if target.address_count > GUARD_ADDRESSES and not self.options["confirmed"]:
                    self._note(f"skipping {text}: {target.address_count:,} addresses; "
                               "pass --yes to scan it")
                    self.worst_error = self.worst_error or ExitCode.USAGE
                    continue
                yield target

    # ------------------------------------------------------------------ output

    def _note(self, message: str) -> None:
        self.env.note(message)

    def report_states(self) -> frozenset[Any]:
        from tcpcli.engines.scan_results import PortState

        show = self.options["show"]
        if show == "all" or (show == "auto" and len(self.ports) <= 100):
            return frozenset(PortState)
        return frozenset({PortState.OPEN})

    def on_result(self, result: Any) -> None:
        if self.events is not None:
            self.events.emit("probe_result", f"{result.host}:{result.port}", **result.to_dict())
        elif self.csv is not None:
            row = result.to_dict()
            tls = result.tls or {}
            row.update(tls_version=tls.get("version"), tls_subject=tls.get("subject"),
                       tls_not_after=tls.get("not_after"))
            self.csv.writerow(row)
        elif self.table:
            self.rows.append(result)
        else:
            self.out.write(plain_line(result) + "\n")

    def on_error(self, target: Any, error: Any) -> None:
        code = exit_code_for(error.kind)
        if self.worst_error is None or self.worst_error == ExitCode.USAGE:
            self.worst_error = code
        report_error(self.env, self.events, target.text, error, code)

    def render_table(self) -> None:
        from rich.console import Console

        console = Console(file=self.out, force_terminal=True, no_color=not self.env.color
                          and not self.env.environ.get("FORCE_COLOR"), highlight=False)
        console.print(results_table(self.rows))

    # ------------------------------------------------------------------ progress

    def show_progress(self) -> bool:
        """A live line on stderr for people at a terminal; never in pipes or beside events."""
        writes_events_to_stderr = (self.events is not None
                                   and self.events.stream is self.env.stderr)
        return self.env.rich and not self.common.quiet and not writes_events_to_stderr

    def expected_probes(self) -> int | None:
        """How many probes the scan will make, when the targets say so in advance (a
        --targets file streams, and names may resolve to several addresses)."""
        from tcpcli.engines.scan_targets import estimate_probes

        if self.options["targets_file"] or self.options["all_addresses"]:
            return None
        return estimate_probes(self.targets, len(self.ports))

    async def _progress(self, scanner: Any) -> None:
        from tcpcli.render.live import show_live

        expected = self.expected_probes()
        started = time.monotonic()
        # Short scans finish before the line would flicker into view.
        await show_live(self.env.console, lambda: progress_line(
            scanner.summary, expected, time.monotonic() - started), after=PROGRESS_AFTER_S)

    # ------------------------------------------------------------------ run

    async def main(self, invocation: Any) -> int:
        from tcpcli.engines.scan import Scanner
        from tcpcli.engines.scan_results import ScanOptions

        common = self.common
        options = ScanOptions(
            timeout=common.timeout or 1.0, retries=self.options["retries"],
            concurrency=self.options["concurrency"], rate=self.options["rate"],
            host_rate=self.options["host_rate"],
            all_addresses=self.options["all_addresses"], banner=self.options["banner"],
            banner_wait=self.options["banner_wait"], tls_detect=self.options["tls_detect"],
            family=common.family, local_address=common.source)
        async with invocation:
            scanner = Scanner(invocation, options, self.on_result, on_error=self.on_error,
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

    def _finish(self, summary: Any, *, cut_short: bool = False) -> ExitCode:
        """The table (on a terminal), the summary event and line; the exit code."""
        from tcpcli.engines.scan_results import PortState

        if self.table:
            self.render_table()
        counts = {str(state): summary.counts.get(state, 0) for state in PortState}
        code = self.exit_code(counts)
        if self.events is not None:
            self.events.emit("summary", None, probes=summary.probes, hosts=summary.hosts,
                             elapsed_ms=round(summary.elapsed_ms, 3),
                             peak_sockets=summary.peak_sockets, exit_code=int(code), **counts,
                             # Out of file descriptors (EMFILE...): waited and retried.
                             **({"socket_backoffs": summary.socket_backoffs}
                                if summary.socket_backoffs else {}),
                             **({"unprobed": summary.unprobed} if summary.unprobed else {}),
                             **({"interrupted": True} if cut_short else {}))
        if not self.common.quiet:
            for name, addresses in summary.unprobed.items():
                self._note(f"{name} also has {', '.join(addresses)}: not probed "
                           "(--all-addresses probes each)")
            shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
            self._note(f"probed {summary.probes} port(s) in {summary.elapsed_ms / 1000:.2f} s"
                       f"{' (interrupted)' if cut_short else ''}: {shown or 'nothing'}")
        return code

    def exit_code(self, counts: dict[str, int]) -> ExitCode:
        if self.worst_error is not None:
            return self.worst_error
        if counts["blocked"]:
            return ExitCode.BLOCKED
        probed = sum(counts.values())
        if self.options["expect"] == "closed":
            return ExitCode.OK if counts["open"] == 0 else ExitCode.CHECK_FAILED
        if probed == 0:
            return ExitCode.CHECK_FAILED
        return ExitCode.OK if counts["open"] == probed else ExitCode.CHECK_FAILED


def results_table(rows: Iterable[Any]) -> Table:
    """Probe rows for people: one line per (host, port), sorted, states in colour."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("host", "port", "state", "reason", "latency", "service", "worker"):
        table.add_column(column)
    for r in sorted(rows, key=lambda r: (r.host, r.address, r.port)):
        service = r.identified or r.service
        if r.identified_detail:
            service += f" ({r.identified_detail})"
        if r.tls and r.tls.get("detected"):
            service += f" [tls {r.tls.get('version')}]"
        style = STATE_STYLES.get(str(r.state), "")
        table.add_row(r.host if r.host == r.address or not r.address
                      else f"{r.host} ({r.address})", str(r.port),
                      f"[{style}]{r.state}[/]", r.reason,
                      f"{r.latency_ms:.2f} ms" if r.latency_ms is not None else "",
                      service, "allowed" if r.workers_allowed else
                      f"blocked ({r.workers_rule})")
    return table


def progress_line(summary: Any, expected: int | None, elapsed_s: float) -> Text:
    """``12,345/65,535 probes (19%)  24,100/s  3 open  0.5 s``: what a long scan has done."""
    from rich.text import Text

    done = summary.probes
    line = Text(f"{done:,}/{expected:,} probes ({done / expected:.0%})" if expected
                else f"{done:,} probes")
    line.append(f"  {done / elapsed_s:,.0f}/s" if elapsed_s > 0 else "")
    line.append(f"  {summary.counts.get('open', 0):,} open", style="green")
    line.append(f"  {elapsed_s:.1f} s")
    return line


def plain_line(result: Any) -> str:
    """``host port state key=value ...``: stable, greppable, one row per line."""
    fields = [result.host, str(result.port), str(result.state)]
    extra: dict[str, Any] = {"address": result.address, "reason": result.reason}
    if result.latency_ms is not None:
        extra["latency_ms"] = f"{result.latency_ms:.3f}"
    if result.errno is not None:
        extra["errno"] = result.errno
    if result.service:
        extra["service"] = result.service
    if result.identified:
        extra["identified"] = result.identified
    if result.tls is not None:
        extra["tls"] = result.tls.get("version") if result.tls.get("detected") else "no"
        if result.tls.get("subject"):
            extra["tls_subject"] = result.tls["subject"]
        if result.tls.get("not_after"):
            extra["tls_not_after"] = result.tls["not_after"]
    if result.rule:
        extra["rule"] = result.rule
    extra["workers"] = "allowed" if result.workers_allowed else f"blocked:{result.workers_rule}"
    if result.banner:
        extra["banner"] = result.banner
    for key, value in extra.items():
        text = str(value)
        fields.append(f"{key}={_quote(text)}")
    return " ".join(fields)


def _quote(text: str) -> str:
    if text and not any(ch in text for ch in ' "\\='):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


if __name__ == "__main__":  # pragma: no cover
    sys.exit(probe_command())
