"""Exit codes: one enum, documented in the README and the man page.

Scripts branch on these (``case $? in 3) echo blocked;; ...``), so values never change.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # anything not listed below
    USAGE = 2  # bad invocation (click's own code)
    BLOCKED = 3  # the destination policy refused the destination; nothing was sent
    DNS = 4  # the name could not be resolved (NXDOMAIN, no address, SERVFAIL, DNS timeout)
    UNREACHABLE = 5  # connection refused, or no route / host unreachable, or proxy failure
    TIMEOUT = 6  # connect or idle timeout
    TLS_VERIFY = 7  # certificate verification or pin check failed
    PROTOCOL = 8  # TLS handshake or application-protocol error (e.g. STARTTLS refused)
    CHECK_FAILED = 9  # an --expect check or a threshold was not met
    CONNECTION_LOST = 10  # the connection was reset or aborted mid-stream
    ADDRESS_IN_USE = 11  # listen: the address is already in use (another server has the port)
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM


#: Error ``kind`` (tcpcli.core.errors) -> exit code. Unlisted kinds exit with ERROR.
EXIT_CODE_BY_KIND: dict[str, ExitCode] = {
    "usage": ExitCode.USAGE,
    "blocked": ExitCode.BLOCKED,
    "dns": ExitCode.DNS,
    "dns-timeout": ExitCode.DNS,
    "refused": ExitCode.UNREACHABLE,
    "unreachable": ExitCode.UNREACHABLE,
    "proxy": ExitCode.UNREACHABLE,
    "timeout": ExitCode.TIMEOUT,
    "tls-verify": ExitCode.TLS_VERIFY,
    "tls": ExitCode.PROTOCOL,
    "protocol": ExitCode.PROTOCOL,
    "reset": ExitCode.CONNECTION_LOST,
}


def exit_code_for(kind: str) -> ExitCode:
    return EXIT_CODE_BY_KIND.get(kind, ExitCode.ERROR)
