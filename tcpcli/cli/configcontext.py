"""The configuration file in a click invocation: ``--config``/``--no-config``, the default
map, ``@NAME`` targets, and allow/deny lists that add up. The file itself is
:mod:`tcpcli.cli.configfile`.

Precedence, flag > environment > config > default, is click's own: the file becomes the
command context's ``default_map``, which click consults after the command line and the
environment variable and before the option's default, and reports as
``ParameterSource.DEFAULT_MAP`` (so ``config show`` can say where each value came from).
Filling the map rather than patching values after parsing keeps one precedence rule for
every option of every command, and click still converts and range-checks what the file
says. Within the file a target beats its command's table, which beats the top level.

Click cannot know two things, so they are done here:

* ``allow``/``deny`` entries from the file always apply; ``--allow``/``--deny`` (or their
  environment variables) add to them instead of replacing them (deny beats allow, so a
  flag can still take back what the file allows). :func:`policy_list` supplies them.
* ``@NAME``: the TARGET argument's callback (:func:`expand_target`) adds the target's
  options to the default map. Click resolves the parameters given on the command line
  first, in order, and the others after them, so every option left to the default map is
  resolved after the expansion (click's "callback evaluation order").

The map must exist before the first option is resolved, hence the eager ``--config`` and
``--no-config``: eager parameters are processed before all others. The file is checked
against the commands of the running tree (``CommandTree.of(ctx)``), handed down from the
click context rather than imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click
from click.core import ParameterSource

from tcpcli.cli.configcheck import CommandTree
from tcpcli.cli.configfile import load, locate
from tcpcli.cli.configlocation import STATE_KEY
from tcpcli.cli.configmodel import (
    ADDITIVE,
    REQUIRED_ALIASES,
    TARGET_ALIASES,
    Config,
    ConfigError,
    Target,
)

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class InvocationState:
    """Per invocation (click shares ``ctx.meta`` down the context chain)."""

    flag: str | None = None
    disabled: bool = False
    config: Config | None = None
    targets: dict[str, list[Target]] = field(default_factory=dict)  # command -> used
    #: Errors click swallowed while parsing resiliently (completion, ``config show``).
    errors: list[click.ClickException] = field(default_factory=list)


def invocation_state(ctx: click.Context) -> InvocationState:
    state: InvocationState = ctx.meta.setdefault(STATE_KEY, InvocationState())
    return state


def current_config(ctx: click.Context) -> Config:
    """The configuration this invocation reads (loading it if nothing has yet)."""
    state = invocation_state(ctx)
    location = locate(state.flag, state.disabled, os.environ)
    if state.config is None or state.config.location != location:
        state.config = load(location, CommandTree.of(ctx))
    return state.config


def _recording(callback: Callable[Concatenate[click.Context, P], R]
               ) -> Callable[Concatenate[click.Context, P], R]:
    """Under resilient parsing click drops a callback's error; keep it for ``config show``."""
    def wrapper(ctx: click.Context, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return callback(ctx, *args, **kwargs)
        except click.ClickException as exc:
            if ctx.resilient_parsing:
                invocation_state(ctx).errors.append(exc)
            raise
    return wrapper


@_recording
def on_no_config(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """``--no-config``'s callback (declared in :mod:`tcpcli.cli.configoptions`)."""
    if value:
        state = invocation_state(ctx)
        if state.flag is not None and ctx.get_parameter_source("config_file") \
                is ParameterSource.COMMANDLINE:
            raise click.UsageError("--config and --no-config exclude each other", ctx)
        state.disabled = True
    return value


@_recording
def on_config(ctx: click.Context, param: click.Parameter, value: str | None, *,
              install: bool) -> str | None:
    """``--config``'s callback: read the file; with ``install`` its settings become the
    command's default map."""
    state = invocation_state(ctx)
    if value is not None:
        if state.disabled:
            raise click.UsageError("--config and --no-config exclude each other", ctx)
        state.flag = value
    config = current_config(ctx)
    if install:
        ctx.default_map = config.default_map(ctx.info_name or "")
    return value


@_recording
def expand_target(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """TARGET callback: ``@NAME`` -> the target's address; its options join the defaults."""
    if isinstance(value, tuple):
        return tuple(_expand(ctx, item) for item in value)
    return _expand(ctx, value) if isinstance(value, str) else value


def _expand(ctx: click.Context, text: str) -> str:
    if not text.startswith("@"):
        return text
    command = ctx.info_name or ""
    config = current_config(ctx)
    target = config.target(text[1:])
    for key in REQUIRED_ALIASES:
        if key in target.settings and command not in TARGET_ALIASES[key]:
            *first, last = TARGET_ALIASES[key]
            commands = f"{', '.join(first)} and {last}" if first else last
            raise ConfigError(f"{target.settings[key].origin}: target {target.name} is reached "
                              f"with {key}, which {command} cannot do yet (only {commands} "
                              "can): it will not dial the address directly instead")
    used = invocation_state(ctx).targets.setdefault(command, [])
    layer = config.target_layer(target, command)
    options = {p.name: p for p in ctx.command.params}
    for earlier in used:  # probe @a @b: one run, so one value per option
        for name, setting in config.target_layer(earlier, command).items():
            if name in ADDITIVE or name not in layer or layer[name].value == setting.value:
                continue
            option = options[name]
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE \
                    or option.resolve_envvar_value(ctx) is not None:
                continue  # the flag (or variable) decides: it beats both targets
            raise click.UsageError(
                f"targets @{earlier.name} and @{target.name} disagree on {setting.key}; "
                f"give {option.opts[0]} to choose", ctx)
    used.append(target)
    if ctx.default_map is None:
        ctx.default_map = {}
    ctx.default_map.update({n: s.value for n, s in layer.items() if n not in ADDITIVE})
    return target.address


def complete_target(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[CompletionItem]:
    """``@NAME`` completions from the configuration file's targets."""
    from click.shell_completion import CompletionItem

    if incomplete and not incomplete.startswith("@"):
        return []
    try:
        config = current_config(ctx)
    except click.ClickException:
        return []
    return [CompletionItem(f"@{name}", help=target.address)
            for name, target in sorted(config.targets.items())
            if name.startswith(incomplete[1:])]


def named_targets(ctx: click.Context) -> list[Target]:
    state = ctx.meta.get(STATE_KEY)
    return list(state.targets.get(ctx.info_name or "", [])) if state else []


def declared_targets(ctx: click.Context | None) -> list[str]:
    """The configuration file's targets, as the ``bindings`` policy declares them."""
    state = ctx.meta.get(STATE_KEY) if ctx is not None else None
    if ctx is None or state is None or state.config is None:
        return []
    return [target.address for target in state.config.targets.values()]


def policy_list(ctx: click.Context | None, name: str,
                value: Iterable[str]) -> list[tuple[str, str, str | None]]:
    """An ``allow``/``deny`` list as the command uses it: (entry, source, origin) for the
    file's entries (every layer, this command's @targets included), then for those of the
    flag or environment variable, which add to them."""
    state = ctx.meta.get(STATE_KEY) if ctx is not None else None
    entries: list[tuple[str, str, str | None]] = []
    if ctx is not None and state is not None and state.config is not None:
        command = ctx.info_name or ""
        entries += [(entry, "config", str(origin)) for entry, origin in
                    state.config.entries(command, state.targets.get(command, ()), name)]
    source = ctx.get_parameter_source(name) if ctx is not None else None
    if source is ParameterSource.ENVIRONMENT and ctx is not None:
        option = next(p for p in ctx.command.params if p.name == name)
        entries += [(entry, "env", option.envvar if isinstance(option.envvar, str) else None)
                    for entry in value]
    elif source is not ParameterSource.DEFAULT_MAP:
        entries += [(entry, "flag", None) for entry in value]
    return entries


def check_port(ctx: click.Context | None) -> None:
    """``@NAME PORT``: the target already has a port; say so rather than fail to parse."""
    if ctx is None or ctx.params.get("port") is None:
        return
    targets = named_targets(ctx)
    if targets:
        raise click.UsageError(
            f"@{targets[0].name} is {targets[0].address}, which has its port: drop PORT, "
            "or give the address with the port you want", ctx)
