"""``tcpcli bench``: connect, TLS-handshake and request/response latency distributions, and
bulk throughput (``--mode throughput``, in :mod:`tcpcli.cli.throughput`).

The results go to stdout (a Rich table and histogram on a terminal, one ``key value`` line
per fact when piped); live progress and notes go to stderr; ``--json`` events go to stderr
(or ``--events FILE``), like every command's. Ctrl-C prints what was measured so far, then
exits 130. ``--compare`` exits 9 when the chosen percentile regressed past ``--threshold``.
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_right
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tcpcli.cli.connect import target_address, unescape
from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.cli.options import CommonOptions, common_options, target_argument
from tcpcli.cli.runner import interrupted, report_error, run
from tcpcli.cli.stdout_report import render_rich, stdout_is_rich
from tcpcli.cli.throughput import THROUGHPUT_ONLY, ByteSize, bench_throughput

if TYPE_CHECKING:
    from rich.console import RenderableType

    from tcpcli.engines.bench import Bench, BenchConfig, BenchResult
    from tcpcli.engines.histogram import Histogram

EXAMPLES = """
\b
Examples:
  tcpcli bench db.internal:5432 -n 2000            # TCP connect latency, 6 at a time
  tcpcli bench example.com:443 --tls --duration 10 # connect + TLS handshake
  tcpcli bench example.com:443 --tls --resume -n 500 # full vs resumed handshakes
  tcpcli bench cache:6379 --mode rr --send 'PING\\r\\n' --expect '+PONG' -n 10000
  tcpcli bench cache:6379 --mode rr --send 'PING\\r\\n' --rate 500 --duration 30
  tcpcli bench db:5432 -n 1000 --save base.json; tcpcli bench db:5432 --compare base.json
  tcpcli bench host:5201 --mode throughput -c 4 -d 10 -v # bytes/s up, per-second series
  tcpcli bench host:19 --mode throughput --direction down --bytes 1G
"""

#: Baseline file kind (``--save``/``--compare``).
BASELINE_KIND = "tcpcli-bench-baseline"


def _threshold(value: str) -> float:
    text = value.strip().removesuffix("%")
    try:
        number = float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a percentage") from None
    if not math.isfinite(number) or number < 0:
        raise click.BadParameter(f"{value!r} is not a percentage")
    return number


@click.command("bench", epilog=EXAMPLES)
@target_argument()
@click.argument("port", required=False, type=int)
@click.option("--mode", "-m", type=click.Choice(["connect", "rr", "throughput"]),
              default="connect", show_default=True,
              help="connect: a new connection per sample; rr: request/response round trips; "
                   "throughput: bytes/s over -c connections.")
@click.option("-n", "--count", type=click.IntRange(min=1), metavar="COUNT",
              help="Measure this many samples (default 100 unless --duration).")
@click.option("-d", "--duration", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="Measure for this long.")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=6, show_default=True,
              help="Parallel workers (more than --max-sockets needs a higher --max-sockets).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), metavar="PER_SECOND",
              help="Open loop: start samples at this rate; latency counts from the "
                   "intended start (coordinated-omission correction).")
@click.option("--warmup", type=click.IntRange(min=0), default=0, metavar="COUNT",
              help="Run this many samples first and discard them (throughput: seconds "
                   "moved but not counted).")
@click.option("--direction", type=click.Choice(["up", "down", "both"]),
              help="throughput: up sends (peer discards), down receives (peer sends), both "
                   "does both on each connection (peer echoes). Default: up.")
@click.option("--bytes", "bytes_per_connection", type=ByteSize(), metavar="SIZE",
              help="throughput: stop after SIZE bytes per connection and direction "
                   "(K/M/G = 1024s, KB/MB/GB = 1000s); default: --duration 10.")
@click.option("--chunk", type=ByteSize(), metavar="SIZE",
              help="throughput: bytes per send/receive call (default 128K).")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="throughput: seconds per entry of the interval series shown with -v and "
                   "in --json (default 1).")
@click.option("--send", "send_text", metavar="TEXT",
              help=r"rr: the request (escapes like \r\n allowed).")
@click.option("--send-file", type=click.Path(exists=True, dir_okay=False),
              help="rr: send this file's bytes as the request.")
@click.option("--expect", "expect_text", metavar="TEXT",
              help="rr: the reply is complete once these bytes arrived (escapes allowed).")
@click.option("--expect-bytes", type=click.IntRange(min=1), metavar="N",
              help="rr: the reply is complete after N bytes (default: the first bytes).")
@click.option("--fresh", is_flag=True, help="rr: a new connection for every request.")
@click.option("--resume", is_flag=True,
              help="With --tls: alternate full handshakes with ones offering the worker's "
                   "last TLS session; resumed ones get their own distribution (tls-resumed), "
                   "offers the server declined are counted.")
@click.option("--samples", "emit_samples", is_flag=True,
              help="With --json/--events: one bench_sample event per sample.")
@click.option("--events", "events_file", type=click.Path(dir_okay=False, writable=True),
              help="Write JSON Lines events to this file instead of stderr.")
@click.option("--save", "save_file", type=click.Path(dir_okay=False, writable=True),
              help="Save the distributions as a baseline file.")
@click.option("--compare", "compare_file", type=click.Path(exists=True, dir_okay=False),
              help="Compare with a saved baseline; exit 9 on a regression.")
@click.option("--threshold", default="10%", show_default=True, metavar="PERCENT",
              help="--compare: the allowed increase of the checked percentile.")
@click.option("--percentile", type=click.FloatRange(0, 100), default=99.0, show_default=True,
              help="--compare: the percentile checked against --threshold.")
@common_options
@click.pass_obj
def bench_command(env: Environment | None, /, target: str, port: int | None,
                  **kwargs: Any) -> None:
    """Measure connect, TLS handshake or request/response latency, or throughput, to TARGET.

    Reports min, mean, stdev, p50, p90, p99, p99.9 and max per distribution, and the
    connection or request rate; throughput mode reports bytes/s and bits/s each way, the
    per-connection spread and a per-interval series. Errors are counted by kind (refused,
    reset, timeout, tls).
    """
    from tcpcli.engines.bench import BenchConfig

    env = env or Environment()
    common = CommonOptions.from_kwargs(kwargs)
    if port is not None and not 1 <= port <= 65535:
        raise click.BadParameter(f"port {port} is out of range (1-65535)", param_hint="PORT")
    address = target_address(target, port)
    if common.proxy:
        raise click.UsageError("bench dials the target directly; --proxy is not supported")
    concurrency: int = kwargs["concurrency"]
    if common.max_sockets is not None and concurrency > common.max_sockets:
        raise click.UsageError(
            f"-c {concurrency} exceeds the socket cap of {common.max_sockets} (the Workers "
            f"limit is 6); add --max-sockets {concurrency} (or --max-sockets unlimited)")
    mode = kwargs["mode"]
    payload = b""
    if kwargs["send_text"] is not None and kwargs["send_file"] is not None:
        raise click.UsageError("--send and --send-file exclude each other")
    if kwargs["send_text"] is not None:
        payload = unescape(kwargs["send_text"])
    elif kwargs["send_file"] is not None:
        payload = Path(kwargs["send_file"]).read_bytes()
    rr_only = [n for n in ("send_text", "send_file", "expect_text", "expect_bytes", "fresh")
               if kwargs[n]]
    if mode != "rr" and rr_only:
        raise click.UsageError(f"--{rr_only[0].removesuffix('_text').replace('_', '-')} "
                               "needs --mode rr")
    if mode == "rr" and not payload:
        raise click.UsageError("--mode rr needs --send TEXT or --send-file FILE")
    if kwargs["resume"] and not common.tls:
        raise click.UsageError("--resume needs --tls")
    if kwargs["resume"] and not (mode == "connect" or (mode == "rr" and kwargs["fresh"])):
        raise click.UsageError("--resume needs a new connection per sample: --mode connect "
                               "or --mode rr --fresh")
    if kwargs["expect_text"] is not None and kwargs["expect_bytes"] is not None:
        raise click.UsageError("--expect and --expect-bytes exclude each other")
    expect = unescape(kwargs["expect_text"]) if kwargs["expect_text"] is not None else None
    if expect == b"":
        raise click.BadParameter("must not be empty", param_hint="--expect")
    if mode != "throughput" and (
            used := [flag for name, flag in THROUGHPUT_ONLY.items() if kwargs[name]]):
        raise click.UsageError(f"{used[0]} needs --mode throughput")
    if mode == "throughput":
        bench_throughput(env, common, address, kwargs)
        return
    threshold = _threshold(kwargs["threshold"])
    baseline = _load_baseline(kwargs["compare_file"]) if kwargs["compare_file"] else None
    config = BenchConfig(
        address=address, mode=mode, count=kwargs["count"], duration=kwargs["duration"],
        concurrency=concurrency, rate=kwargs["rate"], warmup=kwargs["warmup"],
        timeout=common.timeout or 10.0, tls=common.tls, tls_options=common.tls_options(),
        payload=payload, expect=expect, expect_bytes=kwargs["expect_bytes"],
        fresh=kwargs["fresh"], resume=kwargs["resume"],
    )
    invocation = common.invocation()
    session = BenchSession(env, common, config, emit_samples=kwargs["emit_samples"],
                           events_file=kwargs["events_file"], save_file=kwargs["save_file"],
                           baseline=baseline, threshold=threshold,
                           percentile=kwargs["percentile"])
    run(lambda: session.main(invocation), env, traceback=common.traceback,
        on_error=session.report_error)


def _load_baseline(path: str) -> dict[str, Any]:
    from tcpcli.engines.histogram import Histogram

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
            raise ValueError("not a tcpcli bench baseline (save one with --save)")
        for saved in data["histograms"].values():
            Histogram.from_dict(saved)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--compare") from exc
    return data


class BenchSession:
    def __init__(self, env: Environment, common: CommonOptions, config: BenchConfig, *,
                 emit_samples: bool, events_file: str | None, save_file: str | None,
                 baseline: dict[str, Any] | None, threshold: float,
                 percentile: float) -> None:
        from tcpcli.render.events import EventWriter

        self.env, self.common, self.config = env, common, config
        self.save_file, self.baseline = save_file, baseline
        self.threshold, self.percentile = threshold, percentile
        self.origin_ns = time.perf_counter_ns()
        self.events = EventWriter.for_command(common.json, events_file, env.stderr,
                                              self.origin_ns)
        self.emit_samples = emit_samples and self.events is not None
        self.reported = False

    # ---------------------------------------------------------------- events

    def report_error(self, error: Any, code: ExitCode) -> None:
        report_error(self.env, self.events, self.config.address, error, code)

    def _on_sample(self, name: str, value_ns: int) -> None:
        assert self.events is not None
        self.events.emit("bench_sample", self.config.address, distribution=name,
                         latency_ms=round(value_ns / 1e6, 6))

    # ---------------------------------------------------------------- the run

    async def main(self, invocation: Any) -> int:
        import anyio

        from tcpcli.engines.bench import Bench

        async with invocation:
            bench = Bench(self.config, invocation,
                          on_sample=self._on_sample if self.emit_samples else None)
            await bench.check_target()
            if self.events is not None:
                c = self.config
                self.events.emit("bench_start", c.address, peer=bench.result.peer, mode=c.mode,
                                 tls=c.tls, concurrency=c.concurrency, count=c.bounded_count,
                                 duration_s=c.duration, rate=c.rate, warmup=c.warmup,
                                 max_sockets=invocation.slots.limit)
            try:
                async with anyio.create_task_group() as tg:
                    if self.env.rich and not self.common.quiet and not (
                            self.events is not None and self.events.stream is self.env.stderr):
                        tg.start_soon(self._live, bench)
                    await bench.run()
                    tg.cancel_scope.cancel()
            except BaseException as exc:
                if interrupted(exc) and not self.reported:
                    bench.result.interrupted = True
                    if not bench.result.finished_ns:
                        bench.result.finished_ns = time.perf_counter_ns()
                    self._report(bench.result)
                raise
            return self._report(bench.result)

    async def _live(self, bench: Bench) -> None:
        from tcpcli.render.live import show_live

        await show_live(self.env.console, lambda: self._progress_line(bench))

    def _progress_line(self, bench: Bench) -> RenderableType:
        from rich.text import Text

        result = bench.result
        histogram = result.histograms[result.primary]
        text = (f"{result.samples} samples  {result.rate:,.0f} "
                f"{'req/s' if self.config.mode == 'rr' else 'conn/s'}  "
                f"{result.error_count} errors  {result.primary} p50 "
                f"{histogram.percentile(50) / 1e6:.3f} ms  p99 "
                f"{histogram.percentile(99) / 1e6:.3f} ms")
        if not result.started_ns:
            text = f"warming up: {result.warmup_done}/{self.config.warmup}"
        return Text(text)

    # ---------------------------------------------------------------- results

    def _report(self, result: BenchResult) -> int:
        from tcpcli.engines.bench import summary

        self.reported = True
        data = summary(result)
        comparison = self._compare(result) if self.baseline is not None else None
        if self.events is not None:
            self.events.emit("bench_summary", self.config.address, **data)
            if comparison is not None:
                self.events.emit("bench_compare", self.config.address, **comparison)
        if self.save_file and not result.interrupted:
            self._save(result, data)
        if not self.common.quiet:
            if self._stdout_rich():
                self._write(self._rich_report(result, comparison))
            else:
                self._write("".join(line + "\n" for line in plain_lines(result, comparison)))
        if comparison is not None and comparison["regressed"]:
            return ExitCode.CHECK_FAILED
        if result.samples == 0 and result.errors:
            kind = result.errors.most_common(1)[0][0]
            return exit_code_for(kind)
        return ExitCode.OK

    def _stdout_rich(self) -> bool:
        return stdout_is_rich(self.env)

    def _write(self, text: str) -> None:
        self.env.stdout.write(text.encode("utf-8"))
        self.env.stdout.flush()

    def _rich_report(self, result: BenchResult, comparison: dict[str, Any] | None) -> str:
        return render_rich(self.env, rich_report(result, comparison))

    def _save(self, result: BenchResult, data: dict[str, Any]) -> None:
        assert self.save_file is not None
        document = {
            "schema": "tcpcli/1",
            "kind": BASELINE_KIND,
            "target": self.config.address,
            "summary": data,
            "histograms": {name: h.to_dict() for name, h in result.histograms.items()},
        }
        Path(self.save_file).write_text(json.dumps(document, indent=1) + "\n",
                                        encoding="utf-8")

    def _compare(self, result: BenchResult) -> dict[str, Any]:
        return compare(result.histograms, self.baseline or {}, threshold=self.threshold,
                       percentile=self.percentile)


# ------------------------------------------------------------------ comparison


def compare(histograms: dict[str, Histogram], baseline: dict[str, Any], *, threshold: float,
            percentile: float) -> dict[str, Any]:
    """Per-distribution, per-percentile deltas against a saved baseline; ``regressed``
    lists the distributions whose ``percentile`` grew by more than ``threshold`` percent."""
    from tcpcli.engines.bench import PERCENTILES
    from tcpcli.engines.histogram import Histogram

    checked = sorted({*PERCENTILES, percentile})
    deltas: dict[str, Any] = {}
    regressed: list[str] = []
    for name, histogram in histograms.items():
        saved = baseline.get("histograms", {}).get(name)
        if saved is None or histogram.count == 0:
            continue
        before = Histogram.from_dict(saved)
        if before.count == 0:
            continue
        rows = {}
        for p in checked:
            old, new = before.percentile(p) / 1e6, histogram.percentile(p) / 1e6
            change = (new - old) / old * 100 if old > 0 else 0.0
            rows[f"p{p:g}"] = {"baseline_ms": round(old, 6), "ms": round(new, 6),
                               "change_pct": round(change, 2)}
        deltas[name] = rows
        if rows[f"p{percentile:g}"]["change_pct"] > threshold:
            regressed.append(name)
    return {"percentile": percentile, "threshold_pct": threshold, "deltas": deltas,
            "regressed": regressed}


# ------------------------------------------------------------------ rendering


def _ms(value_ns: float) -> str:
    return f"{value_ns / 1e6:.3f}"


def plain_lines(result: BenchResult, comparison: dict[str, Any] | None) -> list[str]:
    """The piped report: one ``key value`` fact per line, stable for grep and awk."""
    from tcpcli.engines.bench import PERCENTILES

    config = result.config
    unit = "req/s" if config.mode == "rr" else "conn/s"
    lines = [
        f"target      {config.address} ({result.peer})",
        f"mode        {config.mode}{' tls' if config.tls else ''}"
        f"{' fresh' if config.fresh else ''}{' resume' if config.resume else ''}, "
        f"concurrency {config.concurrency}"
        + (f", rate {config.rate:g}/s" if config.rate else ""),
        f"samples     {result.samples} ok, {result.error_count} errors in "
        f"{result.elapsed:.3f} s{' (interrupted)' if result.interrupted else ''}",
        f"rate        {result.rate:.1f} {unit}",
    ]
    for name, h in result.histograms.items():
        stats = [f"min={_ms(h.min)}", f"mean={_ms(h.mean)}", f"stdev={_ms(h.stdev)}"]
        stats += [f"p{p:g}={_ms(h.percentile(p))}" for p in PERCENTILES]
        stats.append(f"max={_ms(h.max)}")
        lines.append(f"{name:<11} {' '.join(stats)} ms (n={h.count})")
    if config.resume:
        lines.append(_resumption_line(result))
    for kind, n in sorted(result.errors.items()):
        lines.append(f"errors      {kind}={n} ({result.error_examples.get(kind, '')})")
    if comparison is not None:
        lines.extend(_compare_lines(comparison))
    return lines


def _resumption_line(result: BenchResult) -> str:
    resumed = result.histograms["tls-resumed"].count
    return (f"resumption  {resumed} resumed, {result.resume_misses} declined by the server "
            f"(full handshake)")


def _compare_lines(comparison: dict[str, Any]) -> list[str]:
    lines = []
    checked = f"p{comparison['percentile']:g}"
    for name, rows in comparison["deltas"].items():
        for label, row in rows.items():
            flag = ""
            if label == checked:
                flag = "  REGRESSED" if name in comparison["regressed"] else "  ok"
            lines.append(f"compare     {name} {label} {row['baseline_ms']:.3f} -> "
                         f"{row['ms']:.3f} ms ({row['change_pct']:+.1f}%){flag}")
    verdict = "regressed" if comparison["regressed"] else "ok"
    lines.append(f"verdict     {verdict}: {checked} threshold "
                 f"+{comparison['threshold_pct']:g}%"
                 + (f" ({', '.join(comparison['regressed'])})" if comparison["regressed"]
                    else ""))
    return lines


def histogram_rows(h: Histogram, rows: int = 12) -> list[tuple[float, float, int]]:
    """Coarse log-spaced rows ``(low_ns, high_ns, count)`` from min to p99.9 (the tail above
    p99.9 is counted in the last row)."""
    if h.count == 0:
        return []
    low = max(float(h.min), 1.0)
    high = max(h.percentile(99.9), low * 1.01)
    edges = [low * (high / low) ** (i / rows) for i in range(rows + 1)]
    counts = [0] * rows
    for bucket_low, bucket_high, n in h.buckets():
        middle = (bucket_low + bucket_high) / 2
        index = min(max(bisect_right(edges, middle) - 1, 0), rows - 1)
        counts[index] += n
    return [(edges[i], edges[i + 1], counts[i]) for i in range(rows)]


def rich_report(result: BenchResult, comparison: dict[str, Any] | None) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    from tcpcli.engines.bench import PERCENTILES

    config = result.config
    unit = "req/s" if config.mode == "rr" else "conn/s"
    head = Text()
    head.append(f"{config.address}", style="bold")
    head.append(f" ({result.peer})  {config.mode}{' tls' if config.tls else ''}"
                f"{' resume' if config.resume else ''}  "
                f"-c {config.concurrency}  {result.samples} ok  ")
    head.append(f"{result.error_count} errors", style="red" if result.errors else "green")
    head.append(f"  {result.elapsed:.3f} s  ")
    head.append(f"{result.rate:,.1f} {unit}", style="bold cyan")
    if result.interrupted:
        head.append("  (interrupted)", style="yellow")
    table = Table(title=None, box=None, header_style="bold")
    table.add_column("ms")
    for column in ("n", "min", "mean", "stdev", *(f"p{p:g}" for p in PERCENTILES), "max"):
        table.add_column(column, justify="right")
    for name, h in result.histograms.items():
        table.add_row(name, str(h.count), _ms(h.min), _ms(h.mean), _ms(h.stdev),
                      *(_ms(h.percentile(p)) for p in PERCENTILES), _ms(h.max))
    out: list[Any] = [head, table]
    for name, h in result.histograms.items():
        rows = histogram_rows(h)
        if not rows:
            continue
        peak = max(n for _, _, n in rows) or 1
        bars = Text()
        bars.append(f"{name} histogram\n", style="bold")
        for low, high, n in rows:
            bar = "█" * math.ceil(40 * n / peak) if n else ""
            bars.append(f"  {low / 1e6:9.3f} – {high / 1e6:9.3f} ms ")
            bars.append(f"{bar:<40}", style="cyan")
            bars.append(f" {n}\n")
        out.append(bars)
    if config.resume:
        out.append(Text(_resumption_line(result),
                        style="yellow" if result.resume_misses else ""))
    for kind, n in sorted(result.errors.items()):
        out.append(Text(f"errors {kind}: {n} ({result.error_examples.get(kind, '')})",
                        style="red"))
    if comparison is not None:
        for line in _compare_lines(comparison):
            style = "red" if "REGRESSED" in line or "verdict     regressed" in line else None
            out.append(Text(line, style=style or ""))
    return out
