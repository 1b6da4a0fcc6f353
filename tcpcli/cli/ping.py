"""``tcpcli ping``: a TCP (or TLS, or STARTTLS) handshake every interval, as ``ping`` and
tcping users expect it, with the name re-resolved and re-judged as it goes.

One line per round on stdout (``seq=N ADDRESS STATE time=X ms``), an ``address change``
line when the name starts resolving elsewhere (the DNS flip of a failover), and ``ping``'s
summary when the count, the deadline or Ctrl-C ends the run. ``--json`` puts the same
facts on stdout as JSON Lines (``ping_start``, ``ping`` per round, ``address_change``,
``ping_summary``, ``check``). The engine is :mod:`tcpcli.engines.ping`; the text,
:mod:`tcpcli.render.ping`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import click

from tcpcli.cli.arguments import STARTTLS_PROTOCOLS, target_address
from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode, exit_code_for
from tcpcli.cli.expectations import expect_option
from tcpcli.cli.helpformat import TIMING, SectionedCommand, option
from tcpcli.cli.options import common_options, target_argument, via_option, with_via
from tcpcli.cli.paramtypes import DURATION, PORT, Count, Duration, Number
from tcpcli.cli.runner import interrupted, run

if TYPE_CHECKING:
    from tcpcli.cli.commonoptions import CommonOptions
    from tcpcli.core.expect import Expectation
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.ping import Attempt, PingConfig, PingStats

EXAMPLES = """
\b
Examples:
  tcpcli ping db.internal:5432                      # until Ctrl-C, one line a second
  tcpcli ping db.internal:5432 -c 20 --max-loss 5   # gate a deploy on it
  tcpcli ping example.com:443 --tls -i 0.2 -c 50    # TLS handshakes, 5 a second
  tcpcli ping mail.example.com:587 --starttls smtp  # the whole STARTTLS upgrade
  tcpcli ping api.internal:443 --tls --json | jq -c 'select(.event=="address_change")'

\b
Exit status: 0 at least one round succeeded (and every --max-loss, --max-rtt and --expect
held); 9 a threshold or expectation failed; when no round succeeded, the last failure's
code (5 refused or unreachable, 6 timeout, 7 verification, 8 protocol); 3 the policy
refused the target, 4 its name did not resolve (on the first round; later rounds show
them as they happen); 2 usage. Ctrl-C ends the run like the count does: summary, then the
status above.
"""

#: A round that gets no answer within this long is lost (``ping -W``).
DEFAULT_TIMEOUT = 2.0
#: First-round failures that no later round can cure: end the run at once, as ping does
#: for a name that does not resolve.
FATAL_FIRST = frozenset({"blocked", "usage", "dns", "dns-timeout"})


class _MaxRtt(Duration):
    """Milliseconds unless a unit says otherwise (``--max-rtt 50``, ``--max-rtt 0.2s``)."""

    name = "milliseconds"

    def parse(self, value: object) -> float:
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            value = value.strip() + "ms"
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{value}ms"
        return super().parse(value)


@click.command("ping", cls=SectionedCommand, epilog=EXAMPLES,
               short_help="Handshake with a service every second: loss, times, DNS flips.")
@target_argument()
@click.argument("port", required=False, type=PORT)
@option("-c", "--count", type=Count(1), metavar="N", section=TIMING,
        help="Stop after N rounds (default: until Ctrl-C or --deadline).")
@option("-i", "--interval", type=DURATION, default=1.0, show_default=True,
        metavar="SECONDS", section=TIMING, help="Between the starts of two rounds.")
@option("-W", "--wait", type=DURATION, metavar="SECONDS", section=TIMING,
        help=f"How long one round may take before it is lost (default {DEFAULT_TIMEOUT:g} "
             "s; --timeout says the same).")
@option("-w", "--deadline", type=DURATION, metavar="SECONDS", section=TIMING,
        help="Stop after this long, whatever the count.")
@click.option("--resolve-every", type=Count(1), default=1, show_default=True, metavar="N",
              help="Resolve the name again every N rounds (each answer is judged by the "
                   "policy; a changed answer is shown).")
@click.option("--starttls", "protocol", type=click.Choice(STARTTLS_PROTOCOLS),
              metavar="PROTO", help="Run this STARTTLS dialogue and upgrade each round: "
              + ", ".join(STARTTLS_PROTOCOLS) + ".")
@click.option("--max-loss", type=Number(0, 100, low_open=False, unit="%"), metavar="PERCENT",
              help="Exit 9 when more than this share of rounds failed.")
@click.option("--max-rtt", type=_MaxRtt(), metavar="MS",
              help="Exit 9 when any successful round took longer (milliseconds).")
@expect_option("ping", what="A check on the whole run")
@via_option
@common_options
@click.pass_obj
def ping_command(env: Environment | None, /, target: str, port: int | None,
                 **kwargs: Any) -> None:
    """Handshake with TARGET every interval and report each round and the loss.

    Each round is a TCP handshake (with --tls, also the TLS handshake; with --starttls
    PROTO, the dialogue and the upgrade), then a clean close: a service is watched the way
    its clients meet it. The name is resolved again every round and each answer judged by
    the policy, so a failover's DNS flip shows as it happens.
    """
    from tcpcli.cli.commonoptions import CommonOptions
    from tcpcli.engines.ping import PingConfig

    env = env or Environment()
    via = {"via": kwargs.pop("via")}
    protocol = kwargs.pop("protocol")
    count, interval, wait = kwargs.pop("count"), kwargs.pop("interval"), kwargs.pop("wait")
    deadline, every = kwargs.pop("deadline"), kwargs.pop("resolve_every")
    max_loss, max_rtt = kwargs.pop("max_loss"), kwargs.pop("max_rtt")
    expectations = list(kwargs.pop("expectations"))
    # The two gates are shorthands for checks of the shared language.
    from tcpcli.core.expect import parse

    if max_loss is not None:
        expectations.insert(0, parse(f"loss<={max_loss:g}%", "ping"))
    if max_rtt is not None:
        expectations.insert(1 if max_loss is not None else 0,
                            parse(f"max<={max_rtt * 1000:g}ms", "ping"))
    common = CommonOptions.from_kwargs(kwargs)
    if wait is not None and common.timeout is not None and wait != common.timeout:
        raise click.UsageError("-W and --timeout both set the round's timeout: give one")
    if protocol is not None and common.tls:
        raise click.UsageError("--starttls upgrades in the dialogue; leave out --tls")
    address = target_address(target, port)
    transport: Literal["off", "on", "starttls"] = \
        "starttls" if protocol else "on" if common.tls else "off"
    dialogue_options: dict[str, Any] = {}
    if protocol in ("xmpp", "xmpp-server"):
        dialogue_options["to"] = address.rsplit(":", 1)[0].strip("[]")
    config = PingConfig(address=address, count=count, interval=interval,
                        timeout=wait or common.timeout or DEFAULT_TIMEOUT,
                        deadline=deadline, resolve_every=every, secure_transport=transport,
                        protocol=protocol, dialogue_options=dialogue_options)
    invocation = common.invocation()
    with_via(invocation, via)
    session = PingSession(env, common, config, expectations)
    run(lambda: session.main(invocation), env, traceback=common.traceback)


class PingSession:
    def __init__(self, env: Environment, common: CommonOptions, config: PingConfig,
                 expectations: list[Expectation]) -> None:
        self.env, self.common, self.config = env, common, config
        self.expectations = expectations
        env.start_session("ping", json=common.json, target=config.address,
                          quiet=common.quiet)
        if config.secure_transport != "off":
            from tcpcli.core.tlssession import load_report_builders

            load_report_builders()  # each round's certificate facts: not on the first round's clock

    def _line(self, text: str) -> None:
        if self.env.human_report:
            self.env.write(text + "\n")

    async def main(self, invocation: Invocation) -> int:
        from tcpcli.engines.ping import Pinger
        from tcpcli.render.ping import header_line

        config = self.config
        via = invocation.options.via
        async with invocation:
            pinger = Pinger(config, invocation, on_attempt=self._on_attempt,
                            on_change=self._on_change, fatal_first=FATAL_FIRST)
            self.env.emit("ping_start", mode=config.secure_transport,
                          protocol=config.protocol, count=config.count,
                          interval_s=config.interval, timeout_s=config.timeout,
                          deadline_s=config.deadline, resolve_every=config.resolve_every,
                          via=via)
            self._line(header_line(config, via))
            try:
                await pinger.run()
            except BaseException as exc:
                if not interrupted(exc):
                    raise
                # Ctrl-C is how ping is meant to end: the summary, then the outcome.
            return self._finish(pinger.stats)

    def _on_attempt(self, attempt: Attempt) -> None:
        from tcpcli.render.ping import attempt_fields, attempt_line

        self.env.emit("ping", **attempt_fields(attempt))
        self._line(attempt_line(attempt, verbose=self.common.verbose > 0))

    def _on_change(self, before: tuple[str, ...], after: tuple[str, ...]) -> None:
        from tcpcli.render.ping import change_line

        self.env.emit("address_change", before=list(before), after=list(after))
        self._line(change_line(before, after))

    def _finish(self, stats: PingStats) -> int:
        from tcpcli.render.ping import summary_fields, summary_lines

        self.env.emit("ping_summary", **summary_fields(stats))
        if self.env.human_report:
            self.env.write("".join(line + "\n" for line in summary_lines(self.config, stats)))
        from tcpcli.cli.expectations import all_passed, report_checks

        verdicts = report_checks(self.env, self.expectations, stats.facts(), say=self._line)
        if not all_passed(verdicts):
            return ExitCode.CHECK_FAILED
        if stats.ok == 0 and stats.last_error_kind is not None:
            return exit_code_for(stats.last_error_kind)
        if stats.sent == 0:
            return ExitCode.CHECK_FAILED  # the deadline ended it before any round
        return ExitCode.OK
