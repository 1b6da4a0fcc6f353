"""``tcpcli bench --mode throughput``: the option checks, the run and its report.

Kept apart from ``bench.py`` (latency modes) so each stays readable; the command, its
options and the output conventions are bench's: results on stdout (Rich on a terminal, one
``key value`` line per fact when piped), live progress and notes on stderr, ``--json``
events on stderr (or ``--events FILE``), Ctrl-C prints what was measured so far, exit 130.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.cli.options import CommonOptions
from tcpcli.cli.runner import interrupted, report_error, run
from tcpcli.cli.stdout_report import render_rich, stdout_is_rich

if TYPE_CHECKING:
    from rich.console import RenderableType

    from tcpcli.engines.throughput import (
        Interval,
        Throughput,
        ThroughputConfig,
        ThroughputResult,
    )

#: Size suffixes: K/M/G/T (and KiB, ...) count in 1024s, as iperf3 and dd; KB/MB/GB/TB
#: count in 1000s.
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>(?:[kmgt](?:i?b)?)|b)?", re.I)
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}

#: Options only throughput mode reads, and the ones it refuses (with the reason).
THROUGHPUT_ONLY = {"direction": "--direction", "bytes_per_connection": "--bytes",
                   "chunk": "--chunk", "interval": "--interval"}
NOT_FOR_THROUGHPUT = {
    "count": "-n counts latency samples; bound a throughput run with --duration or --bytes",
    "rate": "--rate paces latency samples; throughput mode always moves bytes flat out",
    "emit_samples": "--samples is for latency samples; the JSON summary has the intervals",
    "save_file": "--save records latency distributions, not throughput",
    "compare_file": "--compare checks latency distributions, not throughput",
    "resume": "--resume measures resumed handshakes; throughput excludes the handshake",
}


def parse_size(text: str) -> int:
    """``65536``, ``64K``, ``1.5M``, ``2GiB`` (1024s) or ``10MB`` (1000s) -> bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (use e.g. 65536, 64K, 10M, 1G or 10MB)")
    number = float(match["number"])
    unit = (match["unit"] or "").lower()
    if unit in ("", "b"):
        if "." in match["number"]:
            raise ValueError(f"{text!r} is not a whole number of bytes")
    else:
        base = 1000 if unit.endswith("b") and not unit.endswith("ib") else 1024
        number *= base ** _POWERS[unit[0]]
    if number < 1:
        raise ValueError(f"{text!r} is less than one byte")
    return int(number)


class ByteSize(click.ParamType):  # type: ignore[type-arg]
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def human(value: float, unit: str) -> str:
    """SI prefixes (1000s), as link speeds are quoted: ``1.23 GB/s``, ``9.84 Gbit/s``."""
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < 999.5 or prefix == "T":
            break
        value /= 1000
    digits = 0 if not prefix else 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f} {prefix}{unit}"


def _binary(size: int) -> str:
    for suffix, power in (("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if size % 1024 ** power == 0:
            return f"{size // 1024 ** power} {suffix}"
    return f"{size} B"


# ------------------------------------------------------------------ the command


def bench_throughput(env: Environment, common: CommonOptions, address: str,
                     kwargs: dict[str, Any]) -> None:
    """Check the options meant for throughput mode, then run it."""
    from tcpcli.engines.throughput import ThroughputConfig

    for name, reason in NOT_FOR_THROUGHPUT.items():
        if kwargs.get(name):
            raise click.UsageError(f"{reason} (not with --mode throughput)")
    config = ThroughputConfig(
        address=address, direction=kwargs["direction"] or "up",
        connections=kwargs["concurrency"], duration=kwargs["duration"],
        bytes_per_connection=kwargs["bytes_per_connection"],
        chunk=kwargs["chunk"] or ThroughputConfig.chunk,
        warmup=float(kwargs["warmup"]), interval=kwargs["interval"] or 1.0,
        timeout=common.timeout or ThroughputConfig.timeout,
        tls=common.tls, tls_options=common.tls_options(),
    )
    invocation = common.invocation()
    session = ThroughputSession(env, common, config, events_file=kwargs["events_file"])
    run(lambda: session.main(invocation), env, traceback=common.traceback,
        on_error=session.report_error)


class ThroughputSession:
    def __init__(self, env: Environment, common: CommonOptions, config: ThroughputConfig, *,
                 events_file: str | None) -> None:
        from tcpcli.render.events import EventWriter

        self.env, self.common, self.config = env, common, config
        self.events = EventWriter.for_command(common.json, events_file, env.stderr,
                                              time.perf_counter_ns())
        self.reported = False

    def report_error(self, error: Any, code: ExitCode) -> None:
        report_error(self.env, self.events, self.config.address, error, code)

    async def main(self, invocation: Any) -> int:
        import anyio

        from tcpcli.engines.throughput import Throughput

        async with invocation:
            engine = Throughput(self.config, invocation)
            await engine.check_target()
            if self.events is not None:
                c = self.config
                self.events.emit("bench_start", c.address, peer=engine.result.peer,
                                 mode="throughput", tls=c.tls, direction=c.direction,
                                 connections=c.connections, duration_s=c.window,
                                 bytes=c.bytes_per_connection, chunk_bytes=c.chunk,
                                 warmup_s=c.warmup, max_sockets=invocation.slots.limit)
            try:
                async with anyio.create_task_group() as tg:
                    if self.env.rich and not self.common.quiet and not (
                            self.events is not None and self.events.stream is self.env.stderr):
                        tg.start_soon(self._live, engine)
                    await engine.run()
                    tg.cancel_scope.cancel()
            except BaseException as exc:
                if interrupted(exc) and not self.reported:
                    engine.result.interrupted = True
                    if engine.result.started_ns and not engine.result.finished_ns:
                        engine.result.finished_ns = time.perf_counter_ns()
                    self._report(engine.result)
                raise
            return self._report(engine.result)

    async def _live(self, engine: Throughput) -> None:
        from tcpcli.render.live import show_live

        await show_live(self.env.console, lambda: self._progress_line(engine))

    def _progress_line(self, engine: Throughput) -> RenderableType:
        from rich.text import Text

        result, config = engine.result, self.config
        if not result.transfer_started_ns:
            done = result.connect.count + result.error_count
            return Text(f"connecting: {done}/{config.connections}")
        if not result.started_ns:
            return Text(f"warming up ({config.warmup:g} s)")
        parts = [f"{result.elapsed:.1f}"
                 + (f"/{config.window:g} s" if config.window is not None else " s")]
        for direction in _directions(config):
            rate = result.rate(direction)
            parts.append(f"{direction} {human(rate, 'B/s')} ({human(rate * 8, 'bit/s')})")
        parts.append(f"{len(result.flows)} connections  {result.error_count} errors")
        return Text("  ".join(parts))

    # ---------------------------------------------------------------- results

    def _report(self, result: ThroughputResult) -> int:
        from tcpcli.engines.throughput import summary

        self.reported = True
        if self.events is not None:
            self.events.emit("bench_summary", self.config.address, **summary(result))
        verbose = self.common.verbose > 0
        if not self.common.quiet:
            env = self.env
            if stdout_is_rich(env):
                text = render_rich(env, rich_report(result, verbose=verbose))
            else:
                text = "".join(line + "\n" for line in plain_lines(result, verbose=verbose))
            env.stdout.write(text.encode("utf-8"))
            env.stdout.flush()
        if result.bytes_up + result.bytes_down == 0 and result.errors:
            return exit_code_for(result.errors.most_common(1)[0][0])
        return ExitCode.OK


# ------------------------------------------------------------------ rendering


def _directions(config: ThroughputConfig) -> list[Any]:
    return [d for d, on in (("up", config.sends), ("down", config.receives)) if on]


def _ms(value_ns: float) -> str:
    return f"{value_ns / 1e6:.3f}"


def _span(interval: Interval) -> str:
    return f"{interval.start_s:.2f}-{interval.end_s:.2f}".rjust(11)


def _rate_text(rate: float) -> str:
    return f"{human(rate, 'B/s')}  {human(rate * 8, 'bit/s')}"


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
        f"{len(result.flows)}/{config.connections} connections, chunk {_binary(config.chunk)},"
        f" {' or '.join(bound)}",
        f"window      {result.elapsed:.3f} s measured"
        + (f" after {config.warmup:g} s warmup" if config.warmup else "")
        + (" (interrupted)" if result.interrupted else ""),
    ]
    for direction in _directions(config):
        moved = result.bytes_up if direction == "up" else result.bytes_down
        rate = result.rate(direction)
        lines.append(f"{direction:<11} {moved} bytes  {_rate_text(rate)}")
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
            seconds = interval.end_s - interval.start_s
            rates = [f"{d} {human(getattr(interval, d) / seconds if seconds else 0, 'B/s')}"
                     for d in _directions(config)]
            lines.append(f"interval    {_span(interval)} s  " + "  ".join(rates))
    for kind, n in sorted(result.errors.items()):
        lines.append(f"errors      {kind}={n} ({result.error_examples.get(kind, '')})")
    return lines


def rich_report(result: ThroughputResult, *, verbose: bool = False) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    from tcpcli.engines.throughput import spread

    config = result.config
    head = Text()
    head.append(config.address, style="bold")
    head.append(f" ({result.peer})  throughput {config.direction}"
                f"{' tls' if config.tls else ''}  {len(result.flows)}/{config.connections} "
                f"connections  chunk {_binary(config.chunk)}  ")
    head.append(f"{result.error_count} errors", style="red" if result.errors else "green")
    head.append(f"  {result.elapsed:.3f} s")
    if config.warmup:
        head.append(f" after {config.warmup:g} s warmup")
    if result.interrupted:
        head.append("  (interrupted)", style="yellow")
    table = Table(box=None, header_style="bold")
    for column in ("", "bytes", "rate", "bits", "conn min", "median", "max"):
        table.add_column(column, justify="left" if not column else "right")
    for direction in _directions(config):
        rate = result.rate(direction)
        per_connection = spread(result.flow_rates(direction)) or {}
        table.add_row(direction,
                      f"{result.bytes_up if direction == 'up' else result.bytes_down:,}",
                      Text(human(rate, "B/s"), style="bold cyan"), human(rate * 8, "bit/s"),
                      *(human(per_connection[k], "B/s") if per_connection else "-"
                        for k in ("min", "median", "max")))
    out: list[Any] = [head, table] if result.flows else [head]
    for name, histogram in (("connect", result.connect), ("tls", result.tls)):
        if histogram.count:
            out.append(Text(f"{name} min {_ms(histogram.min)}  p50 "
                            f"{_ms(histogram.percentile(50))}  max {_ms(histogram.max)} ms "
                            f"(n={histogram.count})"))
    if verbose and result.series():
        series = Table(box=None, header_style="bold")
        series.add_column("interval s")
        for direction in _directions(config):
            series.add_column(direction, justify="right")
        for interval in result.series():
            seconds = interval.end_s - interval.start_s
            series.add_row(_span(interval),
                           *(human(getattr(interval, d) / seconds if seconds else 0, "B/s")
                             for d in _directions(config)))
        out.append(series)
    for kind, n in sorted(result.errors.items()):
        out.append(Text(f"errors {kind}: {n} ({result.error_examples.get(kind, '')})",
                        style="red"))
    return out
