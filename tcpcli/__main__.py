"""``python -m tcpcli``, and the ``tcpcli`` command's entry point."""

from typing import NoReturn


def main() -> NoReturn:
    """The command: the CLI's ``main`` with garbage collection paused while it starts
    (:mod:`tcpcli.cli.collector`)."""
    from tcpcli.cli import collector

    collector.pause()
    from tcpcli.cli.main import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
