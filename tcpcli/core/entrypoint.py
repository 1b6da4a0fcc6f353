"""Tunnel entry points (``--via HOST:PORT``): reach a private target the way the brief's
Worker does, through a forwarder, with the target still in charge.

A local forwarder (``cloudflared access tcp``, ``ssh -L``, ``kubectl port-forward``) listens
on this machine and carries the bytes to a target that may exist only behind it. The
socket dials the entry point; everything else stays the logical target's:

* the policy judges the target as it would a direct dial (by name, then by the addresses
  the name has here); a name that does not resolve here — often the point of a tunnel —
  is judged by its name alone, and the run says so;
* SNI, certificate verification, STARTTLS auto-detection and reports use the target;
* the entry point is allowed because the user named it as one, for this run only: it is
  never judged by the policy (a loopback forwarder is the usual case).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, NamedTuple

from tcpcli.core.address import join_host_port, normalize_host, split_target
from tcpcli.core.destination import check_name_only, happy_eyeballs_order
from tcpcli.core.errors import ResolveError

if TYPE_CHECKING:
    from tcpcli.core.destination import Destination, IPAddress
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.timing import PhaseClock


class EntryPoint(NamedTuple):
    """Where the bytes go: ``host`` (a name or literal) and ``port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return join_host_port(self.host, self.port)


def parse_entry_point(text: str) -> EntryPoint:
    """``HOST:PORT`` or ``[V6]:PORT``; ValueError saying what is accepted."""
    try:
        host, port = split_target(text.strip())
        normalize_host(host)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid entry point {text!r}: {exc}; give HOST:PORT of the local "
                         "forwarder (e.g. 127.0.0.1:15432)") from None
    return EntryPoint(host, port)


async def check_behind(invocation: Invocation, hostname: str, port: int, *, family: int,
                       target: str, clock: PhaseClock | None) -> tuple[Destination, str | None]:
    """The logical target judged as a direct dial would be, and, when its name does not
    resolve here, the sentence that says it was judged by its name alone."""
    try:
        destination = await invocation.check_destination(hostname, port, family=family,
                                                         target=target, clock=clock)
        return destination, None
    except ResolveError as exc:
        destination = check_name_only(hostname, port, policy=invocation.policy, target=target)
        reason = str(exc).removeprefix(f"cannot resolve {destination.host.name}: ")
        return destination, (f"{destination.host.name} does not resolve here ({reason}): "
                             "the policy judged it by its name alone")


async def entry_addresses(invocation: Invocation, entry: EntryPoint, *,
                          family: int = socket.AF_UNSPEC,
                          clock: PhaseClock | None = None) -> list[IPAddress]:
    """The entry point's addresses in the order to try: a literal as it is, a name as the
    invocation's resolver answers (timed as a ``resolve`` phase). Never judged: the user
    named this address as the way in."""
    host = normalize_host(entry.host)
    if host.literal is not None:
        return happy_eyeballs_order((host.literal,), family)
    if clock is None:
        resolution = await invocation.resolver.resolve(host.name, family=family)
    else:
        with clock.phase("resolve", name=host.name) as phase:
            resolution = await invocation.resolver.resolve(host.name, family=family)
            phase.detail["server"] = resolution.server
    return happy_eyeballs_order(resolution.addresses, family)
