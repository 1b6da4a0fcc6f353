"""A real-server test skips where its server is missing, except under CI, where it fails."""

from __future__ import annotations

import pytest

from tests.realservers import conftest


@pytest.mark.parametrize(("in_ci", "outcome"), [(False, pytest.skip.Exception),
                                                (True, pytest.fail.Exception)])
def test_a_missing_server_skips_locally_and_fails_under_ci(
        monkeypatch: pytest.MonkeyPatch, in_ci: bool, outcome: type[BaseException]) -> None:
    monkeypatch.setattr(conftest, "IN_CI", in_ci)
    with pytest.raises(outcome, match="tcpcli-no-such-server is not installed"):
        conftest.require_binary("tcpcli-no-such-server")


def test_an_installed_binary_is_found() -> None:
    assert conftest.require_binary("sh").endswith("/sh")
