"""``tcpcli completion SHELL``: print the bash, zsh or fish completion script.

The scripts are Click's own (``click.shell_completion``): the text is exactly what
``_TCPCLI_COMPLETE=bash_source tcpcli`` prints, and at completion time the script calls
``tcpcli`` back with ``_TCPCLI_COMPLETE=bash_complete``, so completions always follow the
installed click tree. ``completions/`` in the repository holds the generated scripts;
regenerate them with ``python -m tcpcli.cli.completion --write`` (a test fails when they
are stale).

Values are completed by their option's type (:mod:`tcpcli.cli.paramtypes`: service names
in a ``--ports`` list, proxy schemes, ``unlimited``), option names with their help section
(:mod:`tcpcli.cli.helpformat`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from tcpcli.cli.environment import Environment

if TYPE_CHECKING:
    from pathlib import Path

PROG_NAME = "tcpcli"
#: The environment variable Click's scripts set when they call tcpcli back.
COMPLETE_VAR = "_TCPCLI_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
#: Shell -> file name under completions/: the name each shell looks for once installed
#: (bash-completion >= 2.9 loads NAME.bash; zsh wants _NAME on $fpath).
SCRIPT_FILES = {"bash": "tcpcli.bash", "zsh": "_tcpcli", "fish": "tcpcli.fish"}
#: The repository root (completions/ and man/ live there).
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

EXAMPLES = """
\b
Examples:
  eval "$(tcpcli completion bash)"          # this shell only; or put it in ~/.bashrc
  tcpcli completion bash > ~/.local/share/bash-completion/completions/tcpcli
  tcpcli completion zsh > ~/.zfunc/_tcpcli  # a directory on $fpath
  tcpcli completion fish > ~/.config/fish/completions/tcpcli.fish
"""


def completion_script(shell: str) -> str:
    """The completion script for ``shell``, as ``tcpcli completion SHELL`` prints it."""
    from click.shell_completion import get_completion_class

    from tcpcli.cli.main import cli

    cls = get_completion_class(shell)
    if cls is None:
        raise ValueError(f"no completion support for {shell!r}; choose from {SHELLS}")
    source = cls(cli, {}, PROG_NAME, COMPLETE_VAR).source()
    return source if source.endswith("\n") else source + "\n"  # click < 8.5 omits it


def scripts() -> dict[str, str]:
    """Relative path under the repository -> content, for every shell."""
    return {f"completions/{SCRIPT_FILES[shell]}": completion_script(shell) for shell in SHELLS}


@click.command("completion", epilog=EXAMPLES,
               short_help="Print the bash, zsh or fish completion script.")
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
@click.pass_obj
def completion_command(env: Environment | None, /, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish) on stdout.

    Source it, or install it where the shell looks for completions. It completes command
    names, options, choices such as --policy, and file names, by asking tcpcli itself.
    """
    env = env or Environment()
    env.stdout.write(completion_script(shell).encode("utf-8"))
    env.stdout.flush()


def write_files(root: Path, files: dict[str, str], *, check: bool, regenerate: str) -> int:
    """Write (or with ``check``, compare) generated files; the exit status for ``main``."""
    stale = [name for name, text in files.items()
             if not (root / name).is_file()
             or (root / name).read_text(encoding="utf-8") != text]
    if check:
        for name in stale:
            print(f"stale: {name} (regenerate: {regenerate})", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text := files[name], encoding="utf-8")
        print(f"wrote {name} ({len(text)} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m tcpcli.cli.completion",
        description="Regenerate completions/tcpcli.{bash,zsh,fish} from the click tree.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the stale scripts")
    action.add_argument("--check", action="store_true", help="exit 1 if a script is stale")
    parser.add_argument("--root", type=Path, default=REPOSITORY,
                        help="repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    return write_files(args.root, scripts(), check=args.check,
                       regenerate="python -m tcpcli.cli.completion --write")


if __name__ == "__main__":
    sys.exit(main())
