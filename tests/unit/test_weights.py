from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routers.model import TrafficState
from routers.planning.weights import largest_remainder, split


@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=16).filter(lambda w: sum(w) > 0),
    st.integers(1, 10**6),
)
def test_largest_remainder_sums_exactly_and_is_close(weights: list[int], total: int) -> None:
    out = largest_remainder(weights, total)
    assert sum(out) == total
    assert all(x >= 0 for x in out)
    for new, old in zip(out, weights, strict=True):
        assert abs(Fraction(new, total) - Fraction(old, sum(weights))) < Fraction(1, total)


def test_largest_remainder_refuses_all_zero() -> None:
    with pytest.raises(ValueError, match="all-zero"):
        largest_remainder([0, 0], 100)


@given(st.integers(1, 10**6).flatmap(lambda t: st.tuples(st.just(t), st.integers(0, t))))
def test_split_is_exact_in_its_own_total(tw: tuple[int, int]) -> None:
    total, weight = tw
    s = split(TrafficState(weight=weight, total=total))
    assert (s.stable + s.canary, s.rounded) == (total, False)


def test_scaling_reports_rounding() -> None:
    s = split(TrafficState(weight=333, total=1000))
    coarse = s.scaled(100)
    assert (coarse.stable, coarse.canary, coarse.rounded) == (67, 33, True)
    assert "333/1000" in coarse.describe_rounding(s)
    assert s.scaled(10_000).canary == 3330
    assert not s.scaled(10_000).rounded


def test_scaling_keeps_additional_destinations_and_never_goes_negative() -> None:
    s = split(
        TrafficState.parse(
            {"weight": 1, "total": 3, "additionalDestinations": [{"service": "x", "weight": 1}]}
        )
    )
    out = s.scaled(100)
    assert out.weights == [34, 33, 33]
    assert out.additional == (("x", 33),)


@given(
    st.integers(1, 1000),
    st.lists(st.integers(0, 1000), min_size=1, max_size=3),
    st.integers(1, 100).flatmap(lambda t: st.tuples(st.just(t), st.integers(0, t))),
)
def test_beside_foreign_keeps_every_foreign_share(
    ours: int, foreign: list[int], tw: tuple[int, int]
) -> None:
    from routers.planning.weights import beside_foreign

    total, weight = tw
    want = split(TrafficState(weight=weight, total=total))
    out = beside_foreign(want, ours, foreign, 1_000_000)
    if not any(foreign):
        assert out is None
        return
    assert out is not None
    new_foreign = [f * out.foreign_scale for f in foreign]
    assert all(f.denominator == 1 for f in new_foreign)
    before = ours + sum(foreign)
    after = out.split.total + sum(new_foreign)
    for old, new in zip(foreign, new_foreign, strict=True):
        assert Fraction(old, before) == new / after  # the foreign share is exactly the same
    if not out.split.rounded:
        assert Fraction(out.split.canary, out.split.total) == Fraction(weight, total)
