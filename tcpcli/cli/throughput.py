"""``tcpcli bench --mode throughput``: the option checks and the run.

Kept apart from ``bench.py`` (latency modes) so each stays readable; the command, its
options and the output contract are bench's: the report on stdout (Rich on a terminal, one
``key value`` line per fact when piped; :mod:`tcpcli.render.throughput`), or with
``--json`` the JSON Lines instead (``--events FILE`` to keep the report); live progress
and notes on stderr. Ctrl-C prints what was measured so far, then exits 130.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.cli.options import with_via
from tcpcli.cli.runner import interrupted, run

if TYPE_CHECKING:
    from tcpcli.cli.commonoptions import CommonOptions
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.throughput import Throughput, ThroughputConfig, ThroughputResult

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
    with_via(invocation, kwargs)
    env.start_session("bench", json=common.json, events_file=kwargs["events_file"],
                      target=address, quiet=common.quiet)
    session = ThroughputSession(env, common, config)
    run(lambda: session.main(invocation), env, traceback=common.traceback)


class ThroughputSession:
    def __init__(self, env: Environment, common: CommonOptions,
                 config: ThroughputConfig) -> None:
        self.env, self.common, self.config = env, common, config
        self.reported = False

    async def main(self, invocation: Invocation) -> int:
        import anyio

        from tcpcli.engines.throughput import Throughput

        async with invocation:
            engine = Throughput(self.config, invocation)
            await engine.check_target()
            c = self.config
            self.env.emit("bench_start", peer=engine.result.peer, mode="throughput",
                          tls=c.tls, direction=c.direction, connections=c.connections,
                          duration_s=c.window, bytes=c.bytes_per_connection,
                          chunk_bytes=c.chunk, warmup_s=c.warmup,
                          max_sockets=invocation.slots.limit)
            try:
                async with anyio.create_task_group() as tg:
                    if self.env.rich and not self.common.quiet \
                            and not self.env.events_on_stderr:
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
        from tcpcli.render.throughput import progress_line

        await show_live(self.env.console, lambda: progress_line(engine.result))

    def _report(self, result: ThroughputResult) -> int:
        from tcpcli.engines.throughput import summary
        from tcpcli.render.throughput import plain_lines, rich_report

        self.reported = True
        self.env.emit("bench_summary", **summary(result))
        verbose = self.common.verbose > 0
        if self.env.human_report:
            if self.env.stdout_rich:
                self.env.write_rich(rich_report(result, verbose=verbose))
            else:
                self.env.write("".join(line + "\n"
                                       for line in plain_lines(result, verbose=verbose)))
        if result.bytes_up + result.bytes_down == 0 and result.errors:
            return exit_code_for(result.errors.most_common(1)[0][0])
        return ExitCode.OK
