"""Option help is filled greedily and never splits a word (click's textwrap breaks at
hyphens, cutting an option name such as --tls-eof in two)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from tcpcli.cli.helpformat import wrap_help
from tcpcli.cli.main import COMMANDS, cli

WORD = st.text(alphabet="abcdefghij-=./", min_size=1, max_size=14)


@given(st.lists(WORD, max_size=40), st.integers(min_value=10, max_value=120))
def test_the_fill_keeps_every_word_whole_and_each_line_within_the_width(
        words: list[str], width: int) -> None:
    lines = wrap_help(" ".join(words), width)
    assert " ".join(lines).split() == words
    for index, line in enumerate(lines):
        assert len(line) <= width or " " not in line  # (only a word longer than the width)
        if index + 1 < len(lines):  # greedy: the next word did not fit
            assert len(line) + 1 + len(lines[index + 1].split()[0]) > width


def test_paragraphs_and_unwrapped_blocks_are_clicks_to_wrap() -> None:
    text = "First paragraph here.\n\n\b\nkept   as\nit is"
    assert wrap_help(text, 30) == click.formatting.wrap_text(
        text, 30, preserve_paragraphs=True).splitlines()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("columns", [60, 100])
def test_no_help_line_overflows_or_cuts_an_option_name(command: str, columns: int) -> None:
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=columns,
                                env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    # The options' sections: from the first heading ("Options:", "Bench options:"); the
    # description above and the examples after are laid out as written
    lines = result.output.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.endswith("ptions:")):]
    lines = lines[:next((i for i, line in enumerate(lines) if line.strip() == "Examples:"),
                        len(lines))]  # (an epilog's examples are kept as written)
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if len(line) > columns:  # only an unbreakable word may stick out
            assert len(line.split()[-1]) > columns // 3, line
        assert not (re.search(r"--[\w-]*-$", line) and re.match(r"\s+\w", following)), line
