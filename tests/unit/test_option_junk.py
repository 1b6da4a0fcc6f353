"""Junk in every option of every command, from the command line, the environment and the
configuration file: the answer is a documented exit code (for a usage error, exit 2 and
one line on stderr naming the option or FILE:LINE), never a traceback.

The options are found by walking the click tree, so a new option is fuzzed without a
change here. Runs are in-process (``tcpcli.cli.main.main`` with an injected Environment)
against 127.0.0.2, which the default policy refuses before anything is sent; listen's
server is replaced by a stub once its options are read, so nothing binds.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from unittest import mock

import click
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.main import cli, main

#: What each command is run with besides the junk: a destination the policy refuses.
BASE_ARGS = {
    "connect": ["127.0.0.2:9"],
    "starttls": ["127.0.0.2:25"],
    "bench": ["127.0.0.2:9"],
    "probe": ["127.0.0.2", "-p", "9"],
    "ping": ["127.0.0.2:9", "-c", "1"],
    "listen": ["127.0.0.1:0"],
    "config": ["check"],
    "completion": ["bash"],
}
DOCUMENTED = {int(code) for code in ExitCode}
#: Values people mistype, and values no parser should fall over: empty, signs, overflow,
#: non-ASCII digits, NaN, control characters, right-to-left marks, option-like words.
EDGE_VALUES = ["", " ", "-1", "0", "-0", "+5", "9" * 40, "1e999", "nan", "inf", "-inf",
               "0x10", "1_000", "２５", "٣", "ünïcödé", "\u202e", "\t", "\n", "--help", "-",
               ":", "[", "]", "[::1", "a:b:c", "127.0.0.1:", "socks5://", "http://:0",
               "sha256/", "port:", "*.", "/", "//", "..", "0/0", "256.0.0.0/8", "1.2.3.4/33"]
NUMBERS = st.one_of(st.integers(-(10 ** 30), 10 ** 30).map(str), st.floats().map(repr))
#: What an environment variable or a UTF-8 TOML file can hold: no NUL, no lone surrogate.
TEXT_JUNK = st.one_of(st.sampled_from(EDGE_VALUES), NUMBERS,
                      st.text(st.characters(exclude_characters="\x00",
                                            exclude_categories=("Cs",)), max_size=30))
#: argv can also hold bytes that are not UTF-8: Python gives them as U+DC80-U+DCFF.
JUNK = st.one_of(TEXT_JUNK, st.sampled_from(["\udcff", "a\udc80b", "\udce9t\udce9"]))
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def value_options() -> list[tuple[str, click.Option]]:
    """(command, option) for every option that takes a value, in every command."""
    found = []
    ctx = click.Context(cli, info_name="tcpcli")
    for name in BASE_ARGS:
        command = cli.get_command(ctx, name)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option) and not (param.is_flag or param.count):
                found.append((name, param))
    return found


OPTIONS = value_options()
ENV_OPTIONS = [(command, option) for command, option in OPTIONS if option.envvar]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory to run in (junk file names land there) and no configuration file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in [n for n in os.environ if n.startswith("TCPCLI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr("tcpcli.cli.listen.run", lambda *a, **k: None)
    return tmp_path


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Exit status and stderr lines of one in-process run."""
    stderr = io.StringIO()
    env = Environment(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=stderr,
                      environ={"NO_COLOR": "1"})
    with mock.patch.dict(os.environ, environ or {}):
        try:
            main(argv, obj=env)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
    return code, [line for line in stderr.getvalue().splitlines() if line.strip()]


def check(code: int, lines: list[str], *, names: list[str]) -> None:
    text = "\n".join(lines)
    assert "Traceback" not in text and "unexpected error" not in text, text
    assert code in DOCUMENTED, (code, text)
    if code == ExitCode.USAGE:
        assert len(lines) == 1 and ": error: " in lines[0], text
        # It names this option, or for a clash of two valid values, the other one.
        assert any(name in lines[0] for name in names) \
            or re.search(r"(?<![\w-])--?[a-z0-9]", lines[0].partition(": error: ")[2]), \
            (names, text)


def _option_names(option: click.Option) -> list[str]:
    return [*option.opts, *option.secondary_opts]


@FUZZ
@given(data=st.data())
def test_junk_on_the_command_line(sandbox: Path, data: st.DataObject) -> None:
    command, option = data.draw(st.sampled_from(OPTIONS), label="option")
    value = data.draw(JUNK, label="value")
    if isinstance(option.type, click.Path) and value.startswith("/"):
        value = "." + value  # junk file names stay inside the sandbox
    code, lines = run([command, option.opts[-1], value, *BASE_ARGS[command]])
    check(code, lines, names=_option_names(option))


@FUZZ
@given(data=st.data())
def test_junk_in_environment_variables(sandbox: Path, data: st.DataObject) -> None:
    command, option = data.draw(st.sampled_from(ENV_OPTIONS), label="option")
    value = data.draw(TEXT_JUNK, label="value")
    envvar = option.envvar if isinstance(option.envvar, str) else next(iter(option.envvar))
    code, lines = run([command, *BASE_ARGS[command]], {envvar: value})
    check(code, lines, names=[f"${envvar}"] if value.strip() else _option_names(option))


TOML_VALUES = st.one_of(
    TEXT_JUNK.map(lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"')
             .replace("\n", "\\n").replace("\t", "\\t") + '"'),
    st.integers(-(10 ** 18), 10 ** 18).map(str),
    st.sampled_from(["true", "false", "-1.5", "0", "1e300", "nan", "inf", "[]", '["", 1]',
                     "{}", '[""]']),
)


@FUZZ
@given(data=st.data())
def test_junk_in_the_configuration_file(sandbox: Path, data: st.DataObject) -> None:
    command, option = data.draw(st.sampled_from(
        [(c, o) for c, o in OPTIONS if c in ("connect", "starttls", "bench", "probe", "ping")
         and o.name not in ("config_file",)]), label="option")
    key = option.opts[-1].removeprefix("--").replace("-", "_")
    value = data.draw(TOML_VALUES, label="value")
    if isinstance(option.type, click.Path) and value.startswith('"/'):
        value = '"./' + value[2:]
    config = sandbox / "junk.toml"
    config.write_text(f"[{command}]\n{key} = {value}\n", encoding="utf-8")
    code, lines = run([command, "--config", str(config), *BASE_ARGS[command]])
    check(code, lines, names=[f"{config}:"])


@pytest.mark.parametrize(("argv", "message"), [
    (["connect", "--pin", "bogus", "127.0.0.2:9"], "Invalid value for '--pin'"),
    (["connect", "--tls-min", "1.3", "--tls-max", "1.2", "127.0.0.2:9"],
     "--tls-min 1.3 is above --tls-max 1.2"),
    (["connect", "--proxy", "foo://x", "127.0.0.2:9"], "socks5://HOST:PORT"),
    (["connect", "--allow", "300.1.1.1", "127.0.0.2:9"], "not an IP address"),
    (["connect", "--max-sockets", "0", "127.0.0.2:9"], "'unlimited'"),
    (["connect", "--key", "junk.toml", "127.0.0.2:9"], "--key needs --cert"),
    (["probe", "-p", "22,http-alt-typo", "127.0.0.2"], "Invalid value for '-p' / '--ports'"),
    (["bench", "--bytes", "1Q", "127.0.0.2:9"], "Invalid value for '--bytes'"),
])
def test_the_issue_examples_are_usage_errors(sandbox: Path, argv: list[str],
                                             message: str) -> None:
    (sandbox / "junk.toml").write_text("")
    code, lines = run(argv)
    assert code == ExitCode.USAGE
    assert len(lines) == 1 and message in lines[0], lines


def test_a_bad_environment_variable_is_named(sandbox: Path) -> None:
    code, lines = run(["connect", "127.0.0.2:9"], {"TCPCLI_PROXY": "foo://x"})
    assert code == ExitCode.USAGE
    assert re.search(r"'--proxy'.*\(from \$TCPCLI_PROXY\)", lines[0]), lines


def test_every_option_with_a_value_has_a_checked_type() -> None:
    """No option falls back to click's bare STRING or INT without a reason (free text)."""
    free_text = {"send_text", "reply_text", "banner", "checks", "threshold", "targets_file",
                 "config_file"}
    unchecked = [f"{command} {option.opts[-1]}" for command, option in OPTIONS
                 if option.type in (click.STRING, click.INT, click.FLOAT)
                 and option.name not in free_text]
    assert unchecked == []


@pytest.mark.parametrize("value", ["socks5://", "logs/", "./"])
def test_an_output_file_that_names_a_directory_is_a_usage_error(sandbox: Path,
                                                                value: str) -> None:
    # Found by the fuzzing above: open("socks5://", "w") is a directory to the system.
    code, lines = run(["connect", "--transcript", value, *BASE_ARGS["connect"]])
    assert code == ExitCode.USAGE and len(lines) == 1, lines
    assert "--transcript" in lines[0], lines


def test_a_file_name_that_is_not_utf8_is_written_back_as_its_bytes(sandbox: Path) -> None:
    # Found by the fuzzing above: argv's undecodable bytes reach stdout in a report line.
    name = os.fsdecode(b"\xe9t\xe9")
    Path(os.fsencode(name).decode("utf-8", "surrogateescape")).touch()
    stdout = io.BytesIO()
    env = Environment(stdin=io.BytesIO(), stdout=stdout, stderr=io.StringIO(),
                      environ={"NO_COLOR": "1"})
    with pytest.raises(SystemExit) as exited:
        main(["config", "check", "--config", name], obj=env)
    assert exited.value.code == 0
    assert stdout.getvalue() == b"\xe9t\xe9: ok (0 settings, 0 targets)\n"
