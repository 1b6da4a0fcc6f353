"""``tcpcli config check --reach``: is each named target's tunnel entry point up?

A target reached ``via`` a local forwarder (``cloudflared access tcp``, ``ssh -L``,
``kubectl port-forward``) is only as reachable as that forwarder. The check dials each
distinct entry point once, a TCP connect and nothing else (no byte is sent, the target
behind it is never dialed), through the core's connector with happy eyeballs, within a
timeout. Entry points are never judged by the policy: the file names them as the way in,
as ``--via`` does on the command line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tcpcli.cli.configmodel import Target
    from tcpcli.core.errors import TcpcliError

#: How long one entry point may take to accept: a local forwarder answers at once.
REACH_TIMEOUT = 2.0


@dataclass
class Reach:
    """One entry point's answer, and the targets that go through it."""

    via: str
    targets: list[str]
    connect_ms: float | None = None  # None: it did not accept
    error: TcpcliError | None = None

    @property
    def up(self) -> bool:
        return self.error is None

    def line(self) -> str:
        names = ", ".join(f"@{name}" for name in self.targets)
        if self.error is None:
            return f"{self.via} (via of {names}): up, accepted in {self.connect_ms:.2f} ms"
        return (f"{self.via} (via of {names}): down, {self.error}; start its forwarder "
                "(cloudflared access tcp, ssh -L, kubectl port-forward) first")


def entry_points(targets: Mapping[str, Target]) -> dict[str, list[str]]:
    """Each distinct ``via`` of the file's targets, with the targets behind it."""
    found: dict[str, list[str]] = {}
    for target in targets.values():
        setting = target.settings.get("via")
        if setting is not None:
            found.setdefault(str(setting.value), []).append(target.name)
    return found


def reach_all(targets: Mapping[str, Target], *, backend: str = "asyncio") -> list[Reach]:
    """Dial every entry point (one at a time: a handful of local connects)."""
    import anyio

    reaches = [Reach(via, names) for via, names in entry_points(targets).items()]
    if reaches:
        anyio.run(_reach_each, reaches, backend=backend)
    return reaches


async def _reach_each(reaches: list[Reach]) -> None:
    import anyio

    from tcpcli.core.connect import ConnectOptions, dial
    from tcpcli.core.entrypoint import entry_addresses, parse_entry_point
    from tcpcli.core.errors import ConnectTimeoutError, TcpcliError
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.timing import PhaseClock

    invocation = Invocation(max_sockets=None)
    options = ConnectOptions(connect_timeout=REACH_TIMEOUT)
    for reach in reaches:
        entry = parse_entry_point(reach.via)  # (config check validated it)
        started = time.perf_counter()
        try:
            with anyio.fail_after(REACH_TIMEOUT):
                addresses = await entry_addresses(invocation, entry)
                dialed = await dial(addresses, entry.port, connector=invocation.connector,
                                    slots=invocation.slots, clock=PhaseClock(),
                                    options=options, target=reach.via)
        except TimeoutError:
            reach.error = ConnectTimeoutError(
                f"no answer within {REACH_TIMEOUT:g} s", target=reach.via, port=entry.port)
            continue
        except TcpcliError as exc:
            reach.error = exc
            continue
        reach.connect_ms = (time.perf_counter() - started) * 1000
        invocation.slots.release(dialed.slot)
        await anyio.aclose_forcefully(dialed.stream)
