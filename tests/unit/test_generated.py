"""completions/ and man/ are generated from the click tree: they must be current, the
scripts must work in the shell, and the pages must render without warnings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcpcli.cli import completion, manpage
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m tcpcli.cli.completion --write && python -m tcpcli.cli.manpage --write"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return manpage.pages()


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    return completion.scripts()


def _stale(generated: dict[str, str], pattern: str) -> list[str]:
    on_disk = {str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)}
    problems = [f"{name} is missing" for name in sorted(set(generated) - on_disk)]
    problems += [f"{name} has no command" for name in sorted(on_disk - set(generated))]
    problems += [f"{name} is out of date" for name in sorted(set(generated) & on_disk)
                 if (ROOT / name).read_text(encoding="utf-8") != generated[name]]
    return problems


def test_completion_scripts_are_current(scripts: dict[str, str]) -> None:
    problems = _stale(scripts, "completions/*")
    assert not problems, f"stale completions ({'; '.join(problems)}); run: {REGENERATE}"


def test_man_pages_are_current(pages: dict[str, str]) -> None:
    problems = _stale(pages, "man/*.1")
    assert not problems, f"stale man pages ({'; '.join(problems)}); run: {REGENERATE}"


def test_every_command_has_a_page(pages: dict[str, str]) -> None:
    from tcpcli.cli.main import COMMANDS

    assert set(pages) == {"man/tcpcli.1"} | {f"man/tcpcli-{name}.1" for name in COMMANDS}


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_completion_command_prints_the_script(shell: str, scripts: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert result.output == scripts[f"completions/{completion.SCRIPT_FILES[shell]}"]


def _tcpcli(**environ: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI (console script, else ``python -m tcpcli``)."""
    exe = shutil.which("tcpcli")
    argv = [exe] if exe else [sys.executable, "-m", "tcpcli"]
    env = {**os.environ, **environ}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30,
                          check=False)


def test_bash_source_matches_the_file(scripts: dict[str, str]) -> None:
    result = _tcpcli(_TCPCLI_COMPLETE="bash_source")
    assert result.returncode == 0, result.stderr
    assert result.stdout == scripts["completions/tcpcli.bash"]


def _bash_complete(words: str, cword: int) -> list[str]:
    result = _tcpcli(_TCPCLI_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    assert result.returncode == 0, result.stderr
    return [line.partition(",")[2] for line in result.stdout.splitlines()]


def test_completes_command_names() -> None:
    assert _bash_complete("tcpcli conn", 1) == ["connect"]


def test_completes_options_and_choices() -> None:
    assert _bash_complete("tcpcli connect --pol", 2) == ["--policy"]
    assert _bash_complete("tcpcli connect --policy workers", 3) == ["workers", "workers-strict"]
    assert _bash_complete("tcpcli completion ", 2) == list(completion.SHELLS)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_script_registers_and_completes() -> None:
    script = ROOT / "completions" / "tcpcli.bash"
    program = (f"source {script} && complete -p tcpcli && "
               "COMP_WORDS=(tcpcli conn) && COMP_CWORD=1 && _tcpcli_completion tcpcli && "
               'printf "reply:%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "-F _tcpcli_completion tcpcli" in result.stdout
    assert "reply:connect" in result.stdout.splitlines()


def test_service_names_complete_the_last_item() -> None:
    from tcpcli.cli.paramtypes import PORT_LIST

    items = PORT_LIST.shell_complete(None, None, "ssh,re")  # type: ignore[arg-type]
    assert "ssh,redis" in [item.value for item in items]
    assert all(item.value.startswith("ssh,re") for item in items)


# -- man pages ----------------------------------------------------------------------------


def _renderers() -> list[list[str]]:
    found = []
    if shutil.which("groff"):
        found.append(["groff", "-man", "-Tutf8", "-ww", "-z"])
    if shutil.which("mandoc"):
        found.append(["mandoc", "-T", "lint", "-W", "warning"])
    return found


@pytest.mark.skipif(not _renderers(), reason="needs groff (Debian groff-base) or mandoc")
def test_man_pages_render_without_warnings(pages: dict[str, str], tmp_path: Path) -> None:
    for name, text in pages.items():
        path = tmp_path / Path(name).name
        path.write_text(text, encoding="utf-8")
        for renderer in _renderers():
            result = subprocess.run([*renderer, str(path)], capture_output=True, text=True,
                                    timeout=30, check=False)
            assert (result.returncode, result.stdout + result.stderr) == (0, ""), \
                f"{' '.join(renderer)} {name}"


def _section(page: str, title: str) -> str:
    match = re.search(rf'^\.SH "{title}"\n(.*?)(?=^\.SH |\Z)', page, re.M | re.S)
    assert match, f"no {title} section"
    return match.group(1)


def test_exit_status_lists_every_exit_code(pages: dict[str, str]) -> None:
    for name, page in pages.items():
        listed = re.findall(r"^\.TP\n\\fB(\d+)\\fR$", _section(page, "EXIT STATUS"), re.M)
        assert listed == [str(int(code)) for code in ExitCode], name
    assert "CONNECTION_LOST" in pages["man/tcpcli.1"]


def test_pages_have_the_sections(pages: dict[str, str]) -> None:
    for title in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT",
                  "FILES", "EXAMPLES", "SEE ALSO", "JSON OUTPUT", "COMMANDS"):
        _section(pages["man/tcpcli.1"], title)
    connect = pages["man/tcpcli-connect.1"]
    assert r"\fB\-\-policy\fR" in _section(connect, "OPTIONS")
    assert r"\fBTCPCLI_POLICY\fR" in _section(connect, "OPTIONS")
    assert r"\fBTCPCLI_POLICY\fR" in _section(connect, "ENVIRONMENT")
    assert r"printf 'PING\er\en' | tcpcli connect" in _section(connect, "EXAMPLES")


def test_roff_escaping() -> None:
    assert manpage.escape(r"a\b --x") == r"a\eb \-\-x"
    assert manpage.escape("caf\u00e9 \u2014") == r"caf\[u00E9] \[u2014]"
    page = manpage.Roff(lines=[".SH x"])
    page.paragraph(".leading dot")
    page.paragraph("'leading quote")
    page.preformatted([".x", "'y", "  z"])
    assert page.lines[1:] == [r"\&.leading dot", ".PP", r"\&'leading quote", ".PP", ".RS 4",
                              ".nf", r"\&.x", r"\&'y", "  z", ".fi", ".RE"]
    assert manpage.quote('say "hi"') == r'"say \(dqhi\(dq"'


def test_every_commands_help_has_examples() -> None:
    from tcpcli.cli.main import COMMANDS

    for name in COMMANDS:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        examples = result.output.partition("Examples:\n")[2]
        assert f"tcpcli {name}" in examples, name
