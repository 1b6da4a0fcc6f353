"""``--expect CHECK`` on every command that measures: the option, the facts a run offers
its checks, and how the verdicts are reported. The language itself (names, kinds, units,
the grammar) is :mod:`tcpcli.core.expect`.

Each command gathers what it measured into one ``facts`` mapping under the catalogue's
names, then :func:`report_checks` checks every expectation: a ``check`` event each (``check``
as typed, ``expectation`` in canonical form, ``passed``, ``found``), a ``check CHECK: ok
(found)`` line for people, and exit 9 when any failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tcpcli.cli.paramtypes import TcpcliType

if TYPE_CHECKING:
    from tcpcli.cli.environment import Environment
    from tcpcli.core.expect import Expectation, Verdict
    from tcpcli.core.timing import Phase
    from tcpcli.core.tlsreport import TLSReport

F = TypeVar("F", bound=Callable[..., Any])

#: The facts named after a phase: its successful run's duration (the last one, which
#: for ``connect`` is the winning attempt of happy eyeballs).
PHASE_FACTS = {"connect.ms": "connect", "tls.ms": "tls", "resolve.ms": "resolve"}
#: How much of what the server sent first a ``banner`` check sees.
BANNER_LIMIT = 4096


class Check(TcpcliType):
    """One ``--expect`` for ``command``, parsed (and its regex compiled) before anything
    is dialled: a mistake is a usage error naming the accepted grammar."""

    name = "check"
    toml_form = 'a check such as "cert.days>=30"'

    def __init__(self, command: str) -> None:
        self.command = command

    def parse(self, value: object) -> Expectation:
        from tcpcli.core.expect import Expectation, parse

        if isinstance(value, Expectation):  # a default, or a value already converted
            return value
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a check (e.g. cert.days>=30)")
        return parse(value, self.command)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "CHECK"


def expect_option(command: str, *, what: str = "") -> Callable[[F], F]:
    """``--expect CHECK``, repeatable: every check must hold, else exit 9."""
    return click.option(
        "--expect", "expectations", multiple=True, type=Check(command),
        help=(what or "A check on what the run measured")
        + ", e.g. " + _examples(command) + "; every one must hold, else exit 9 "
        "(repeatable; the names: man tcpcli, EXPECTATIONS).")


def _examples(command: str) -> str:
    return {
        "connect": "'cert.days>=30', 'connect.ms<200', 'banner~^SSH-2.0'",
        "starttls": "'verified', 'tls.version>=1.2', 'chain.complete'",
        "ping": "'loss<=1%', 'p99<50ms', 'cert.days>=14'",
        "probe": "'open', 'ports.open>=1', 'banner~OpenSSH'",
        "bench": "'p99<50ms', 'errors=0', 'rate>=1000'",
    }[command]


def phase_facts(phases: Iterable[Phase]) -> dict[str, object]:
    """``connect.ms``, ``tls.ms``, ``resolve.ms`` from a run's phases."""
    facts: dict[str, object] = {}
    done = [p for p in phases if p.outcome == "ok" and p.duration_ms is not None]
    for fact, name in PHASE_FACTS.items():
        runs = [p.duration_ms for p in done if p.name == name]
        if runs:
            facts[fact] = runs[-1]
    return facts


def tls_facts(report: TLSReport | None) -> dict[str, object]:
    """What a TLS report says, under the catalogue's names (none without TLS)."""
    if report is None:
        return {}
    facts: dict[str, object] = {
        "tls.version": report.version,
        "tls.cipher": report.cipher,
        "verified": report.verification.verified,
    }
    if report.alpn is not None:
        facts["alpn"] = report.alpn
    if report.chain:
        facts["cert.days"] = report.chain[0].days_left
        facts["chain.days"] = min(cert.days_left for cert in report.chain)
    if report.chain_complete is not None:
        facts["chain.complete"] = report.chain_complete
    return facts


def banner_text(data: bytes) -> str:
    """The first bytes as a ``banner`` check reads them: decoded, never failing."""
    return data[:BANNER_LIMIT].decode("utf-8", "replace")


def report_checks(env: Environment, expectations: Sequence[Expectation],
           facts: Mapping[str, object], *, say: Callable[[str], None] | None = None,
           ) -> list[Verdict]:
    """Check every expectation against ``facts``: events, one line each (``say``, or
    :meth:`Environment.say` on stderr), and the verdicts."""
    if not expectations:
        return []  # (the checker's grammar is not worth loading for none)
    from tcpcli.core.expect import check_all

    verdicts = check_all(expectations, facts)
    for expectation, verdict in zip(expectations, verdicts, strict=True):
        typed = expectation.text.strip()
        env.emit("check", check=typed, expectation=verdict.expectation,
                 passed=verdict.passed, found=verdict.found)
        line = f"check {typed}: {'ok' if verdict.passed else 'FAILED'} ({verdict.found})"
        if env.human_report:
            (say or env.say)(line)
        elif not verdict.passed and not env.events_on_stderr and not env.json_on_stdout:
            env.note(line)  # -q still says which check failed
    return verdicts


def all_passed(verdicts: Iterable[Verdict]) -> bool:
    return all(verdict.passed for verdict in verdicts)
