"""``tcpcli ping``'s text: one line per round and ``ping``'s summary, plain and stable
(``seq=N``, ``time=X ms``, ``min/avg/max/mdev``) so that what people grep for in ``ping``
output works here too. The JSON events carry the same facts (:mod:`tcpcli.cli.ping`)."""

from __future__ import annotations

from collections.abc import Sequence

from tcpcli.engines.ping import PERCENTILES, Attempt, PingConfig, PingStats


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def what(config: PingConfig) -> str:
    """The handshake a round performs, as the header and the summary name it."""
    if config.secure_transport == "on":
        return "tcp + tls handshake"
    if config.secure_transport == "starttls":
        return f"tcp + {config.protocol} starttls + tls handshake"
    return "tcp handshake"


def header_line(config: PingConfig, via: str | None = None) -> str:
    rounds = "until interrupted"
    if config.count is not None:
        rounds = f"{config.count} round" + ("s" if config.count != 1 else "")
    if config.deadline is not None:
        rounds += f", at most {_duration(config.deadline)}"
    shown = config.address + (f" via {via}" if via else "")
    return (f"PING {shown}: {what(config)} every {_duration(config.interval)}, "
            f"timeout {_duration(config.timeout)}, {rounds}")


def attempt_line(attempt: Attempt, *, verbose: bool = False) -> str:
    where = attempt.peer or "-"
    parts = [f"seq={attempt.seq}", where]
    if attempt.ok:
        parts.append(attempt.state)
        if attempt.tls_version:
            parts.append(attempt.tls_version)
        assert attempt.time_ms is not None
        parts.append(f"time={_ms(attempt.time_ms)} ms")
        if attempt.tls_ms is not None and attempt.connect_ms is not None:
            parts.append(f"(connect {_ms(attempt.connect_ms)}, tls {_ms(attempt.tls_ms)})")
    else:
        parts.append(f"{attempt.state}: {attempt.error or attempt.state}")
    if verbose:
        if attempt.resolve_ms is not None:
            how = "resolved" if attempt.resolved else "reused answer"
            parts.append(f"dns={_ms(attempt.resolve_ms)} ms ({how})")
        if attempt.rtt_ms is not None:
            parts.append(f"kernel-rtt={_ms(attempt.rtt_ms)} ms")
        if attempt.cert_days is not None:
            parts.append(f"cert-days={attempt.cert_days}")
    return " ".join(parts)


def change_line(before: Sequence[str], after: Sequence[str]) -> str:
    return f"address change: {', '.join(before)} -> {', '.join(after)}"


def summary_lines(config: PingConfig, stats: PingStats) -> list[str]:
    """``ping``'s closing block: totals, then the timings of the rounds that succeeded."""
    lines = [f"--- {config.address} ping statistics ---",
             f"{stats.sent} sent, {stats.ok} ok, {stats.loss_pct:.1f}% loss, "
             f"time {stats.elapsed_ms:.0f} ms"]
    if stats.failures:
        lines.append("failures: " + ", ".join(f"{kind} {n}" for kind, n in
                                             sorted(stats.failures.items())))
    if stats.address_changes:
        lines.append(f"address changes: {stats.address_changes}")
    latency = stats.latency_ms()
    if latency is not None:
        lines.append("time min/avg/max/mdev = " + "/".join(
            _ms(latency[k]) for k in ("min", "avg", "max", "mdev")) + " ms")
        names = [f"p{p:g}" for p in PERCENTILES]
        lines.append(f"time {'/'.join(names)} = "
                     + "/".join(_ms(latency[n]) for n in names) + " ms")
    return lines


def summary_fields(stats: PingStats) -> dict[str, object]:
    """The ``ping_summary`` event's fields: numbers stay numbers."""
    fields: dict[str, object] = {
        "sent": stats.sent, "ok": stats.ok, "failed": stats.failed,
        "loss_pct": round(stats.loss_pct, 3), "elapsed_ms": round(stats.elapsed_ms, 3),
        "failures": dict(sorted(stats.failures.items())),
        "address_changes": stats.address_changes,
    }
    latency = stats.latency_ms()
    for name, value in (latency or {}).items():
        fields[f"{name}_ms"] = round(value, 6)
    return fields


def attempt_fields(attempt: Attempt) -> dict[str, object]:
    """The ``ping`` event's fields."""
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 6)

    return {
        "seq": attempt.seq, "ok": attempt.ok, "state": attempt.state, "peer": attempt.peer,
        "addresses": list(attempt.addresses), "resolved": attempt.resolved,
        "time_ms": ms(attempt.time_ms), "connect_ms": ms(attempt.connect_ms),
        "tls_ms": ms(attempt.tls_ms), "resolve_ms": ms(attempt.resolve_ms),
        "rtt_ms": ms(attempt.rtt_ms), "tls_version": attempt.tls_version,
        "verified": attempt.verified, "cert_days": attempt.cert_days,
        "error": attempt.error,
    }
