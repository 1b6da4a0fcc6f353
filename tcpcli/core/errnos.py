"""What an errno from connect(), send() or recv() says about the destination: one table.

The core's error translation (``tcpcli.core.errors.translate``) and the port scanner
(``tcpcli.engines.scan``) read the same facts here, so "refused", "unreachable" and
"lost" mean the same thing in ``tcpcli connect`` and in ``tcpcli probe``. Stdlib only.
"""

from __future__ import annotations

import errno
import os
from enum import StrEnum
from typing import Final, NamedTuple


class ErrnoClass(StrEnum):
    """What an errno says about the destination (or, for OUT_OF_SOCKETS, about us)."""

    REFUSED = "refused"  # an RST answered our SYN: the host is up, nothing listens
    UNREACHABLE = "unreachable"  # ICMP, no route, or the local stack would not send
    TIMEOUT = "timeout"  # the kernel gave up waiting for an answer
    LOST = "lost"  # reset or aborted: a connection existed, then ended abruptly
    OUT_OF_SOCKETS = "out-of-sockets"  # no descriptor or buffer here; says nothing of the peer
    OTHER = "other"


REFUSED_ERRNOS: Final = frozenset({errno.ECONNREFUSED})
UNREACHABLE_ERRNOS: Final = frozenset({
    errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN,
    # The local stack refusing is as final as a router refusing: no packet reaches the
    # destination (no source address, family off, a firewall rule answering EPERM).
    errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EACCES, errno.EPERM,
})
TIMEOUT_ERRNOS: Final = frozenset({errno.ETIMEDOUT})
#: These exist only once a handshake completed: something accepted, then hung up.
LOST_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                                errno.ESHUTDOWN})
OUT_OF_SOCKETS_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                          errno.ENOMEM})
#: What connect() on a non-blocking socket may answer at once: under way, or a verdict.
#: Anything else (EINVAL, EISCONN...) means this socket cannot take a new connect.
NONBLOCKING_CONNECT_ANSWERS: Final = frozenset({
    0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.ECONNREFUSED, errno.ENETUNREACH,
    errno.EHOSTUNREACH, errno.ETIMEDOUT,
})

_CLASS_BY_ERRNO: Final = {
    **dict.fromkeys(REFUSED_ERRNOS, ErrnoClass.REFUSED),
    **dict.fromkeys(UNREACHABLE_ERRNOS, ErrnoClass.UNREACHABLE),
    **dict.fromkeys(TIMEOUT_ERRNOS, ErrnoClass.TIMEOUT),
    **dict.fromkeys(LOST_ERRNOS, ErrnoClass.LOST),
    **dict.fromkeys(OUT_OF_SOCKETS_ERRNOS, ErrnoClass.OUT_OF_SOCKETS),
}


def errno_class(code: int | None) -> ErrnoClass:
    """The class of ``code``; OTHER for an unknown or missing errno."""
    if code is None:
        return ErrnoClass.OTHER
    return _CLASS_BY_ERRNO.get(code, ErrnoClass.OTHER)


def errno_name(code: int) -> str:
    """``ECONNRESET`` for 104; the number itself where the platform has no name for it."""
    return errno.errorcode.get(code, str(code))


class ErrnoVerdict(NamedTuple):
    """A failed connect's errno as a person reads it: its class and a short reason."""

    errno_class: ErrnoClass
    reason: str  # "refused", "timeout (kernel)", or "EHOSTUNREACH: No route to host"


def classify_errno(code: int) -> ErrnoVerdict:
    """A failed connect's errno -> its class and the reason shown beside the port."""
    kind = errno_class(code)
    if kind is ErrnoClass.REFUSED:
        return ErrnoVerdict(kind, "refused")
    if kind is ErrnoClass.TIMEOUT:
        return ErrnoVerdict(kind, "timeout (kernel)")
    return ErrnoVerdict(kind, f"{errno_name(code)}: {os.strerror(code)}")
