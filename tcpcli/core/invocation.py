"""The invocation: what a Worker's request is to its sockets — the scope of the six-socket cap.

One CLI run is one invocation. In the library, ``async with Invocation(...)`` makes one
explicit; without it, each event-loop run gets a default invocation with default settings.
Sockets still open when an explicit invocation ends are closed, as a Worker's sockets end
with its request.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from tcpcli.core.connect import ConnectOptions, Connector, SystemConnector
from tcpcli.core.destination import Destination, check, check_without_query
from tcpcli.core.policy import Policy
from tcpcli.core.slots import WORKERS_MAX_SOCKETS, SocketSlots
from tcpcli.core.timing import PhaseClock, PhaseObserver

if TYPE_CHECKING:
    from anyio.lowlevel import RunVar

    from tcpcli.core.resolve import Resolution, Resolver

_INVOCATION_ENDED = "The invocation ended while this socket was open."


class Socket(Protocol):
    """What an invocation does with a socket opened in it (``core.socket.Socket``):
    asks whether it is open, and aborts it when the invocation ends. Declared here, so that
    the socket module is the only one of the two importing the other."""

    @property
    def is_open(self) -> bool: ...

    async def abort(self, error: BaseException | None = None) -> None: ...


class Invocation:
    """Shared settings and limits for the sockets opened inside it.

    ``max_sockets`` is the simultaneous-socket cap (Workers: 6; ``None`` lifts it);
    ``policy`` the destination policy (a :class:`Policy` or a profile name);
    ``resolver`` and ``connector`` are the seams to DNS and the network;
    ``options`` the default :class:`ConnectOptions` for its sockets;
    ``observer`` receives every timing phase as it starts and ends.
    """

    def __init__(
        self,
        *,
        max_sockets: int | None = WORKERS_MAX_SOCKETS,
        policy: Policy | str | None = None,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
        options: ConnectOptions | None = None,
        observer: PhaseObserver | None = None,
    ) -> None:
        self.slots = SocketSlots(max_sockets)
        if policy is None:
            policy = Policy()
        elif isinstance(policy, str):
            policy = Policy.parse(policy)
        self.policy: Policy = policy
        self._resolver = resolver
        self.connector: Connector = connector or SystemConnector()
        self.options = options or ConnectOptions()
        self.observer = observer
        self._sockets: set[Socket] = set()
        self._token: Token[Invocation | None] | None = None

    @property
    def sockets(self) -> frozenset[Socket]:
        """The sockets that may still hold or wait for a slot (a snapshot)."""
        return frozenset(self._sockets)

    def register(self, socket: Socket) -> None:
        """A socket was created in this invocation: it ends when the invocation does."""
        self._sockets.add(socket)

    def forget(self, socket: Socket) -> None:
        """The socket is finished (closed, failed or handed over): nothing left to end."""
        self._sockets.discard(socket)

    async def abort_all(self, error: BaseException) -> None:
        """Tear down every socket still registered, each ``closed`` rejecting with
        ``error``; connects still waiting are canceled. Every slot comes back."""
        import anyio

        with anyio.CancelScope(shield=True):
            # Connects still under way go first, while the open sockets keep their slots:
            # otherwise a slot freed here would start a queued connect being torn down.
            for socket in sorted(self._sockets, key=lambda each: each.is_open):
                await socket.abort(error)

    @property
    def resolver(self) -> Resolver:
        # Built on first use: reading the system resolver configuration is not free, and
        # literal addresses never need it.
        if self._resolver is None:
            from tcpcli.core.resolve import DnsResolver

            self._resolver = DnsResolver()
        return self._resolver

    @resolver.setter
    def resolver(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def check_destination(self, hostname: str, port: int, *, family: int, target: str,
                                clock: PhaseClock | None = None) -> Destination:
        """``core.destination.check`` under this invocation's policy and resolver: the
        checked addresses for one port, or the refusal raised."""
        return await check(hostname, port, policy=self.policy, resolver=lambda: self.resolver,
                           family=family, clock=clock, target=target)

    def check_destination_now(self, hostname: str, port: int, *, family: int, target: str,
                              clock: PhaseClock | None = None) -> Destination | None:
        """:meth:`check_destination` without an event loop when no DNS query is needed (a
        literal, a hosts-file name, a refusal before DNS); None when one is."""
        def lookup(name: str, family: int) -> Resolution | None:
            resolve_locally = getattr(self.resolver, "resolve_locally", None)
            return None if resolve_locally is None else resolve_locally(name, family=family)

        return check_without_query(hostname, port, policy=self.policy, lookup=lookup,
                                   family=family, clock=clock, target=target)

    async def __aenter__(self) -> Invocation:
        self._token = _current.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            from tcpcli.core.errors import StreamClosedError

            await self.abort_all(StreamClosedError(_INVOCATION_ENDED))
        finally:
            if self._token is not None:
                _current.reset(self._token)
                self._token = None


_current: ContextVar[Invocation | None] = ContextVar("tcpcli_invocation", default=None)
_default: RunVar[Invocation] | None = None  # made on first use: anyio.lowlevel is not free


def current_invocation() -> Invocation:
    """The innermost ``async with Invocation()``, or this event-loop run's default one."""
    global _default
    invocation = _current.get()
    if invocation is not None:
        return invocation
    if _default is None:
        from anyio.lowlevel import RunVar

        _default = RunVar("tcpcli_default_invocation")
    try:
        return _default.get()
    except LookupError:
        invocation = Invocation()
        _default.set(invocation)
        return invocation
