"""The configuration file and named targets (``tcpcli connect @db``); ``tcpcli config``
(:mod:`tcpcli.cli.config`) shows what it says.

Which file: ``--config FILE``, else ``$TCPCLI_CONFIG``, else
``$XDG_CONFIG_HOME/tcpcli/config.toml``, else ``~/.config/tcpcli/config.toml``. A missing
default file means no configuration; a missing file that was named is an error;
``--no-config`` reads none.

What it holds (TOML), every key spelled like its flag (``max_sockets`` is ``--max-sockets``):

* top-level keys: the options every command shares (policy, allow, deny, timeout, ...);
* ``[connect]``, ``[probe]``, ``[starttls]``, ``[bench]``: any option of that command;
* ``[targets.NAME]``: an ``address`` plus shared options and ``starttls`` (connect's
  ``--starttls``, starttls's ``--protocol``); ``@NAME`` as a TARGET stands for it.

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
  flag can still take back what the file allows). :func:`policy_entries` supplies them.
* ``@NAME``: the TARGET argument's callback (:func:`expand_target`) adds the target's
  options to the default map. Click resolves the parameters given on the command line
  first, in order, and the others after them, so every option left to the default map is
  resolved after the expansion (click's "callback evaluation order").

The map must exist before the first option is resolved, hence the eager ``--config`` and
``--no-config``: eager parameters are processed before all others.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_ENV = "TCPCLI_CONFIG"
#: Under $XDG_CONFIG_HOME (or ~/.config).
RELATIVE_PATH = Path("tcpcli") / "config.toml"
TARGETS = "targets"
#: List options whose entries from every layer add up (see the module docstring).
ADDITIVE = ("allow", "deny")
#: Target keys that are not shared options: key -> {command: its parameter name}.
TARGET_ALIASES = {"starttls": {"connect": "starttls", "starttls": "protocol"}}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_META = "tcpcli.config"
_HINT = "--no-config ignores the file"


class ConfigError(click.UsageError):
    """A bad or missing configuration file, or an unknown ``@NAME``: exit 2, one line that
    names the file, line and key, and no "see --help" (the file is what to fix)."""

    see_help = False

    def __init__(self, message: str) -> None:
        super().__init__(message, ctx=click.get_current_context(silent=True))


# -- where the file is ----------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """The file to read (None: none at all), what chose it, and whether it must exist."""

    path: Path | None
    chosen_by: str
    required: bool


def locate(flag: str | None, disabled: bool, environ: Mapping[str, str]) -> Location:
    """--no-config, else --config, else $TCPCLI_CONFIG, else the XDG location."""
    if disabled:
        return Location(None, "--no-config", required=False)
    if flag:
        return Location(Path(flag).expanduser(), "--config", required=True)
    if environ.get(CONFIG_ENV):
        return Location(Path(environ[CONFIG_ENV]).expanduser(), f"${CONFIG_ENV}", required=True)
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative one
        return Location(Path(xdg) / RELATIVE_PATH, "$XDG_CONFIG_HOME", required=False)
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return Location(home / ".config" / RELATIVE_PATH, "~/.config", required=False)


# -- what it says ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    path: Path
    line: int | None
    table: str  # "" (top level), "[connect]", "[targets.db]"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where} {self.table}" if self.table else where


@dataclass(frozen=True)
class Setting:
    key: str  # as written in the file
    name: str  # the click parameter it sets
    value: Any  # as click will convert it (paths already resolved)
    origin: Origin


@dataclass(frozen=True)
class Target:
    name: str
    address: str
    origin: Origin
    settings: Mapping[str, Setting]  # by key


@dataclass(frozen=True)
class Config:
    location: Location
    exists: bool = False
    shared: Mapping[str, Setting] = field(default_factory=dict)  # by parameter name
    commands: Mapping[str, Mapping[str, Setting]] = field(default_factory=dict)
    targets: Mapping[str, Target] = field(default_factory=dict)

    def target_layer(self, target: Target, command: str) -> dict[str, Setting]:
        """The target's settings that ``command`` has, by parameter name."""
        layer = {}
        for key, setting in target.settings.items():
            if key in TARGET_ALIASES:
                name = TARGET_ALIASES[key].get(command)
                if name is not None:
                    layer[name] = Setting(key, name, setting.value, setting.origin)
            else:
                layer[setting.name] = setting
        return layer

    def layers(self, command: str, targets: Iterable[Target] = ()) -> list[dict[str, Setting]]:
        """Lowest precedence first: top level, the command's table, each target."""
        return [dict(self.shared), dict(self.commands.get(command, {})),
                *(self.target_layer(t, command) for t in targets)]

    def settings_for(self, command: str, targets: Iterable[Target] = ()) -> dict[str, Setting]:
        merged: dict[str, Setting] = {}
        for layer in self.layers(command, targets):
            merged.update(layer)
        return merged

    def default_map(self, command: str) -> dict[str, Any]:
        return {name: s.value for name, s in self.settings_for(command).items()
                if name not in ADDITIVE}

    def entries(self, command: str, targets: Iterable[Target],
                name: str) -> list[tuple[str, Origin]]:
        """An additive list's entries from every layer, with where each was written."""
        return [(entry, layer[name].origin) for layer in self.layers(command, targets)
                if name in layer for entry in layer[name].value]

    def target(self, name: str) -> Target:
        if name in self.targets:
            return self.targets[name]
        if self.location.path is None:
            raise ConfigError(f"@{name} names a target, but --no-config reads no "
                              "configuration file")
        if not self.exists:
            raise ConfigError(f"@{name} names a target, but {self.location.path} does not "
                              f"exist; define [targets.{name}] there, or pass --config FILE")
        defined = ", ".join(f"@{n}" for n in self.targets) or "none"
        raise ConfigError(f"unknown target @{name} in {self.location.path}"
                          f"{suggest(name, self.targets, '@{}')} (defined: {defined})")


def load(location: Location) -> Config:
    """Read and check the whole file; ConfigError names the file, line and key."""
    path = location.path
    if path is None:
        return Config(location)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if location.required:
            raise ConfigError(f"{path}: no such configuration file (named by "
                              f"{location.chosen_by})") from None
        return Config(location)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: "
                          f"{exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}; {_HINT})") from None
    return parse(text, location)


def parse(text: str, location: Location) -> Config:
    import tomllib

    assert location.path is not None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if found:
            where = f"{location.path}:{found[1]}:{found[2]}"
            message = message[:found.start()]
        else:
            where = str(location.path)
            message = message.replace(" (at end of document)", " at the end of the file")
        raise ConfigError(f"{where}: {message} (TOML syntax; {_HINT})") from None
    return _Checker(text, location).config(document)


# -- checking a document --------------------------------------------------------------------


def config_key(param: click.Parameter) -> str:
    """The key for an option: its first long flag, with _ for - (``--max-sockets``)."""
    longs = [name for name in param.opts if name.startswith("--")]
    return (longs[0][2:] if longs else param.name or "").replace("-", "_")


def _options(params: Iterable[click.Parameter]) -> dict[str, click.Option]:
    """Options that are settings: not --help, --config or --no-config (they set nothing)."""
    return {config_key(p): p for p in params if isinstance(p, click.Option) and p.expose_value}


def shared_options() -> dict[str, click.Option]:
    """The options every command shares, by key."""
    from tcpcli.cli.options import common_options

    def placeholder() -> None:  # pragma: no cover - never called
        pass

    return _options(getattr(common_options(placeholder), "__click_params__", []))


def configurable_command(name: str) -> click.Command | None:
    """The command named ``name`` if it reads the configuration file (it has --config)."""
    import importlib

    from tcpcli.cli.main import COMMANDS

    spec = COMMANDS.get(name)
    if spec is None:
        return None
    module, _, attribute = spec.partition(":")
    command: click.Command = getattr(importlib.import_module(module), attribute)
    # tcpcli config reads the file to report on it; it has no settings of its own.
    has_config = any(p.name == "config_file" for p in command.params)
    return command if has_config and name != "config" else None


def configurable_commands() -> list[str]:
    from tcpcli.cli.main import COMMANDS

    return [name for name in sorted(COMMANDS) if configurable_command(name) is not None]


def suggest(word: str, choices: Iterable[str], form: str = "'{}'") -> str:
    """"; did you mean 'policy'?" for the closest choice, if one is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {form.format(close[0])}?" if close else ""


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    return next((text for kind, text in names.items() if isinstance(value, kind)),
                type(value).__name__)


def _quoted(key: str) -> str:
    import json

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each table and key starts: (table..., key) -> line number.

    A light scan (tomllib keeps no positions): headers and ``key =`` at the start of a
    line, so a multi-line string that looks like one can mislead it; the line is a hint.
    """
    part = r'\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')\s*'
    dotted = rf"{part}(?:\.{part})*"
    header = re.compile(rf"^\s*\[\[?({dotted})\]\]?\s*(?:#.*)?$")
    assignment = re.compile(rf"^({dotted})=")
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if match := header.match(line):
            table = _split_key(match[1])
            lines.setdefault(table, number)
        elif match := assignment.match(line):
            lines.setdefault(table + _split_key(match[1]), number)
    return lines


def _split_key(dotted: str) -> tuple[str, ...]:
    import json

    parts = re.findall(r'\s*([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')\s*', dotted)
    return tuple(json.loads(p) if p.startswith('"') else p.strip("'") for p in parts)


class _Checker:
    """One pass over a parsed document against the click tree."""

    def __init__(self, text: str, location: Location) -> None:
        assert location.path is not None
        self.location = location
        self.path = location.path
        self.lines = key_lines(text)
        self.shared = shared_options()

    def origin(self, *keys: str) -> Origin:
        table = ""
        if keys[:1] == (TARGETS,) and len(keys) >= 2:
            table = f"[{TARGETS}.{_quoted(keys[1])}]"
        elif len(keys) > 1:
            table = f"[{keys[0]}]"
        for end in range(len(keys), 0, -1):  # the key's line, else its table's
            if keys[:end] in self.lines:
                return Origin(self.path, self.lines[keys[:end]], table)
        return Origin(self.path, None, table)

    def fail(self, keys: tuple[str, ...], message: str) -> ConfigError:
        origin = self.origin(*keys)
        where = f"{origin.path}:{origin.line}" if origin.line else str(origin.path)
        table = f"{origin.table} " if origin.table else ""
        return ConfigError(f"{where}: {table}{message} ({_HINT})")

    def config(self, document: dict[str, Any]) -> Config:
        shared: dict[str, Setting] = {}
        commands: dict[str, dict[str, Setting]] = {}
        targets: dict[str, Target] = {}
        for key, value in document.items():
            if key == TARGETS:
                targets = self.targets(value)
            elif key in self.shared:
                setting = self.setting((key,), self.shared[key], value)
                shared[setting.name] = setting
            elif isinstance(value, dict) and configurable_command(key) is not None:
                commands[key] = self.command_table(key, value)
            else:
                raise self.unknown_top_level(key, value)
        return Config(self.location, True, shared, commands, targets)

    def unknown_top_level(self, key: str, value: object) -> ConfigError:
        tables = [TARGETS, *configurable_commands()]
        if key in tables:
            return self.fail((key,), f"'{key}' must be a table ([{key}]), not "
                                     f"{_toml_type(value)}")
        owners = [c for c in tables[1:] if key in _command_keys(c)]
        if owners:
            return self.fail((key,), f"'{key}' is not an option every command has; put it "
                                     f"under [{owners[0]}]"
                                     + (f" (or {', '.join(f'[{o}]' for o in owners[1:])})"
                                        if owners[1:] else ""))
        if isinstance(value, dict):
            from tcpcli.cli.main import COMMANDS

            if key in COMMANDS:
                return self.fail((key,), f"tcpcli {key} reads no settings from the "
                                         f"configuration file (tables: {', '.join(tables)})")
            return self.fail((key,), f"unknown table [{key}]{suggest(key, tables, '[{}]')}")
        return self.fail((key,), f"unknown key '{key}'{suggest(key, self.shared)}")

    def command_table(self, command: str, table: dict[str, Any]) -> dict[str, Setting]:
        options = _command_keys(command)
        settings: dict[str, Setting] = {}
        for key, value in table.items():
            if key not in options:
                raise self.fail((command, key), f"unknown key '{key}' for tcpcli {command}"
                                                f"{suggest(key, options)}")
            setting = self.setting((command, key), options[key], value)
            settings[setting.name] = setting
        return settings

    def targets(self, value: object) -> dict[str, Target]:
        if not isinstance(value, dict):
            raise self.fail((TARGETS,), "'targets' must hold tables such as "
                                        "[targets.db] with an address")
        targets = {}
        for name, table in value.items():
            keys = (TARGETS, name)
            if not _NAME.fullmatch(name):
                raise self.fail(keys, f"target name {name!r}: use letters, digits, '_', "
                                      "'-' and '.' (it is typed as @NAME)")
            if not isinstance(table, dict):
                raise self.fail(keys, f"targets.{name} must be a table with an address, "
                                      f"not {_toml_type(table)}")
            targets[name] = self.target(name, table)
        return targets

    def target(self, name: str, table: dict[str, Any]) -> Target:
        keys = (TARGETS, name)
        address = table.get("address")
        if not isinstance(address, str) or not address.strip():
            problem = "has no address" if address is None else \
                f"address must be a non-empty string, not {_toml_type(address)}"
            raise self.fail((*keys, "address") if address is not None else keys,
                            f"target {name} {problem} (address = \"HOST:PORT\")")
        allowed = {**self.shared, **{alias: self.alias_option(alias) for alias in TARGET_ALIASES}}
        settings = {}
        for key, value in table.items():
            if key == "address":
                continue
            if key not in allowed:
                raise self.fail((*keys, key), self.unknown_target_key(key, allowed))
            settings[key] = self.setting((*keys, key), allowed[key], value)
        return Target(name, address.strip(), self.origin(*keys), settings)

    def unknown_target_key(self, key: str, allowed: Mapping[str, click.Option]) -> str:
        owners = [c for c in configurable_commands() if key in _command_keys(c)]
        message = f"unknown key '{key}' for a target{suggest(key, [*allowed, 'address'])}"
        if owners:
            message += (f" ('{key}' belongs under [{owners[0]}]: a target holds its address, "
                        "the shared options and starttls)")
        return message

    @staticmethod
    def alias_option(alias: str) -> click.Option:
        command, name = next(iter(TARGET_ALIASES[alias].items()))
        return next(o for o in _command_keys(command).values() if o.name == name)

    # -- values -------------------------------------------------------------------------

    def setting(self, keys: tuple[str, ...], option: click.Option, value: object) -> Setting:
        return Setting(keys[-1], option.name or keys[-1], self.value(keys, option, value),
                       self.origin(*keys))

    def value(self, keys: tuple[str, ...], option: click.Option, value: object) -> Any:
        import json

        key = keys[-1]
        if option.multiple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                example = f"[{json.dumps(value)}]" if isinstance(value, str) else '["..."]'
                raise self.fail(keys, f"{key} must be a list of strings ({key} = {example}), "
                                      f"not {_toml_type(value)}")
            checked = [self.scalar(keys, option, item) for item in value]
            if key in ADDITIVE:
                self.policy_entries(keys, checked)
            return checked
        return self.scalar(keys, option, value)

    def scalar(self, keys: tuple[str, ...], option: click.Option, value: object) -> Any:
        import json

        from tcpcli.cli.options import MaxSockets

        key = keys[-1]
        kind = option.type
        expected: tuple[type, ...]
        if option.count:
            expected, wanted = (int,), "a count (an integer)"
        elif option.is_flag or isinstance(kind, click.types.BoolParamType):
            expected, wanted = (bool,), "true or false"
        elif isinstance(kind, MaxSockets):
            expected, wanted = (int, str), "an integer or \"unlimited\""
        elif isinstance(kind, click.types.IntParamType):
            expected, wanted = (int,), "an integer"
        elif isinstance(kind, click.types.FloatParamType):
            expected, wanted = (int, float), "a number"
        else:
            expected, wanted = (str,), "a string"
        if isinstance(value, bool) != (bool in expected) or not isinstance(value, expected):
            raise self.fail(keys, f"{key} must be {wanted}, not {_toml_type(value)} "
                                  f"({json.dumps(value, default=str)})")
        if isinstance(kind, click.Path) and isinstance(value, str):
            value = str(self.resolve_path(value))
        if isinstance(value, str) and key == "resolver":
            self.resolver(keys, value)
        try:
            kind.convert(value, option, None)
        except click.BadParameter as exc:
            raise self.fail(keys, f"{key}: {exc.message.rstrip('.')}") from None
        return value

    def resolve_path(self, text: str) -> Path:
        """~ expands; a relative path is relative to the configuration file's directory."""
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).absolute()

    def policy_entries(self, keys: tuple[str, ...], entries: list[str]) -> None:
        from tcpcli.core.policy import Policy

        try:
            Policy.parse("workers", **{keys[-1]: entries})
        except ValueError as exc:
            raise self.fail(keys, str(exc)) from None

    def resolver(self, keys: tuple[str, ...], value: str) -> None:
        from tcpcli.core.resolve import parse_server

        try:
            servers = [s.strip() for s in value.split(",") if s.strip()]
            if not servers:
                raise ValueError(f"invalid resolver {value!r}: give an IP address")
            for server in servers:
                parse_server(server)
        except ValueError as exc:
            raise self.fail(keys, str(exc)) from None


def _command_keys(command: str) -> dict[str, click.Option]:
    found = configurable_command(command)
    return _options(found.params) if found is not None else {}


# -- wiring into click ----------------------------------------------------------------------


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
    state: InvocationState = ctx.meta.setdefault(_META, InvocationState())
    return state


def current_config(ctx: click.Context) -> Config:
    """The configuration this invocation reads (loading it if nothing has yet)."""
    state = invocation_state(ctx)
    location = locate(state.flag, state.disabled, os.environ)
    if state.config is None or state.config.location != location:
        state.config = load(location)
    return state.config


def _recording(callback: Callable[[click.Context, click.Parameter, Any], Any]
               ) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Under resilient parsing click drops a callback's error; keep it for ``config show``."""
    def wrapper(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return callback(ctx, param, value)
        except click.ClickException as exc:
            if ctx.resilient_parsing:
                invocation_state(ctx).errors.append(exc)
            raise
    return wrapper


@_recording
def _on_no_config(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        state = invocation_state(ctx)
        if state.flag is not None and ctx.get_parameter_source("config_file") \
                is ParameterSource.COMMANDLINE:
            raise click.UsageError("--config and --no-config exclude each other", ctx)
        state.disabled = True
    return value


def _on_config(install: bool) -> Callable[[click.Context, click.Parameter, Any], Any]:
    @_recording
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        state = invocation_state(ctx)
        if value is not None:
            if state.disabled:
                raise click.UsageError("--config and --no-config exclude each other", ctx)
            state.flag = value
        config = current_config(ctx)
        if install:
            ctx.default_map = config.default_map(ctx.info_name or "")
        return value
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
    state = ctx.meta.get(_META)
    return list(state.targets.get(ctx.info_name or "", [])) if state else []


def policy_list(ctx: click.Context | None, name: str,
                value: Iterable[str]) -> list[tuple[str, str, str | None]]:
    """An ``allow``/``deny`` list as the command uses it: (entry, source, origin) for the
    file's entries (every layer, this command's @targets included), then for those of the
    flag or environment variable, which add to them."""
    state = ctx.meta.get(_META) if ctx is not None else None
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
