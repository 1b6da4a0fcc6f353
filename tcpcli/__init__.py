"""tcpcli — a TCP client, diagnostics tool and library on the socket model of Workers' connect().

The library mirrors ``connect()`` from ``cloudflare:sockets``::

    import tcpcli

    async with tcpcli.Invocation(policy="open"):        # one Worker request: the 6-socket cap
        socket = tcpcli.connect("db.internal:5432", secure_transport="on")
        info = await socket.opened
        ...
        await socket.close()

Names are imported lazily so that ``tcpcli --version`` does not pay for anyio, rich and
dnspython (the CLI's start-up time is a tested figure).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it. One place: __all__ is built from it.
_EXPORTS: dict[str, str] = {
    "connect": "tcpcli.core.socket",
    "Socket": "tcpcli.core.socket",
    "SocketInfo": "tcpcli.core.socket",
    "SocketAddress": "tcpcli.core.address",
    "Invocation": "tcpcli.core.invocation",
    "ConnectOptions": "tcpcli.core.connect",
    "Connector": "tcpcli.core.connect",
    "SystemConnector": "tcpcli.core.connect",
    "MemoryConnector": "tcpcli.core.memory",
    "Policy": "tcpcli.core.policy",
    "Profile": "tcpcli.core.policy",
    "Decision": "tcpcli.core.policy",
    "Resolver": "tcpcli.core.resolve",
    "DnsResolver": "tcpcli.core.resolve",
    "StaticResolver": "tcpcli.core.resolve",
    "Resolution": "tcpcli.core.resolve",
    "TLSOptions": "tcpcli.core.tlsoptions",
    "TLSReport": "tcpcli.core.tlsreport",
    "CertificateSummary": "tcpcli.core.tlsreport",
    "PhaseClock": "tcpcli.core.timing",
    "Phase": "tcpcli.core.timing",
    "TcpcliError": "tcpcli.core.errors",
    "AddressError": "tcpcli.core.errors",
    "SocketOptionError": "tcpcli.core.errors",
    "StartTlsError": "tcpcli.core.errors",
    "StreamClosedError": "tcpcli.core.errors",
    "PolicyError": "tcpcli.core.errors",
    "ConnectError": "tcpcli.core.errors",
    "ResolveError": "tcpcli.core.errors",
    "ConnectTimeoutError": "tcpcli.core.errors",
    "TLSError": "tcpcli.core.errors",
    "CertificateVerifyError": "tcpcli.core.errors",
    "ConnectionLostError": "tcpcli.core.errors",
    "SocketCanceledError": "tcpcli.core.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tcpcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from tcpcli.core.address import (
        SocketAddress as SocketAddress,
    )
    from tcpcli.core.connect import (
        ConnectOptions as ConnectOptions,
        Connector as Connector,
        SystemConnector as SystemConnector,
    )
    from tcpcli.core.errors import (
        AddressError as AddressError,
        CertificateVerifyError as CertificateVerifyError,
        ConnectError as ConnectError,
        ConnectionLostError as ConnectionLostError,
        ConnectTimeoutError as ConnectTimeoutError,
        PolicyError as PolicyError,
        ResolveError as ResolveError,
        SocketCanceledError as SocketCanceledError,
        SocketOptionError as SocketOptionError,
        StartTlsError as StartTlsError,
        StreamClosedError as StreamClosedError,
        TcpcliError as TcpcliError,
        TLSError as TLSError,
    )
    from tcpcli.core.invocation import (
        Invocation as Invocation,
    )
    from tcpcli.core.memory import (
        MemoryConnector as MemoryConnector,
    )
    from tcpcli.core.policy import (
        Decision as Decision,
        Policy as Policy,
        Profile as Profile,
    )
    from tcpcli.core.resolve import (
        DnsResolver as DnsResolver,
        Resolution as Resolution,
        Resolver as Resolver,
        StaticResolver as StaticResolver,
    )
    from tcpcli.core.socket import (
        Socket as Socket,
        SocketInfo as SocketInfo,
        connect as connect,
    )
    from tcpcli.core.timing import (
        Phase as Phase,
        PhaseClock as PhaseClock,
    )
    from tcpcli.core.tlsoptions import TLSOptions as TLSOptions
    from tcpcli.core.tlsreport import (
        CertificateSummary as CertificateSummary,
        TLSReport as TLSReport,
    )
