"""Small, dependency-free statistics for the bench (kept separate so the tests can check them)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Timing", "growth_exponent", "percentile", "time_call"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually measured, no smoothing."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def growth_exponent(n1: float, t1: float, n2: float, t2: float) -> float:
    """b in t ~ n**b between two points: 1 is linear, 2 quadratic, below 1 sublinear."""
    if min(n1, n2, t1, t2) <= 0 or n1 == n2:
        raise ValueError("need two distinct positive sizes and positive times")
    return math.log(t2 / t1) / math.log(n2 / n1)


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and the best of several batches, and how many calls."""

    median: float
    best: float
    calls: int


def time_call(
    fn: Callable[[], object],
    *,
    min_batch: float = 0.05,
    batches: int = 5,
    max_calls: int = 100_000,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """timeit's method: grow the batch until it lasts ``min_batch`` seconds, then repeat it.

    The median batch is the headline (what a caller sees on a busy machine); the best one is what
    the code costs without interference, which the linearity check uses.
    """
    fn()  # warm caches (imports, compiled regexes) outside the measurement
    number = 1
    while True:
        start = clock()
        for _ in range(number):
            fn()
        elapsed = clock() - start
        if elapsed >= min_batch or number >= max_calls:
            break
        number = min(max_calls, number * 10 if elapsed < min_batch / 10 else number * 2)
    samples = [elapsed / number]
    for _ in range(batches - 1):
        start = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - start) / number)
    samples.sort()
    return Timing(samples[len(samples) // 2], samples[0], number * batches)
