"""Human renderings of the core's results: the timing waterfall and the TLS report.

Plain text (stable, greppable: one fact per line) when piped; Rich on a terminal. Nothing
here touches a socket; callers pass finished results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tcpcli.core.address import join_host_port
from tcpcli.core.timing import Phase

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
    "starttls": "starttls",
    "tls-setup": "tls setup",
    "tls": "tls handshake",
    "first-byte": "first byte",
}


def _what(phase: Phase) -> str:
    d = phase.detail
    if phase.name == "resolve":
        return str(d.get("name", ""))
    if phase.name in ("connect", "proxy"):
        return join_host_port(d.get("address", ""), d.get("port", ""))
    if phase.name == "tls":
        return str(d.get("server_name", ""))
    if phase.name == "tls-setup":
        return f"trust: {os.path.basename(str(d.get('trust', '')))}"
    if phase.name == "slot-wait":
        return f"{d.get('live', '?')}/{d.get('limit', '?')} sockets open"
    if phase.name == "starttls":
        return str(d.get("protocol", ""))
    return ""


def waterfall_lines(phases: Sequence[Phase], origin_ns: int) -> list[str]:
    """``phase  what  start  +duration  outcome`` per phase, in start order."""
    lines = []
    for phase in sorted(phases, key=lambda p: p.start_ns):
        if phase.duration_ms is None:
            continue
        lines.append(
            f"{_LABELS.get(phase.name, phase.name):<17} {_what(phase):<28} "
            f"{phase.offset_ms(origin_ns):9.3f} ms +{phase.duration_ms:9.3f} ms  {phase.outcome}"
        )
    return lines


def render_waterfall(console: Console, phases: Sequence[Phase], origin_ns: int) -> None:
    """An httpstat-style bar per phase, scaled to the whole run."""
    from rich.table import Table
    from rich.text import Text

    done = [p for p in sorted(phases, key=lambda p: p.start_ns) if p.duration_ms is not None]
    if not done:
        return
    end_ms = max(p.offset_ms(origin_ns) + (p.duration_ms or 0) for p in done) or 1.0
    width = 30
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    for column in ("phase", "what", "start", "duration", ""):
        table.add_column(column, justify="right" if column in ("start", "duration") else "left")
    for phase in done:
        start = phase.offset_ms(origin_ns)
        duration = phase.duration_ms or 0.0
        left = int(start / end_ms * width)
        length = max(1, int(duration / end_ms * width))
        colour = "green" if phase.outcome == "ok" else "red" if phase.outcome != "cancelled" \
            else "yellow"
        bar = Text(" " * left) + Text("█" * length, style=colour)
        table.add_row(_LABELS.get(phase.name, phase.name), _what(phase), f"{start:.2f} ms",
                      f"{duration:.2f} ms", bar)
    console.print(table)


def _resumed(report: TLSReport) -> str:
    if report.session_reused:
        return "yes"
    return "no (session offered, server declined)" if report.session_offered else "no"


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


def render_tls(console: Console, report: TLSReport) -> None:
    from rich.table import Table

    v = report.verification
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    verdict = "[green]verified[/]" if v.verified else \
        f"[red]NOT verified[/] ({v.verify_code}: {v.reason})"
    rows: list[tuple[str, Any]] = [
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
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
