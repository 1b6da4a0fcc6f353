"""Every error kind the core raises maps to a documented exit code."""

from __future__ import annotations

import inspect

from tcpcli.cli.exit_codes import EXIT_CODE_BY_KIND, ExitCode, exit_code_for
from tcpcli.core import errors


def test_every_error_kind_has_a_deliberate_exit_code() -> None:
    kinds = {cls.kind for _, cls in inspect.getmembers(errors, inspect.isclass)
             if issubclass(cls, errors.TcpcliError)}
    unmapped = kinds - set(EXIT_CODE_BY_KIND)
    # These fall back to the generic error code on purpose.
    assert unmapped == {"error", "connect", "closed", "canceled"}


def test_values_are_stable() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130, 143]
    assert ExitCode.ADDRESS_IN_USE == 11
    assert exit_code_for("blocked") == 3
    assert exit_code_for("no-such-kind") == ExitCode.ERROR
