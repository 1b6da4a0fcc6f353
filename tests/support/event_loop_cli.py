"""Run the tcpcli CLI with its loop-free paths turned off:
``python -m tests.support.event_loop_cli ARGS``.

A plaintext or TLS ``connect`` to an address known without DNS (``tcpcli.core.blocking``),
a ``starttls`` there (``tcpcli.core.blockingstarttls``) and a plain ``probe`` of literal
addresses (``Scanner.run_now``) run without an event loop; everything else runs on anyio. A test runs the same run both ways to prove the two paths
are one product to the user (``tests.support.two_paths``).
"""

from __future__ import annotations

import sys

from tcpcli.cli.connect import ConnectSession
from tcpcli.cli.probe import ProbeSession
from tcpcli.cli.starttls import StartTlsSession


def main() -> None:
    ConnectSession.main_now = lambda self, invocation: None  # type: ignore[method-assign]
    ProbeSession.main_now = lambda self, invocation: None  # type: ignore[method-assign]
    StartTlsSession.main_now = lambda self, invocation: None  # type: ignore[method-assign]
    from tcpcli.cli.main import main as tcpcli_main

    tcpcli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
