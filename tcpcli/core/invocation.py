"""The invocation: what a Worker's request is to its sockets — the scope of the six-socket cap.

One CLI run is one invocation. In the library, ``async with Invocation(...)`` makes one
explicit; without it, each event-loop run gets a default invocation with default settings.
Sockets still open when an explicit invocation ends are closed, as a Worker's sockets end
with its request.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import RunVar

from tcpcli.core.connect import ConnectOptions, Connector, SystemConnector
from tcpcli.core.errors import StreamClosedError
from tcpcli.core.policy import Policy
from tcpcli.core.resolve import DnsResolver, Resolver
from tcpcli.core.slots import WORKERS_MAX_SOCKETS, SocketSlots
from tcpcli.core.timing import PhaseObserver

if TYPE_CHECKING:
    from tcpcli.core.socket import Socket

_INVOCATION_ENDED = "The invocation ended while this socket was open."


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
        self.sockets: set[Socket] = set()
        self._token: Token[Invocation | None] | None = None

    @property
    def resolver(self) -> Resolver:
        # Built on first use: reading the system resolver configuration is not free, and
        # literal addresses never need it.
        if self._resolver is None:
            self._resolver = DnsResolver()
        return self._resolver

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
            with anyio.CancelScope(shield=True):
                for socket in list(self.sockets):
                    await socket._abort(StreamClosedError(_INVOCATION_ENDED))
        finally:
            if self._token is not None:
                _current.reset(self._token)
                self._token = None


_current: ContextVar[Invocation | None] = ContextVar("tcpcli_invocation", default=None)
_default: RunVar[Invocation] = RunVar("tcpcli_default_invocation")


def current_invocation() -> Invocation:
    """The innermost ``async with Invocation()``, or this event-loop run's default one."""
    invocation = _current.get()
    if invocation is not None:
        return invocation
    try:
        return _default.get()
    except LookupError:
        invocation = Invocation()
        _default.set(invocation)
        return invocation
