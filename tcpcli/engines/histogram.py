"""A streaming log-linear histogram (HDR-style) for latency samples in nanoseconds.

Why not keep the samples: ``bench`` may run for hours, and memory must stay flat. Values are
counted in buckets whose width grows with the value: below ``2**SUB_BITS`` every integer has
its own bucket; above, each power-of-two range is split into ``2**SUB_BITS`` equal buckets,
so a reported percentile is within ``2**-SUB_BITS`` (0.8 %) of the true sample. The bucket
array grows only with the largest value seen (about 4,500 counters for an hour in ns).

min, max, mean and stdev are exact (integer sums); percentiles come from the buckets,
reported as the bucket's midpoint clamped to [min, max]. Histograms merge (per-worker or
per-run) and serialize to a small JSON-able dict for ``--save``/``--compare``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

#: Sub-buckets per power of two, as a bit count: 7 -> 128 buckets, <= 0.8 % relative width.
SUB_BITS = 7
_SUB = 1 << SUB_BITS
#: Serialization format version (``to_dict``/``from_dict``).
FORMAT = 1


def bucket_index(value: int) -> int:
    """The bucket of a non-negative integer value."""
    if value < _SUB:
        return value
    shift = value.bit_length() - SUB_BITS - 1
    return ((shift + 1) << SUB_BITS) + (value >> shift) - _SUB


def bucket_bounds(index: int) -> tuple[int, int]:
    """``[low, high)`` of the values counted in bucket ``index``."""
    if index < _SUB:
        return index, index + 1
    shift = (index >> SUB_BITS) - 1
    low = ((index & (_SUB - 1)) + _SUB) << shift
    return low, low + (1 << shift)


class Histogram:
    """Counts of non-negative integer values (nanoseconds, by convention) in log buckets."""

    __slots__ = ("_counts", "count", "max", "min", "sum", "sum_squares")

    def __init__(self) -> None:
        self._counts: list[int] = []
        self.count = 0
        self.min = 0
        self.max = 0
        self.sum = 0
        self.sum_squares = 0

    # ------------------------------------------------------------------ recording

    def record(self, value: int) -> None:
        """Count one value; negative values (clock oddities) count as 0."""
        if value < 0:
            value = 0
        if value < _SUB:
            index = value
        else:
            shift = value.bit_length() - SUB_BITS - 1
            index = ((shift + 1) << SUB_BITS) + (value >> shift) - _SUB
        counts = self._counts
        if index >= len(counts):
            counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
        if self.count == 0:
            self.min = self.max = value
        elif value < self.min:
            self.min = value
        elif value > self.max:
            self.max = value
        self.count += 1
        self.sum += value
        self.sum_squares += value * value

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts into this histogram."""
        if other.count == 0:
            return
        if len(other._counts) > len(self._counts):
            self._counts.extend([0] * (len(other._counts) - len(self._counts)))
        for index, n in enumerate(other._counts):
            if n:
                self._counts[index] += n
        if self.count == 0:
            self.min, self.max = other.min, other.max
        else:
            self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.count += other.count
        self.sum += other.sum
        self.sum_squares += other.sum_squares

    # ------------------------------------------------------------------ statistics

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @property
    def stdev(self) -> float:
        """Population standard deviation (exact: integer sums)."""
        if self.count < 2:
            return 0.0
        n = self.count
        variance = (n * self.sum_squares - self.sum * self.sum) / (n * n)
        return math.sqrt(max(variance, 0.0))

    def percentile(self, p: float) -> float:
        """The value at percentile ``p`` (0-100): the nearest-rank sample's bucket midpoint."""
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} is outside 0-100")
        if self.count == 0:
            return 0.0
        if p == 0:
            return float(self.min)
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                low, high = bucket_bounds(index)
                middle = low if high - low == 1 else (low + high - 1) / 2
                return float(min(max(middle, self.min), self.max))
        return float(self.max)  # pragma: no cover - the counts always add up

    def percentiles(self, ps: Iterable[float]) -> dict[float, float]:
        return {p: self.percentile(p) for p in ps}

    def buckets(self) -> list[tuple[int, int, int]]:
        """Non-empty buckets as ``(low, high, count)``, for rendering."""
        return [(*bucket_bounds(i), n) for i, n in enumerate(self._counts) if n]

    @property
    def memory_counters(self) -> int:
        """How many counters are allocated (stays small however many samples)."""
        return len(self._counts)

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "sub_bits": SUB_BITS,
            "unit": "ns",
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "sum": self.sum,
            "sum_squares": self.sum_squares,
            "buckets": {str(i): n for i, n in enumerate(self._counts) if n},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        """Rebuild a histogram saved by :meth:`to_dict`; ValueError when it is not one."""
        try:
            if data["format"] != FORMAT or data["sub_bits"] != SUB_BITS:
                raise ValueError(f"unsupported histogram format {data['format']}/"
                                 f"{data['sub_bits']}")
            histogram = cls()
            buckets = {int(i): int(n) for i, n in data["buckets"].items()}
            if buckets:
                if min(buckets) < 0 or min(buckets.values()) < 0:
                    raise ValueError("negative bucket")
                histogram._counts = [0] * (max(buckets) + 1)
                for index, n in buckets.items():
                    histogram._counts[index] = n
            histogram.count = int(data["count"])
            histogram.min, histogram.max = int(data["min"]), int(data["max"])
            histogram.sum, histogram.sum_squares = int(data["sum"]), int(data["sum_squares"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a saved histogram: {exc!r}") from exc
        if sum(histogram._counts) != histogram.count:
            raise ValueError("histogram counts do not add up")
        return histogram


__all__ = ["SUB_BITS", "Histogram", "bucket_bounds", "bucket_index"]
