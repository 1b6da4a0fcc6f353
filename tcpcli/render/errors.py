"""An error as people read it (one line ending with the flags that fix it) and as the
``error`` event carries it: the one place both forms are made."""

from __future__ import annotations

from tcpcli.core.errors import PinMismatchError, TcpcliError

#: The flags that answer an error, by kind (policy errors name their own lift).
FIX_HINTS = {
    "tls-verify": "trust its CA with --ca-file FILE, accept its key with --pin, or go on "
                  "regardless with --insecure",
    "dns": "ask another server with --resolver IP, or give an address",
    "dns-timeout": "ask another server with --resolver IP, or allow longer with --timeout",
    "timeout": "allow longer with --timeout SECONDS",
}

#: What an error may know beyond its kind and message, carried into its event when set.
ERROR_DETAILS = ("rule", "lift", "verify_code", "reason")


def error_line(error: TcpcliError) -> str:
    """The one line a person reads, ending with the flags that would fix it."""
    hint = None if isinstance(error, PinMismatchError) else FIX_HINTS.get(error.kind)
    return f"{error} ({hint})" if hint else str(error)


def error_fields(error: TcpcliError, code: int) -> dict[str, object]:
    """The ``error`` event's fields: kind, message, exit code, what a Worker would see,
    and the rule, lift, verify code or reason where the error has them."""
    fields: dict[str, object] = {"kind": error.kind, "message": str(error),
                                 "exit_code": int(code),
                                 "workers_message": error.workers_message}
    for name in ERROR_DETAILS:
        value = getattr(error, name, None)
        if value is not None:
            fields[name] = value
    return fields
