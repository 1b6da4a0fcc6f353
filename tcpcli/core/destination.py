"""Name or address -> the addresses that may be dialed: the one checked path.

Every engine learns where it may dial here and nowhere else: ``Socket`` (connect, starttls,
the library), probe's scanner (both paths), bench and throughput. The steps, in order:

1. Normalize the host the way the operating system would dial it (IDNA, one trailing dot,
   legacy IPv4 spellings such as ``0x7f.1``): ``address.normalize_host``.
2. Judge it **before DNS** (ports, loopback and metadata names, deny entries, a literal in
   any spelling). A host refused for every port asked about is never resolved, so not even
   a DNS query leaves for it.
3. Resolve **once** (the system's view or ``--resolver``), timed as the ``resolve`` phase.
4. Judge **every** answer, and the IPv4 addresses embedded in IPv6 ones: one blocked answer
   refuses the name (a rebinding name cannot smuggle in a second, blocked address).
5. Hand out the checked literals. Engines dial exactly these through the ``Connector``,
   with the original name kept for SNI and certificate verification, so a name is never
   resolved a second time between the check and the dial.

A refusal raises :class:`PolicyError` naming the rule, what a Worker would get and the
option that lifts it (``policy.raise_for``).

Per-port verdicts are computed once per *kind* of port (:class:`PortVerdicts`): a scan of
65,535 ports asks the policy a handful of times, and a bench of a million connects once.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Final

from tcpcli.core.address import NormalizedHost, normalize_host, parse_port
from tcpcli.core.errors import AddressError, ConnectError
from tcpcli.core.policy import Decision, Policy, Profile, raise_for

if TYPE_CHECKING:
    from tcpcli.core.resolve import Resolution, Resolver
    from tcpcli.core.timing import PhaseClock

IPAddress = IPv4Address | IPv6Address

#: What a Worker would be told, whatever the user's own policy: the "would a Worker be
#: allowed?" column of probe.
WORKERS_POLICY: Final = Policy(Profile.WORKERS)


def special_ports(policy: Policy) -> frozenset[int]:
    """Ports whose verdict can differ from any other port's: 0, 25, ``port:N`` entries and
    the ports the bindings declare."""
    ports = {0, 25, *policy.bound_ports}
    for entry in (*policy.allow, *policy.deny):
        text = entry.strip().lower()
        if text.startswith("port:"):
            with contextlib.suppress(ValueError):
                ports.add(parse_port(text[5:]))
    return frozenset(ports)


class PortVerdicts:
    """A policy's verdict per port for one host, computed once for every "ordinary" port
    (all ports but the special ones share one verdict) and once per special port."""

    __slots__ = ("_cache", "_decide", "_generic", "_special")

    def __init__(self, policy: Policy, decide: Callable[[int], Decision]) -> None:
        self._special = special_ports(policy)
        self._decide = decide
        self._generic: Decision | None = None
        self._cache: dict[int, Decision] = {}

    def __call__(self, port: int) -> Decision:
        if port in self._special:
            if port not in self._cache:
                self._cache[port] = self._decide(port)
            return self._cache[port]
        if self._generic is None:
            generic = next(p for p in range(1, 65536) if p not in self._special)
            self._generic = self._decide(generic)
        return self._generic

    def any_allowed(self, ports: Sequence[int]) -> bool:
        """Whether any of ``ports`` is allowed (asking one port of each kind)."""
        return any(self(port).allowed for port in representatives(ports, self._special))


def representatives(ports: Sequence[int], special: frozenset[int]) -> list[int]:
    """Every special port among ``ports`` plus one ordinary one: one port of each verdict."""
    chosen = [p for p in ports if p in special]
    ordinary = next((p for p in ports if p not in special), None)
    return chosen + ([ordinary] if ordinary is not None else [])


class Destination:
    """A host judged by the policy, and (when any port of it may be dialed) resolved once.

    ``addresses`` are the checked literals in the resolver's order, empty when the host was
    refused before DNS for every port asked about. ``verdict(port)`` is the user's policy,
    ``workers(port)`` what Workers' default policy would say. (A plain class: every run
    makes one, and a frozen dataclass costs start-up more to build than all of its uses.)
    """

    __slots__ = ("addresses", "host", "policy", "resolution", "target", "verdict", "workers")

    def __init__(self, host: NormalizedHost, target: str, policy: Policy,
                 addresses: tuple[IPAddress, ...] = (),
                 resolution: Resolution | None = None) -> None:
        self.host, self.target, self.policy = host, target, policy
        self.addresses, self.resolution = addresses, resolution
        self.verdict = PortVerdicts(policy, self._judge(policy))
        self.workers = PortVerdicts(WORKERS_POLICY, self._judge(WORKERS_POLICY))

    def __repr__(self) -> str:
        return (f"Destination(host={self.host!r}, target={self.target!r}, "
                f"addresses={self.addresses!r})")

    def _judge(self, policy: Policy) -> Callable[[int], Decision]:
        host, addresses = self.host, self.addresses
        resolved = host.literal is None and bool(addresses)

        def decide(port: int) -> Decision:
            first = policy.check_name(host, port)
            if not first.allowed or not resolved:
                return first
            return policy.check_resolved(host.name, addresses, port)

        return decide

    @property
    def name(self) -> str:
        """The name to verify a certificate against and to send as SNI: the host as given
        (normalized), or the literal's canonical text."""
        return str(self.host.literal) if self.host.literal is not None else self.host.name

    def require(self, port: int) -> None:
        """Raise :class:`PolicyError` unless ``port`` may be dialed on every address."""
        raise_for(self.verdict(port), target=self.target, port=port)

    def ordered(self, family: int = socket.AF_UNSPEC) -> list[IPAddress]:
        """The checked addresses of ``family`` in RFC 8305 order (IPv6 first, alternating)."""
        return happy_eyeballs_order(self.addresses, family)


def happy_eyeballs_order(addresses: Sequence[IPAddress],
                         family: int = socket.AF_UNSPEC) -> list[IPAddress]:
    """``addresses`` of ``family`` in RFC 8305 order (IPv6 first, alternating)."""
    v6 = [a for a in addresses if a.version == 6 and family != socket.AF_INET]
    v4 = [a for a in addresses if a.version == 4 and family != socket.AF_INET6]
    ordered: list[IPAddress] = []
    for i in range(max(len(v6), len(v4))):
        ordered.extend(group[i] for group in (v6, v4) if i < len(group))
    return ordered


def literal_destination(ip: IPAddress, policy: Policy, target: str | None = None) -> Destination:
    """An address needs no resolution: its destination at once (a scan's CIDR hosts)."""
    return Destination(NormalizedHost(str(ip), ip), target or str(ip), policy, (ip,))


def judge_before_dns(host: str | NormalizedHost, ports: Sequence[int], *, policy: Policy,
                     target: str | None = None) -> Destination:
    """Steps 1 and 2: the host normalized and judged before any DNS. A literal's
    destination is final; a name's has no addresses yet (``verdict`` says whether it is
    worth resolving)."""
    if isinstance(host, NormalizedHost):
        normalized = host
    else:
        try:
            normalized = normalize_host(host)
        except AddressError as exc:
            # Past connect()'s synchronous checks (e.g. SocketAddress("", 80)): Workers
            # rejects `opened` with the proxy error here, not a TypeError.
            shown = target or host
            raise ConnectError(f"cannot connect to {shown}: {exc}", target=shown,
                               port=ports[0] if len(ports) == 1 else None) from exc
    shown = target or normalized.name
    if normalized.literal is not None:
        return Destination(normalized, shown, policy, (normalized.literal,))
    return Destination(normalized, shown, policy)


def _needs_resolving(destination: Destination, ports: Sequence[int]) -> bool:
    return destination.host.literal is None and destination.verdict.any_allowed(ports)


def _resolved(destination: Destination, resolution: Resolution) -> Destination:
    """Steps 3 and 4: the name's answers, each judged by the verdicts."""
    return Destination(destination.host, destination.target, destination.policy,
                       resolution.addresses, resolution)


async def locate(host: str | NormalizedHost, ports: Sequence[int], *, policy: Policy,
                 resolver: Callable[[], Resolver], family: int = socket.AF_UNSPEC,
                 clock: PhaseClock | None = None, timeout: float | None = None,
                 target: str | None = None) -> Destination:
    """Judge ``host`` for ``ports`` and, if any of them may be dialed, resolve it once and
    judge every answer. Refusals are in the verdicts, not raised: a scan reports them per
    port. DNS failures raise the core's ``ResolveError`` family.

    ``resolver`` is called only when a name must be resolved (building a DNS resolver
    reads the system's configuration; literals never need one).
    """
    destination = judge_before_dns(host, ports, policy=policy, target=target)
    if not _needs_resolving(destination, ports):
        return destination
    name = destination.host.name
    if clock is None:
        resolution = await resolver().resolve(name, family=family, timeout=timeout)
    else:
        with clock.phase("resolve", name=name) as phase:
            resolution = await resolver().resolve(name, family=family, timeout=timeout)
            phase.detail["server"] = resolution.server  # who answered: waterfall, event
    return _resolved(destination, resolution)


def _usable(destination: Destination, port: int, family: int) -> Destination:
    destination.require(port)
    if not destination.ordered(family):
        raise ConnectError(f"no address of the requested family for {destination.target}",
                           target=destination.target, port=port)
    return destination


async def check(host: str | NormalizedHost, port: int, *, policy: Policy,
                resolver: Callable[[], Resolver], family: int = socket.AF_UNSPEC,
                clock: PhaseClock | None = None, timeout: float | None = None,
                target: str | None = None) -> Destination:
    """The destination for one port, or raise: :class:`PolicyError` when it is refused,
    ``ResolveError`` when DNS fails, :class:`ConnectError` when no checked address is of
    the requested family (``-4`` with an IPv6 literal). What connect, starttls and bench ask."""
    destination = await locate(host, [port], policy=policy, resolver=resolver, family=family,
                               clock=clock, timeout=timeout, target=target)
    return _usable(destination, port, family)


def check_name_only(host: str | NormalizedHost, port: int, *, policy: Policy,
                    target: str | None = None) -> Destination:
    """A name the policy can judge only as a name (it does not resolve here: a target
    behind a tunnel entry point), or raise :class:`PolicyError`. No address to dial."""
    destination = judge_before_dns(host, [port], policy=policy, target=target)
    destination.require(port)
    return destination


#: A resolver's answer without a DNS query (the hosts file), or None when one is needed.
LocalLookup = Callable[[str, int], "Resolution | None"]


def check_without_query(host: str | NormalizedHost, port: int, *, policy: Policy,
                        lookup: LocalLookup, family: int = socket.AF_UNSPEC,
                        clock: PhaseClock | None = None,
                        target: str | None = None) -> Destination | None:
    """:func:`check` for a destination known without asking DNS (a literal, a hosts-file
    name, or one the policy refuses before DNS), with no event loop; None when a query
    would be needed, before anything was recorded."""
    destination = judge_before_dns(host, [port], policy=policy, target=target)
    if _needs_resolving(destination, [port]):
        start_ns = time.perf_counter_ns()
        resolution = lookup(destination.host.name, family)
        if resolution is None:
            return None
        if clock is not None:
            clock.record("resolve", start_ns, name=destination.host.name,
                         server=resolution.server)
        destination = _resolved(destination, resolution)
    return _usable(destination, port, family)


__all__ = [
    "WORKERS_POLICY",
    "Destination",
    "PortVerdicts",
    "check",
    "check_name_only",
    "check_without_query",
    "happy_eyeballs_order",
    "judge_before_dns",
    "literal_destination",
    "locate",
    "representatives",
    "special_ports",
]
