"""The command pauses garbage collection while it starts and resumes it for the work;
importing tcpcli as a library leaves collection alone."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

import tcpcli.cli.main
from tcpcli.__main__ import main as command
from tcpcli.cli import collector
from tcpcli.cli.environment import Environment
from tcpcli.cli.runner import run


@pytest.fixture(autouse=True)
def collection_restored() -> Iterator[None]:
    yield
    collector._paused = False
    gc.unfreeze()
    gc.enable()


def test_the_command_starts_paused_and_its_work_runs_collected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, bool] = {}

    async def never() -> int:
        raise AssertionError("the loop-free run ends the run")

    def cli_main() -> None:
        seen["while starting"] = gc.isenabled()

        def work() -> int:
            seen["while working"] = gc.isenabled()
            return 0

        run(never, Environment(), without_loop=work)

    monkeypatch.setattr(tcpcli.cli.main, "main", cli_main)
    with pytest.raises(SystemExit) as ended:
        command()
    assert ended.value.code == 0
    assert seen == {"while starting": False, "while working": True}
    assert gc.get_freeze_count() > 0  # start-up's objects are out of the collector's way


def test_resume_without_pause_changes_nothing() -> None:
    collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_importing_tcpcli_as_a_library_leaves_collection_on() -> None:
    code = ("import gc, tcpcli, tcpcli.cli.main, tcpcli.core.socket; "
            "print(gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"
