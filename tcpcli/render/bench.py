"""``bench`` (latency modes) for people: the piped ``key value`` report, the Rich table and
histogram on a terminal, the live progress line, and a ``--compare`` verdict.

The JSON form is the engine's :func:`tcpcli.engines.bench.summary`; these are its readings.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from tcpcli.engines.bench import BenchResult, PoolingResult
    from tcpcli.engines.histogram import Histogram


class PercentileChange(TypedDict):
    """One percentile of one distribution, before (the baseline) and now."""

    baseline_ms: float
    ms: float
    change_pct: float


class Comparison(TypedDict):
    """A run against a saved baseline (``bench --compare``), as ``bench_compare`` carries
    it: per distribution, per percentile (``"p99"``), and which ones regressed."""

    percentile: float
    threshold_pct: float
    deltas: dict[str, dict[str, PercentileChange]]
    regressed: list[str]


def _ms(value_ns: float) -> str:
    return f"{value_ns / 1e6:.3f}"


def unit(result: BenchResult) -> str:
    return "req/s" if result.config.mode == "rr" else "conn/s"


def plain_lines(result: BenchResult, comparison: Comparison | None) -> list[str]:
    """The piped report: one ``key value`` fact per line, stable for grep and awk."""
    from tcpcli.engines.bench import PERCENTILES

    config = result.config
    lines = [
        f"target      {config.address} ({result.peer})",
        f"mode        {config.mode}{' tls' if config.tls else ''}"
        f"{' fresh' if config.fresh else ''}{' resume' if config.resume else ''}, "
        f"concurrency {config.concurrency}"
        + (f", rate {config.rate:g}/s" if config.rate else ""),
        f"samples     {result.samples} ok, {result.error_count} errors in "
        f"{result.elapsed:.3f} s{' (interrupted)' if result.interrupted else ''}",
        f"rate        {result.rate:.1f} {unit(result)}",
    ]
    for name, h in result.histograms.items():
        stats = [f"min={_ms(h.min)}", f"mean={_ms(h.mean)}", f"stdev={_ms(h.stdev)}"]
        stats += [f"p{p:g}={_ms(h.percentile(p))}" for p in PERCENTILES]
        stats.append(f"max={_ms(h.max)}")
        lines.append(f"{name:<11} {' '.join(stats)} ms (n={h.count})")
    kernel = kernel_line(result)
    if kernel:
        lines.append(kernel)
    if config.resume:
        lines.append(resumption_line(result))
    for kind, n in sorted(result.errors.items()):
        lines.append(f"errors      {kind}={n} ({result.error_examples.get(kind, '')})")
    if comparison is not None:
        lines.extend(compare_lines(comparison))
    return lines


def kernel_line(result: BenchResult) -> str | None:
    """The kernel's smoothed RTT over the measured connections and their retransmits,
    beside the application's latency (Linux); None where the system does not tell."""
    h = result.kernel_rtt
    if h.count == 0:
        return None
    return (f"kernel      rtt p50={_ms(h.percentile(50))} p99={_ms(h.percentile(99))} "
            f"max={_ms(h.max)} ms (n={h.count}) retransmits={result.retransmits}")


def resumption_line(result: BenchResult) -> str:
    resumed = result.histograms["tls-resumed"].count
    return (f"resumption  {resumed} resumed, {result.resume_misses} declined by the server "
            f"(full handshake)")


def compare_lines(comparison: Comparison) -> list[str]:
    """Each percentile against the baseline, the checked one flagged, then the verdict."""
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


def rich_report(result: BenchResult, comparison: Comparison | None) -> list[RenderableType]:
    """The terminal report: a head line, the percentile table, a histogram per
    distribution, resumption, errors and the comparison."""
    from rich.table import Table
    from rich.text import Text

    from tcpcli.engines.bench import PERCENTILES

    config = result.config
    head = Text()
    head.append(f"{config.address}", style="bold")
    head.append(f" ({result.peer})  {config.mode}{' tls' if config.tls else ''}"
                f"{' resume' if config.resume else ''}  "
                f"-c {config.concurrency}  {result.samples} ok  ")
    head.append(f"{result.error_count} errors", style="red" if result.errors else "green")
    head.append(f"  {result.elapsed:.3f} s  ")
    head.append(f"{result.rate:,.1f} {unit(result)}", style="bold cyan")
    if result.interrupted:
        head.append("  (interrupted)", style="yellow")
    table = Table(title=None, box=None, header_style="bold")
    table.add_column("ms")
    for column in ("n", "min", "mean", "stdev", *(f"p{p:g}" for p in PERCENTILES), "max"):
        table.add_column(column, justify="right")
    for name, h in result.histograms.items():
        table.add_row(name, str(h.count), _ms(h.min), _ms(h.mean), _ms(h.stdev),
                      *(_ms(h.percentile(p)) for p in PERCENTILES), _ms(h.max))
    out: list[RenderableType] = [head, table]
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
    kernel = kernel_line(result)
    if kernel:
        out.append(Text(kernel, style="yellow" if result.retransmits else ""))
    if config.resume:
        out.append(Text(resumption_line(result),
                        style="yellow" if result.resume_misses else ""))
    for kind, n in sorted(result.errors.items()):
        out.append(Text(f"errors {kind}: {n} ({result.error_examples.get(kind, '')})",
                        style="red"))
    if comparison is not None:
        for line in compare_lines(comparison):
            regressed = "REGRESSED" in line or line.startswith("verdict     regressed")
            out.append(Text(line, style="red" if regressed else ""))
    return out


def progress_line(result: BenchResult, warmup: int) -> Text:
    """The live line while a bench runs: samples, rate, errors, p50 and p99 so far."""
    from rich.text import Text

    if not result.started_ns:
        return Text(f"warming up: {result.warmup_done}/{warmup}")
    histogram = result.histograms[result.primary]
    return Text(f"{result.samples} samples  {result.rate:,.0f} {unit(result)}  "
                f"{result.error_count} errors  {result.primary} p50 "
                f"{histogram.percentile(50) / 1e6:.3f} ms  p99 "
                f"{histogram.percentile(99) / 1e6:.3f} ms")


def pooling_lines(result: PoolingResult) -> list[str]:
    """The pooling comparison, piped: each arm's percentiles, then the saving per request
    and, for the fresh arm, where its extra time goes (connect, TLS)."""
    kept, fresh = result.kept, result.fresh
    config = kept.config
    lines = [
        f"target      {config.address} ({kept.peer or fresh.peer})",
        f"mode        rr{' tls' if config.tls else ''}"
        f"{' ' + config.protocol if config.protocol else ''} pooling: a kept connection vs a "
        f"fresh one per request, {result.rounds} rounds interleaved, concurrency "
        f"{config.concurrency}",
    ]
    for label, arm, name in (("kept", kept, "rr"), ("fresh", fresh, "request")):
        rr = arm.histograms.get(name)
        if rr is None or rr.count == 0:
            lines.append(f"{label:<11} no successful request ({arm.error_count} errors)")
            continue
        lines.append(f"{label:<11} p50={_ms(rr.percentile(50))} p90={_ms(rr.percentile(90))} "
                     f"p99={_ms(rr.percentile(99))} ms, {arm.rate:.1f} {unit(arm)} "
                     f"(n={rr.count})")
    if kept.samples and fresh.samples:
        saving = [f"p{p}={result.saving_ms(p):.3f}" for p in (50, 90, 99)]
        lines.append(f"saving      {' '.join(saving)} ms per request with a kept connection")
        parts = [f"{label} p50={_ms(fresh.histograms[name].percentile(50))} ms"
                 for name, label in (("connect", "connect"), ("tls", "tls"),
                                     ("startup", "start-up"), ("rr", "reply"))
                 if name in fresh.histograms and fresh.histograms[name].count]
        lines.append(f"fresh       each request is {', '.join(parts)}")
    for label, arm in (("kept", kept), ("fresh", fresh)):
        for kind, n in sorted(arm.errors.items()):
            lines.append(f"errors      {label} {kind}={n} ({arm.error_examples.get(kind, '')})")
    return lines
