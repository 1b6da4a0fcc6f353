"""Name resolution behind a seam: dnspython with per-query timings and the CNAME chain.

The policy judges the answers, and the core dials one of them: the name is resolved once.
The hosts file is read first, as getaddrinfo would (dnspython alone skips it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Protocol

from tcpcli.core.errors import (
    NameNotFoundError,
    NoAddressError,
    ResolveError,
    ResolverFailureError,
    ResolveTimeoutError,
)

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class QueryTiming:
    qtype: str  # "A" | "AAAA" | "hosts"
    server: str
    elapsed_ms: float
    outcome: str  # "ok" | "nxdomain" | "nodata" | "servfail" | "timeout" | "error"
    answers: int


@dataclass(frozen=True)
class Resolution:
    name: str
    addresses: tuple[IPAddress, ...]
    cname_chain: tuple[str, ...]
    queries: tuple[QueryTiming, ...]
    source: str  # "hosts" | "dns" | "static"
    elapsed_ms: float


class Resolver(Protocol):
    async def resolve(self, name: str, *, family: int = socket.AF_UNSPEC,
                      timeout: float | None = None) -> Resolution: ...


def _qtypes(family: int) -> list[str]:
    if family == socket.AF_INET:
        return ["A"]
    if family == socket.AF_INET6:
        return ["AAAA"]
    return ["AAAA", "A"]


def _wanted(ip: IPAddress, family: int) -> bool:
    return family == socket.AF_UNSPEC or (ip.version == 4) == (family == socket.AF_INET)


def read_hosts(path: str) -> dict[str, list[IPAddress]]:
    table: dict[str, list[IPAddress]] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return table
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            ip = ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        for name in fields[1:]:
            table.setdefault(name.lower().rstrip("."), []).append(ip)
    return table


def parse_server(text: str) -> tuple[str, int]:
    """``ip``, ``ip:port`` or ``[v6]:port`` -> (ip, port); ValueError on anything else."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid resolver {text!r}")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    try:
        ip_address(host)
    except ValueError:
        raise ValueError(f"invalid resolver {text!r}: use an IP address, ip:port or "
                         "[v6]:port") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"invalid resolver port in {whole!r}")
    return int(text)


class DnsResolver:
    """dnspython's async resolver (asyncio or trio, picked by sniffio)."""

    def __init__(self, nameservers: Sequence[str] | None = None, *,
                 hosts_file: str | None = "/etc/hosts", timeout: float = 5.0) -> None:
        self.servers = [parse_server(s) for s in nameservers] if nameservers else None
        self.hosts_file = hosts_file
        self.timeout = timeout
        self._hosts: dict[str, list[IPAddress]] | None = None
        self._resolver: object | None = None

    def _dns(self) -> object:
        if self._resolver is None:
            import dns.asyncresolver
            import dns.nameserver

            if self.servers is None:
                resolver = dns.asyncresolver.Resolver()
            else:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port)
                                        for ip, port in self.servers]
            resolver.lifetime = self.timeout
            self._resolver = resolver
        return self._resolver

    def _server_label(self) -> str:
        if self.servers:
            return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.servers)
        return "system resolver"

    async def resolve(self, name: str, *, family: int = socket.AF_UNSPEC,
                      timeout: float | None = None) -> Resolution:
        import anyio

        start = time.perf_counter_ns()
        key = name.lower().rstrip(".")
        if self.hosts_file is not None:
            if self._hosts is None:
                self._hosts = read_hosts(self.hosts_file)
            hits = [ip for ip in self._hosts.get(key, []) if _wanted(ip, family)]
            if hits:
                elapsed = (time.perf_counter_ns() - start) / 1e6
                return Resolution(key, tuple(dict.fromkeys(hits)), (),
                                  (QueryTiming("hosts", "hosts", elapsed, "ok", len(hits)),),
                                  "hosts", elapsed)
        results: dict[str, tuple[QueryTiming, list[IPAddress], list[str], Exception | None]] = {}

        async def query(qtype: str) -> None:
            results[qtype] = await self._query(key, qtype, timeout)

        async with anyio.create_task_group() as tg:
            for qtype in _qtypes(family):
                tg.start_soon(query, qtype)
        addresses: list[IPAddress] = []
        chain: list[str] = []
        errors: list[Exception] = []
        timings = []
        for qtype in _qtypes(family):
            timing, found, cnames, error = results[qtype]
            timings.append(timing)
            addresses += found
            for cname in cnames:
                if cname not in chain:
                    chain.append(cname)
            if error is not None:
                errors.append(error)
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if addresses:
            return Resolution(key, tuple(dict.fromkeys(addresses)), tuple(chain),
                              tuple(timings), "dns", elapsed)
        raise _worst(errors, key, self._server_label())

    async def _query(self, name: str, qtype: str, timeout: float | None) -> tuple[
            QueryTiming, list[IPAddress], list[str], Exception | None]:
        import dns.exception
        import dns.resolver

        resolver = self._dns()
        server = self._server_label()
        start = time.perf_counter_ns()
        found: list[IPAddress] = []
        cnames: list[str] = []
        error: Exception | None = None
        outcome = "ok"
        try:
            answer = await resolver.resolve(  # type: ignore[attr-defined]
                name, qtype, lifetime=timeout or self.timeout, search=False,
                backend=_backend())
            for rrset in answer.response.answer:
                if rrset.rdtype == dns.rdatatype.CNAME:
                    cnames += [str(r.target).rstrip(".") for r in rrset]
            found = [ip_address(r.address) for r in answer]
        except dns.resolver.NXDOMAIN as exc:
            outcome, error = "nxdomain", exc
        except dns.resolver.NoAnswer as exc:
            outcome, error = "nodata", exc
        except dns.exception.Timeout as exc:
            outcome, error = "timeout", exc
        except dns.resolver.NoNameservers as exc:
            outcome, error = "servfail", exc
        except (dns.exception.DNSException, ValueError, OSError) as exc:
            outcome, error = "error", exc
        elapsed = (time.perf_counter_ns() - start) / 1e6
        return QueryTiming(qtype, server, elapsed, outcome, len(found)), found, cnames, error


def _backend() -> object:
    """dnspython caches the first backend it detects process-wide; ask for the running one
    explicitly, so asyncio and trio runs can follow each other (tests, library users)."""
    import dns.asyncbackend
    import sniffio

    return dns.asyncbackend.get_backend(sniffio.current_async_library())


def _worst(errors: list[Exception], name: str, server: str) -> ResolveError:
    """Name the most telling failure: NXDOMAIN, then failure, then timeout, then no data."""
    import dns.exception
    import dns.resolver

    if any(isinstance(e, dns.resolver.NXDOMAIN) for e in errors):
        return NameNotFoundError(f"cannot resolve {name}: no such name (NXDOMAIN from "
                                 f"{server})", target=name)
    quiet = dns.resolver.NoAnswer | dns.exception.Timeout
    failures = [e for e in errors if not isinstance(e, quiet)]
    if failures:
        return ResolverFailureError(f"cannot resolve {name}: the resolver failed ({server}: "
                                    f"{_short(failures[0])})", target=name)
    if any(isinstance(e, dns.exception.Timeout) for e in errors):
        return ResolveTimeoutError(f"cannot resolve {name}: no answer from {server} in time",
                                   target=name)
    return NoAddressError(f"cannot resolve {name}: the name has no address records "
                          f"(from {server})", target=name)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


class StaticResolver:
    """In-memory answers (tests, the demo): name -> addresses, or an exception to raise."""

    def __init__(self, table: Mapping[str, Sequence[str] | BaseException]) -> None:
        self.table = {k.lower().rstrip("."): v for k, v in table.items()}
        self.asked: list[str] = []

    async def resolve(self, name: str, *, family: int = socket.AF_UNSPEC,
                      timeout: float | None = None) -> Resolution:
        key = name.lower().rstrip(".")
        self.asked.append(key)
        entry = self.table.get(key)
        if entry is None:
            raise NameNotFoundError(f"cannot resolve {key}: no such name (static table)",
                                    target=key)
        if isinstance(entry, BaseException):
            raise entry
        addresses = tuple(ip for ip in (ip_address(a) for a in entry) if _wanted(ip, family))
        if not addresses:
            raise NoAddressError(f"cannot resolve {key}: no address of that family",
                                 target=key)
        return Resolution(key, addresses, (), (QueryTiming("static", "static", 0.0, "ok",
                                                           len(addresses)),), "static", 0.0)


def resolver_from_option(value: str | None) -> Resolver:
    """The CLI's ``--resolver``: None -> the system configuration, else that server."""
    if value is None:
        return DnsResolver()
    return DnsResolver([s.strip() for s in value.split(",") if s.strip()])
