"""What ``tcpcli config`` prints: the file it reads (``path``), whether it is valid
(``check``), and every setting a command would use with its source (``show``). The command
is declared in :mod:`tcpcli.cli.config`; this runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from tcpcli.cli.configcheck import CommandTree, config_key, shared_options
from tcpcli.cli.configcontext import current_config, invocation_state, policy_list
from tcpcli.cli.configmodel import ADDITIVE, Config, Setting, suggest
from tcpcli.cli.environment import Environment

if TYPE_CHECKING:
    from tcpcli.cli.configreach import Reach


def report(env: Environment | None, ctx: click.Context, action: str,
           command_line: tuple[str, ...], *, as_json: bool, reach: bool = False) -> None:
    """Run ``tcpcli config ACTION [COMMAND [ARGS]...]``."""
    env = env or Environment()
    if action != "show" and command_line:
        raise click.UsageError(f"{action} takes no COMMAND (only show does)", ctx)
    if reach and action != "check":
        raise click.UsageError("--reach goes with check", ctx)
    env.start_session("config", json=as_json)
    config = current_config(ctx)
    if action == "path":
        _path(env, config)
        return
    if action == "check":
        _check(env, config, reach=reach)
        return
    name, args = (command_line[0], list(command_line[1:])) if command_line else ("", [])
    settings = resolve_settings(ctx, name, args)
    shown = show_report(config, name, settings, named_targets_of(ctx, name))
    if env.events is not None:
        env.emit("config", **shown)
    else:
        env.write(show_text(shown))


def _path(env: Environment, config: Config) -> None:
    path = config.location.path
    env.emit("config_path", file=None if path is None else str(path),
             chosen_by=config.location.chosen_by, exists=config.exists)
    if path is None:
        env.say("no configuration file (--no-config)")
        return
    if env.events is None:
        env.write(f"{path}\n")
    exists = "" if config.exists else "; it does not exist, so the defaults apply"
    env.say(f"chosen by {config.location.chosen_by}{exists}")


def _check(env: Environment, config: Config, *, reach: bool = False) -> None:
    path = config.location.path
    count = len(config.shared) + sum(len(t) for t in config.commands.values())
    reaches = []
    if reach:
        from tcpcli.cli.configreach import reach_all

        reaches = reach_all(config.targets,
                            backend=env.environ.get("TCPCLI_BACKEND", "asyncio"))
    env.emit("config_check", file=None if path is None else str(path),
             chosen_by=config.location.chosen_by, exists=config.exists, ok=True,
             settings=count, targets=len(config.targets),
             **({"entry_points": [_reach_fields(each) for each in reaches]} if reach else {}))
    if path is None:
        env.say("no configuration file (--no-config)")
    elif not config.exists:
        env.say(f"{path} does not exist (chosen by {config.location.chosen_by}); the "
                "defaults apply")
    elif env.events is None:
        env.write(f"{path}: ok ({count} setting{'s' * (count != 1)}, {len(config.targets)} "
                  f"target{'s' * (len(config.targets) != 1)})\n")
        for each in reaches:
            env.write(each.line() + "\n")
    if reach and not reaches and config.exists:
        env.say("no target has a via entry point to reach")
    down = [each for each in reaches if not each.up]
    if down:
        from tcpcli.cli.exit_codes import exit_code_for

        assert down[0].error is not None
        raise SystemExit(int(exit_code_for(down[0].error.kind)))


def _reach_fields(reach: Reach) -> dict[str, object]:
    fields: dict[str, object] = {"via": reach.via, "targets": reach.targets, "up": reach.up}
    if reach.connect_ms is not None:
        fields["connect_ms"] = round(reach.connect_ms, 3)
    if reach.error is not None:
        fields.update(error=str(reach.error), kind=reach.error.kind)
    return fields


@dataclass(frozen=True)
class Effective:
    """One setting as a command would see it."""

    key: str
    value: Any
    source: str  # flag | env | config | default
    origin: str | None  # the variable for env, FILE:LINE [table] for config
    entries: list[dict[str, Any]] | None = None  # additive lists: each entry's source


def resolve_settings(ctx: click.Context, name: str, args: list[str]) -> list[Effective]:
    """Parse ``args`` as command ``name`` would (resiliently: TARGET may be left out) and
    report every option's value and where it came from."""
    shared_only = not name
    tree = CommandTree.of(ctx)
    command = tree.configurable(name or "connect")
    if command is None:
        names = tree.configurable_names()
        problem = f"tcpcli {name} reads no configuration" if name in tree.names() \
            else f"no command {name!r}{suggest(name, names)}"
        raise click.UsageError(f"{problem} (show knows {', '.join(names)})", ctx)
    state = invocation_state(ctx)
    state.errors.clear()
    sub = command.make_context(name or "connect", args, parent=ctx, resilient_parsing=True)
    if state.errors:
        raise state.errors[0]
    keys = shared_options() if shared_only else None
    config = current_config(ctx)
    from_file = config.settings_for(sub.info_name or "",
                                    state.targets.get(sub.info_name or "", []))
    return [_effective(sub, param, from_file) for param in command.get_params(sub)
            if isinstance(param, click.Option) and param.expose_value and not param.hidden
            and (keys is None or config_key(param) in keys)]


def named_targets_of(ctx: click.Context, name: str) -> list[str]:
    state = invocation_state(ctx)
    return [t.name for t in state.targets.get(name, [])] if name else []


def _effective(sub: click.Context, param: click.Option,
               from_file: Mapping[str, Setting]) -> Effective:
    """Where ``param``'s value in ``sub`` came from, as click recorded it."""
    assert param.name is not None
    key, value = config_key(param), sub.params.get(param.name)
    source = sub.get_parameter_source(param.name)
    env_name = param.envvar if isinstance(param.envvar, str) else None
    if param.name in ADDITIVE:
        listed = policy_list(sub, param.name, value or ())
        sources = [s for s in ("config", "env", "flag") if any(e[1] == s for e in listed)]
        return Effective(key, [entry for entry, _, _ in listed], "+".join(sources) or "default",
                         None, [{"value": entry, "source": where, "origin": origin}
                                for entry, where, origin in listed])
    if source is ParameterSource.COMMANDLINE:
        return Effective(key, _jsonable(value), "flag", None)
    if source is ParameterSource.ENVIRONMENT:
        return Effective(key, _jsonable(value), "env", env_name)
    if source is ParameterSource.DEFAULT_MAP and param.name in from_file:
        return Effective(key, _jsonable(value), "config", str(from_file[param.name].origin))
    return Effective(key, _jsonable(value), "default", None)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def show_report(config: Config, name: str, settings: list[Effective],
                targets: list[str]) -> dict[str, Any]:
    location = config.location
    return {
        "file": None if location.path is None else str(location.path),
        "chosen_by": location.chosen_by,
        "exists": config.exists,
        "command": name or None,
        "targets_used": targets,
        "settings": [{"key": s.key, "value": s.value, "source": s.source,
                      "origin": s.origin, **({"entries": s.entries} if s.entries is not None
                                              else {})} for s in settings],
        "lists_add_up": list(ADDITIVE),
        "targets": {n: {"address": t.address, "origin": str(t.origin),
                        "settings": {k: s.value for k, s in t.settings.items()}}
                    for n, t in config.targets.items()},
    }


def _text(value: Any, key: str) -> str:
    if value is None:
        return "unlimited" if key == "max_sockets" else "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_text(v, key) for v in value) or "-"
    return str(value)


def show_text(report: dict[str, Any]) -> str:
    lines = []
    if report["file"] is None:
        lines.append("file: none (--no-config)")
    else:
        state = "" if report["exists"] else ", does not exist"
        lines.append(f"file: {report['file']} (from {report['chosen_by']}{state})")
    if report["command"]:
        used = "".join(f" @{t}" for t in report["targets_used"])
        lines.append(f"command: tcpcli {report['command']}{used}")
    else:
        lines.append("settings every command shares (tcpcli config show COMMAND [ARGS] "
                     "for one command's):")
    rows: list[tuple[str, str, str]] = []
    for s in report["settings"]:
        if s.get("entries"):
            for index, entry in enumerate(s["entries"]):
                rows.append((s["key"] if index == 0 else "", entry["value"],
                             " ".join(filter(None, [entry["source"], entry["origin"]]))))
        else:
            rows.append((s["key"], _text(s["value"], s["key"]),
                         " ".join(filter(None, [s["source"], s["origin"]]))))
    key_width = max(len(r[0]) for r in rows)
    value_width = min(max(len(r[1]) for r in rows), 40)
    lines += [f"  {k:<{key_width}}  {v:<{value_width}}  {src}".rstrip() for k, v, src in rows]
    lines.append("  (allow and deny add up: the file's entries always apply and --allow/"
                 "--deny or TCPCLI_ALLOW/TCPCLI_DENY add to them; deny beats allow)")
    if report["targets"]:
        lines.append("targets:")
        width = max(len(n) for n in report["targets"]) + 1
        for name, target in report["targets"].items():
            extra = ", ".join(f"{k}={_text(v, k)}" for k, v in target["settings"].items())
            lines.append(f"  @{name:<{width}} {target['address']}"
                         + (f"  {extra}" if extra else "") + f"  ({target['origin']})")
    return "\n".join(lines) + "\n"
