"""Name resolution behind a seam: dnspython with per-query timings and the CNAME chain.

The policy judges the answers and the core dials one of them: a name is resolved once.
``DnsResolver`` reads the hosts file first, as getaddrinfo would (dnspython alone skips it),
then asks for AAAA and A concurrently. Servers named on the command line (``--resolver``)
are asked directly, as ``dig @SERVER`` does: the hosts file is the system resolver's.
Every failure becomes one of the ``ResolveError`` classes, with a one-line message naming
the name and the server; nothing dnspython raises leaves this module.

dnspython is imported on first use (it costs ~70 ms, and literal addresses never need it).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, Protocol

from tcpcli.core.address import join_host_port
from tcpcli.core.errors import (
    NameNotFoundError,
    NoAddressError,
    ResolveError,
    ResolverFailureError,
    ResolveTimeoutError,
)

if TYPE_CHECKING:
    import dns._asyncbackend
    import dns.asyncresolver
    import dns.name
    import dns.resolver

__all__ = [
    "DEFAULT_HOSTS_FILE",
    "DnsResolver",
    "IPAddress",
    "QueryTiming",
    "Resolution",
    "Resolver",
    "StaticResolver",
    "parse_server",
    "read_hosts",
    "resolver_from_option",
]

IPAddress = IPv4Address | IPv6Address

DEFAULT_HOSTS_FILE = "/etc/hosts"

#: What ``QueryTiming.outcome`` can be.
OUTCOMES = ("ok", "nxdomain", "nodata", "servfail", "refused", "timeout", "error")


@dataclass(frozen=True)
class QueryTiming:
    """One question asked (or the hosts file read), timed by its own monotonic clock."""

    qtype: str  # "A" | "AAAA" | "hosts" (StaticResolver: "A" | "AAAA")
    server: str  # "127.0.0.1:5353", "[::1]:53", "hosts", "static"
    elapsed_ms: float
    outcome: str  # one of OUTCOMES
    answers: int


@dataclass(frozen=True)
class Resolution:
    """The addresses a name resolved to, and how."""

    name: str  # lower case, without the trailing dot
    addresses: tuple[IPAddress, ...]  # deduplicated: the AAAA answers, then the A answers
    cname_chain: tuple[str, ...]  # every CNAME target followed, in order; the last is canonical
    queries: tuple[QueryTiming, ...]
    source: str  # "hosts" | "dns" | "static"
    elapsed_ms: float

    @property
    def server(self) -> str:
        """Who answered, as the waterfall and the ``resolve`` event name it: "hosts",
        "static", or the DNS server(s) that answered ("127.0.0.1:5353")."""
        if self.source != "dns":
            return self.source
        answered = [q.server for q in self.queries if q.outcome == "ok"]
        return ", ".join(dict.fromkeys(answered or [q.server for q in self.queries]))


class Resolver(Protocol):
    async def resolve(self, name: str, *, family: int = socket.AF_UNSPEC,
                      timeout: float | None = None) -> Resolution: ...


# -- small helpers ------------------------------------------------------------------------


def _key(name: str) -> str:
    """The lookup key: lower case, one trailing dot ignored."""
    return name.lower().removesuffix(".")


def _show(name: str, limit: int = 80) -> str:
    """A name fit for a one-line message: control characters escaped, length bounded."""
    if not name:
        return "''"
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "…"


def _qtypes(family: int) -> tuple[str, ...]:
    if family == socket.AF_INET:
        return ("A",)
    if family == socket.AF_INET6:
        return ("AAAA",)
    if family == socket.AF_UNSPEC:
        return ("AAAA", "A")  # RFC 8305 §3: AAAA first
    raise ValueError(f"unsupported address family {family!r}")


def _wanted(ip: IPAddress, family: int) -> bool:
    if family == socket.AF_INET:
        return ip.version == 4
    if family == socket.AF_INET6:
        return ip.version == 6
    return True


def _elapsed_ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


# -- the hosts file -----------------------------------------------------------------------


def read_hosts(path: str) -> dict[str, tuple[IPAddress, ...]]:
    """Parse a hosts file: name (lower case, no trailing dot) -> addresses in file order.

    Unreadable files give an empty table; malformed lines are skipped, as libc does.
    """
    table: dict[str, list[IPAddress]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except (OSError, ValueError):
        return {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            ip = ip_address(fields[0].split("%", 1)[0])  # fe80::1%eth0: the scope is dropped
        except ValueError:
            continue
        for name in fields[1:]:
            entries = table.setdefault(_key(name), [])
            if ip not in entries:
                entries.append(ip)
    return {name: tuple(ips) for name, ips in table.items()}


class _HostsFile:
    """The hosts file, re-read when it changes (so an edit counts, as with getaddrinfo)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._table: dict[str, tuple[IPAddress, ...]] = {}

    def lookup(self, key: str) -> tuple[IPAddress, ...]:
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size)
        except (OSError, ValueError):
            stamp = (-1, -1)
        if stamp != self._stamp:
            self._table = read_hosts(self.path) if stamp != (-1, -1) else {}
            self._stamp = stamp
        return self._table.get(key, ())


# -- nameserver addresses -----------------------------------------------------------------


def parse_server(text: str) -> tuple[str, int]:
    """``ip``, ``ip:port``, ``v6`` or ``[v6]:port`` -> (ip, port); ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"invalid resolver {text!r}: use an IP address, ip:port or [v6]:port")
    host, port = text, 53
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid resolver {text!r}: use [v6]:port")
        if rest:
            port = _port(rest[1:], text)
        if ":" not in host:
            raise ValueError(f"invalid resolver {text!r}: brackets are for IPv6 addresses")
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
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise ValueError(f"invalid resolver {whole!r}: the port must be 1-65535")
    return int(text)


# -- the real resolver --------------------------------------------------------------------


@dataclass
class _QueryResult:
    """One DNS query's outcome: its timing, the addresses, the CNAME chain, what failed."""

    timing: QueryTiming
    addresses: list[IPAddress]
    chain: list[str]
    detail: str  # for failures: what went wrong, e.g. "SERVFAIL from 127.0.0.1:5353"


class DnsResolver:
    """dnspython's async resolver, on whichever backend runs (asyncio or trio).

    ``nameservers`` are ``"ip"``, ``"ip:port"`` or ``"[v6]:port"`` strings (``None``: the
    system configuration, /etc/resolv.conf); ``hosts_file`` is read first (``None``
    disables it); ``timeout`` bounds each resolve() (both queries run concurrently).
    """

    def __init__(self, nameservers: Sequence[str] | None = None, *,
                 hosts_file: str | None = DEFAULT_HOSTS_FILE, timeout: float = 5.0) -> None:
        if isinstance(nameservers, str):
            nameservers = [nameservers]
        self.servers: tuple[tuple[str, int], ...] | None = None
        if nameservers is not None:
            self.servers = tuple(parse_server(s) for s in nameservers)
            if not self.servers:
                raise ValueError("no nameservers given (None means the system configuration)")
        self.hosts_file = hosts_file
        self.timeout = _check_timeout(timeout)
        self._hosts = _HostsFile(hosts_file) if hosts_file is not None else None
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._labels: dict[str, str] = {}  # str(dnspython nameserver) -> "ip:port"

    def __repr__(self) -> str:
        servers = "system" if self.servers is None else self.server_label
        return f"DnsResolver({servers}, hosts_file={self.hosts_file!r}, timeout={self.timeout})"

    @property
    def server_label(self) -> str:
        """The servers asked, as messages name them: "127.0.0.1:5353" (comma-separated)."""
        if self._labels:
            return ", ".join(dict.fromkeys(self._labels.values()))
        if self.servers is not None:
            return ", ".join(join_host_port(ip, port) for ip, port in self.servers)
        return "the system resolver"

    def _dns(self, name: str) -> dns.asyncresolver.Resolver:
        if self._resolver is not None:
            return self._resolver
        import dns.asyncresolver
        import dns.nameserver
        import dns.resolver

        if self.servers is None:
            try:
                resolver = dns.asyncresolver.Resolver()
            except (dns.resolver.NoResolverConfiguration, OSError, ValueError) as exc:
                raise ResolverFailureError(
                    f"cannot resolve {_show(name)}: no DNS server is configured "
                    f"(/etc/resolv.conf: {_detail(exc)}); use --resolver", target=name
                ) from exc
            servers = [(ns, resolver.nameserver_ports.get(ns, resolver.port))
                       for ns in resolver.nameservers if isinstance(ns, str)]
            nameservers: list[dns.nameserver.Nameserver] = [
                ns for ns in resolver.nameservers if isinstance(ns, dns.nameserver.Nameserver)
            ]
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            servers, nameservers = list(self.servers), []
        for ip, port in servers:
            try:
                ip_address(ip)
            except ValueError:
                continue  # a DoH URL or the like in resolv.conf: not ours to label
            nameservers.append(dns.nameserver.Do53Nameserver(ip, port))
        if not nameservers:
            raise ResolverFailureError(
                f"cannot resolve {_show(name)}: no DNS server is configured; use --resolver",
                target=name)
        resolver.nameservers = nameservers
        for ns in nameservers:
            if isinstance(ns, dns.nameserver.Do53Nameserver):
                self._labels[str(ns)] = join_host_port(ns.address, ns.port)
            else:
                self._labels[str(ns)] = str(ns)
        resolver.lifetime = self.timeout
        self._resolver = resolver
        return resolver

    def resolve_locally(self, name: str, *, family: int = socket.AF_UNSPEC) -> Resolution | None:
        """The hosts file's answer for ``name``, or None when a DNS query is needed: the
        part of :meth:`resolve` that needs neither the network nor an event loop."""
        if self._hosts is None:
            return None
        start = time.perf_counter_ns()
        key = _key(name)
        hits = tuple(ip for ip in self._hosts.lookup(key) if _wanted(ip, family))
        if not hits:
            return None
        elapsed = _elapsed_ms(start)
        timing = QueryTiming("hosts", "hosts", elapsed, "ok", len(hits))
        return Resolution(key, hits, (), (timing,), "hosts", elapsed)

    async def resolve(self, name: str, *, family: int = socket.AF_UNSPEC,
                      timeout: float | None = None) -> Resolution:
        start = time.perf_counter_ns()
        qtypes = _qtypes(family)
        lifetime = self.timeout if timeout is None else _check_timeout(timeout)
        local = self.resolve_locally(name, family=family)
        if local is not None:
            return local
        import anyio  # here: a hosts-file answer needs no loop (core.blocking)

        key = _key(name)
        qname = _qname(key, name)
        resolver = self._dns(key)
        results: dict[str, _QueryResult] = {}

        async def ask(qtype: str) -> None:
            results[qtype] = await self._query(resolver, qname, qtype, lifetime)

        async with anyio.create_task_group() as tg:
            for qtype in qtypes:
                tg.start_soon(ask, qtype)
        ordered = [results[qtype] for qtype in qtypes]
        addresses: list[IPAddress] = []
        chain: list[str] = []
        for result in ordered:
            addresses += result.addresses
            chain += [c for c in result.chain if c not in chain]
        elapsed = _elapsed_ms(start)
        if addresses:
            return Resolution(key, tuple(dict.fromkeys(addresses)), tuple(chain),
                              tuple(r.timing for r in ordered), "dns", elapsed)
        raise self._failure(key, ordered, qtypes, lifetime)

    async def _query(self, resolver: dns.asyncresolver.Resolver, qname: dns.name.Name,
                     qtype: str, lifetime: float) -> _QueryResult:
        import anyio
        import dns.exception
        import dns.rdatatype
        import dns.resolver

        start = time.perf_counter_ns()
        server = self.server_label
        addresses: list[IPAddress] = []
        chain: list[str] = []
        outcome, detail = "ok", ""
        with anyio.move_on_after(lifetime) as scope:
            try:
                answer = await resolver.resolve(qname, qtype, lifetime=lifetime, search=False,
                                                backend=_backend())
                if answer.nameserver is not None and answer.port is not None:
                    server = join_host_port(answer.nameserver, answer.port)
                for rrset in answer.chaining_result.cnames:
                    for rdata in rrset:
                        chain.append(_text(rdata.target))
                want = 4 if qtype == "A" else 6
                for rdata in answer:
                    ip = ip_address(rdata.address)
                    if ip.version == want and ip not in addresses:
                        addresses.append(ip)
                if not addresses:
                    outcome, detail = "nodata", f"no {qtype} records"
            except dns.resolver.NXDOMAIN:
                outcome, detail = "nxdomain", f"NXDOMAIN from {server}"
            except dns.resolver.NoAnswer:
                outcome, detail = "nodata", f"no {qtype} records (NODATA from {server})"
            except dns.resolver.NoNameservers as exc:
                outcome, detail, server = self._no_nameservers(exc, server)
            except dns.exception.Timeout:
                outcome, detail = "timeout", f"no answer from {server} in {lifetime:g} s"
            except dns.resolver.YXDOMAIN:
                outcome, detail = "error", f"YXDOMAIN from {server}"
            except Exception as exc:  # garbage in, garbage out: never a crash
                outcome, detail = "error", f"{server}: {_detail(exc)}"
        if scope.cancelled_caught:
            outcome, detail = "timeout", f"no answer from {server} in {lifetime:g} s"
            addresses, chain = [], []
        timing = QueryTiming(qtype, server, _elapsed_ms(start), outcome, len(addresses))
        return _QueryResult(timing, addresses, chain, detail)

    def _no_nameservers(self, exc: dns.resolver.NoNameservers,
                        server: str) -> tuple[str, str, str]:
        """Every server failed: say which way (SERVFAIL, REFUSED, a broken answer)."""
        outcomes: list[str] = []
        details: list[str] = []
        servers: list[str] = []
        entries = list(exc.kwargs.get("errors") or [])
        # A truncated UDP answer is only the step before TCP: say what TCP got instead.
        final = [e for e in entries if not _is_truncation(e)]
        for entry in final or entries:
            try:
                where = self._labels.get(str(entry[0]), str(entry[0]))
                error = entry[3]
                over = " over TCP" if entry[1] is True else ""
            except (IndexError, TypeError):
                continue
            if isinstance(error, str):  # an rcode dnspython did not like
                outcome = {"SERVFAIL": "servfail", "REFUSED": "refused"}.get(error, "error")
                details.append(f"{_show(error, 20)} from {where}{over}")
            else:
                outcome = "error"
                details.append(f"{where}{over}: {_detail(error)}")
            outcomes.append(outcome)
            if where not in servers:
                servers.append(where)
        if not details:
            return "error", f"{server}: {_detail(exc)}", server
        best = next(o for o in ("servfail", "refused", "error") if o in outcomes)
        shown = "; ".join(dict.fromkeys(details[:3]))
        return best, shown, ", ".join(servers)

    def _failure(self, name: str, results: list[_QueryResult], qtypes: Sequence[str],
                 lifetime: float) -> ResolveError:
        """One error for the whole resolution: NXDOMAIN, then a failure, then a timeout,
        then no data (a missing family only matters when no family answered)."""
        shown = _show(name)
        by_outcome: dict[str, _QueryResult] = {}
        for result in results:
            by_outcome.setdefault(result.timing.outcome, result)
        if "nxdomain" in by_outcome:
            return NameNotFoundError(
                f"cannot resolve {shown}: no such name ({by_outcome['nxdomain'].detail})",
                target=name)
        for outcome, what in (("servfail", "the DNS server failed"),
                              ("refused", "the DNS server refused the query"),
                              ("error", "no usable answer")):
            if outcome in by_outcome:
                return ResolverFailureError(
                    f"cannot resolve {shown}: {what} ({by_outcome[outcome].detail})",
                    target=name)
        if "timeout" in by_outcome:
            return ResolveTimeoutError(
                f"cannot resolve {shown}: {by_outcome['timeout'].detail}", target=name)
        server = ", ".join(dict.fromkeys(r.timing.server for r in results))
        types = " or ".join(qtypes)
        return NoAddressError(
            f"cannot resolve {shown}: the name has no {types} records (NODATA from {server})",
            target=name)


def _qname(key: str, original: str) -> dns.name.Name:
    """The absolute DNS name, or ResolverFailureError for one no server should be sent."""
    import dns.exception
    import dns.name

    problem = ""
    if not key:
        problem = "the name is empty"
    elif key.endswith("."):
        problem = "the name has an empty label"
    else:
        try:
            qname = dns.name.from_text(key, origin=dns.name.root)
        except dns.name.NameTooLong:
            problem = "the name is longer than 255 octets"
        except dns.name.LabelTooLong:
            problem = "a label is longer than 63 octets"
        except dns.name.EmptyLabel:
            problem = "the name has an empty label"
        except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
            problem = _detail(exc)
        else:
            return qname
    raise ResolverFailureError(f"cannot resolve {_show(original)!s}: invalid DNS name "
                               f"({problem}); nothing was sent", target=_show(key))


def _is_truncation(entry: object) -> bool:
    import dns.message

    return (isinstance(entry, tuple) and len(entry) > 3
            and isinstance(entry[3], dns.message.Truncated))


def _text(name: dns.name.Name) -> str:
    return _key(name.to_text(omit_final_dot=True))


def _detail(exc: BaseException) -> str:
    """The first line of an exception's text, bounded."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return _show(first, 160)


def _backend() -> dns._asyncbackend.Backend:
    """The running backend. dnspython caches the first one it detects process-wide, so ask
    for it by name: asyncio and trio runs can follow each other (tests, library users)."""
    import dns.asyncbackend

    return dns.asyncbackend.get_backend(dns.asyncbackend.sniff())


# -- the in-memory resolver ---------------------------------------------------------------


class StaticResolver:
    """In-memory answers (tests, the demo): name -> addresses, or an exception to raise.

    Names are matched case-insensitively, trailing dot ignored; an unknown name raises
    NameNotFoundError and a known one without the asked family NoAddressError.
    """

    def __init__(self, table: Mapping[str, Sequence[str] | BaseException]) -> None:
        self.table: dict[str, tuple[IPAddress, ...] | BaseException] = {}
        for name, entry in table.items():
            if isinstance(entry, BaseException):
                self.table[_key(name)] = entry
            else:
                values = [entry] if isinstance(entry, str) else entry
                self.table[_key(name)] = tuple(dict.fromkeys(ip_address(v) for v in values))
        self.asked: list[str] = []

    async def resolve(self, name: str, *, family: int = socket.AF_UNSPEC,
                      timeout: float | None = None) -> Resolution:
        start = time.perf_counter_ns()
        qtypes = _qtypes(family)
        key = _key(name)
        self.asked.append(key)
        entry = self.table.get(key)
        if entry is None:
            raise NameNotFoundError(
                f"cannot resolve {_show(key)}: no such name (static table)", target=key)
        if isinstance(entry, BaseException):
            raise entry
        found = tuple(ip for ip in entry if _wanted(ip, family))  # in table order
        timings = []
        for qtype in qtypes:
            count = sum(1 for ip in found if ip.version == (6 if qtype == "AAAA" else 4))
            timings.append(QueryTiming(qtype, "static", _elapsed_ms(start),
                                       "ok" if count else "nodata", count))
        if not found:
            raise NoAddressError(
                f"cannot resolve {_show(key)}: the name has no {' or '.join(qtypes)} records "
                "(static table)", target=key)
        return Resolution(key, found, (), tuple(timings), "static", _elapsed_ms(start))


def resolver_from_option(value: str | None) -> Resolver:
    """The CLI's ``--resolver``: None -> the system configuration (the hosts file, then
    resolv.conf's servers); else comma-separated servers (``"127.0.0.1:5353"``,
    ``"[::1]:53,192.0.2.53"``), asked without the hosts file, as ``dig @SERVER`` asks.
    ValueError if malformed."""
    if value is None:
        return DnsResolver()
    servers = [s.strip() for s in value.split(",")]
    if not any(servers):
        raise ValueError(f"invalid resolver {value!r}: give an IP address, ip:port or "
                         "[v6]:port")
    return DnsResolver([s for s in servers if s], hosts_file=None)
