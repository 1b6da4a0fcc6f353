"""Hypothesis settings for the protocol tier: deterministic, fast, no example database.

Failing examples are kept by hand in tests/corpus/ (replayed by test_fuzz.py), so a run
never depends on a local .hypothesis directory.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

#: Deterministic everywhere (CI or not); raise max_examples locally to hunt for bugs.
PROTOCOL_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
