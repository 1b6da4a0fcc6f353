"""Man pages in roff (man(7) macros), generated from the click tree.

``man/tcpcli.1`` covers the group; each command gets its own page (``man/tcpcli-connect.1``
...). Every page is built from what ``--help`` is built from: the command's help text,
its parameters (with their ``TCPCLI_*`` environment variables), its epilog's examples, and
the exit-code table of :mod:`tcpcli.cli.exit_codes`. Regenerate with
``python -m tcpcli.cli.manpage --write`` (a test fails when ``man/`` is stale).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

from tcpcli import __version__
from tcpcli.cli import exit_codes
from tcpcli.cli.exit_codes import EXIT_CODE_BY_KIND, ExitCode
from tcpcli.cli.helpformat import sections

REGENERATE = "python -m tcpcli.cli.manpage --write"
MANUAL = "User Commands"
#: The pages' date (.TH). A constant, so that regenerating is reproducible; move it on
#: when the pages change for a release.
DATE = "2026-11-26"
#: Longest roff source line for filled text (mandoc's style check wants <= 80 bytes).
WIDTH = 78

#: Environment variables read outside of an option's ``envvar``.
EXTRA_ENVIRONMENT = {
    "NO_COLOR": "Any non-empty value turns colour off (it wins over FORCE_COLOR).",
    "FORCE_COLOR": "Any non-empty value turns colour on even when stderr is not a terminal.",
    "TCPCLI_BACKEND": "The event loop: asyncio (the default) or trio.",
    "XDG_CACHE_HOME": "Where tcpcli keeps its cache (default: ~/.cache; see FILES).",
    "_TCPCLI_COMPLETE": "Set by the shell completion scripts when they ask tcpcli for "
                        "completions (see tcpcli-completion(1)); not for interactive use.",
}

#: The configuration file (tcpcli.cli.config), for the pages of the commands that read it.
CONFIG_FILES = {
    "$TCPCLI_CONFIG": "The configuration file, when set (--config FILE wins over it; "
                      "--no-config reads none). It must exist.",
    "$XDG_CONFIG_HOME/tcpcli/config.toml": "The configuration file otherwise, if "
                                           "XDG_CONFIG_HOME is set; it need not exist.",
    "~/.config/tcpcli/config.toml": "The configuration file otherwise; it need not exist. "
                                    "Its format: tcpcli-config(1).",
}

#: Environment variables that choose the configuration file.
CONFIG_ENVIRONMENT = {
    "TCPCLI_CONFIG": "The configuration file to read (see FILES).",
    "XDG_CONFIG_HOME": "Where the configuration file is looked for (default: ~/.config).",
}

#: Files every networking command reads.
NETWORK_FILES = {
    "/etc/hosts": "Read before DNS, as getaddrinfo(3) would.",
    "/etc/resolv.conf": "The DNS servers asked when --resolver is not given.",
    "certifi's CA bundle": "The trusted certificate authorities unless --ca-file is given "
                           "(python -m certifi prints its path).",
    "$XDG_CACHE_HOME/tcpcli/trust": "certifi's CAs as an OpenSSL hashed directory (one file "
                                    "per CA, named by its subject's hash), written by the "
                                    "first TLS run that trusts certifi so that later runs "
                                    "read only the CAs a chain names; beside it, where "
                                    "certifi's bundle is. Under ~/.cache without "
                                    "XDG_CACHE_HOME. Safe to delete; where it cannot be "
                                    "written, the bundle is read whole.",
}

#: Where the generated completion scripts go.
COMPLETION_FILES = {
    "~/.local/share/bash-completion/completions/tcpcli":
        "The bash script (tcpcli completion bash) for one user; "
        "/usr/share/bash-completion/completions/tcpcli system-wide.",
    "_tcpcli in a directory on $fpath":
        "The zsh script (tcpcli completion zsh).",
    "~/.config/fish/completions/tcpcli.fish":
        "The fish script (tcpcli completion fish).",
}

#: Pages whose --json is a report of its own, not the event stream.
JSON_NOT_EVENTS = {"tcpcli-config"}

#: JSON events besides the core phases (tcpcli.render.events.PHASE_EVENTS).
OTHER_EVENTS = {
    "connected": "peer, local",
    "tls_report": "the whole TLS report",
    "data": "with -v: direction, bytes",
    "close": "first, how, bytes_sent, bytes_received, duration_ms",
    "error": "kind, message, exit_code, workers_message, and rule and lift for policy "
             "refusals",
}


# -- roff ---------------------------------------------------------------------------------

_SPECIAL = {"\\": r"\e", "-": r"\-", "\t": " "}


def escape(text: str) -> str:
    r"""Text for a roff text line: backslashes as \e, hyphens as \-, non-ASCII as \[uXXXX]."""
    out = []
    for char in text:
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
        elif ord(char) > 126 or (ord(char) < 32 and char != "\n"):
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
    return "".join(out)


def protect(line: str) -> str:
    """A text line that roff cannot mistake for a request (leading . or ')."""
    return "\\&" + line if line.startswith((".", "'")) else line


def quote(argument: str) -> str:
    """A quoted macro argument."""
    return '"' + escape(argument).replace('"', r"\(dq") + '"'


def bold(text: str) -> str:
    return rf"\fB{escape(text)}\fR"


def italic(text: str) -> str:
    return rf"\fI{escape(text)}\fR"


def literal_markup(text: str) -> str:
    """Escape reStructuredText-ish prose: ``code`` becomes bold."""
    return re.sub(r"``(.+?)``", lambda m: rf"\fB{m.group(1)}\fR", escape(text))


@dataclass
class Roff:
    """A man page being written: roff requests and text lines, in order."""

    lines: list[str] = field(default_factory=list)

    def request(self, name: str, *arguments: str) -> None:
        self.lines.append(" ".join(["." + name, *arguments]))

    def text(self, line: str) -> None:
        """An already escaped line of filled text, broken at spaces into short source
        lines (roff refills them)."""
        for part in textwrap.wrap(line, WIDTH, break_long_words=False,
                                  break_on_hyphens=False) or [""]:
            self.lines.append(protect(part))

    def section(self, title: str) -> None:
        self.request("SH", quote(title))

    def paragraph(self, escaped: str) -> None:
        if not self.lines[-1].startswith(".SH"):
            self.request("PP")
        self.text(escaped)

    def item(self, tag: str, body: str) -> None:
        """A tagged paragraph (.TP): ``tag`` and ``body`` already escaped."""
        self.request("TP")
        self.text(tag)
        self.text(body)

    def preformatted(self, lines: list[str]) -> None:
        if not self.lines[-1].startswith(".SH"):
            self.request("PP")
        self.request("RS", "4")
        self.request("nf")
        for line in lines:
            self.lines.append(protect(escape(line)))
        self.request("fi")
        self.request("RE")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


# -- help text ----------------------------------------------------------------------------


def paragraphs(help_text: str | None) -> Iterator[tuple[bool, list[str]]]:
    """Click help text -> (literal?, lines) per paragraph.

    A ``\\b`` paragraph is kept line by line when it is indented (examples, tables); an
    unindented one is prose and is filled like any other.
    """
    text = inspect.cleandoc(help_text or "").split("\f")[0]
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if lines and lines[0].strip() == "\b":
            lines = lines[1:]
            if any(line[:1].isspace() for line in lines):
                yield True, lines
                continue
        lines = [line.strip() for line in lines if line.strip()]
        if lines:
            yield False, lines


def _emit_help(page: Roff, help_text: str | None) -> None:
    for literal, lines in paragraphs(help_text):
        if literal:
            page.preformatted(lines)
        else:
            page.paragraph(escape(" ".join(lines)))


def examples(command: click.Command) -> list[str]:
    """The example command lines of a command's epilog (its indented lines)."""
    found: list[str] = []
    for literal, lines in paragraphs(command.epilog):
        if literal:
            indent = min(len(line) - len(line.lstrip()) for line in lines if line[:1].isspace())
            found.extend(line[indent:] for line in lines if line[:1].isspace())
    return found


def short_help(command: click.Command) -> str:
    return command.get_short_help_str(limit=120).rstrip(".")


# -- the click tree -----------------------------------------------------------------------


def walk(command: click.Command, ctx: click.Context) -> Iterator[click.Context]:
    """Every visible command below (and including) ``command``, as its context."""
    yield ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from walk(sub, click.Context(sub, info_name=name, parent=ctx,
                                               **sub.context_settings))


def root_context() -> click.Context:
    from tcpcli.cli.main import cli

    return click.Context(cli, info_name="tcpcli", **cli.context_settings)


def page_name(ctx: click.Context) -> str:
    return ctx.command_path.replace(" ", "-")


def options(ctx: click.Context) -> list[click.Option]:
    return [p for p in ctx.command.get_params(ctx)
            if isinstance(p, click.Option) and not p.hidden]


def envvars(option: click.Option) -> list[str]:
    if option.envvar is None:
        return []
    return [option.envvar] if isinstance(option.envvar, str) else list(option.envvar)


def option_names(option: click.Option) -> str:
    """Short names first: -h, --help."""
    names = sorted([*option.opts, *option.secondary_opts], key=lambda n: n.startswith("--"))
    return ", ".join(bold(name) for name in names)


def option_tag(option: click.Option, ctx: click.Context) -> str:
    tag = option_names(option)
    if not (option.is_flag or option.count):
        tag += " " + italic(option.make_metavar(ctx))
    return tag


def option_body(option: click.Option) -> str:
    parts = [escape(option.help or "")] if option.help else []
    if option.multiple and "repeatable" not in (option.help or "").lower():
        parts.append("Repeatable.")
    if (option.show_default and option.default is not None and not option.is_flag
            and not callable(option.default)):
        parts.append("Default: " + bold(str(option.default)) + ".")
    names = envvars(option)
    if names:
        parts.append("Environment: " + ", ".join(bold(n) for n in names) + ".")
    return " ".join(parts)


def synopsis(ctx: click.Context) -> str:
    command = ctx.command
    pieces = [r"[\fIOPTIONS\fR]"]
    for param in command.get_params(ctx):
        if isinstance(param, click.Argument):
            name = escape(param.metavar or (param.name or "").upper())
            name = rf"\fI{name}\fR" + ("..." if param.nargs == -1 else "")
            pieces.append(name if param.required else f"[{name}]")
    if isinstance(command, click.Group):
        pieces.append(r"\fICOMMAND\fR [\fIARGS\fR]...")
    return " ".join(pieces)


# -- sections -----------------------------------------------------------------------------


def exit_code_descriptions() -> dict[ExitCode, str]:
    """Each exit code's meaning: the comment beside it in exit_codes.py."""
    source = inspect.getsource(exit_codes)
    comments = dict(re.findall(r"^\s+([A-Z_]+)\s*=\s*\d+\s*#\s*(.+?)\s*$", source, re.M))
    described = {}
    for code in ExitCode:
        text = comments.get(code.name)
        if text is None:
            text = "success" if code == 0 else code.name.lower().replace("_", " ")
        described[code] = text[:1].upper() + text[1:].rstrip(".") + "."
    return described


def exit_status(page: Roff) -> None:
    page.section("EXIT STATUS")
    descriptions = exit_code_descriptions()
    for code in ExitCode:
        body = escape(descriptions[code]) + " (" + bold(code.name)
        kinds = [kind for kind, mapped in EXIT_CODE_BY_KIND.items() if mapped is code]
        if kinds:
            body += "; error kind" + "s" * (len(kinds) > 1) + " "
            body += ", ".join(bold(k) for k in kinds)
        if code is ExitCode.ERROR:
            body += "; any error kind not listed here"
        page.item(bold(str(int(code))), body + ")")


def json_output(page: Roff) -> None:
    from tcpcli.render import events

    page.section("JSON OUTPUT")
    for _, lines in paragraphs(events.__doc__):
        page.paragraph(literal_markup(" ".join(line.strip() for line in lines)))
    page.paragraph("With " + bold("--json") + " every line on stderr (or in the "
                   + bold("--events") + " file) is one event. Schema: "
                   + bold(events.SCHEMA) + ". Events:")
    phases = ", ".join(bold(name) for name in dict.fromkeys(events.PHASE_EVENTS.values()))
    page.item(phases, escape("One per finished phase: outcome, start_ms, duration_ms and "
                             "the phase's own details (attempt: address, port)."))
    for name, fields in OTHER_EVENTS.items():
        page.item(bold(name), escape(fields[:1].upper() + fields[1:] + "."))


def checks_for(ctx: click.Context) -> str | None:
    """The command whose facts ``--expect`` names here ("" for the root page, which
    lists them all); None where there is no such option."""
    from tcpcli.cli.expectations import Check

    if ctx.parent is None:
        return ""
    for option in options(ctx):
        if "--expect" in option.opts and isinstance(option.type, Check):
            return option.type.command
    return None


def expectations(page: Roff, command: str) -> None:
    """The check language and the facts a command's --expect can name."""
    from tcpcli.core import expect

    page.section("EXPECTATIONS")
    page.preformatted(expect.GRAMMAR.splitlines())
    facts = expect.FACTS if not command else tuple(expect.facts_for(command).values())
    for fact in facts:
        where = f"; {', '.join(sorted(fact.commands))}" if not command else ""
        page.item(bold(fact.name), escape(f"{fact.meaning[:1].upper()}{fact.meaning[1:]} "
                                          f"({fact.kind}{where}); e.g. {fact.example}."))


def reads_config(ctx: click.Context) -> bool:
    return any("--config" in o.opts for o in options(ctx))


def environment(page: Roff, contexts: list[click.Context]) -> None:
    entries: dict[str, list[str]] = {}
    for ctx in contexts:
        for option in options(ctx):
            for name in envvars(option):
                text = "Sets " + bold(max(option.opts, key=len))
                text += " (values separated by spaces)." if option.multiple else "."
                if option.help:
                    text += " " + escape(option.help)
                entries.setdefault(name, [])
                if text not in entries[name]:
                    entries[name].append(text)
    configured = any(reads_config(ctx) for ctx in contexts)
    page.section("ENVIRONMENT")
    page.paragraph("An option given on the command line wins over its environment variable, "
                   + ("which wins over the configuration file, " if configured else "")
                   + "which wins over the default.")
    extra = {**EXTRA_ENVIRONMENT, **(CONFIG_ENVIRONMENT if configured else {})}
    for name in sorted(entries):
        page.item(bold(name), " ".join(entries[name]))
    for name, text in extra.items():
        page.item(bold(name), escape(text))


def files(page: Roff, entries: dict[str, str]) -> None:
    page.section("FILES")
    for name, text in entries.items():
        page.item(italic(name), escape(text))


def see_also(page: Roff, this: str, names: list[str]) -> None:
    page.section("SEE ALSO")
    refs = [n for n in names if n != this] + ["nc", "openssl-s_client"]
    for index, name in enumerate(refs):
        page.request("BR", escape(name), "(1)" + ("," if index < len(refs) - 1 else ""))


# -- pages --------------------------------------------------------------------------------


def render_page(ctx: click.Context, tree: list[click.Context]) -> str:
    command = ctx.command
    name = page_name(ctx)
    root = ctx.parent is None
    page = Roff()
    page.lines.append(f'.\\" Generated from the click tree by {REGENERATE}; '
                      "do not edit.")
    page.request("TH", quote(name.upper()), "1", f'"{DATE}"', quote(f"tcpcli {__version__}"),
                 quote(MANUAL))
    page.request("nh")  # no hyphenation: option and page names are typed, not read
    page.request("ad", "l")
    page.section("NAME")
    page.text(escape(name) + r" \- " + escape(short_help(command)))
    page.section("SYNOPSIS")
    page.text(bold(ctx.command_path) + " " + synopsis(ctx))
    page.section("DESCRIPTION")
    _emit_help(page, command.help)
    if isinstance(command, click.Group):
        page.section("COMMANDS")
        for sub in tree:
            if sub.parent is ctx:
                page.item(bold(sub.info_name or ""), escape(short_help(sub.command) + ".")
                          + " See " + bold(page_name(sub)) + "(1).")
    page.section("OPTIONS")
    groups = sections(command, options(ctx))
    for title, members in groups:
        if len(groups) > 1:  # the same sections as --help
            page.request("SS", quote(title))
        for option in members:
            assert isinstance(option, click.Option)
            page.item(option_tag(option, ctx), option_body(option))
    exit_status(page)
    checked = checks_for(ctx)
    if checked is not None:
        expectations(page, checked)
    has_json = any("--json" in o.opts for o in options(ctx)) and name not in JSON_NOT_EVENTS
    if root or has_json:
        json_output(page)
    environment(page, tree if root else [ctx])
    has_network = any("--resolver" in o.opts for o in options(ctx))
    if root or has_network:
        files(page, {**CONFIG_FILES, **NETWORK_FILES})
    elif reads_config(ctx):
        files(page, CONFIG_FILES)
    elif name == "tcpcli-completion":
        files(page, COMPLETION_FILES)
    lines = [line for sub in tree for line in examples(sub.command)[:2]] if root \
        else examples(command)
    if lines:
        page.section("EXAMPLES")
        page.preformatted(lines)
    see_also(page, name, [page_name(c) for c in tree])
    return page.render()


def pages() -> dict[str, str]:
    """Relative path under the repository -> roff, for tcpcli.1 and every command."""
    tree = list(walk(root_context().command, root_context()))
    return {f"man/{page_name(ctx)}.1": render_page(ctx, tree) for ctx in tree}


def main(argv: list[str] | None = None) -> int:
    from tcpcli.cli.completion import REPOSITORY, write_files

    parser = argparse.ArgumentParser(prog="python -m tcpcli.cli.manpage",
                                     description="Regenerate man/*.1 from the click tree.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the stale pages")
    action.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    parser.add_argument("--root", type=Path, default=REPOSITORY,
                        help="repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    generated = pages()
    extra = sorted(str(p.relative_to(args.root)) for p in (args.root / "man").glob("*.1")
                   if str(p.relative_to(args.root)) not in generated)
    if args.check:
        for name in extra:
            print(f"stale: {name} has no command (regenerate: {REGENERATE})", file=sys.stderr)
        status = write_files(args.root, generated, check=True, regenerate=REGENERATE)
        return 1 if extra else status
    for name in extra:
        (args.root / name).unlink()
        print(f"removed {name}")
    return write_files(args.root, generated, check=False, regenerate=REGENERATE)


if __name__ == "__main__":
    sys.exit(main())
