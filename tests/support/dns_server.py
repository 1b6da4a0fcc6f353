"""A real DNS server on loopback (UDP and TCP on one port) for resolver and hostile-DNS tests.

Messages are parsed and built with dnspython. The zone maps a name to what the server does
when asked about it::

    with serve_dns({"db.test": [("A", "192.0.2.1"), ("AAAA", "2001:db8::1")]}) as server:
        server.zone["alias.test"] = [("CNAME", "db.test")]   # the zone stays mutable
        server.zone["gone.test"] = NXDOMAIN
        server.zone["flaky.test"] = Series([("A", "192.0.2.1")], [("A", "127.0.0.1")])
        ...  # DnsResolver([server.address]) ...
        assert ("db.test", "A", "udp") in server.log

What a name can be given (a ``Spec``):

- a list of ``(type, value)`` records (``("A", "192.0.2.1")``, ``("CNAME", "next.test")``,
  ``("TXT", '"hi"')``, any type dnspython can parse), or :class:`Records` for a chosen TTL.
  CNAMEs are followed inside the zone, as an authoritative server does; a name with no
  record of the asked type answers NOERROR with no data (NODATA; ``NODATA`` is ``[]``).
- ``NXDOMAIN``, ``SERVFAIL``, ``REFUSED`` (or any :class:`Rcode`);
- ``SILENT``: never answer (the client times out);
- :class:`Truncated`: the TC bit over UDP, the full answer over TCP;
- :class:`Delayed`: answer after a delay;
- :class:`Series`: the n-th query for (name, type) gets the n-th answer (DNS rebinding);
- :class:`ByTransport`: a different answer over UDP and TCP;
- :class:`ByType`: a different answer per query type (AAAA fails, A answers);
- :class:`Raw`: these exact bytes (garbage, wrong IDs, oversized messages);
- :class:`Custom`: a function of the query and transport.

Names not in the zone get ``default`` (NXDOMAIN). Records go out in the order given (no
shuffling), so tests can assert the order as answered. UDP answers larger than the client's
payload size (512, or its EDNS size) are truncated as a real server would.

The server is bounded: it stops itself after ``lifetime`` seconds, ignores queries past
``max_queries``, drops idle TCP connections, and a stop wakes every delayed answer.
"""

from __future__ import annotations

import selectors
import socket
import socketserver
import threading
from collections import UserDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

Record = tuple[str, str]  # (type, value): ("A", "192.0.2.1"), ("CNAME", "next.test")


@dataclass(frozen=True)
class Records:
    """An answer from these records (``[]``: the name exists but has no data)."""

    records: Sequence[Record] = ()
    ttl: int = 60


@dataclass(frozen=True)
class Rcode:
    """An empty response with this rcode (``dns.rcode.SERVFAIL``, ...)."""

    rcode: int


@dataclass(frozen=True)
class Silent:
    """Never answer."""


@dataclass(frozen=True)
class Truncated:
    """Over UDP, an empty answer with the TC bit; over TCP, ``spec``."""

    spec: Spec


@dataclass(frozen=True)
class Delayed:
    """Answer ``spec`` after ``seconds`` (a server stop cancels the answer)."""

    seconds: float
    spec: Spec


@dataclass(frozen=True)
class ByTransport:
    """``udp`` over UDP, ``tcp`` over TCP."""

    udp: Spec
    tcp: Spec


class Series:
    """The n-th query for a (name, type) gets the n-th spec; the last one repeats.

    Counted per query type, so one resolution (its A and AAAA queries) sees the first
    answer and the next resolution sees the second: the shape of a DNS-rebinding attack.
    """

    def __init__(self, *specs: Spec) -> None:
        if not specs:
            raise ValueError("Series needs at least one spec")
        self.specs = specs

    def __repr__(self) -> str:
        return f"Series{self.specs!r}"


@dataclass(frozen=True)
class ByType:
    """A spec per query type (``{"A": ..., "AAAA": SERVFAIL}``); ``default`` for the rest."""

    specs: Mapping[str, Spec]
    default: Spec = ()


@dataclass(frozen=True)
class Raw:
    """Reply with exactly these bytes (for UDP, one datagram; for TCP, length-prefixed).

    With ``fix_id``, the first two bytes are replaced by the query's ID, so the reply
    passes the ID check and reaches the parser.
    """

    data: bytes
    fix_id: bool = False


@dataclass(frozen=True)
class Custom:
    """``handler(query, transport)`` returns a message, raw bytes, or None (no answer)."""

    handler: Callable[[dns.message.Message, str], dns.message.Message | bytes | None]


Spec: TypeAlias = (
    Sequence[Record] | Records | Rcode | Silent | Truncated | Delayed | ByTransport | ByType
    | Series | Raw | Custom
)

NXDOMAIN = Rcode(dns.rcode.NXDOMAIN)
SERVFAIL = Rcode(dns.rcode.SERVFAIL)
REFUSED = Rcode(dns.rcode.REFUSED)
SILENT = Silent()
NODATA: list[Record] = []


class Query(NamedTuple):
    """One question the server received (compares equal to a plain 3-tuple)."""

    name: str  # lower case, no trailing dot; "" for an unparseable query
    qtype: str  # "A", "AAAA", ...; "" for an unparseable query
    transport: str  # "udp" | "tcp"


def _key(name: str) -> str:
    return name.lower().removesuffix(".")


class Zone(UserDict[str, Spec]):
    """name -> Spec; names are matched case-insensitively, trailing dot ignored."""

    def __setitem__(self, key: str, value: Spec) -> None:
        super().__setitem__(_key(key), value)

    def __getitem__(self, key: str) -> Spec:
        return super().__getitem__(_key(key))

    def __delitem__(self, key: str) -> None:
        super().__delitem__(_key(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _key(key) in self.data


@dataclass
class DnsServer:
    """The running server: ``address`` to give the resolver, ``zone`` to change, ``log``."""

    zone: Zone
    host: str = "127.0.0.1"
    port: int = 0
    default: Spec = NXDOMAIN
    max_queries: int = 10_000
    log: list[Query] = field(default_factory=list)
    _counters: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"`` (``"[::1]:PORT"`` on IPv6), as ``DnsResolver`` takes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def queries(self, name: str | None = None, qtype: str | None = None,
                transport: str | None = None) -> list[Query]:
        """The log, filtered."""
        return [q for q in list(self.log)
                if (name is None or q.name == _key(name))
                and (qtype is None or q.qtype == qtype.upper())
                and (transport is None or q.transport == transport)]

    def reset(self) -> None:
        """Forget the log and the Series positions."""
        with self._lock:
            self.log.clear()
            self._counters.clear()

    # -- answering -------------------------------------------------------------------

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """The reply to one query message (None: say nothing)."""
        with self._lock:
            if len(self.log) >= self.max_queries or self._stop.is_set():
                return None
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                self.log.append(Query("", "", transport))
                return None
            if len(query.question) != 1:
                self.log.append(Query("", "", transport))
                response = dns.message.make_response(query)
                response.set_rcode(dns.rcode.FORMERR)
                return response.to_wire()
            question = query.question[0]
            name = _key(question.name.to_text())
            qtype = dns.rdatatype.to_text(question.rdtype)
            self.log.append(Query(name, qtype, transport))
            spec = self.zone.data.get(name, self.default)
        return self._render(spec, query, name, transport)

    def _turn(self, series: Series, name: str, qtype: str) -> Spec:
        """The spec this query gets from a Series (the counters are shared by threads)."""
        with self._lock:
            turn = self._counters.get((name, qtype), 0)
            self._counters[(name, qtype)] = turn + 1
        return series.specs[min(turn, len(series.specs) - 1)]

    def _render(self, spec: Spec, query: dns.message.Message, name: str,
                transport: str) -> bytes | None:
        match spec:
            case Silent():
                return None
            case Delayed(seconds=seconds, spec=inner):
                if self._stop.wait(seconds):
                    return None
                return self._render(inner, query, name, transport)
            case Truncated(spec=inner):
                if transport == "udp":
                    response = dns.message.make_response(query)
                    response.flags |= dns.flags.TC
                    return response.to_wire()
                return self._render(inner, query, name, transport)
            case ByTransport(udp=udp, tcp=tcp):
                return self._render(udp if transport == "udp" else tcp, query, name, transport)
            case ByType(specs=specs, default=default):
                qtype = _qtype(query)
                chosen = next((v for k, v in specs.items() if k.upper() == qtype), default)
                return self._render(chosen, query, name, transport)
            case Series():
                return self._render(self._turn(spec, name, _qtype(query)), query, name,
                                    transport)
            case Raw(data=data, fix_id=fix_id):
                return query.id.to_bytes(2, "big") + data[2:] if fix_id else data
            case Custom(handler=handler):
                reply = handler(query, transport)
                if isinstance(reply, dns.message.Message):
                    return self._wire(reply, query, transport)
                return reply
            case Rcode(rcode=rcode):
                response = dns.message.make_response(query)
                response.set_rcode(dns.rcode.Rcode.make(rcode))
                return response.to_wire()
            case Records():
                return self._wire(self._records(spec, query, name), query, transport)
            case _:
                return self._wire(self._records(Records(tuple(spec)), query, name), query,
                                  transport)

    def _records(self, spec: Records, query: dns.message.Message,
                 name: str) -> dns.message.Message:
        """An authoritative answer: follow CNAMEs inside the zone, then the asked type."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        qtype = _qtype(query)
        owner, current, seen = name, spec, {name}
        for _ in range(16):
            cnames = [value for rtype, value in current.records if rtype.upper() == "CNAME"]
            if cnames and qtype != "CNAME":
                response.answer.append(
                    dns.rrset.from_text(owner + ".", current.ttl, "IN", "CNAME", _abs(cnames[0]))
                )
                owner = _key(cnames[0])
                if owner in seen:  # a loop: stop, as the answer already shows it
                    break
                seen.add(owner)
                target = self.zone.data.get(owner)
                if target is None:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                    break
                if isinstance(target, Records):
                    current = target
                elif isinstance(target, Sequence) and not isinstance(target, str):
                    current = Records(tuple(target))
                else:  # a behaviour, not records: the chain ends here
                    break
                continue
            matching = [_abs(value) if rtype.upper() in _NAME_TYPES else value
                        for rtype, value in current.records if rtype.upper() == qtype]
            if matching:
                response.answer.append(
                    dns.rrset.from_text(owner + ".", current.ttl, "IN", qtype, *matching)
                )
            break
        return response

    def _wire(self, response: dns.message.Message, query: dns.message.Message,
              transport: str) -> bytes:
        """Render, truncating over UDP past the client's payload size (512, or EDNS)."""
        limit = 65535
        if transport == "udp":
            limit = max(512, query.payload) if query.edns >= 0 else 512
        try:  # records in the order given: tests may assert the order as answered
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            short = dns.message.make_response(query)
            short.set_rcode(response.rcode())
            if transport == "udp":
                short.flags |= dns.flags.TC
            else:
                short.set_rcode(dns.rcode.SERVFAIL)
            return short.to_wire()


_NAME_TYPES = {"CNAME", "NS", "PTR", "DNAME"}


def _abs(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _qtype(query: dns.message.Message) -> str:
    return dns.rdatatype.to_text(query.question[0].rdtype)


# -- transport ---------------------------------------------------------------------------

_TCP_IDLE = 5.0  # seconds a TCP connection may sit without a complete query
_TCP_MAX_MESSAGES = 100


def _servers(server: DnsServer) -> tuple[socketserver.UDPServer, socketserver.TCPServer]:
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    connections: set[socket.socket] = set()

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            reply = server.answer(data, "udp")
            if reply is not None:
                with suppress(OSError):
                    sock.sendto(reply, self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            conn.settimeout(_TCP_IDLE)
            connections.add(conn)
            try:
                for _ in range(_TCP_MAX_MESSAGES):
                    size = _recv_exactly(conn, 2)
                    if size is None:
                        return
                    wire = _recv_exactly(conn, int.from_bytes(size, "big"))
                    if wire is None:
                        return
                    reply = server.answer(wire, "tcp")
                    if reply is not None:
                        conn.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:
                return
            finally:
                connections.discard(conn)

    class UdpServer(socketserver.ThreadingUDPServer):
        address_family = family
        daemon_threads = True
        block_on_close = False

    class TcpServer(socketserver.ThreadingTCPServer):
        address_family = family
        daemon_threads = True
        block_on_close = False
        allow_reuse_address = True  # a TIME_WAIT left by an earlier test's server is fine

        def server_close(self) -> None:
            for conn in list(connections):
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            super().server_close()

    for _ in range(50):  # the UDP port's TCP twin may be taken: try another pair
        udp = UdpServer((server.host, 0), Udp)
        port = int(udp.server_address[1])
        try:
            tcp = TcpServer((server.host, port), Tcp)
        except OSError:
            udp.server_close()
            continue
        server.port = port
        return udp, tcp
    raise RuntimeError(f"no free UDP+TCP port pair on {server.host}")


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@contextmanager
def serve_dns(
    zone: Mapping[str, Spec] | None = None,
    *,
    host: str = "127.0.0.1",
    default: Spec = NXDOMAIN,
    lifetime: float = 60.0,
    max_queries: int = 10_000,
) -> Iterator[DnsServer]:
    """Run a DNS server on ``host`` (loopback) until the block ends or ``lifetime`` passes."""
    if host not in ("127.0.0.1", "::1"):
        raise ValueError("the test DNS server listens on loopback only")
    server = DnsServer(Zone(zone or {}), host=host, default=default, max_queries=max_queries)
    udp, tcp = _servers(server)
    wake_r, wake_w = socket.socketpair()

    def serve() -> None:
        # One thread dispatches both sockets (each request then gets its own thread); the
        # wake-up socket makes a stop immediate, unlike serve_forever's polling.
        listeners: dict[int, socketserver.BaseServer] = {udp.fileno(): udp, tcp.fileno(): tcp}
        with selectors.DefaultSelector() as selector:
            for fd in (*listeners, wake_r.fileno()):
                selector.register(fd, selectors.EVENT_READ)
            while not server._stop.is_set():
                for key, _ in selector.select():
                    if key.fd not in listeners or server._stop.is_set():
                        return
                    listeners[key.fd].handle_request()  # readable: does not block

    thread = threading.Thread(target=serve, name=f"dns-{server.port}", daemon=True)
    stopped = threading.Lock()

    def stop() -> None:
        with stopped:
            if server._stop.is_set():
                return
            server._stop.set()
            with suppress(OSError):
                wake_w.send(b"x")
            if thread is not threading.current_thread():
                thread.join(timeout=5)
            for item in (udp, tcp):
                item.server_close()
            wake_r.close()
            wake_w.close()

    watchdog = threading.Timer(lifetime, stop)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    try:
        yield server
    finally:
        watchdog.cancel()
        stop()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """An empty zone on loopback; fill ``dns_server.zone`` in the test.

    Use it from a conftest (``from tests.support.dns_server import dns_server``) or with
    ``pytest_plugins``; a test module may also define its own fixture over ``serve_dns``.
    """
    with serve_dns() as server:
        yield server
