"""Run the tcpcli CLI with connect's loop-free path turned off:
``python -m tests.support.event_loop_cli ARGS``.

A plaintext ``connect`` to an address known without DNS runs without an event loop
(``tcpcli.core.blocking``); everything else runs on anyio. A test runs the same
conversation both ways to prove the two paths are one product to the user.
"""

from __future__ import annotations

import sys

from tcpcli.cli.connect import ConnectSession


def main() -> None:
    ConnectSession.main_now = lambda self, invocation: None  # type: ignore[method-assign]
    from tcpcli.cli.main import main as tcpcli_main

    tcpcli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
