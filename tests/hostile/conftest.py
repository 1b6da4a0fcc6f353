"""Tests marked ``isolated`` run only inside a loopback-only network namespace.

Outside one they are skipped here and run instead by ``test_in_namespace.py``, which starts
one pytest for all of them under ``tests/support/isolated``: their DNS answers name public
addresses, and a policy bug must not be able to send a packet off this machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.isolated_namespace import in_loopback_namespace

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if in_loopback_namespace():
        return
    skip = pytest.mark.skip(reason="runs inside tests/support/isolated (test_in_namespace.py)")
    for item in items:
        if HERE in item.path.parents and item.get_closest_marker("isolated") is not None:
            item.add_marker(skip)
