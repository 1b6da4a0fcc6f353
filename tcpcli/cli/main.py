"""The ``tcpcli`` command group. Commands live one per module and are imported on use,
so ``tcpcli --version`` costs little more than importing click."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from tcpcli import __version__

#: command name -> "module:attribute"; one module per command.
COMMANDS = {
    "bench": "tcpcli.cli.bench:bench_command",
    "completion": "tcpcli.cli.completion:completion_command",
    "config": "tcpcli.cli.config:config_command",
    "connect": "tcpcli.cli.connect:connect_command",
    "demo": "tcpcli.cli.demo:demo_command",
    "listen": "tcpcli.cli.listen:listen_command",
    "probe": "tcpcli.cli.probe:probe_command",
    "starttls": "tcpcli.cli.starttls:starttls_command",
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, _, attribute = spec.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="tcpcli")
def cli() -> None:
    """A TCP client and diagnostics tool on the socket model of Cloudflare Workers' connect().

    \b
    Destinations a Worker may not reach (localhost, Cloudflare's ranges, port 25) are
    refused by default, and at most 6 sockets are open at once; --policy, --allow and
    --max-sockets lift those limits explicitly.
    """


def main(argv: list[str] | None = None, obj: Any = None) -> None:
    """Entry point. Usage errors are one line on stderr and exit 2 (scripts parse it)."""
    from tcpcli.cli.environment import Environment

    env = obj if obj is not None else Environment()
    try:
        cli.main(args=argv, prog_name="tcpcli", obj=env, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        command = exc.ctx.command_path if getattr(exc, "ctx", None) else "tcpcli"  # type: ignore[attr-defined]
        message = " ".join(exc.format_message().split())
        # A configuration error names the file and line to fix; --help would not help.
        see_help = f" (see '{command} --help')" if getattr(exc, "see_help", True) else ""
        env.stderr.write(f"{command}: error: {message}{see_help}\n")
        sys.exit(exc.exit_code)
    sys.exit(0)
