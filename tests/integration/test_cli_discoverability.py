"""Meeting tcpcli as a new user: bare ``tcpcli``, a misspelled command, shared options
before the command, help in sections, and bad values as one-line usage errors — all
through the installed command, as a shell runs it."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.cli import run_cli, tcpcli_command


def test_bare_tcpcli_prints_a_short_overview_and_succeeds() -> None:
    result = run_cli()
    out = result.stdout.decode()
    assert result.returncode == 0 and result.stderr == b""
    assert len(out.splitlines()) < 30
    for command in ("connect", "probe", "starttls", "bench", "listen", "demo"):
        assert f"  {command} " in out
    assert out.count("  tcpcli ") >= 3  # three examples
    assert "tcpcli demo" in out


def test_a_misspelled_command_gets_a_suggestion() -> None:
    result = run_cli("conect", "127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "tcpcli: error: no command 'conect'; did you mean 'connect'? (commands: demo, "
        "connect, probe, ping, starttls, bench, listen, config, completion) (see 'tcpcli --help')"]


@pytest.mark.parametrize("argv", [
    ("--allow", "127.0.0.2", "connect", "127.0.0.2:9"),
    ("--allow=127.0.0.2", "-q", "connect", "127.0.0.2:9"),
    ("connect", "--allow", "127.0.0.2", "127.0.0.2:9"),
])
def test_shared_options_work_before_or_after_the_command(argv: tuple[str, ...]) -> None:
    # Allowed, so port 9 (nothing listens) is refused by the kernel (5), not the policy (3).
    assert run_cli(*argv).returncode == 5


def test_shared_options_before_the_command_yield_to_those_after_it() -> None:
    result = run_cli("--policy", "open", "connect", "--policy", "workers", "127.0.0.2:9")
    assert result.returncode == 3


def test_help_is_grouped_into_sections_with_examples() -> None:
    for command in ("connect", "probe", "starttls", "bench"):
        out = run_cli(command, "--help").stdout.decode()
        headings = [line for line in out.splitlines() if line.endswith(":")
                    and not line.startswith(" ")]
        assert headings[:7] == [f"{command.capitalize()} options:", "Target and policy:",
                                "Timing:", "Proxy:", "TLS:", "Output:", "Configuration:"]
        assert "Examples:" in out or "EXAMPLES" in out.upper()


def test_completion_descriptions_carry_the_section() -> None:
    env = {**os.environ, "_TCPCLI_COMPLETE": "zsh_complete",
           "COMP_WORDS": "tcpcli connect --tls-m", "COMP_CWORD": "2"}
    result = subprocess.run(tcpcli_command(), env=env, capture_output=True, timeout=60,
                            check=True)
    assert "[TLS] Lowest TLS version" in result.stdout.decode()


@pytest.mark.parametrize(("args", "fragment"), [
    (("connect", "--proxy", "foo://x"), "'--proxy': 'foo://x' has scheme 'foo'"),
    (("connect", "--pin", "bogus"), "'--pin': 'bogus': expected sha256/"),
    (("connect", "--tls-min", "1.3", "--tls-max", "1.2"), "--tls-min 1.3 is above --tls-max"),
    (("connect", "--allow", "300.1.1.1"), "'--allow': invalid --allow entry '300.1.1.1'"),
    (("connect", "--max-sockets", "0"), "give 1 or more, or 'unlimited'"),
    (("bench", "--timeout", "-5"), "'--timeout': '-5' is not a duration"),
])
def test_bad_values_are_one_line_usage_errors(args: tuple[str, ...], fragment: str) -> None:
    result = run_cli(*args, "127.0.0.2:9")
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2, lines
    assert len(lines) == 1 and fragment in lines[0], lines
