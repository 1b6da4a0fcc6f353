"""The ``tcpcli`` command group. Commands live one per module and are imported on use,
so ``tcpcli --version`` costs little more than importing click.

Three things make the group easy to meet: bare ``tcpcli`` prints a short overview on
stdout and exits 0 (it is a request for orientation, not a mistake; ``tcpcli --help``
is the long form); a misspelled command gets "did you mean"; and the options every
command shares (``--allow``, ``--json``, ``-v`` ...) may come before the command as well
as after it (``tcpcli --allow 127.0.0.1 connect 127.0.0.1:22``).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, NamedTuple, NoReturn

import click

from tcpcli import __version__

if TYPE_CHECKING:
    from tcpcli.cli.environment import Environment

class CommandEntry(NamedTuple):
    """Where a command lives, and its one-line summary: listing the commands (``tcpcli
    --help``, bare ``tcpcli``) reads the summary here instead of importing every command
    module. It is the command's ``short_help``; a test keeps the two equal."""

    target: str  # "module:attribute"
    summary: str


#: command name -> its entry; one module per command.
COMMANDS = {
    "bench": CommandEntry("tcpcli.cli.bench:bench_command",
                          "Measure connect, TLS and request latency, or throughput."),
    "completion": CommandEntry("tcpcli.cli.completion:completion_command",
                               "Print the bash, zsh or fish completion script."),
    "config": CommandEntry("tcpcli.cli.config:config_command",
                           "Show, locate or check the configuration file."),
    "connect": CommandEntry("tcpcli.cli.connect:connect_command",
                            "Open a TCP or TLS connection and pipe stdin/stdout through it."),
    "demo": CommandEntry("tcpcli.cli.demo:demo_command",
                         "A tour of every command on this machine: start here."),
    "listen": CommandEntry("tcpcli.cli.listen:listen_command",
                           "Serve echo, discard, chargen or a banner (TLS too) for tests."),
    "ping": CommandEntry("tcpcli.cli.ping:ping_command",
                         "Handshake with a service every second: loss, times, DNS flips."),
    "probe": CommandEntry("tcpcli.cli.probe:probe_command",
                          "Scan TCP ports: open, closed or filtered, with banners and TLS."),
    "starttls": CommandEntry("tcpcli.cli.starttls:starttls_command",
                             "Upgrade a mail, XMPP, LDAP or database session to TLS and "
                             "report."),
}

#: The order the overview lists commands in: the ones a newcomer wants first.
OVERVIEW_ORDER = ("demo", "connect", "probe", "ping", "starttls", "bench", "listen", "config",
                  "completion")

OVERVIEW_EXAMPLES = """\
  tcpcli demo                                   # a tour on this machine: no setup
  tcpcli connect example.com:80 --send 'HEAD / HTTP/1.0\\r\\n\\r\\n'
  tcpcli probe --allow 127.0.0.1 127.0.0.1 -p 22,80,443"""

#: Help is wrapped to the terminal, but never wider than this.
MAX_HELP_WIDTH = 100
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": MAX_HELP_WIDTH}
#: The group's own options: no shared option, so ``tcpcli --help`` need not load those.
GROUP_OPTIONS = frozenset({"-h", "--help", "-V", "--version"})


def _global_options() -> dict[str, bool]:
    """Every spelling of a shared option -> whether it takes a value."""
    from tcpcli.cli.sharedoptions import shared_parameters

    spellings: dict[str, bool] = {}
    for param in shared_parameters():
        if isinstance(param, click.Option):
            takes_value = not (param.is_flag or param.count)
            for name in (*param.opts, *param.secondary_opts):
                spellings[name] = takes_value
    return spellings


def move_global_options(args: list[str], commands: set[str]) -> list[str]:
    """``--allow X connect T`` -> ``connect --allow X T``: shared options given before the
    command go right after its name, so the command's own parser reads them (and later
    ones, given after the command, win as usual). Anything else is left where it is."""
    if not args or args[0] in commands:
        return args
    spellings: dict[str, bool] | None = None
    moved: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token in commands:
            return [token, *moved, *args[index + 1:]]
        if not token.startswith("-") or token == "--" or token in GROUP_OPTIONS:
            break
        if spellings is None:
            spellings = _global_options()
        name, equals, _ = token.partition("=")
        if name in spellings:
            takes_value = spellings[name] and not equals
            moved.extend(args[index:index + 1 + takes_value])
            index += 1 + takes_value
        elif not token.startswith("--") and len(token) > 2 and all(
                f"-{letter}" in spellings and not spellings[f"-{letter}"]
                for letter in token[1:]):
            moved.append(token)  # -vv, -4k: short flags run together
            index += 1
        else:
            break
    return args


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attribute = entry.target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, move_global_options(args, set(COMMANDS)))

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if name not in COMMANDS and not name.startswith("-") and not ctx.resilient_parsing:
            from tcpcli.cli.configmodel import suggest

            raise click.UsageError(f"no command {name!r}{suggest(name, COMMANDS)} "
                                   f"(commands: {', '.join(OVERVIEW_ORDER)})", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table: no command module is imported to list them."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name].summary)
                                for name in self.list_commands(ctx)])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Examples"):
            formatter.write(OVERVIEW_EXAMPLES + "\n")
        formatter.write_paragraph()
        formatter.write_text("The options every command shares (--policy, --allow, --json, "
                             "-v ...) may also be given before the command. New here? "
                             "Run 'tcpcli demo'. Each command has --help.")


def overview(ctx: click.Context) -> str:
    """What bare ``tcpcli`` prints: the commands in a line each, three examples, the demo."""
    group = ctx.command
    assert isinstance(group, click.Group)
    formatter = ctx.make_formatter()
    formatter.write_text(f"tcpcli {__version__}: {group.get_short_help_str(limit=200)}")
    with formatter.section("Commands"):
        formatter.write_dl([(name, COMMANDS[name].summary) for name in OVERVIEW_ORDER])
    with formatter.section("Examples"):
        formatter.write(OVERVIEW_EXAMPLES + "\n")
    formatter.write_paragraph()
    formatter.write_text("New here? 'tcpcli demo' shows what it does. 'tcpcli COMMAND --help' "
                         "explains a command; 'tcpcli --help' lists everything.")
    return formatter.getvalue()


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.version_option(__version__, "-V", "--version", prog_name="tcpcli")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """A TCP client and diagnostics tool on the socket model of Cloudflare Workers' connect().

    \b
    Destinations a Worker may not reach (localhost, Cloudflare's ranges, port 25) are
    refused by default, and at most 6 sockets are open at once; --policy, --allow and
    --max-sockets lift those limits explicitly.
    """
    if ctx.invoked_subcommand is None:
        from tcpcli.cli.environment import Environment

        env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
        env.stdout.write(overview(ctx).encode("utf-8"))
        env.stdout.flush()


def _source_hint(exc: click.ClickException) -> str:
    """" (from $TCPCLI_ALLOW)" when the bad value came from an environment variable."""
    if not isinstance(exc, click.BadParameter) or exc.param is None or exc.ctx is None:
        return ""
    import os

    param = exc.param
    if param.name is None or exc.ctx.get_parameter_source(param.name) \
            is not click.core.ParameterSource.ENVIRONMENT:
        return ""
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
    given = [name for name in names if os.environ.get(name)]
    return f" (from ${given[0]})" if given else ""


def help_width() -> int | None:
    """The width click's help formatter would pick, found without its ``shutil`` import
    (with bz2 and lzma, a tenth of a ``--help``'s start-up): ``$COLUMNS``, else the
    terminal's, else 80; less 2, at most MAX_HELP_WIDTH, at least 50. None when click's
    test runner fixes the width (it sets ``FORCED_WIDTH``)."""
    if click.formatting.FORCED_WIDTH is not None:
        return None
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # None, closed, not a terminal
            columns = 0
        columns = columns or 80
    return max(min(columns, MAX_HELP_WIDTH) - 2, 50)


def main(argv: list[str] | None = None, obj: Environment | None = None) -> NoReturn:
    """Entry point. Usage errors are one line on stderr and exit 2 (scripts parse it)."""
    from tcpcli.cli.environment import Environment

    env = obj if obj is not None else Environment()
    try:
        cli.main(args=argv, prog_name="tcpcli", obj=env, standalone_mode=False,
                 terminal_width=help_width())
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        context = getattr(exc, "ctx", None)
        command = context.command_path if isinstance(context, click.Context) else "tcpcli"
        message = " ".join(exc.format_message().split()) + _source_hint(exc)
        # A configuration error names the file and line to fix; --help would not help.
        see_help = f" (see '{command} --help')" if getattr(exc, "see_help", True) else ""
        env.stderr.write(f"{command}: error: {message}{see_help}\n")
        sys.exit(exc.exit_code)
    sys.exit(0)
