"""A loopback-only network namespace for one thread (and what it starts).

The conformance run must never send a packet off this machine, yet its scenarios include
names that pass validation and then go to DNS (``xn--bcher-kva.example:…``), and ports such
as 80 and 443 that a developer's machine may serve. So workerd, the peers and tcpcli all run
inside a fresh network namespace that holds only ``lo``: there a DNS query fails with
"Network is unreachable" at once, and nothing else listens.

Linux keeps network namespaces per thread: ``unshare(CLONE_NEWNET)`` moves only the calling
thread, and threads and processes it starts inherit the namespace. The suite calls
:func:`enter_loopback_namespace` on its own event-loop thread (an anyio blocking portal), so
the test process itself stays where it was. Creating a network namespace needs root
(CAP_SYS_ADMIN), as in CI.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


class NamespaceUnavailable(RuntimeError):
    """This machine (or user) cannot create the isolated namespace."""


def enter_loopback_namespace() -> None:
    """Move the calling thread into a new network namespace and bring ``lo`` up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NamespaceUnavailable(
            "the conformance suite runs workerd, its peers and tcpcli in a loopback-only "
            f"network namespace, and unshare(CLONE_NEWNET) failed: {os.strerror(code)}. "
            "Run it as root (CI does), e.g. `sudo python -m pytest tests/conformance`."
        )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(probe, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def only_loopback_routes() -> bool:
    """True when this thread's namespace has no interface but ``lo`` (a self-check)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]
