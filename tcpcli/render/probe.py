"""``probe`` for people and for scripts: the Rich table on a terminal, one ``host port
state key=value ...`` line per row when piped, CSV rows, the live progress line, and the
closing summary with the ports the policy skipped (and the flag that would lift each)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tcpcli.record import Record, field

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from tcpcli.engines.scan_results import ProbeResult, ScanSummary

CSV_FIELDS = ("host", "address", "port", "state", "reason", "errno", "latency_ms", "attempts",
              "service", "identified", "identified_detail", "banner", "tls_version",
              "tls_subject", "tls_not_after", "workers_allowed", "workers_rule", "rule",
              "product", "version", "service_confidence", "tls_mode", "tls_verdict")

STATE_STYLES = {"open": "green", "closed": "red", "filtered": "yellow",
                "unreachable": "magenta", "blocked": "cyan"}

#: Ports named per policy rule in the summary; the rest are counted.
NAMED_PORTS = 10


class PolicySkip(Record):
    """The ports one policy rule refused, and the flag that lifts it."""

    rule: str
    lift: str
    count: int = 0
    ports: list[str] = field(default_factory=list)  # "host:port", the first NAMED_PORTS


class PolicySkips:
    """Every port the policy refused (no packet sent), grouped by rule: counted and named,
    so the summary can say what was skipped and how to ask for it."""

    def __init__(self) -> None:
        self.by_rule: dict[str, PolicySkip] = {}

    def add(self, result: ProbeResult) -> None:
        rule = result.rule or "policy"
        skip = self.by_rule.setdefault(rule, PolicySkip(rule, result.lift or ""))
        skip.count += 1
        if len(skip.ports) < NAMED_PORTS:
            skip.ports.append(f"{result.host}:{result.port}" if ":" not in result.host
                              else f"[{result.host}]:{result.port}")

    @property
    def count(self) -> int:
        return sum(skip.count for skip in self.by_rule.values())

    def lines(self) -> list[str]:
        """``skipped 1 port by policy rule port-25 (127.0.0.1:25); to probe it: --allow
        port:25 or --policy open``, one per rule."""
        lines = []
        for skip in self.by_rule.values():
            more = skip.count - len(skip.ports)
            named = ", ".join(skip.ports) + (f" and {more:,} more" if more > 0 else "")
            lift = f"; to probe {'it' if skip.count == 1 else 'them'}: {skip.lift}" \
                if skip.lift else ""
            lines.append(f"skipped {skip.count:,} port{'s' * (skip.count != 1)} by policy "
                         f"rule {skip.rule} ({named}){lift}")
        return lines

    def to_json(self) -> list[dict[str, object]]:
        """The summary event's ``skipped_by_policy``: rule, lift, count, ports named."""
        return [{"rule": s.rule, "lift": s.lift, "count": s.count, "ports": s.ports}
                for s in self.by_rule.values()]


def summary_line(summary: ScanSummary, counts: dict[str, int], *, cut_short: bool) -> str:
    """``probed 3 port(s) in 0.01 s: 2 closed, 1 blocked``."""
    shown = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    return (f"probed {summary.probes} port(s) in {summary.elapsed_ms / 1000:.2f} s"
            f"{' (interrupted)' if cut_short else ''}: {shown or 'nothing'}")


#: A terminal at least this wide gets the table's "identified by" and "tls" columns.
WIDE_TABLE = 140


def results_table(rows: Iterable[ProbeResult], *, width: int | None = None) -> Table:
    """Probe rows for people: one line per (host, port), sorted, states in colour.

    On a terminal ``width`` columns wide (at least :data:`WIDE_TABLE`), an identified
    scan gets an "identified by" column (version from banner, matched by answer, port
    default only) and a "tls" one; narrower (the demo's 80 columns), the TLS version
    follows the service, as ``[tls TLSv1.3]`` or ``[starttls TLSv1.3]``.
    """
    from rich.markup import escape
    from rich.table import Table

    rows = sorted(rows, key=lambda r: (r.host, r.address, r.port))
    identified = any(r.identity is not None or r.tls is not None for r in rows)
    wide = identified and width is not None and width >= WIDE_TABLE
    table = Table(box=None, header_style="bold")
    for column in ("host", "port", "state", "reason", "latency", "service",
                   *(("identified by", "tls") if wide else ()), "worker"):
        table.add_column(column)
    for r in rows:
        style = STATE_STYLES.get(str(r.state), "")
        service = service_text(r)
        if wide:
            how = str(r.identity.how) if r.identity else ("port default only" if r.service
                                                           else "")
            extra: tuple[str, ...] = (escape(how), escape(tls_cell(r)))
        else:
            extra = ()
            if r.tls and r.tls.get("detected"):
                mode = "tls" if r.tls.get("mode") == "implicit" else r.tls.get("mode", "tls")
                service += f" [{mode} {r.tls.get('version')}]"
        table.add_row(r.host if r.host == r.address or not r.address
                      else f"{r.host} ({r.address})", str(r.port),
                      f"[{style}]{r.state}[/]", r.reason,
                      f"{r.latency_ms:.2f} ms" if r.latency_ms is not None else "",
                      escape(service), *extra, "allowed" if r.workers_allowed else
                      f"blocked ({r.workers_rule})")
    return table


def service_text(result: ProbeResult) -> str:
    """``ssh OpenSSH 9.2p1 (Debian-2+deb12u10)``, ``tls/http SimpleHTTP 0.6``, ``redis``:
    the service, the product and version where disclosed."""
    guess = result.identity
    if guess is None:
        return result.service
    name = f"tls/{guess.name}" if guess.fact("tls") == "implicit" and guess.name != "tls" \
        else guess.name
    words = [name, *(part for part in (guess.product, guess.version) if part)]
    if guess.info:
        words.append(f"({guess.info})")
    return " ".join(words)


def tls_cell(result: ProbeResult) -> str:
    """``TLSv1.3 (starttls smtp), 89 days, verified``, or "no" (the reason is in the
    plain and JSON rows)."""
    tls = result.tls
    if not tls:
        return ""
    if not tls.get("detected"):
        return "no"
    how = tls.get("mode", "")
    if tls.get("protocol"):
        how += f" {tls['protocol']}"
    parts = [f"{tls.get('version')} ({how})" if how else str(tls.get("version"))]
    if tls.get("days_left") is not None:
        parts.append(f"{tls['days_left']} days")
    if tls.get("verdict"):
        parts.append(str(tls["verdict"]).partition(":")[0])
    return ", ".join(parts)


def progress_line(summary: ScanSummary, expected: int | None, elapsed_s: float) -> Text:
    """``12,345/65,535 probes (19%)  24,100/s  3 open  0.5 s``: what a long scan has done."""
    from rich.text import Text

    done = summary.probes
    line = Text(f"{done:,}/{expected:,} probes ({done / expected:.0%})" if expected
                else f"{done:,} probes")
    line.append(f"  {done / elapsed_s:,.0f}/s" if elapsed_s > 0 else "")
    line.append(f"  {summary.counts.get('open', 0):,} open", style="green")
    line.append(f"  {elapsed_s:.1f} s")
    return line


def csv_row(result: ProbeResult) -> dict[str, object]:
    """A row for ``--csv`` (the TLS facts flattened into columns)."""
    row: dict[str, object] = dict(result.to_dict())
    tls = result.tls or {}
    service = result.service_object() or {}
    row.update(tls_version=tls.get("version"), tls_subject=tls.get("subject"),
               tls_not_after=tls.get("not_after"), tls_mode=tls.get("mode"),
               tls_verdict=tls.get("verdict"), service=service.get("name"),
               product=service.get("product"), version=service.get("version"),
               service_confidence=service.get("confidence"))
    return row


def plain_line(result: ProbeResult) -> str:
    """``host port state key=value ...``: stable, greppable, one row per line."""
    fields = [result.host, str(result.port), str(result.state)]
    extra: dict[str, object] = {"address": result.address, "reason": result.reason}
    if result.via is not None:
        extra["via"] = result.via
    if result.latency_ms is not None:
        extra["latency_ms"] = f"{result.latency_ms:.3f}"
    if result.errno is not None:
        extra["errno"] = result.errno
    service = result.service_object()
    if service is not None:
        extra["service"] = service["name"]
        for key in ("product", "version"):
            if service.get(key):
                extra[key] = service[key]
        extra["service_confidence"] = service["confidence"]
    if result.identified:
        extra["identified"] = result.identified
    if result.identified_detail:
        extra["identified_detail"] = result.identified_detail
    if result.tls is not None:
        tls = result.tls
        extra["tls"] = tls.get("version") if tls.get("detected") else "no"
        for key in ("mode", "protocol", "subject", "not_after", "days_left", "verdict"):
            if tls.get(key) is not None:
                extra[f"tls_{key}"] = tls[key]
    if result.tcp is not None:  # -v: the kernel's view of the open port's connection
        extra["kernel_rtt_ms"] = f"{result.tcp['rtt_ms']:.3f}"
        extra["kernel_mss"] = result.tcp["mss"]
    if result.rule:
        extra["rule"] = result.rule
    extra["workers"] = "allowed" if result.workers_allowed else f"blocked:{result.workers_rule}"
    if result.banner:
        extra["banner"] = result.banner
    for key, value in extra.items():
        fields.append(f"{key}={_quote(str(value))}")
    return " ".join(fields)


def _quote(text: str) -> str:
    if text and not any(ch in text for ch in ' "\\='):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
