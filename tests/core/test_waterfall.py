"""The waterfall's accounting: every stretch of a run is in exactly one row, named.

Phases are built by hand on a made-up clock (milliseconds as nanoseconds), so each case
states exactly what the rows must be.
"""

from __future__ import annotations

import time

import pytest

from tcpcli.core import timing
from tcpcli.core.timing import Phase, process_started_ns
from tcpcli.render import report
from tcpcli.render.report import Waterfall, WaterfallRow, row_lines

MS = 1_000_000


def phase(name: str, start_ms: float, end_ms: float, /, **detail: object) -> Phase:
    return Phase(name, int(start_ms * MS), int(end_ms * MS), "ok", dict(detail))


@pytest.fixture
def started_at_minus_50(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process started 50 ms before the clock's origin (0)."""
    monkeypatch.setattr(report, "process_started_ns", lambda: -50 * MS)


def table(rows: list[WaterfallRow]) -> list[tuple[str, float, float, float]]:
    return [(row.phase, row.start_ms, row.duration_ms, row.counted_ms) for row in rows]


@pytest.mark.usefixtures("started_at_minus_50")
def test_rows_in_order_with_every_stretch_named() -> None:
    phases = [phase("resolve", 10, 12, name="db.test", server="127.0.0.1:5353"),
              phase("connect", 12, 13, address="127.0.0.1", port=5432),
              phase("first-byte", 13, 40, bytes=5),
              phase("close", 90, 90.5)]
    waterfall = Waterfall(origin_ns=0)
    at_connect = waterfall.take(phases[:2])
    rest = waterfall.finish(phases, end_ns=100 * MS)
    assert table(at_connect) == [("cli-start-up", -50, 50, 50), ("setup", 0, 10, 10),
                                 ("resolve", 10, 2, 2), ("connect", 12, 1, 1)]
    assert table(rest) == [("first-byte", 13, 27, 27), ("transfer", 40, 50, 50),
                           ("close", 90, 0.5, 0.5), ("other", 90.5, 9.5, 9.5),
                           ("total", -50, 150, 150)]
    assert sum(row.counted_ms for row in at_connect + rest[:-1]) == 150
    lines = row_lines(at_connect + rest)
    assert lines[2].startswith("resolve           db.test @127.0.0.1:5353")
    assert lines[4].split()[:4] == ["first", "byte", "5", "bytes"]
    fields = waterfall.event_fields()
    assert fields["total_ms"] == 150
    assert isinstance(fields["rows"], list)
    assert [row["phase"] for row in fields["rows"]] == [
        "cli-start-up", "setup", "resolve", "connect", "first-byte", "transfer", "close",
        "other"]


@pytest.mark.usefixtures("started_at_minus_50")
def test_parallel_attempts_count_once_and_small_gaps_join_other() -> None:
    phases = [phase("connect", 5, 30, address="::1", port=1),  # happy eyeballs: the first
              phase("connect", 10, 20, address="127.0.0.1", port=1),  # inside the first
              phase("tls", 30.5, 40),  # 0.5 ms after: too small for a row of its own
              phase("close", 45, 46)]  # 5 ms after: an "other" row in place
    rows = Waterfall(origin_ns=0).finish(phases, end_ns=50 * MS)
    assert table(rows) == [("cli-start-up", -50, 50, 50), ("setup", 0, 5, 5),
                           ("connect", 5, 25, 25), ("connect", 10, 10, 0),
                           ("tls", 30.5, 9.5, 9.5), ("other", 40, 5, 5), ("close", 45, 1, 1),
                           ("other", 46, 4.5, 4.5), ("total", -50, 100, 100)]
    assert rows[3].parallel and "(in parallel: 0.000 ms counted)" in rows[3].line()
    assert sum(row.counted_ms for row in rows[:-1]) == 100


def test_without_a_known_process_start_the_run_begins_at_the_origin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "process_started_ns", lambda: None)
    rows = Waterfall(origin_ns=0).finish([phase("connect", 3, 4)], end_ns=10 * MS)
    assert table(rows) == [("setup", 0, 3, 3), ("connect", 3, 1, 1), ("other", 4, 6, 6),
                           ("total", 0, 10, 10)]


def test_unfinished_phases_are_uncovered_time(started_at_minus_50: None) -> None:
    running = Phase("first-byte", 4 * MS)  # never ended
    rows = Waterfall(origin_ns=0).finish([phase("connect", 3, 4), running], end_ns=10 * MS)
    assert [row.phase for row in rows] == ["cli-start-up", "setup", "connect", "other",
                                           "total"]


def test_process_start_is_before_now_and_after_a_plausible_start_up() -> None:
    started = process_started_ns()
    if started is None:
        pytest.skip("this system does not say when a process started")
    age_s = (time.perf_counter_ns() - started) / 1e9
    assert 0 < age_s < 24 * 3600  # this process, not the machine or the epoch
    assert timing.process_started_ns() == pytest.approx(started, abs=20 * MS)
