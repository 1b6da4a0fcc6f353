"""Dial a checked address: the connector seam, happy eyeballs and proxies.

Nothing here decides *whether* a destination may be dialed — ``policy`` does that before
any of this runs. This module only dials the literal addresses it is handed.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, NamedTuple, Protocol, cast, runtime_checkable

from tcpcli.core.address import join_host_port
from tcpcli.core.errors import (
    ConnectError,
    ConnectTimeoutError,
    ProxyError,
    TcpcliError,
    translate,
)
from tcpcli.core.rawsocket import start_connect
from tcpcli.core.slots import SocketSlot, SocketSlots
from tcpcli.core.timing import PhaseClock
from tcpcli.core.tlsoptions import TLSOptions
from tcpcli.record import Record, field

if TYPE_CHECKING:
    import anyio
    import anyio.abc
    from python_socks._abc import AsyncResolver, AsyncSocketStream

    from tcpcli.core.proxyheader import ProxyHeaderSpec

IPAddress = IPv4Address | IPv6Address

#: RFC 8305 §5: the recommended "Connection Attempt Delay".
HAPPY_EYEBALLS_DELAY = 0.25


class Keepalive(NamedTuple):
    """TCP keepalive (seconds, seconds, probes): keeps a connection through a NAT or a
    tunnel that forgets idle flows, and notices a peer that vanished."""

    idle: int
    interval: int
    probes: int


class ConnectOptions(Record, frozen=True):
    """What the library adds beyond Workers' connect(): all opt-in."""

    tls: TLSOptions = field(default_factory=TLSOptions)
    connect_timeout: float | None = None  # whole dial: resolve + slot wait + attempts + TLS
    tls_handshake_timeout: float | None = None  # the handshake alone (none in Workers)
    family: int = socket.AF_UNSPEC  # AF_INET for -4, AF_INET6 for -6
    local_address: str | None = None  # source address to bind before connecting
    proxy: str | None = None  # socks5://, socks4://, http:// (CONNECT) URL
    happy_eyeballs_delay: float = HAPPY_EYEBALLS_DELAY
    # A PROXY protocol header written before anything else (TLS included), as a load
    # balancer with send-proxy does: for testing a service behind accept-proxy.
    send_proxy: ProxyHeaderSpec | None = None
    # A tunnel entry point ("host:port" of a local forwarder) dialed instead of the
    # target, which still drives the policy, SNI, verification and reports (--via).
    via: str | None = None
    keepalive: Keepalive | None = None  # TCP keepalive once connected (--keepalive)


class Connector(Protocol):
    """The seam between the core and the network: dial one literal address.

    Every dial of every engine passes here, so a test's recording connector sees each
    address the CLI or the library would reach (and a refused destination never arrives).
    """

    async def connect_tcp(
        self, host: IPAddress, port: int, *, local_address: str | None = None
    ) -> anyio.abc.ByteStream: ...


@runtime_checkable
class BatchConnector(Connector, Protocol):
    """A connector that can also start connects without awaiting them: the scanner's fast
    path issues thousands at once and polls their outcomes in batches."""

    def start_connect(self, host: IPAddress, port: int, *, local_address: str | None = None,
                      reuse: socket.socket | None = None) -> tuple[socket.socket, int]:
        """Start a non-blocking connect; return the socket and connect()'s errno (0,
        EINPROGRESS, ECONNREFUSED...). ``reuse`` is a socket whose last connect failed,
        which the kernel lets connect anew (cheaper than a new socket). OSError only
        when no socket can be made (EMFILE...)."""
        ...


class SystemConnector:
    """Real TCP: a non-blocking socket polled by the running anyio backend."""

    async def connect_tcp(
        self, host: IPAddress, port: int, *, local_address: str | None = None
    ) -> anyio.abc.ByteStream:
        from tcpcli.core.rawstream import open_tcp

        return await open_tcp(host, port, local_address)

    def start_connect(self, host: IPAddress, port: int, *, local_address: str | None = None,
                      reuse: socket.socket | None = None) -> tuple[socket.socket, int]:
        return start_connect(host, port, local_address, reuse)


# --------------------------------------------------------------------------- dialing


class Dialed(NamedTuple):
    """The winning attempt: its stream, the slot it holds, and who it reached (a name
    when a proxy resolved it)."""

    stream: anyio.abc.ByteStream
    slot: SocketSlot
    address: IPAddress | str
    port: int


async def dial(
    addresses: Sequence[IPAddress],
    port: int,
    *,
    connector: Connector,
    slots: SocketSlots,
    clock: PhaseClock,
    options: ConnectOptions,
    target: str,
) -> Dialed:
    """Happy eyeballs over checked literal addresses, already in the order to try
    (``Destination.ordered``: RFC 8305 §4).

    Every attempt holds a slot of the cap while it runs; losing attempts give theirs back.
    A failed attempt starts the next one at once; a slow one lets the next start after
    ``happy_eyeballs_delay`` (RFC 8305 §5).
    """
    import anyio

    if not addresses:
        raise ConnectError(f"no address to dial for {target}", target=target, port=port)
    winner: Dialed | None = None
    errors: list[BaseException] = []

    async def attempt(address: IPAddress, done: anyio.Event) -> None:
        nonlocal winner
        slot: SocketSlot | None = None
        try:
            slot = slots.try_acquire()
            if slot is None:
                with clock.phase("slot-wait", live=slots.live, limit=slots.limit):
                    slot = await slots.acquire()
            with clock.phase("connect", address=str(address), port=port):
                try:
                    stream = await connector.connect_tcp(
                        address, port, local_address=options.local_address
                    )
                except BaseException as exc:
                    raise translate(exc, target=join_host_port(address, port), port=port,
                                    phase="connect") from exc
        except Exception as exc:
            errors.append(exc)
            if slot is not None:
                slots.release(slot)
            return
        except BaseException:
            if slot is not None:
                slots.release(slot)
            raise
        finally:
            done.set()
        if winner is None:
            winner = Dialed(stream, slot, address, port)
            tg.cancel_scope.cancel()
        else:
            slots.release(slot)
            await anyio.aclose_forcefully(stream)

    try:
        async with anyio.create_task_group() as tg:
            for address in addresses:
                done = anyio.Event()
                tg.start_soon(attempt, address, done)
                with anyio.move_on_after(options.happy_eyeballs_delay):
                    await done.wait()
    except BaseException:
        # Cancelled from outside (a timeout, Ctrl-C) after an attempt had already won.
        if winner is not None:
            slots.release(winner.slot)
            await anyio.aclose_forcefully(winner.stream)
        raise

    if winner is not None:
        return winner
    raise best_error(errors, target, port)


def best_error(errors: list[BaseException], target: str, port: int) -> BaseException:
    """The error to report when every attempt failed: the first attempt's, named for the
    target, since that is the address the user's system prefers."""
    if not errors:
        return ConnectError(f"cannot connect to {target}", target=target, port=port)
    first = errors[0]
    if isinstance(first, TcpcliError) and len(errors) > 1:
        first.args = (f"{first.args[0]} (and {len(errors) - 1} more address(es) failed)",)
    return first


#: Proxy schemes whose proxy resolves the target's name itself: it is handed the name,
#: never an address (curl's socks5h:// and socks4a://).
NAME_RESOLVING_SCHEMES = {"socks5h": "socks5", "socks4a": "socks4"}


class ProxyHop(NamedTuple):
    """One proxy of a chain (``--proxy A,B``: A first, then B through A)."""

    url: str  # as given (credentials included)
    scheme: str  # socks5, socks5h, socks4, socks4a, http
    host: str
    port: int
    resolves_names: bool  # socks5h/socks4a: handed names, never addresses

    @property
    def shown(self) -> str:
        return _redact(self.url)


def parse_proxy_chain(proxy: str) -> list[ProxyHop]:
    """``socks5://a:1080`` or a chain ``socks5://a:1080,http://b:3128`` (a comma inside
    credentials is written %2C); ValueError on a malformed one."""
    from urllib.parse import urlsplit

    hops = []
    for url in (part.strip() for part in proxy.split(",")):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in (*NAME_RESOLVING_SCHEMES, "socks5", "socks4", "http") \
                or not parts.hostname or parts.port is None:
            raise ValueError(f"invalid proxy URL {_redact(url)!r}")
        hops.append(ProxyHop(url, scheme, parts.hostname, parts.port,
                             scheme in NAME_RESOLVING_SCHEMES))
    return hops


def proxy_resolves_names(proxy_url: str) -> bool:
    """Whether the proxy that reaches the target (a chain's last) resolves names."""
    return parse_proxy_chain(proxy_url)[-1].resolves_names


async def dial_proxy(
    hops: Sequence[ProxyHop],
    first_addresses: Sequence[IPAddress],
    host: IPAddress | str,
    port: int,
    *,
    connector: Connector,
    slots: SocketSlots,
    clock: PhaseClock,
    options: ConnectOptions,
    target: str,
    reply_timeout: float,
) -> Dialed:
    """Reach ``host:port`` through SOCKS4/4a/5/5h or HTTP CONNECT proxies, in order.

    The first proxy is dialed like any address (``first_addresses``, through the
    ``connector``: a recording connector sees it; the user named it, so the policy does not
    judge it); each proxy is then asked for the next hop over that one connection, and the
    last for the destination, which was judged before we got here. A proxy that resolves
    names is handed the name (``host`` a str); any other, the checked literal, so that it
    cannot resolve the name to something else. ``reply_timeout`` bounds each proxy's
    answer: one that accepts the connection and says nothing must not hold the run.
    """
    import anyio

    first = hops[0]
    try:
        dialed = await dial(first_addresses, first.port, connector=connector, slots=slots,
                            clock=clock, options=options, target=f"proxy {first.shown}")
    except ConnectTimeoutError:
        raise
    except TcpcliError as exc:
        raise ProxyError(f"cannot reach proxy {first.shown}: {exc}", target=target,
                         port=port) from exc
    stream = dialed.stream
    try:
        for index, hop in enumerate(hops):
            last = index == len(hops) - 1
            ask_host = str(host) if last else hops[index + 1].host
            ask_port = port if last else hops[index + 1].port
            with clock.phase("proxy", proxy=hop.shown, address=ask_host, port=ask_port):
                try:
                    with anyio.fail_after(reply_timeout):
                        await _ask_proxy(hop, stream, ask_host, ask_port,
                                         names=hop.resolves_names or not last)
                except TimeoutError:
                    raise ConnectTimeoutError(
                        f"proxy {hop.shown} did not answer within {reply_timeout:g} s (asked "
                        f"for {join_host_port(ask_host, ask_port)})", target=target,
                        port=port) from None
    except BaseException:
        slots.release(dialed.slot)
        await anyio.aclose_forcefully(stream)
        raise
    return Dialed(stream, dialed.slot, host, port)


async def _ask_proxy(hop: ProxyHop, stream: anyio.abc.ByteStream, host: str, port: int, *,
                     names: bool) -> None:
    """One proxy's handshake over ``stream``: python-socks' protocol machines, driven here
    so that the connection itself is ours (dialed through the connector, chained). With
    ``names`` the proxy is handed a name as it is; otherwise ``host`` is a checked literal."""
    import anyio
    from python_socks import ProxyError as SocksProxyError, parse_proxy_url
    from python_socks._connectors.factory_async import create_connector
    from python_socks._errors import ProxyError as ReplyProxyError
    from python_socks._protocols.errors import ReplyError

    scheme = NAME_RESOLVING_SCHEMES.get(hop.scheme, hop.scheme)
    proxy_type, _, _, username, password = parse_proxy_url(
        f"{scheme}://{hop.url.partition('://')[2]}")
    # Duck-typed to python-socks' stream and resolver interfaces (subclassing them would
    # import python-socks with this module, on every run).
    resolver = cast("AsyncResolver", _NoLocalResolution())
    machine = create_connector(proxy_type=proxy_type, username=username, password=password,
                               rdns=names, resolver=resolver)
    try:
        await machine.connect(stream=cast("AsyncSocketStream", _SocksStream(stream)),
                              host=host, port=port)
    except (ReplyError, ReplyProxyError, SocksProxyError) as exc:
        raise ProxyError(f"proxy {hop.shown} refused {join_host_port(host, port)}: "
                         f"{_proxy_reason(exc)}", target=join_host_port(host, port),
                         port=port) from exc
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError) as exc:
        raise ProxyError(f"proxy {hop.shown} closed the connection before it answered "
                         f"(asked for {join_host_port(host, port)})",
                         target=join_host_port(host, port), port=port) from exc


class _SocksStream:
    """python-socks' stream interface over any anyio byte stream (ours, not its own)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    async def write(self, data: bytes) -> None:
        await self._stream.send(data)

    async def read(self, max_bytes: int = 65536) -> bytes:
        import anyio

        try:
            return await self._stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""

    async def read_exactly(self, n: int) -> bytes:
        from python_socks._errors import ProxyError as ReplyProxyError

        data = bytearray()
        while len(data) < n:
            packet = await self.read(n - len(data))
            if not packet:
                raise ReplyProxyError("the proxy closed the connection mid-reply")
            data += packet
        return bytes(data)

    async def close(self) -> None:
        await self._stream.aclose()


class _NoLocalResolution:
    """The resolver python-socks would use to look a name up itself: never, here. Names
    go to proxies that resolve them; everything else is a literal the policy checked."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_UNSPEC) -> (
        tuple[int, str]
    ):
        raise ProxyError(f"{host!r} would be resolved outside tcpcli's resolver and policy",
                         target=host, port=port)


def _proxy_reason(exc: Exception) -> str:
    """The proxy's refusal in words, with its code: a SOCKS reply or an HTTP status."""
    text = str(exc).strip() or type(exc).__name__
    code = getattr(exc, "error_code", None)
    if isinstance(code, int) and str(code) not in text:
        return f"{text} (reply {code})"
    return text


def _redact(url: str) -> str:
    """Drop credentials from a proxy URL before it is shown or logged."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"

