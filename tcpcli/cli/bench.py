"""``tcpcli bench``: connect, TLS-handshake and request/response latency distributions, and
bulk throughput (``--mode throughput``, in :mod:`tcpcli.cli.throughput`).

The report goes to stdout (a Rich table and histogram on a terminal, one ``key value`` line
per fact when piped; :mod:`tcpcli.render.bench`), or with ``--json`` the JSON Lines instead
(``--events FILE`` writes them to a file and keeps the report); live progress and notes go
to stderr. Ctrl-C prints what was measured so far, then exits 130. ``--compare`` exits 9
when the chosen percentile regressed past ``--threshold``, and 2 when the baseline measured
another mode or target (there is nothing to compare).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from tcpcli.cli.arguments import target_address, unescape
from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.cli.expectations import Check
from tcpcli.cli.helpformat import OUTPUT, TIMING, SectionedCommand, option
from tcpcli.cli.options import (
    common_options,
    proxy_header_options,
    target_argument,
    via_option,
    with_proxy_header,
    with_via,
)
from tcpcli.cli.paramtypes import (
    DURATION,
    PG_NAME,
    PORT,
    PROCESSES,
    ByteSize,
    Count,
    Number,
    OutputFile,
)
from tcpcli.cli.runner import interrupted, run
from tcpcli.cli.throughput import THROUGHPUT_ONLY, bench_throughput

if TYPE_CHECKING:
    from tcpcli.cli.commonoptions import CommonOptions
    from tcpcli.core.expect import Expectation
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.bench import Bench, BenchConfig, BenchResult
    from tcpcli.engines.bench_processes import ProcessBench
    from tcpcli.engines.histogram import Histogram
    from tcpcli.render.bench import Comparison, PercentileChange

EXAMPLES = """
\b
Examples:
  tcpcli bench db.internal:5432 -n 2000            # TCP connect latency, 6 at a time
  tcpcli bench example.com:443 --tls --duration 10 # connect + TLS handshake
  tcpcli bench example.com:443 --tls --resume -n 500 # full vs resumed handshakes
  tcpcli bench cache:6379 --mode rr --send 'PING\\r\\n' --reply '+PONG' -n 10000
  tcpcli bench db:5432 -n 1000 --expect 'p99<5ms' --expect errors=0   # a CI gate
  tcpcli bench cache:6379 --mode rr --send 'PING\\r\\n' --rate 500 --duration 30
  tcpcli bench db:5432 -n 1000 --save base.json; tcpcli bench db:5432 --compare base.json
  tcpcli bench host:5201 --mode throughput -c 4 -d 10 -v # bytes/s up, per-second series
  tcpcli bench host:19 --mode throughput --direction down --bytes 1G
"""

#: Baseline file kind (``--save``/``--compare``).
BASELINE_KIND = "tcpcli-bench-baseline"




class _LegacyReply(NamedTuple):
    """A value of ``--expect`` that is no check: before the check language, ``--expect
    TEXT`` was what ``--reply TEXT`` is now, and scripts still say it."""

    text: str
    error: ValueError


class CheckOrReply(Check):
    def parse(self, value: object) -> Expectation | _LegacyReply:  # type: ignore[override]
        from tcpcli.core.expect import looks_like_check

        try:
            return super().parse(value)
        except ValueError as exc:
            if isinstance(value, str) and value and not looks_like_check(value):
                return _LegacyReply(value, exc)
            raise



@click.command("bench", cls=SectionedCommand, epilog=EXAMPLES,
               short_help="Measure connect, TLS and request latency, or throughput.")
@target_argument()
@click.argument("port", required=False, type=PORT)
@click.option("--mode", "-m", type=click.Choice(["connect", "rr", "throughput"]),
              default="connect", show_default=True,
              help="connect: a new connection per sample; rr: request/response round trips; "
                   "throughput: bytes/s over -c connections.")
@option("-n", "--count", type=Count(1), metavar="COUNT", section=TIMING,
        help="Measure this many samples (default 100 unless --duration).")
@option("-d", "--duration", type=DURATION, metavar="SECONDS", section=TIMING,
        help="Measure for this long.")
@option("-c", "--concurrency", type=Count(1), default=6, show_default=True, metavar="N",
        section=TIMING,
        help="Parallel workers (more than --max-sockets needs a higher --max-sockets).")
@option("--processes", type=PROCESSES, default="auto", show_default=True, metavar="N|auto",
        section=TIMING,
        help="connect/rr: spread the workers over N processes, each with its share of -c, "
             "-n and --max-sockets; auto: one per 32 workers, up to the cores (one left "
             "to a loopback peer).")
@option("--rate", type=Number(unit="per second"), metavar="PER_SECOND", section=TIMING,
        help="Open loop: start samples at this rate; latency counts from the "
             "intended start (coordinated-omission correction).")
@option("--warmup", type=Count(0), default=0, metavar="COUNT", section=TIMING,
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
@option("--interval", type=DURATION, metavar="SECONDS", section=TIMING,
        help="throughput: seconds per entry of the interval series shown with -v and "
             "in --json (default 1).")
@click.option("--send", "send_text", metavar="TEXT",
              help=r"rr: the request (escapes like \r\n allowed).")
@click.option("--send-file", type=click.Path(exists=True, dir_okay=False),
              help="rr: send this file's bytes as the request.")
@click.option("--reply", "reply_text", metavar="TEXT",
              help="rr: the reply is complete once these bytes arrived (escapes allowed).")
@click.option("--reply-bytes", "reply_bytes", type=Count(1), metavar="N",
              help="rr: the reply is complete after N bytes (default: the first bytes).")
@click.option("--expect-bytes", "old_reply_bytes", type=Count(1), hidden=True)
@click.option("--expect", "expectations", multiple=True, type=CheckOrReply("bench"),
              metavar="CHECK",
              help="A check on the primary distribution and the run, e.g. 'p99<50ms', "
                   "'errors=0', 'rate>=1000'; every one must hold, else exit 9 (repeatable; "
                   "the names: man tcpcli, EXPECTATIONS).")
@click.option("--fresh", is_flag=True, help="rr: a new connection for every request.")
@click.option("--pooling", is_flag=True,
              help="rr: measure a kept connection and a fresh one per request, taking "
                   "turns, and print what pooling saves per request.")
@click.option("--protocol", type=click.Choice(["postgres"]),
              help="Open a PostgreSQL session on each connection: SSLRequest before --tls, "
                   "start-up and authentication (timed as 'startup'); rr's request is a "
                   "simple query, --send SQL (default SELECT 1). The password is read from "
                   "PGPASSWORD only.")
@click.option("--pg-user", type=PG_NAME, metavar="NAME",
              help="--protocol postgres: the user (default $PGUSER, else this login).")
@click.option("--pg-database", type=PG_NAME, metavar="NAME",
              help="--protocol postgres: the database (default $PGDATABASE, else the user).")
@click.option("--resume", is_flag=True,
              help="With --tls: alternate full handshakes with ones offering the worker's "
                   "last TLS session; resumed ones get their own distribution (tls-resumed), "
                   "offers the server declined are counted.")
@option("--samples", "emit_samples", is_flag=True, section=OUTPUT,
        help="With --json/--events: one bench_sample event per sample.")
@option("--events", "events_file", type=OutputFile(), metavar="FILE", section=OUTPUT,
        help="Write JSON Lines events to this file instead of stderr.")
@click.option("--save", "save_file", type=OutputFile(), metavar="FILE",
              help="Save the distributions as a baseline file.")
@click.option("--compare", "compare_file", type=click.Path(exists=True, dir_okay=False),
              help="Compare with a saved baseline; exit 9 on a regression.")
@click.option("--threshold", default="10%", show_default=True, metavar="PERCENT",
              help="--compare: the allowed increase of the checked percentile.")
@click.option("--percentile", type=Number(0, 100, low_open=False), default=99.0,
              show_default=True, metavar="P",
              help="--compare: the percentile checked against --threshold.")
@proxy_header_options
@via_option
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
    from tcpcli.cli.commonoptions import CommonOptions

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
        with open(kwargs["send_file"], "rb") as sent:
            payload = sent.read()
    protocol = kwargs["protocol"]
    pg_user, pg_database = kwargs["pg_user"], kwargs["pg_database"]
    if protocol is None and (pg_user or pg_database):
        raise click.UsageError("--pg-user and --pg-database need --protocol postgres")
    if protocol is not None:
        if mode == "throughput":
            raise click.UsageError("--protocol postgres goes with --mode connect or rr")
        if kwargs["reply_text"] or kwargs["reply_bytes"]:
            raise click.UsageError("--protocol postgres knows where a reply ends "
                                   "(ReadyForQuery): no --reply or --reply-bytes")
        if mode == "rr":
            from tcpcli.protocols.pgwire import query_message

            payload = query_message(payload.decode("utf-8", "replace") if payload
                                    else "SELECT 1")
        import getpass

        pg_user = pg_user or env.environ.get("PGUSER") or getpass.getuser()
        pg_database = pg_database or env.environ.get("PGDATABASE") or pg_user
    reply_text, expectations = _reply_and_checks(kwargs, mode)
    if kwargs["old_reply_bytes"] is not None:
        _renamed("--expect-bytes N", "--reply-bytes N")
        kwargs["reply_bytes"] = kwargs["reply_bytes"] or kwargs["old_reply_bytes"]
    kwargs["reply_text"] = reply_text
    rr_only = [n for n in ("send_text", "send_file", "reply_text", "reply_bytes", "fresh",
                           "pooling") if kwargs[n]]
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
    if reply_text is not None and kwargs["reply_bytes"] is not None:
        raise click.UsageError("--reply and --reply-bytes exclude each other")
    expect = unescape(reply_text) if reply_text is not None else None
    if expect == b"":
        raise click.BadParameter("must not be empty", param_hint="--reply")
    if expectations and (mode == "throughput" or kwargs["pooling"]):
        raise click.UsageError("--expect checks latency distributions: --mode connect or "
                               "--mode rr, without --pooling")
    if mode != "throughput" and (
            used := [flag for name, flag in THROUGHPUT_ONLY.items() if kwargs[name]]):
        raise click.UsageError(f"{used[0]} needs --mode throughput")
    processes = _processes(kwargs["processes"], concurrency, kwargs["count"],
                           common.max_sockets)
    if mode == "throughput":
        if kwargs["send_proxy"] or kwargs["proxy_source"]:
            raise click.UsageError("--send-proxy goes with --mode connect or rr")
        if processes is not None:
            raise click.UsageError("--processes needs --mode connect or --mode rr")
        bench_throughput(env, common, address, kwargs)
        return
    if kwargs["pooling"]:
        clash = next((flag for name, flag in (("fresh", "--fresh"), ("resume", "--resume"),
                                               ("processes", "--processes"),
                                               ("compare_file", "--compare"),
                                               ("save_file", "--save"), ("rate", "--rate"))
                      if kwargs[name]), None)
        if clash is not None:
            raise click.UsageError(f"--pooling measures both kinds of connection itself; "
                                   f"{clash} does not go with it")
    threshold = _threshold(kwargs["threshold"])
    baseline = None
    if kwargs["compare_file"]:
        baseline = load_baseline(kwargs["compare_file"])
        check_like_with_like(kwargs["compare_file"], baseline, address,
                             measured(mode, common.tls))
    config = BenchConfig(
        address=address, mode=mode, count=kwargs["count"], duration=kwargs["duration"],
        concurrency=concurrency, rate=kwargs["rate"], warmup=kwargs["warmup"],
        timeout=common.timeout or 10.0, tls=common.tls, tls_options=common.tls_options(),
        payload=payload, expect=expect, expect_bytes=kwargs["reply_bytes"],
        fresh=kwargs["fresh"], resume=kwargs["resume"], protocol=protocol,
        pg_user=pg_user or "postgres", pg_database=pg_database,
        pg_password=(env.environ.get("PGPASSWORD") or None) if protocol else None,
    )
    invocation = common.invocation()
    with_via(invocation, kwargs)
    with_proxy_header(invocation, kwargs)
    env.start_session("bench", json=common.json, events_file=kwargs["events_file"],
                      target=address, quiet=common.quiet)
    if kwargs["pooling"]:
        run(lambda: pooling_main(env, config, invocation), env, traceback=common.traceback)
    session = BenchSession(env, common, config, emit_samples=kwargs["emit_samples"],
                           save_file=kwargs["save_file"], baseline=baseline,
                           threshold=threshold, percentile=kwargs["percentile"],
                           processes=processes, expectations=expectations)
    run(lambda: session.main(invocation), env, traceback=common.traceback,
        without_loop=lambda: session.main_now(invocation))


async def pooling_main(env: Environment, config: BenchConfig, invocation: Invocation) -> int:
    """``--pooling``: both arms, taking turns, then the comparison (text or JSON)."""
    from tcpcli.engines.bench import pooling_summary, run_pooling
    from tcpcli.render.bench import pooling_lines

    async with invocation:
        env.emit("bench_start", mode="rr", pooling=True, tls=config.tls,
                 concurrency=config.concurrency, count=config.count,
                 duration_s=config.duration)
        result = await run_pooling(config, invocation)
    env.emit("bench_pooling", **pooling_summary(result))
    if env.human_report:
        env.write("".join(line + "\n" for line in pooling_lines(result)))
    if not (result.kept.samples and result.fresh.samples):
        errors = result.kept.errors + result.fresh.errors
        return exit_code_for(errors.most_common(1)[0][0]) if errors else ExitCode.ERROR
    return ExitCode.OK


def _processes(processes: int | None, concurrency: int, count: int | None,
               max_sockets: int | None) -> int | None:
    """``--processes`` checked against what it must share out (None: auto)."""
    if processes is None:
        return None
    for amount, what in ((concurrency, "-c"), (count, "-n"), (max_sockets, "--max-sockets")):
        if amount is not None and processes > amount:
            raise click.UsageError(f"--processes {processes} needs at least one of {what} "
                                   f"{amount} for each process")
    return processes


def _threshold(value: str) -> float:
    text = value.strip().removesuffix("%")
    try:
        number = float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a percentage",
                                 param_hint="--threshold") from None
    if not math.isfinite(number) or number < 0:
        raise click.BadParameter(f"{value!r} is not a percentage", param_hint="--threshold")
    return number


# ------------------------------------------------------------------ baselines


def measured(mode: str, tls: bool) -> str:
    """What a run measures, as a baseline records it: ``connect``, ``connect tls``, ``rr``."""
    return f"{mode}{' tls' if tls else ''}"


def load_baseline(path: str) -> dict[str, Any]:
    """A ``--save``d baseline, checked to be one (else a usage error naming the file)."""
    from tcpcli.engines.histogram import Histogram

    try:
        import json

        with open(path, encoding="utf-8") as saved:
            data = json.loads(saved.read())
        if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND:
            raise ValueError("not a tcpcli bench baseline (save one with --save)")
        for saved in data["histograms"].values():
            Histogram.from_dict(saved)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--compare") from exc
    return data


def check_like_with_like(path: str, baseline: dict[str, Any], address: str,
                         what: str) -> None:
    """A baseline of another target or mode has nothing to say about this run: comparing
    would pass on distributions that were never measured. A usage error naming both."""
    saved = baseline.get("summary", {})
    saved_what = measured(str(saved.get("mode", "?")), bool(saved.get("tls")))
    saved_target = str(baseline.get("target", "?"))
    if (saved_target, saved_what) != (address, what):
        raise click.BadParameter(
            f"{path} measured {saved_what} to {saved_target}, this run measures {what} to "
            f"{address}; compare like with like (or --save a new baseline)",
            param_hint="--compare")


def save_baseline(path: str, result: BenchResult, data: dict[str, Any]) -> None:
    document = {
        "schema": "tcpcli/1",
        "kind": BASELINE_KIND,
        "target": result.config.address,
        "summary": data,
        "histograms": {name: h.to_dict() for name, h in result.histograms.items()},
    }
    import json

    with open(path, "w", encoding="utf-8") as saved:
        saved.write(json.dumps(document, indent=1) + "\n")


def compare(histograms: dict[str, Histogram], baseline: dict[str, Any], *, threshold: float,
            percentile: float) -> Comparison:
    """Per-distribution, per-percentile deltas against a saved baseline; ``regressed``
    lists the distributions whose ``percentile`` grew by more than ``threshold`` percent."""
    from tcpcli.engines.bench import PERCENTILES
    from tcpcli.engines.histogram import Histogram

    checked = sorted({*PERCENTILES, percentile})
    deltas: dict[str, dict[str, PercentileChange]] = {}
    regressed: list[str] = []
    for name, histogram in histograms.items():
        saved = baseline.get("histograms", {}).get(name)
        if saved is None or histogram.count == 0:
            continue
        before = Histogram.from_dict(saved)
        if before.count == 0:
            continue
        rows: dict[str, PercentileChange] = {}
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


# ------------------------------------------------------------------ the run


def _renamed(old: str, new: str) -> None:
    click.echo(f"tcpcli: warning: {old} is now {new} (--expect takes checks such as "
               "'p99<50ms')", err=True)


def _reply_and_checks(kwargs: dict[str, Any], mode: str) -> (
    tuple[str | None, tuple[Expectation, ...]]
):
    """``--reply TEXT``, taking a legacy ``--expect TEXT`` in rr mode, and the checks."""
    values = kwargs.pop("expectations")
    legacy = [value for value in values if isinstance(value, _LegacyReply)]
    checks = tuple(value for value in values if not isinstance(value, _LegacyReply))
    reply: str | None = kwargs["reply_text"]
    if legacy:
        if mode != "rr" or reply is not None or len(legacy) > 1:
            raise click.BadParameter(str(legacy[0].error), param_hint="'--expect'")
        _renamed("--expect TEXT (the end of the reply)", "--reply TEXT")
        reply = legacy[0].text
    return reply, checks


def facts(result: BenchResult) -> dict[str, object]:
    """The run as ``--expect`` names it: the primary distribution in ms, errors, rate,
    and loss as the share of samples that failed."""
    h = result.histograms[result.primary]
    tried = result.samples + result.error_count
    loss = 100.0 * result.error_count / tried if tried else 0.0
    found: dict[str, object] = {"errors": result.error_count, "rate": result.rate,
                                "loss": int(loss) if loss.is_integer() else loss}
    if h.count:
        found.update({"min": h.min / 1e6, "avg": h.mean / 1e6, "max": h.max / 1e6,
                      "p50": h.percentile(50) / 1e6, "p90": h.percentile(90) / 1e6,
                      "p99": h.percentile(99) / 1e6, "p999": h.percentile(99.9) / 1e6})
    return found


class BenchSession:
    def __init__(self, env: Environment, common: CommonOptions, config: BenchConfig, *,
                 emit_samples: bool, save_file: str | None,
                 baseline: dict[str, Any] | None, threshold: float,
                 percentile: float, processes: int | None = 1,
                 expectations: Sequence[Expectation] = ()) -> None:
        self.env, self.common, self.config = env, common, config
        self.expectations = expectations
        self.save_file, self.baseline = save_file, baseline
        self.processes = processes  # None: auto, decided once the target is checked
        self.threshold, self.percentile = threshold, percentile
        self.emit_samples = emit_samples and env.events is not None
        self.reported = False

    def _line(self, text: str) -> None:
        """A line after the report, on stdout with it (``check ...``)."""
        self.env.write(text + "\n")

    def _on_sample(self, name: str, value_ns: int) -> None:
        self.env.emit("bench_sample", distribution=name, latency_ms=round(value_ns / 1e6, 6))

    def _live_line(self) -> bool:
        """A live progress line on stderr: for people at a terminal, never beside events."""
        return self.env.rich and not self.common.quiet and not self.env.events_on_stderr

    def _started(self, bench: Bench | ProcessBench, invocation: Invocation,
                 processes: int) -> None:
        c = self.config
        self.env.emit("bench_start", peer=bench.result.peer, mode=c.mode, tls=c.tls,
                      concurrency=c.concurrency, count=c.bounded_count,
                      duration_s=c.duration, rate=c.rate, warmup=c.warmup,
                      max_sockets=invocation.slots.limit, processes=processes)

    def _interrupted(self, result: BenchResult) -> None:
        """Ctrl-C or SIGTERM: what was measured so far is still reported."""
        if not self.reported:
            result.interrupted = True
            if not result.finished_ns:
                result.finished_ns = time.perf_counter_ns()
            self._report(result)

    def main_now(self, invocation: Invocation) -> int | None:
        """The run without an event loop (``Bench.run_now``): plain connect mode to an
        address known without DNS, in one process, with no live line. None, with nothing
        dialed, when the run needs the loop."""
        if self._live_line():
            return None
        import signal

        from tcpcli.engines.bench import Bench

        on_sample = self._on_sample if self.emit_samples else None
        bench = Bench(self.config, invocation, on_sample=on_sample)
        if not bench.storms_without_loop() or self._processes(bench) != 1:
            return None
        self._started(bench, invocation, 1)
        try:
            result = bench.run_now()
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # no traceback from a second press
            self._interrupted(bench.result)
            raise
        assert result is not None
        return self._report(result)

    async def main(self, invocation: Invocation) -> int:
        import anyio

        from tcpcli.engines.bench import Bench

        async with invocation:
            on_sample = self._on_sample if self.emit_samples else None
            checked = Bench(self.config, invocation, on_sample=on_sample)
            await checked.check_target()
            bench: Bench | ProcessBench = checked
            processes = self._processes(checked)
            if processes > 1:
                from tcpcli.engines.bench_processes import ProcessBench

                bench = ProcessBench(self.config, invocation, processes, on_sample=on_sample,
                                     checked=checked)
            self._started(bench, invocation, processes)
            try:
                async with anyio.create_task_group() as tg:
                    if self._live_line():
                        tg.start_soon(self._live, bench)
                    await bench.run()
                    tg.cancel_scope.cancel()
            except BaseException as exc:
                if interrupted(exc):
                    self._interrupted(bench.result)
                raise
            return self._report(bench.result)

    def _processes(self, checked: Bench) -> int:
        """How many processes run the bench: the one asked for, or auto's choice."""
        config = self.config
        if self.processes is not None:
            return self.processes
        if config.concurrency < 2 or (config.count is not None and config.count < 2):
            return 1  # nothing to share out; spare the import
        from tcpcli.engines.bench_processes import auto_processes

        target = checked.checked_target
        return auto_processes(config, loopback=target is not None and target[0].is_loopback)

    async def _live(self, bench: Bench | ProcessBench) -> None:
        from tcpcli.render.bench import progress_line
        from tcpcli.render.live import show_live

        await show_live(self.env.console,
                        lambda: progress_line(bench.result, self.config.warmup))

    def _report(self, result: BenchResult) -> int:
        from tcpcli.engines.bench import summary
        from tcpcli.render.bench import plain_lines, rich_report

        self.reported = True
        data = summary(result)
        comparison = None
        if self.baseline is not None:
            comparison = compare(result.histograms, self.baseline, threshold=self.threshold,
                                 percentile=self.percentile)
        self.env.emit("bench_summary", **data)
        if comparison is not None:
            self.env.emit("bench_compare", **comparison)
        if self.save_file and not result.interrupted:
            save_baseline(self.save_file, result, data)
        if self.env.human_report:
            if self.env.stdout_rich:
                self.env.write_rich(rich_report(result, comparison))
            else:
                self.env.write("".join(line + "\n" for line in plain_lines(result, comparison)))
        if comparison is not None and comparison["regressed"]:
            return ExitCode.CHECK_FAILED
        if self.expectations:
            from tcpcli.cli.expectations import all_passed, report_checks

            if not all_passed(report_checks(self.env, self.expectations, facts(result),
                                            say=self._line)):
                return ExitCode.CHECK_FAILED
        if result.samples == 0 and result.errors:
            kind = result.errors.most_common(1)[0][0]
            return exit_code_for(kind)
        return ExitCode.OK
