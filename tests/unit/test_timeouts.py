"""The CLI's timeouts: --timeout bounds connecting only when given; a server's reply (a
STARTTLS step, the answer to our ClientHello) is bounded by it or by the 10 s default."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from tcpcli.cli.options import CommonOptions, common_options
from tcpcli.core.starttls import REPLY_TIMEOUT


def options_for(*args: str) -> Any:
    seen: list[Any] = []

    @click.command()
    @common_options
    def command(**kwargs: Any) -> None:
        common = CommonOptions.from_kwargs(kwargs)
        seen.append((common, common.invocation().options))

    result = CliRunner().invoke(command, list(args), catch_exceptions=False,
                                env={"TCPCLI_TIMEOUT": None})
    assert result.exit_code == 0, result.output
    return seen[0]


@pytest.mark.parametrize(("args", "connect", "reply"), [
    ((), None, REPLY_TIMEOUT),
    (("--timeout", "2.5"), 2.5, 2.5),
])
def test_timeouts(args: tuple[str, ...], connect: float | None, reply: float) -> None:
    common, options = options_for(*args)
    assert options.connect_timeout == connect  # Workers: no limit unless asked for
    assert common.reply_timeout == reply
    assert options.tls_handshake_timeout == reply
    assert REPLY_TIMEOUT == 10.0  # what --timeout's help promises
