"""What a checked configuration file says: its settings by layer (top level, command tables,
named targets), each with the file, line and table it was written in.

Plain data and the lookups on it, shared by reading the file (:mod:`tcpcli.cli.configfile`),
checking it (:mod:`tcpcli.cli.configcheck`) and wiring it into click
(:mod:`tcpcli.cli.configcontext`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

TARGETS = "targets"
#: List options whose entries from every layer add up (see :mod:`tcpcli.cli.configcontext`).
ADDITIVE = ("allow", "deny")
#: Target keys that are not shared options: key -> {command: its parameter name}.
TARGET_ALIASES = {
    "starttls": {"connect": "starttls", "starttls": "protocol"},
    # How the target is reached (a tunnel's entry point, a PROXY header to start with):
    # a command that cannot honour them refuses the target rather than dial it directly.
    "via": {"connect": "via", "starttls": "via", "bench": "via", "ping": "via", "probe": "via"},
    "send_proxy": {"connect": "send_proxy", "starttls": "send_proxy"},
    "proxy_source": {"connect": "proxy_source", "starttls": "proxy_source"},
}
#: The alias keys a command must honour to use the target at all.
REQUIRED_ALIASES = ("via", "send_proxy")
#: Ends every message about a broken file: the way out when it cannot be fixed right away.
NO_CONFIG_HINT = "--no-config ignores the file"


class ConfigError(click.UsageError):
    """A bad or missing configuration file, or an unknown ``@NAME``: exit 2, one line that
    names the file, line and key, and no "see --help" (the file is what to fix)."""

    see_help = False

    def __init__(self, message: str) -> None:
        super().__init__(message, ctx=click.get_current_context(silent=True))


@dataclass(frozen=True)
class Location:
    """The file to read (None: none at all), what chose it, and whether it must exist."""

    path: Path | None
    chosen_by: str
    required: bool


@dataclass(frozen=True)
class Origin:
    """Where a setting was written: the file, its line, and the table it sits in."""

    path: Path
    line: int | None
    table: str  # "" (top level), "[connect]", "[targets.db]"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where} {self.table}" if self.table else where


@dataclass(frozen=True)
class Setting:
    """One key of the configuration file, checked, with the option it sets."""

    key: str  # as written in the file
    name: str  # the click parameter it sets
    value: Any  # as click will convert it (paths already resolved)
    origin: Origin


@dataclass(frozen=True)
class Target:
    """A named target (``[targets.NAME]``): its address and its own settings."""

    name: str
    address: str
    origin: Origin
    settings: Mapping[str, Setting]  # by key


@dataclass(frozen=True)
class Config:
    """The configuration file, read and checked: shared, per-command and per-target settings."""

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


def suggest(word: str, choices: Iterable[str], form: str = "'{}'") -> str:
    """"; did you mean 'policy'?" for the closest choice, if one is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {form.format(close[0])}?" if close else ""
