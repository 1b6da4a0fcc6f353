"""Help in sections: a command's own options first, then the shared ones grouped as
"Target and policy", "Timing", "Proxy", "TLS", "Output", "Configuration".

Why not rich-click or cloup: both do this, but rich-click imports rich (tens of
milliseconds on every ``--help``, against issue 16's start-up budget) and cloup replaces
click's decorators in every command module. Sections need only an attribute on an option
and a ``format_options`` that writes one ``formatter.section`` per group; the man pages
(:mod:`tcpcli.cli.manpage`) and completion descriptions read the same attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

F = TypeVar("F", bound=Callable[..., Any])

TARGET_AND_POLICY = "Target and policy"
TIMING = "Timing"
PROXY = "Proxy"
TLS = "TLS"
OUTPUT = "Output"
CONFIGURATION = "Configuration"
#: The order of the shared sections, after the command's own options.
SHARED_SECTIONS = (TARGET_AND_POLICY, TIMING, PROXY, TLS, OUTPUT, CONFIGURATION)


class SectionOption(click.Option):
    """An option that knows its help section (``section=TLS``)."""

    def __init__(self, *args: Any, section: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def option(*decls: str, section: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` with a help section."""
    return click.option(*decls, cls=SectionOption, section=section, **attrs)


def own_section(command: click.Command) -> str:
    """The title of a command's own options: "Connect options"."""
    return f"{(command.name or 'command').capitalize()} options"


def section_of(param: click.Parameter, command: click.Command) -> str:
    """The help section ``param`` is shown in."""
    section = getattr(param, "section", None)
    if section:
        return str(section)
    if param.name in ("config_file", "no_config"):
        return CONFIGURATION
    return own_section(command)


def sections(command: click.Command, params: Sequence[click.Parameter]
             ) -> list[tuple[str, list[click.Parameter]]]:
    """Options grouped by section, in the order help shows them."""
    grouped: dict[str, list[click.Parameter]] = {}
    for param in params:
        grouped.setdefault(section_of(param, command), []).append(param)
    order = [own_section(command), *SHARED_SECTIONS]
    return sorted(grouped.items(),
                  key=lambda item: order.index(item[0]) if item[0] in order else 0)


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options in sections."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        params = [p for p in self.get_params(ctx) if isinstance(p, click.Option)]
        for title, members in sections(self, params):
            records = [record for p in members if (record := p.get_help_record(ctx))]
            if records:
                with formatter.section(title):
                    write_options(formatter, records)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Option names with their section in the description (zsh and fish show it)."""
        items = super().shell_complete(ctx, incomplete)
        by_name = {name: p for p in self.get_params(ctx) if isinstance(p, click.Option)
                   for name in (*p.opts, *p.secondary_opts)}
        for item in items:
            param = by_name.get(str(item.value))
            if param is not None and item.help:
                item.help = f"[{section_of(param, self)}] {item.help}"
        return items


def write_options(formatter: click.HelpFormatter, records: Sequence[tuple[str, str]]) -> None:
    """``formatter.write_dl(records)``, laid out as click lays it out, with each help text
    filled by :func:`wrap_help`."""
    from click._compat import term_len
    from click.formatting import iter_rows, measure_table

    col_max, col_spacing = 30, 2  # click's write_dl defaults
    widths = measure_table(records)
    first_col = min(widths[0], col_max) + col_spacing
    indent = formatter.current_indent
    for first, second in iter_rows(records, 2):
        formatter.write(f"{'':>{indent}}{first}")
        if not second:
            formatter.write("\n")
            continue
        if term_len(first) <= first_col - col_spacing:
            formatter.write(" " * (first_col - term_len(first)))
        else:
            formatter.write("\n" + " " * (first_col + indent))
        lines = wrap_help(second, max(formatter.width - first_col - 2, 10)) or [""]
        formatter.write(f"{lines[0]}\n")
        for line in lines[1:]:
            formatter.write(f"{'':>{first_col + indent}}{line}\n")


def wrap_help(text: str, width: int) -> list[str]:
    """An option's help as lines of at most ``width`` characters, filled greedily.

    Words are never split: click's textwrap breaks at hyphens, cutting an option name such
    as ``--tls-eof`` across two lines, and a one-shot ``--help`` spends a tenth of its
    time in it. A text with paragraphs or a ``\\b`` block is click's to wrap.
    """
    if "\n" in text or "\b" in text:
        from click.formatting import wrap_text

        return wrap_text(text, width, preserve_paragraphs=True).splitlines()
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines
