"""Human renderings of the core's results: the timing waterfall and the TLS report.

Plain text (stable, greppable: one fact per line) when piped; Rich on a terminal. Nothing
here touches a socket; callers pass finished results.

A command's :class:`Waterfall` accounts for the whole run: the core's phases, and every
stretch no phase covers under its own name (``cli start-up`` before the command's clock
started, ``setup`` before the first phase, ``transfer`` after the first byte, ``other``),
so the rows add up to the ``total`` row. The ``timing`` event carries the same rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tcpcli.core.address import join_host_port
from tcpcli.core.timing import Phase, process_started_ns
from tcpcli.record import Record, values

if TYPE_CHECKING:
    import ssl

    from rich.console import Console

    from tcpcli.core.tls import TLSReport
    from tcpcli.protocols.base import DialogueReport

_LABELS = {
    "resolve": "resolve",
    "slot-wait": "socket slot wait",
    "connect": "tcp connect",
    "proxy": "proxy",
    "proxy-header": "proxy header",
    "starttls": "starttls",
    "tls-setup": "tls setup",
    "tls": "tls handshake",
    "first-byte": "first byte",
}

#: The stretches of a run no phase covers, by name (the key is the row's ``phase``).
STARTUP, SETUP, TRANSFER, OTHER, TOTAL = "cli-start-up", "setup", "transfer", "other", "total"
_REMAINDER_LABELS = {
    STARTUP: ("cli start-up", "python, imports, options"),
    SETUP: ("setup", "core imports, event loop if any"),
    TRANSFER: ("transfer", "data after the first byte"),
    OTHER: ("other", "untimed steps"),
    TOTAL: ("total", ""),
}
#: Uncovered stretches shorter than this join the one ``other`` row at the end.
SMALL_GAP_NS = 1_000_000


def _what(phase: Phase) -> str:
    d = phase.detail
    if phase.name == "resolve":
        server = d.get("server")
        where = "" if server is None else f" ({server})" if server in ("hosts", "static") \
            else f" @{server}"
        return f"{d.get('name', '')}{where}"
    if phase.name in ("connect", "proxy"):
        return join_host_port(str(d.get("address", "")), str(d.get("port", "")))
    if phase.name == "tls":
        return str(d.get("server_name", ""))
    if phase.name == "tls-setup":
        return f"trust: {os.path.basename(str(d.get('trust', '')))}"
    if phase.name == "slot-wait":
        return f"{d.get('live', '?')}/{d.get('limit', '?')} sockets open"
    if phase.name == "starttls":
        return str(d.get("protocol", ""))
    if phase.name == "proxy-header":
        return str(d.get("header", ""))
    if phase.name == "first-byte" and "bytes" in d:
        return f"{d['bytes']} bytes"
    return ""


class WaterfallRow(Record, frozen=True):
    """One line of a waterfall: a phase, or a stretch of the run no phase covers.

    ``start_ms`` is relative to the command's clock (``cli-start-up`` is negative: it came
    before). ``counted_ms`` is the part of the run only this row accounts for: less than
    ``duration_ms`` for a phase in parallel with an earlier one (happy eyeballs), so the
    counted rows add up to the total.
    """

    phase: str  # the core's phase name, or STARTUP, SETUP, TRANSFER, OTHER, TOTAL
    what: str
    start_ms: float
    duration_ms: float
    counted_ms: float
    outcome: str  # "ok", an error kind, "eof"/"none" (first byte); "" for the rest
    remainder: bool = False

    @property
    def label(self) -> str:
        if self.remainder or self.phase == TOTAL:
            return _REMAINDER_LABELS[self.phase][0]
        return _LABELS.get(self.phase, self.phase)

    @property
    def parallel(self) -> bool:
        return self.counted_ms < self.duration_ms - 0.0005

    def line(self) -> str:
        text = (f"{self.label:<17} {self.what:<28} {self.start_ms:9.3f} ms "
                f"+{self.duration_ms:9.3f} ms  {self.outcome}").rstrip()
        if self.parallel:
            text += f"  (in parallel: {self.counted_ms:.3f} ms counted)"
        return text


def _phase_row(phase: Phase, origin_ns: int, counted_ns: int | None = None) -> WaterfallRow:
    duration_ns = (phase.end_ns or phase.start_ns) - phase.start_ns
    return WaterfallRow(phase.name, _what(phase), round(phase.offset_ms(origin_ns), 3),
                        round(duration_ns / 1e6, 3),
                        round((duration_ns if counted_ns is None else counted_ns) / 1e6, 3),
                        phase.outcome)


def _remainder_row(name: str, start_ns: int, duration_ns: int, origin_ns: int) -> WaterfallRow:
    return WaterfallRow(name, _REMAINDER_LABELS[name][1], round((start_ns - origin_ns) / 1e6, 3),
                        round(duration_ns / 1e6, 3), round(duration_ns / 1e6, 3), "", True)


class Waterfall:
    """A run's waterfall, told in order as the run goes: :meth:`take` the rows finished so
    far (at connect time, say), :meth:`finish` at the end for the rest and the total.

    Every nanosecond from the process start (or the clock's origin where the system does
    not say when the process started) to the end is in exactly one row's ``counted_ms``.
    """

    def __init__(self, origin_ns: int) -> None:
        self.origin_ns = origin_ns
        self.rows: list[WaterfallRow] = []
        self.end_ns: int | None = None
        self._started_ns: int | None = None
        self._covered_ns = origin_ns  # everything before this is in a row
        self._taken: set[int] = set()  # id() of the phases already in a row
        self._last_phase = ""
        self._small_gaps_ns = 0

    def take(self, phases: Sequence[Phase]) -> list[WaterfallRow]:
        """The rows for the phases finished since the last call, each after the uncovered
        stretch before it (cli start-up and setup come with the first call)."""
        rows: list[WaterfallRow] = []
        if self._started_ns is None:
            started = process_started_ns()
            self._started_ns = started if started is not None and started < self.origin_ns \
                else self.origin_ns
            if self._started_ns < self.origin_ns:
                rows.append(_remainder_row(STARTUP, self._started_ns,
                                           self.origin_ns - self._started_ns, self.origin_ns))
        done = [p for p in phases if p.end_ns is not None and id(p) not in self._taken]
        for phase in sorted(done, key=lambda p: p.start_ns):
            assert phase.end_ns is not None
            self._taken.add(id(phase))
            rows += self._gap_before(phase.start_ns)
            counted = max(0, phase.end_ns - max(self._covered_ns, phase.start_ns))
            rows.append(_phase_row(phase, self.origin_ns, counted))
            self._covered_ns = max(self._covered_ns, phase.end_ns)
            self._last_phase = phase.name
        self.rows += rows
        return rows

    def finish(self, phases: Sequence[Phase], end_ns: int | None = None) -> list[WaterfallRow]:
        """The rows left, the ``other`` row (small stretches, and the time after the last
        phase) and the ``total`` row. Unfinished phases count as uncovered time."""
        rows = self.take(phases)
        taken = len(rows)
        self.end_ns = time.perf_counter_ns() if end_ns is None else end_ns
        tail_ns = max(0, self.end_ns - self._covered_ns)
        rows.append(_remainder_row(OTHER, self._covered_ns, self._small_gaps_ns + tail_ns,
                                   self.origin_ns))
        assert self._started_ns is not None
        total_ns = self.end_ns - self._started_ns
        rows.append(WaterfallRow(TOTAL, "", round((self._started_ns - self.origin_ns) / 1e6, 3),
                                 round(total_ns / 1e6, 3), round(total_ns / 1e6, 3), ""))
        self.rows += rows[taken:]  # take() has kept its own
        return rows

    def _gap_before(self, start_ns: int) -> list[WaterfallRow]:
        gap_ns = start_ns - self._covered_ns
        if gap_ns <= 0:
            return []
        name = SETUP if not self._last_phase else TRANSFER \
            if self._last_phase == "first-byte" else OTHER
        if name == OTHER and gap_ns < SMALL_GAP_NS:
            self._small_gaps_ns += gap_ns
            return []
        return [_remainder_row(name, self._covered_ns, gap_ns, self.origin_ns)]

    def event_fields(self) -> dict[str, object]:
        """The ``timing`` event: the total and every row, the numbers the waterfall shows."""
        total = next((row for row in self.rows if row.phase == TOTAL), None)
        return {"total_ms": total.duration_ms if total is not None else None,
                "rows": [values(row) for row in self.rows if row.phase != TOTAL]}


def row_lines(rows: Sequence[WaterfallRow]) -> list[str]:
    """The plain rendering: ``phase  what  start  +duration  outcome`` per row."""
    return [row.line() for row in rows]


def waterfall_lines(phases: Sequence[Phase], origin_ns: int) -> list[str]:
    """``phase  what  start  +duration  outcome`` per finished phase, in start order."""
    return [_phase_row(phase, origin_ns).line()
            for phase in sorted(phases, key=lambda p: p.start_ns) if phase.end_ns is not None]


def render_waterfall(console: Console, phases: Sequence[Phase], origin_ns: int) -> None:
    """An httpstat-style bar per phase, scaled to the whole run."""
    done = sorted((p for p in phases if p.end_ns is not None), key=lambda p: p.start_ns)
    render_rows(console, [_phase_row(phase, origin_ns) for phase in done])


def render_rows(console: Console, rows: Sequence[WaterfallRow],
                span_ms: tuple[float, float] | None = None) -> None:
    """Waterfall rows with a bar each, scaled to ``span_ms`` (first start, last end; by
    default the rows' own). Stretches no phase covers are dim; the total has no bar."""
    from rich.table import Table
    from rich.text import Text

    if not rows:
        return
    timed = [row for row in rows if row.phase != TOTAL] or list(rows)
    first, last = span_ms or (min(row.start_ms for row in timed),
                              max(row.start_ms + row.duration_ms for row in timed))
    scale = (last - first) or 1.0
    width = 30
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for column in ("phase", "what", "start", "duration", ""):
        table.add_column(column, justify="right" if column in ("start", "duration") else "left")
    for row in rows:
        bar = Text("")
        if row.phase != TOTAL:
            left = max(0, int((row.start_ms - first) / scale * width))
            length = max(1, int(row.duration_ms / scale * width))
            colour = "dim" if row.remainder else "green" if row.outcome in ("ok", "eof") \
                else "yellow" if row.outcome in ("cancelled", "none") else "red"
            bar = Text(" " * left) + Text("█" * length, style=colour)
        duration = f"{row.duration_ms:.2f} ms" + (" ∥" if row.parallel else "")
        table.add_row(row.label, row.what, f"{row.start_ms:.2f} ms", duration, bar)
    console.print(table)


def _resumed(report: TLSReport) -> str:
    if report.session_reused:
        return "yes"
    return "no (session offered, server declined)" if report.session_offered else "no"


def _chain_verdict(report: TLSReport) -> str:
    """``complete``, ``INCOMPLETE (<problem>)`` or ``unknown (<why>)``; a complete chain
    keeps its notes (extra or out-of-order certificates) in parentheses."""
    if report.chain_complete is None:
        return "unknown (resumed session: no chain was sent)" if report.session_reused \
            else "unknown (no certificate was sent)"
    verdict = "complete" if report.chain_complete else "INCOMPLETE"
    if not report.chain_problem:
        return verdict
    return f"{verdict} ({report.chain_problem.removeprefix('incomplete chain: ')})"


def tls_lines(report: TLSReport) -> list[str]:
    """The TLS report as ``key: value`` lines (the plain rendering)."""
    v = report.verification
    lines = [
        f"tls version: {report.version}",
        f"tls cipher: {report.cipher}" + (f" ({report.cipher_bits} bits)"
                                          if report.cipher_bits else ""),
        f"tls alpn: {report.alpn or '-'}",
        f"tls sni: {report.sni or '-'}",
        f"tls resumed: {_resumed(report)}",
        "tls verify: " + ("ok" if v.verified else f"FAILED ({v.verify_code}: {v.reason})"),
    ]
    if v.hostname_matched is not None:
        lines.append(f"tls hostname match: {'yes' if v.hostname_matched else 'no'}")
    if v.pin_matched is not None:
        lines.append(f"tls pin: {'matched' if v.pin_matched else 'NO MATCH'}")
    for depth, cert in enumerate(report.chain):
        lines += [
            f"cert[{depth}] subject: {cert.subject}",
            f"cert[{depth}] issuer: {cert.issuer}",
            f"cert[{depth}] san: {', '.join(cert.sans) or '-'}",
            f"cert[{depth}] valid: {cert.not_before:%Y-%m-%d} .. {cert.not_after:%Y-%m-%d} "
            f"({cert.days_left} days left)",
            f"cert[{depth}] key: {cert.key_type}"
            + (f" {cert.key_bits} bits" if cert.key_bits else "")
            + (f" {cert.curve}" if cert.curve else ""),
            f"cert[{depth}] signature: {cert.signature_algorithm}",
            f"cert[{depth}] pin: {cert.spki_sha256}",
        ]
    # After the certificates, so the facts about the chain follow the chain they judge.
    lines += [f"tls chain: {_chain_verdict(report)}",
              f"tls ocsp stapling: {_yes(report.ocsp_stapled)} ({report.ocsp_note})"]
    return lines


def session_line(session: ssl.SSLSession | None, version: str) -> str:
    """What the first connection left to resume with (``--resume``)."""
    if session is None:
        return "tls session: none"
    if session.has_ticket:
        return f"tls session: {version} ticket (lifetime {session.ticket_lifetime_hint} s)"
    if version == "TLSv1.3":
        return "tls session: no ticket (the server sent no TLS 1.3 session ticket)"
    return f"tls session: {version} session id (no ticket)"


def resumption_lines(full_ms: float, second_ms: float, second: TLSReport) -> list[str]:
    """Full vs second handshake of a resumption test (``--resume``), and the verdict."""
    lines = [f"tls handshake full: {full_ms:.3f} ms"]
    if second.session_reused:
        ratio = ""
        if full_ms >= second_ms > 0:
            ratio = f" ({full_ms / second_ms:.1f}x faster)"
        elif second_ms > full_ms > 0:  # one sample each: noise can win
            ratio = f" ({second_ms / full_ms:.1f}x slower)"
        lines += [f"tls handshake resumed: {second_ms:.3f} ms{ratio}",
                  f"server resumed the session ({second.version})"]
    else:
        why = "" if second.session_offered else " (no session to offer)"
        lines += [f"tls handshake second: {second_ms:.3f} ms",
                  f"server did not resume: full handshake{why}"]
    return lines


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def dialogue_lines(report: DialogueReport, how: str) -> list[str]:
    """What a STARTTLS server advertised, one ``key: value`` fact per line."""
    return [
        f"protocol: {report.protocol} ({how})",
        f"greeting: {report.greeting or '-'}",
        f"starttls offered: {_yes(report.starttls_offered)}",
        f"capabilities before tls: {', '.join(report.capabilities_before or ()) or '-'}",
        f"capabilities after tls: {', '.join(report.capabilities_after or ()) or '-'}",
        f"plaintext login before tls: {_yes(report.plaintext_login_offered)}",
        f"upgrade reply: {report.upgrade_reply or '-'}",
        *(f"{key}: {value}" for key, value in report.details.items()),
    ]


def _expiry_style(days_left: int) -> str:
    return "red" if days_left < 7 else "yellow" if days_left < 30 else "green"


def _chain_style(report: TLSReport) -> str:
    if report.chain_complete is None:
        return "dim"
    if report.chain_complete:
        return "yellow" if report.chain_problem else "green"
    # Incomplete: red when it broke verification here too; yellow when an intermediate in
    # the local trust store hid it (other clients will still fail).
    return "yellow" if report.verification.verified else "red"


def render_tls(console: Console, report: TLSReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    v = report.verification
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    verdict = "[green]verified[/]" if v.verified else \
        f"[red]NOT verified[/] ({v.verify_code}: {v.reason})"
    rows: list[tuple[str, str]] = [
        ("TLS", f"{report.version}  {report.cipher}"),
        ("ALPN", report.alpn or "-"),
        ("SNI", report.sni or "-"),
        ("resumed", _resumed(report)),
        ("verification", verdict),
    ]
    if v.pin_matched is not None:
        rows.append(("pin", "[green]matched[/]" if v.pin_matched else "[red]no match[/]"))
    for depth, cert in enumerate(report.chain):
        style = _expiry_style(cert.days_left)
        rows += [
            (f"cert {depth}", cert.subject),
            ("  issuer", cert.issuer),
            ("  SAN", ", ".join(cert.sans) or "-"),
            ("  expires", f"[{style}]{cert.not_after:%Y-%m-%d} ({cert.days_left} days)[/]"),
            ("  key", f"{cert.key_type} {cert.key_bits or ''} {cert.curve or ''}".strip()),
            ("  signature", cert.signature_algorithm),
            ("  pin", cert.spki_sha256),
        ]
    rows += [
        ("chain", f"[{_chain_style(report)}]{escape(_chain_verdict(report))}[/]"),
        ("OCSP stapling", f"{_yes(report.ocsp_stapled)} [dim]({escape(report.ocsp_note)})[/]"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
