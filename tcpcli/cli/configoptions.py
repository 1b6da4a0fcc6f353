"""The configuration file's options and hooks as a command declares them: ``--config``,
``--no-config`` and the ``@NAME`` TARGET callbacks.

Declaring a command (and so every ``--help``) imports only this module; the machinery that
finds, parses and checks the file (:mod:`tcpcli.cli.configcontext` and the modules below
it: ``pathlib``, ``tomllib``, the checker and its dataclasses) is imported when a callback
needs it: a file exists, ``--config``/``--no-config``/``$TCPCLI_CONFIG`` is given, or a
TARGET names ``@NAME``. Without a file there is nothing to read, and the run is the same
as with an empty one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tcpcli.cli.configlocation import CONFIG_ENV, STATE_KEY, default_location

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

F = TypeVar("F", bound=Callable[..., Any])

def _nothing_to_read(ctx: click.Context) -> bool:
    """True when no option or variable names a file and the default one does not exist:
    the run reads no configuration, so the machinery need not load."""
    if STATE_KEY in ctx.meta or os.environ.get(CONFIG_ENV):
        return False
    try:
        os.stat(default_location(os.environ)[0])
    except FileNotFoundError:
        return True
    except OSError:
        return False  # unreadable: loading it reports why
    return False


def _on_no_config(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if not value:
        return value
    from tcpcli.cli.configcontext import on_no_config

    return on_no_config(ctx, param, value)


def _on_config(install: bool) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None and _nothing_to_read(ctx):
            return value
        from tcpcli.cli.configcontext import on_config

        return on_config(ctx, param, value, install=install)
    return callback


def config_options(*, install: bool = True) -> Callable[[F], F]:
    """``--no-config`` and ``--config FILE``. Both are eager, so the file is read (and with
    ``install`` the default map set) before click resolves any other option; --no-config
    is declared first, so that --config, given or not, sees it."""
    options = [
        click.option("--no-config", is_flag=True, is_eager=True, expose_value=False,
                     callback=_on_no_config,
                     help=f"Read no configuration file (nor ${CONFIG_ENV})."),
        click.option("--config", "config_file", metavar="FILE", is_eager=True,
                     expose_value=False, callback=_on_config(install),
                     help=f"Read defaults and named targets from FILE instead of "
                          f"${CONFIG_ENV} or ~/.config/tcpcli/config.toml "
                          "(see tcpcli config)."),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


def expand_target(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """TARGET callback: ``@NAME`` -> the target's address, its options join the defaults
    (:func:`tcpcli.cli.configcontext.expand_target`); any other target is left as typed."""
    values = value if isinstance(value, tuple) else (value,)
    if not any(isinstance(item, str) and item.startswith("@") for item in values):
        return value
    from tcpcli.cli.configcontext import expand_target as expand

    return expand(ctx, param, value)


def complete_target(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[CompletionItem]:
    """``@NAME`` completions from the configuration file's targets."""
    if incomplete and not incomplete.startswith("@"):
        return []
    from tcpcli.cli.configcontext import complete_target as complete

    return complete(ctx, param, incomplete)
