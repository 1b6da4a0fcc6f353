"""The configuration file: where it is, and reading it into a checked
:class:`~tcpcli.cli.configmodel.Config`; ``tcpcli config`` (:mod:`tcpcli.cli.config`) shows
what it says.

Which file: ``--config FILE``, else ``$TCPCLI_CONFIG``, else
``$XDG_CONFIG_HOME/tcpcli/config.toml``, else ``~/.config/tcpcli/config.toml``. A missing
default file means no configuration; a missing file that was named is an error;
``--no-config`` reads none.

What it holds (TOML), every key spelled like its flag (``max_sockets`` is ``--max-sockets``):

* top-level keys: the options every command shares (policy, allow, deny, timeout, ...);
* ``[connect]``, ``[probe]``, ``[starttls]``, ``[bench]``: any option of that command;
* ``[targets.NAME]``: an ``address`` plus shared options and ``starttls`` (connect's
  ``--starttls``, starttls's ``--protocol``), ``via``, ``send_proxy`` and ``proxy_source``
  (how the target is reached: a command that cannot do it refuses the target); ``@NAME``
  as a TARGET stands for it.

Which keys and values are valid is :mod:`tcpcli.cli.configcheck`; how the file meets the
command line (precedence, ``@NAME``, allow/deny adding up) is
:mod:`tcpcli.cli.configcontext`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from tcpcli.cli.configcheck import CommandTree, check
from tcpcli.cli.configlocation import CONFIG_ENV, default_location
from tcpcli.cli.configmodel import NO_CONFIG_HINT, Config, ConfigError, Location

__all__ = ["CONFIG_ENV", "key_lines", "load", "locate", "parse"]


def locate(flag: str | None, disabled: bool, environ: Mapping[str, str]) -> Location:
    """--no-config, else --config, else $TCPCLI_CONFIG, else the XDG location."""
    if disabled:
        return Location(None, "--no-config", required=False)
    if flag:
        return Location(Path(flag).expanduser(), "--config", required=True)
    if environ.get(CONFIG_ENV):
        return Location(Path(environ[CONFIG_ENV]).expanduser(), f"${CONFIG_ENV}", required=True)
    path, chosen_by = default_location(environ)
    return Location(Path(path), chosen_by, required=False)


def load(location: Location, tree: CommandTree) -> Config:
    """Read and check the whole file against ``tree``'s commands; ConfigError names the
    file, line and key."""
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
        raise ConfigError(f"{path}: cannot read the configuration file (named by "
                          f"{location.chosen_by}): {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}; {NO_CONFIG_HINT})"
                          ) from None
    return parse(text, location, tree)


def parse(text: str, location: Location, tree: CommandTree) -> Config:
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
        raise ConfigError(f"{where}: {message} (TOML syntax; {NO_CONFIG_HINT})") from None
    return check(document, location, key_lines(text), tree)


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
