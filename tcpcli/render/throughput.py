"""``bench --mode throughput`` for people: the piped ``key value`` report, the Rich table on
a terminal, and the live progress line. The JSON form is
:func:`tcpcli.engines.throughput.summary`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from tcpcli.engines.throughput import Interval, ThroughputConfig, ThroughputResult

Direction = Literal["up", "down"]


def human(value: float, unit: str) -> str:
    """SI prefixes (1000s), as link speeds are quoted: ``1.23 GB/s``, ``9.84 Gbit/s``."""
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < 999.5 or prefix == "T":
            break
        value /= 1000
    digits = 0 if not prefix else 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f} {prefix}{unit}"


def binary_size(size: int) -> str:
    """A chunk size as it was most likely given: ``128 KiB``, ``1 MiB``, ``1000 B``."""
    for suffix, power in (("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if size % 1024 ** power == 0:
            return f"{size // 1024 ** power} {suffix}"
    return f"{size} B"


def directions(config: ThroughputConfig) -> list[Direction]:
    """The directions a run measures, up first."""
    chosen: list[Direction] = []
    if config.sends:
        chosen.append("up")
    if config.receives:
        chosen.append("down")
    return chosen


def _ms(value_ns: float) -> str:
    return f"{value_ns / 1e6:.3f}"


def _span(interval: Interval) -> str:
    return f"{interval.start_s:.2f}-{interval.end_s:.2f}".rjust(11)


def _interval_rate(interval: Interval, direction: Direction) -> float:
    seconds = interval.end_s - interval.start_s
    moved = interval.up if direction == "up" else interval.down
    return moved / seconds if seconds else 0.0


def _moved(result: ThroughputResult, direction: Direction) -> int:
    return result.bytes_up if direction == "up" else result.bytes_down


def plain_lines(result: ThroughputResult, *, verbose: bool = False) -> list[str]:
    """The piped report: one ``key value`` fact per line, stable for grep and awk."""
    from tcpcli.engines.throughput import spread

    config = result.config
    bound = [f"{config.window:g} s"] if config.window is not None else []
    if config.bytes_per_connection is not None:
        bound.append(f"{config.bytes_per_connection} bytes per connection")
    lines = [
        f"target      {config.address} ({result.peer})",
        f"mode        throughput {config.direction}{' tls' if config.tls else ''}, "
        f"{len(result.flows)}/{config.connections} connections, chunk "
        f"{binary_size(config.chunk)}, {' or '.join(bound)}",
        f"window      {result.elapsed:.3f} s measured"
        + (f" after {config.warmup:g} s warmup" if config.warmup else "")
        + (" (interrupted)" if result.interrupted else ""),
    ]
    for direction in directions(config):
        rate = result.rate(direction)
        lines.append(f"{direction:<11} {_moved(result, direction)} bytes  "
                     f"{human(rate, 'B/s')}  {human(rate * 8, 'bit/s')}")
        per_connection = spread(result.flow_rates(direction))
        if per_connection is not None:
            lines.append(f"{direction + '/conn':<11} " + " ".join(
                f"{k}={human(v, 'B/s')}" for k, v in per_connection.items()))
    for name, histogram in (("connect", result.connect), ("tls", result.tls)):
        if histogram.count:
            lines.append(f"{name:<11} min={_ms(histogram.min)} p50="
                         f"{_ms(histogram.percentile(50))} max={_ms(histogram.max)} ms "
                         f"(n={histogram.count})")
    if verbose:
        for interval in result.series():
            rates = [f"{d} {human(_interval_rate(interval, d), 'B/s')}"
                     for d in directions(config)]
            lines.append(f"interval    {_span(interval)} s  " + "  ".join(rates))
    for kind, n in sorted(result.errors.items()):
        lines.append(f"errors      {kind}={n} ({result.error_examples.get(kind, '')})")
    return lines


def rich_report(result: ThroughputResult, *, verbose: bool = False) -> list[RenderableType]:
    """The terminal report: a head line, bytes and rates per direction with the spread
    over connections, handshake times, the interval series (-v) and errors."""
    from rich.table import Table
    from rich.text import Text

    from tcpcli.engines.throughput import spread

    config = result.config
    head = Text()
    head.append(config.address, style="bold")
    head.append(f" ({result.peer})  throughput {config.direction}"
                f"{' tls' if config.tls else ''}  {len(result.flows)}/{config.connections} "
                f"connections  chunk {binary_size(config.chunk)}  ")
    head.append(f"{result.error_count} errors", style="red" if result.errors else "green")
    head.append(f"  {result.elapsed:.3f} s")
    if config.warmup:
        head.append(f" after {config.warmup:g} s warmup")
    if result.interrupted:
        head.append("  (interrupted)", style="yellow")
    table = Table(box=None, header_style="bold")
    for column in ("", "bytes", "rate", "bits", "conn min", "median", "max"):
        table.add_column(column, justify="left" if not column else "right")
    for direction in directions(config):
        rate = result.rate(direction)
        per_connection = spread(result.flow_rates(direction)) or {}
        table.add_row(direction, f"{_moved(result, direction):,}",
                      Text(human(rate, "B/s"), style="bold cyan"), human(rate * 8, "bit/s"),
                      *(human(per_connection[k], "B/s") if per_connection else "-"
                        for k in ("min", "median", "max")))
    out: list[RenderableType] = [head, table] if result.flows else [head]
    for name, histogram in (("connect", result.connect), ("tls", result.tls)):
        if histogram.count:
            out.append(Text(f"{name} min {_ms(histogram.min)}  p50 "
                            f"{_ms(histogram.percentile(50))}  max {_ms(histogram.max)} ms "
                            f"(n={histogram.count})"))
    if verbose and result.series():
        series = Table(box=None, header_style="bold")
        series.add_column("interval s")
        for direction in directions(config):
            series.add_column(direction, justify="right")
        for interval in result.series():
            series.add_row(_span(interval),
                           *(human(_interval_rate(interval, d), "B/s")
                             for d in directions(config)))
        out.append(series)
    for kind, n in sorted(result.errors.items()):
        out.append(Text(f"errors {kind}: {n} ({result.error_examples.get(kind, '')})",
                        style="red"))
    return out


def progress_line(result: ThroughputResult) -> Text:
    """The live line: connecting, warming up, or seconds and rates so far."""
    from rich.text import Text

    config = result.config
    if not result.transfer_started_ns:
        done = result.connect.count + result.error_count
        return Text(f"connecting: {done}/{config.connections}")
    if not result.started_ns:
        return Text(f"warming up ({config.warmup:g} s)")
    parts = [f"{result.elapsed:.1f}"
             + (f"/{config.window:g} s" if config.window is not None else " s")]
    for direction in directions(config):
        rate = result.rate(direction)
        parts.append(f"{direction} {human(rate, 'B/s')} ({human(rate * 8, 'bit/s')})")
    parts.append(f"{len(result.flows)} connections  {result.error_count} errors")
    return Text("  ".join(parts))
