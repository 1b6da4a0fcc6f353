"""The public library surface is pinned: adding or removing a name is a deliberate act."""

from __future__ import annotations

import subprocess
import sys

import tcpcli

PINNED = [
    "AddressError", "CertificateSummary", "CertificateVerifyError", "ConnectError",
    "ConnectOptions", "ConnectTimeoutError", "ConnectionLostError", "Connector",
    "Decision", "DnsResolver", "Invocation", "MemoryConnector", "Phase", "PhaseClock",
    "Policy", "PolicyError", "Profile", "Resolution", "ResolveError", "Resolver", "Socket",
    "SocketAddress", "SocketCanceledError", "SocketInfo", "SocketOptionError",
    "StartTlsError", "StaticResolver", "StreamClosedError", "SystemConnector", "TLSError",
    "TLSOptions", "TLSReport", "TcpcliError", "__version__", "connect",
]


def test_all_is_pinned() -> None:
    assert sorted(tcpcli.__all__) == sorted(PINNED)


def test_every_exported_name_resolves() -> None:
    for name in tcpcli.__all__:
        assert getattr(tcpcli, name) is not None


def test_importing_the_package_is_lazy() -> None:
    """`tcpcli --version` must not pay for anyio, rich or dnspython."""
    code = "import sys, tcpcli.cli.main; print(sorted(m for m in ('anyio', 'rich', 'dns') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
