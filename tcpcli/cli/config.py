"""``tcpcli config``: which configuration file tcpcli reads, whether it is valid, and every
setting a command would use with where it came from. The file itself, and how it meets
click's precedence, are :mod:`tcpcli.cli.configfile` and :mod:`tcpcli.cli.configcontext`.
The reports are :mod:`tcpcli.cli.configreport`, imported when the command runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tcpcli.cli.configlocation import CONFIG_ENV
from tcpcli.cli.configoptions import config_options

if TYPE_CHECKING:
    from tcpcli.cli.environment import Environment

ACTIONS = ("show", "path", "check")

EXAMPLES = f"""
\b
Examples:
  tcpcli config show                     # shared settings, each with its source
  tcpcli config show connect @db -v      # what 'tcpcli connect @db -v' would use
  tcpcli config show --json probe | jq '.settings[] | select(.source == "config")'
  tcpcli config check && tcpcli connect @db
  tcpcli config check --reach            # are the tunnels' entry points up?
  {CONFIG_ENV}=./ci.toml tcpcli config path
"""


@click.command("config", epilog=EXAMPLES, context_settings={"ignore_unknown_options": True},
               short_help="Show, locate or check the configuration file.")
@click.argument("action", type=click.Choice(ACTIONS), metavar="ACTION")
@click.argument("command_line", nargs=-1, type=click.UNPROCESSED,
                metavar="[COMMAND [ARGS]...]")
@click.option("--json", "as_json", is_flag=True, help="show: one JSON object on stdout.")
@click.option("--reach", is_flag=True,
              help="check: also dial each target's via entry point (a TCP connect, nothing "
                   "sent) and say which are down.")
@config_options(install=False)
@click.pass_obj
def config_command(env: Environment | None, /, action: str, command_line: tuple[str, ...],
                   as_json: bool, reach: bool) -> None:
    """Show, locate or check the configuration file (ACTION: show, path or check).

    \b
    show   every setting of COMMAND (default: the shared ones) with its value and
           source (flag, env, config FILE:LINE or default), and the named targets;
           ARGS are the command's own: 'show connect @db --timeout 3' resolves
           exactly as 'connect @db --timeout 3' would
    path   print the file tcpcli reads (it need not exist)
    check  read the whole file; exit 2 with FILE:LINE and the key if it is wrong;
           with --reach, also connect to each target's via entry point (the
           forwarder must be up: exit 5 refused, 6 no answer, 4 unresolved)

    The file is --config FILE, else $TCPCLI_CONFIG, else
    $XDG_CONFIG_HOME/tcpcli/config.toml, else ~/.config/tcpcli/config.toml; none with
    --no-config. A missing default file is fine, a missing named one an error.

    It is TOML. Keys are spelled like the flags (max_sockets for --max-sockets). At the
    top level: the options every command shares. In [connect], [probe], [ping], [starttls] and
    [bench]: any option of that command. In [targets.NAME]: an address, shared options,
    starttls (connect's --starttls, starttls's --protocol), and via, send_proxy and
    proxy_source (how it is reached); @NAME as a TARGET stands for it. Relative paths
    are relative to the file; ~ expands.

    \b
      policy = "workers"
      allow = ["10.0.0.0/8"]         # added to any --allow
      timeout = 5
      ca_file = "corp-ca.pem"        # next to this file
      [probe]
      concurrency = 256
      [targets.db]                   # tcpcli connect @db
      address = "db.internal:5432"
      starttls = "postgres"

    A flag beats its TCPCLI_* environment variable, which beats the file, which beats
    the default; in the file [targets.NAME] beats [COMMAND], which beats the top level.
    allow and deny add up instead: the file's entries always apply and --allow/--deny add
    to them (deny beats allow). --no-tls, --no-insecure, --no-json and --no-quiet switch
    off what the file switched on.
    """
    from tcpcli.cli.configreport import report

    report(env, click.get_current_context(), action, command_line, as_json=as_json,
           reach=reach)
