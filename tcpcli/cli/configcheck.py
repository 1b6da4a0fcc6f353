"""Which keys and values a configuration file may hold, checked against the click tree.

Every key is an option, spelled like its flag (``max_sockets`` is ``--max-sockets``):
the shared options (:mod:`tcpcli.cli.sharedoptions`) at the top level and in targets,
any option of a command in that command's table. Values are checked as click would
convert them, so the file fails with FILE:LINE and the key rather than mid-run.

The commands come from a :class:`CommandTree` the caller hands in (the root of the
running click context) rather than from an import: the commands themselves import the
configuration machinery, so this module must not depend on them (nor on ``cli.main``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from tcpcli.cli.configmodel import (
    NO_CONFIG_HINT,
    TARGET_ALIASES,
    TARGETS,
    Config,
    ConfigError,
    Location,
    Origin,
    Setting,
    Target,
    suggest,
)
from tcpcli.cli.paramtypes import TcpcliType
from tcpcli.cli.sharedoptions import shared_parameters

__all__ = ["CommandTree", "check", "config_key", "shared_options"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def config_key(param: click.Parameter) -> str:
    """The key for an option: its first long flag, with _ for - (``--max-sockets``)."""
    longs = [name for name in param.opts if name.startswith("--")]
    return (longs[0][2:] if longs else param.name or "").replace("-", "_")


def _options(params: Iterable[click.Parameter]) -> dict[str, click.Option]:
    """Options that are settings: not --help, --config or --no-config (they set nothing)."""
    return {config_key(p): p for p in params if isinstance(p, click.Option) and p.expose_value}


def shared_options() -> dict[str, click.Option]:
    """The options every command shares, by key."""
    return _options(shared_parameters())


class CommandTree:
    """The commands of one invocation, by name: the root group's subcommands, or a lone
    root command. Only those that read the file (they have ``--config``) have tables."""

    def __init__(self, root: click.Command, name: str = "tcpcli") -> None:
        self._root = root
        self._ctx = click.Context(root, info_name=name)
        self._configurable: dict[str, click.Command | None] = {}

    @classmethod
    def of(cls, ctx: click.Context) -> CommandTree:
        """The tree ``ctx`` runs in."""
        root = ctx.find_root()
        return cls(root.command, root.info_name or "tcpcli")

    def names(self) -> list[str]:
        """Every command's name, configurable or not."""
        if isinstance(self._root, click.Group):
            return self._root.list_commands(self._ctx)
        return [self._ctx.info_name or ""]

    def command(self, name: str) -> click.Command | None:
        if isinstance(self._root, click.Group):
            return self._root.get_command(self._ctx, name)
        return self._root if name == self._ctx.info_name else None

    def configurable(self, name: str) -> click.Command | None:
        """The command named ``name`` if it reads the configuration file (it has --config)."""
        if name not in self._configurable:
            command = self.command(name)
            # tcpcli config reads the file to report on it; it has no settings of its own.
            has_config = command is not None and any(
                p.name == "config_file" for p in command.params)
            self._configurable[name] = command if has_config and name != "config" else None
        return self._configurable[name]

    def configurable_names(self) -> list[str]:
        return [name for name in sorted(self.names()) if self.configurable(name) is not None]

    def keys(self, name: str) -> dict[str, click.Option]:
        """The keys a ``[name]`` table may hold (none if the command reads no file)."""
        found = self.configurable(name)
        return _options(found.params) if found is not None else {}


def check(document: dict[str, Any], location: Location, lines: Mapping[tuple[str, ...], int],
          tree: CommandTree) -> Config:
    """The Config a parsed ``document`` says; ConfigError names the file, line and key.

    ``lines`` maps (table..., key) to where it is written (:func:`configfile.key_lines`).
    """
    return _Checker(location, lines, tree).config(document)


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    return next((text for kind, text in names.items() if isinstance(value, kind)),
                type(value).__name__)


def _quoted(key: str) -> str:
    import json

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


class _Checker:
    """One pass over a parsed document against the click tree."""

    def __init__(self, location: Location, lines: Mapping[tuple[str, ...], int],
                 tree: CommandTree) -> None:
        assert location.path is not None
        self.location = location
        self.path: Path = location.path
        self.lines = lines
        self.tree = tree
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
        return ConfigError(f"{where}: {table}{message} ({NO_CONFIG_HINT})")

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
            elif isinstance(value, dict) and self.tree.configurable(key) is not None:
                commands[key] = self.command_table(key, value)
            else:
                raise self.unknown_top_level(key, value)
        return Config(self.location, True, shared, commands, targets)

    def unknown_top_level(self, key: str, value: object) -> ConfigError:
        tables = [TARGETS, *self.tree.configurable_names()]
        if key in tables:
            return self.fail((key,), f"'{key}' must be a table ([{key}]), not "
                                     f"{_toml_type(value)}")
        owners = [c for c in tables[1:] if key in self.tree.keys(c)]
        if owners:
            return self.fail((key,), f"'{key}' is not an option every command has; put it "
                                     f"under [{owners[0]}]"
                                     + (f" (or {', '.join(f'[{o}]' for o in owners[1:])})"
                                        if owners[1:] else ""))
        if isinstance(value, dict):
            if key in self.tree.names():
                return self.fail((key,), f"tcpcli {key} reads no settings from the "
                                         f"configuration file (tables: {', '.join(tables)})")
            return self.fail((key,), f"unknown table [{key}]{suggest(key, tables, '[{}]')}")
        return self.fail((key,), f"unknown key '{key}'{suggest(key, self.shared)}")

    def command_table(self, command: str, table: dict[str, Any]) -> dict[str, Setting]:
        options = self.tree.keys(command)
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
        self.one_target_per_entry_point(targets)
        return targets

    def one_target_per_entry_point(self, targets: Mapping[str, Target]) -> None:
        """A tunnel's entry point forwards to one target (ssh -L 15432:db:5432): two
        targets of different addresses through one entry point is a mistake that would
        send one's traffic to the other."""
        seen: dict[str, Target] = {}
        for target in targets.values():
            setting = target.settings.get("via")
            if setting is None:
                continue
            entry = str(setting.value)
            first = seen.setdefault(entry, target)
            if first is not target and first.address != target.address:
                raise self.fail(
                    (TARGETS, target.name, "via"),
                    f"targets {first.name} ({first.address}) and {target.name} "
                    f"({target.address}) go through the same entry point {entry}: a "
                    "forwarder reaches one target, so one of them would reach the other")

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
        owners = [c for c in self.tree.configurable_names() if key in self.tree.keys(c)]
        message = f"unknown key '{key}' for a target{suggest(key, [*allowed, 'address'])}"
        if owners:
            message += (f" ('{key}' belongs under [{owners[0]}]: a target holds its address, "
                        "the shared options, starttls, via, send_proxy and proxy_source)")
        return message

    def alias_option(self, alias: str) -> click.Option:
        command, name = next(iter(TARGET_ALIASES[alias].items()))
        return next(o for o in self.tree.keys(command).values() if o.name == name)

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
            return [self.scalar(keys, option, item) for item in value]
        return self.scalar(keys, option, value)

    def scalar(self, keys: tuple[str, ...], option: click.Option, value: object) -> Any:
        import json

        key = keys[-1]
        kind = option.type
        expected: tuple[type, ...]
        if option.count:
            expected, wanted = (int,), "a count (an integer)"
        elif option.is_flag or isinstance(kind, click.types.BoolParamType):
            expected, wanted = (bool,), "true or false"
        elif isinstance(kind, TcpcliType):
            expected, wanted = kind.toml_types, kind.toml_form
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
        try:
            kind.convert(value, option, None)
        except click.BadParameter as exc:
            message = exc.message.rstrip(".")
            named = f"--{key.replace('_', '-')}" in message
            raise self.fail(keys, message if named else f"{key}: {message}") from None
        return value

    def resolve_path(self, text: str) -> Path:
        """~ expands; a relative path is relative to the configuration file's directory."""
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).absolute()
