"""What a scan probes: ``--ports`` lists, targets (names, literals, CIDR blocks), the guard
that asks for ``--yes`` before a very large expansion, and :class:`HostPlan`, one address
with its verdicts. Nothing here resolves or dials: the scanner turns targets into plans
through ``core.destination``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Final, NamedTuple

from tcpcli.core.address import normalize_host, parse_port, split_target
from tcpcli.core.destination import Destination, IPAddress
from tcpcli.core.errors import AddressError
from tcpcli.core.policy import Decision
from tcpcli.data.services import service_port, top_ports
from tcpcli.record import Record

IPNetwork = IPv4Network | IPv6Network

#: Scans larger than this many probes need an explicit confirmation (``--yes``).
GUARD_PROBES: Final = 1_000_000
#: A single CIDR block larger than this many addresses needs confirmation too.
GUARD_ADDRESSES: Final = 65_536


# --------------------------------------------------------------------------- ports


def parse_ports(spec: str) -> list[int]:
    """``22,80-90,ssh,redis`` -> sorted, deduplicated ports; ``-`` is all of 1-65535.

    Ranges may be open-ended (``-1024``, ``60000-``). ValueError says what is wrong.
    """
    ports: set[int] = set()
    for raw in spec.split(","):
        item = raw.strip()
        if item == "":
            raise ValueError(f"empty entry in port list {spec!r}")
        if item == "-":
            return list(range(1, 65536))
        if "-" in item and not item[0].isalpha():
            low_text, _, high_text = item.partition("-")
            low = parse_port(low_text) if low_text else 1
            high = parse_port(high_text) if high_text else 65535
            if low > high:
                raise ValueError(f"port range {item!r} runs backwards")
            ports.update(range(low, high + 1))
        elif item.isascii() and item.isdigit():
            ports.add(parse_port(item))
        else:
            port = service_port(item)
            if port is None:
                raise ValueError(f"unknown service name {item!r}: give a port number")
            ports.add(port)
    return sorted(ports)


def choose_ports(specs: Iterable[str], top: int | None) -> list[int]:
    """The union of every ``--ports`` list and ``--top N``; default: the top 100."""
    specs = list(specs)
    if not specs and top is None:
        top = 100
    ports: set[int] = set(top_ports(top)) if top else set()
    for spec in specs:
        ports.update(parse_ports(spec))
    return sorted(ports)


# --------------------------------------------------------------------------- targets


class Target(NamedTuple):
    """One command-line or file target: a name, a literal, or a CIDR block; maybe a port."""

    text: str
    host: str = ""
    literal: IPAddress | None = None
    network: IPNetwork | None = None
    port: int | None = None

    @property
    def address_count(self) -> int:
        if self.network is not None:
            return int(self.network.num_addresses)
        return 1


def parse_target(text: str) -> Target:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port``, ``v6``, ``CIDR``; AddressError else."""
    raw = text.strip()
    if raw == "":
        raise AddressError("empty target")
    if "%" in raw:
        raise AddressError(f"{raw!r}: IPv6 zone ids (%) are not supported")
    if "/" in raw:
        try:
            network = ip_network(raw, strict=False)
        except ValueError as exc:
            raise AddressError(f"{raw!r} is not a CIDR block: {exc}") from None
        return Target(raw, str(network), network=network)
    port: int | None = None
    host = raw
    try:
        if raw.startswith("[") or raw.count(":") == 1:
            host, port = split_target(raw)
        elif raw.count(":") > 1:
            host = raw  # a bare IPv6 address
    except ValueError as exc:
        raise AddressError(str(exc)) from None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    normalized = normalize_host(host)
    return Target(raw, normalized.name, literal=normalized.literal, port=port)


def read_target_lines(lines: Iterable[str]) -> Iterator[str]:
    """Targets from a file: one or more per line (space separated), ``#`` comments."""
    for line in lines:
        content = line.split("#", 1)[0]
        yield from content.split()


def deal(ports: list[int], index: int, of: int, dealt: int) -> list[int]:
    """Share ``index`` of ``of`` of ``ports``, when ``dealt`` pairs went before them: the
    pairs of a scan dealt round-robin, so that every pair falls in exactly one share and
    the shares differ by at most one pair however the targets' port lists fall."""
    return ports[(index - dealt) % of::of]


def estimate_probes(targets: Iterable[Target], ports: int) -> int:
    return sum(t.address_count * (1 if t.port else ports) for t in targets)


def guard(targets: Iterable[Target], ports: int) -> str | None:
    """Why this expansion is too large to run unconfirmed, or None."""
    total = 0
    for target in targets:
        if target.address_count > GUARD_ADDRESSES:
            return (f"{target.text} has {target.address_count:,} addresses "
                    f"(more than {GUARD_ADDRESSES:,})")
        total += target.address_count * (1 if target.port else ports)
    if total > GUARD_PROBES:
        return f"this scan would make {total:,} probes (more than {GUARD_PROBES:,})"
    return None


# --------------------------------------------------------------------------- plans


class HostPlan(Record):
    """One address to probe, with its destination's verdicts (the user's policy and a
    Worker's), judged once for the whole host by ``core.destination``."""

    host: str
    address: IPAddress | None  # None: refused before DNS, nothing to dial
    ports: list[int]
    destination: Destination
    address_text: str = ""
    version: int = 0  # 4 or 6; 0 when there is no address

    def __post_init__(self) -> None:
        if self.address is not None:
            self.address_text, self.version = str(self.address), self.address.version

    def judge(self, port: int) -> Decision:
        return self.destination.verdict(port)

    def workers(self, port: int) -> Decision:
        return self.destination.workers(port)
