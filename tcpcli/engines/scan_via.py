"""``probe --via`` / ``--via-map``: ports of one logical target, each behind its own tunnel
entry point (``ssh -L 15432:db:5432``, ``cloudflared access tcp``, ``kubectl
port-forward``).

A forwarder reaches one port of one host, so each port has its entry point, and each is
probed through the core's one checked path (:func:`tcpcli.core.socket.connect` with
``via``): the logical target is judged (by name alone where it does not resolve here),
a refused one is never dialed, and the entry point alone is dialed, through the connector.
A forwarder accepts before it reaches the far side, so "open" means the forwarder answered;
with ``banner`` the row also says what the far side sent first, the one sign it was
reached. No click, no rich: the CLI renders the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tcpcli.data.services import port_name
from tcpcli.engines.scan_results import PortState, ProbeResult, ScanOptions, no_answer_reason

if TYPE_CHECKING:
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.socket import Socket

#: The error kinds a port's row shows as its state (anything else fails the target).
_STATES = {"refused": PortState.CLOSED, "timeout": PortState.FILTERED,
           "unreachable": PortState.UNREACHABLE, "blocked": PortState.BLOCKED}


async def probe_via(invocation: Invocation, host: str, entries: Mapping[int, str],
                    options: ScanOptions, on_result: Callable[[ProbeResult], None]) -> None:
    """Probe ``host``'s ports, each through ``entries[port]`` ("host:port"), at most
    ``options.concurrency`` at once (and the invocation's socket cap)."""
    import anyio

    limiter = anyio.CapacityLimiter(max(1, min(options.concurrency, len(entries))))

    async def one(port: int, entry: str) -> None:
        async with limiter:
            on_result(await _probe_port(invocation, host, port, entry, options))

    async with anyio.create_task_group() as tg:
        for port, entry in sorted(entries.items()):
            tg.start_soon(one, port, entry)


async def _probe_port(invocation: Invocation, host: str, port: int, entry: str,
                      options: ScanOptions) -> ProbeResult:
    import time

    import anyio

    from tcpcli.core.address import join_host_port
    from tcpcli.core.destination import WORKERS_POLICY, judge_before_dns
    from tcpcli.core.errors import PolicyError, TcpcliError
    from tcpcli.core.socket import connect

    workers = judge_before_dns(host, [port], policy=WORKERS_POLICY).workers(port)
    row = ProbeResult(host=host, address=entry, port=port, state=PortState.OPEN,
                      reason="", service=port_name(port), workers_allowed=workers.allowed,
                      workers_rule=workers.rule, workers_reason=workers.reason, via=entry)
    sock = connect(join_host_port(host, port), via=entry, invocation=invocation,
                   connect_timeout=options.timeout)
    started = time.monotonic()
    try:
        await sock.opened
    except PolicyError as exc:
        row.state, row.reason = PortState.BLOCKED, str(exc)
        row.rule, row.lift = exc.rule, exc.lift
        return row
    except TcpcliError as exc:
        state = _STATES.get(str(exc.kind))
        if state is None:
            raise
        row.state = state
        row.reason = no_answer_reason(options.timeout) if state is PortState.FILTERED \
            else f"{exc.kind} at the entry point"
        return row
    row.latency_ms = (time.monotonic() - started) * 1000
    row.reason = "the entry point accepted"
    try:
        if options.kernel_facts:
            row.tcp = sock.tcp_info()
        if options.banner:
            row.banner = await _first_bytes(sock, options.banner_wait)
            if row.banner is not None:
                row.reason = "the entry point accepted; the far side spoke"
    finally:
        with anyio.CancelScope(shield=True):
            await sock.abort()
    return row


async def _first_bytes(sock: Socket, wait: float) -> str | None:
    """What the far side says first within ``wait`` (printable), None when nothing."""
    import anyio

    from tcpcli.core.errors import TcpcliError
    from tcpcli.protocols.base import printable

    with anyio.move_on_after(wait):
        try:
            data = await sock.readable.receive(4096)
        except (anyio.EndOfStream, TcpcliError):
            return None
        return printable(data) if data else None
    return None
