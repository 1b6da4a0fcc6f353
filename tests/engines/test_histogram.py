"""The streaming histogram: exact moments, percentiles within a bucket, merge, round trip."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest
from hypothesis import given, strategies as st

from tcpcli.engines.histogram import SUB_BITS, Histogram, bucket_bounds, bucket_index

RELATIVE = 2.0 ** -SUB_BITS

values = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=300)


def nearest_rank(sorted_values: list[int], p: float) -> int:
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


@given(st.integers(min_value=0, max_value=2**62))
def test_every_value_lies_in_its_bucket(value: int) -> None:
    low, high = bucket_bounds(bucket_index(value))
    assert low <= value < high
    assert high - low <= max(1, low * RELATIVE)


def test_buckets_are_contiguous() -> None:
    previous_high = 0
    for index in range(40 * (1 << SUB_BITS)):
        low, high = bucket_bounds(index)
        assert low == previous_high
        previous_high = high


@given(values)
def test_percentiles_are_within_one_bucket_of_the_exact_ones(samples: list[int]) -> None:
    h = Histogram()
    h.record_many(samples)
    ordered = sorted(samples)
    for p in (1, 50, 90, 99, 99.9, 100):
        exact = nearest_rank(ordered, p)
        assert abs(h.percentile(p) - exact) <= max(1, exact * RELATIVE)
    assert h.min == ordered[0] and h.max == ordered[-1]
    assert h.percentile(0) == ordered[0]
    assert h.mean == pytest.approx(statistics.fmean(samples), rel=1e-9)
    assert h.stdev == pytest.approx(statistics.pstdev(samples), rel=1e-6, abs=1e-6)


@given(values, values)
def test_merge_equals_recording_everything(a: list[int], b: list[int]) -> None:
    left, right, both = Histogram(), Histogram(), Histogram()
    left.record_many(a)
    right.record_many(b)
    both.record_many(a + b)
    left.merge(right)
    assert left.to_dict() == both.to_dict()


@given(values)
def test_serialization_round_trips(samples: list[int]) -> None:
    h = Histogram()
    h.record_many(samples)
    again = Histogram.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again.to_dict() == h.to_dict()
    assert again.percentile(99) == h.percentile(99)


@pytest.mark.parametrize("bad", [
    {}, {"format": 2, "sub_bits": SUB_BITS}, {"format": 1, "sub_bits": 3},
    {"format": 1, "sub_bits": SUB_BITS, "unit": "ns", "count": 2, "min": 1, "max": 1,
     "sum": 2, "sum_squares": 2, "buckets": {"1": 1}},
])
def test_corrupt_baselines_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Histogram.from_dict(bad)


def test_memory_stays_flat() -> None:
    """A million samples from 10 µs to 10 s: a few thousand counters, not a million."""
    h = Histogram()
    rng = random.Random(7)
    for _ in range(200_000):
        h.record(int(rng.lognormvariate(13, 2)) % 10**10)
    assert h.count == 200_000
    assert h.memory_counters < 5000


def test_empty_and_negative() -> None:
    h = Histogram()
    assert h.percentile(99) == 0.0 and h.mean == 0.0 and h.stdev == 0.0
    h.record(-5)  # a clock oddity counts as zero
    assert h.min == 0 and h.count == 1
    with pytest.raises(ValueError, match="outside"):
        h.percentile(101)


@given(st.lists(values, min_size=1, max_size=4))
def test_shipped_histograms_merge_into_the_distribution_of_all_samples(
        parts: list[list[int]]) -> None:
    """What ``bench --processes`` does: each process ships its buckets (to_dict), the
    parent adds them up; every percentile equals that of one histogram of all samples."""
    merged, everything = Histogram(), Histogram()
    for part in parts:
        shipped = Histogram()
        shipped.record_many(part)
        merged.merge(Histogram.from_dict(json.loads(json.dumps(shipped.to_dict()))))
        everything.record_many(part)
    for p in (0, 1, 50, 90, 99, 99.9, 100):
        assert merged.percentile(p) == everything.percentile(p)
    assert (merged.count, merged.min, merged.max, merged.mean, merged.stdev) == (
        everything.count, everything.min, everything.max, everything.mean, everything.stdev)
