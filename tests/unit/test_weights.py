from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routers.errors import WeightFitError
from routers.model import TrafficState, WeightScope
from routers.planning.weights import (
    Split,
    give_back,
    largest_remainder,
    place,
    remember,
    split,
    unique_keys,
)


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
    st.integers(0, 1000),
    st.lists(st.integers(0, 1000), min_size=1, max_size=3),
    st.integers(1, 100).flatmap(lambda t: st.tuples(st.just(t), st.integers(0, t))),
    st.sampled_from(["all", "ours"]),
)
def test_place_keeps_every_foreign_share_and_gives_canary_its_share_of_all(
    ours: int, foreign: list[int], tw: tuple[int, int], scope: WeightScope
) -> None:
    """The issue-12 rule: others keep their share, the canary gets weight/total of all traffic
    (scope ``all``) or of what the others leave (``ours``), stable the rest; else a typed error."""
    total, weight = tw
    want = split(TrafficState(weight=weight, total=total))
    held = Fraction(sum(foreign), ours + sum(foreign)) if ours + sum(foreign) else Fraction(0)
    try:
        out = place(want, ours, foreign, scope=scope)
    except WeightFitError as exc:
        assert held and weight, "only a positive foreign share can refuse a canary weight"
        assert exc.foreign == held and exc.requested == Fraction(weight, total)
        assert scope == "ours" or held + Fraction(weight, total) > 1
        return
    if not held:
        assert out.foreign == tuple(foreign) and out.split == want
        return
    after = out.total
    for old, new in zip(foreign, out.foreign, strict=True):
        assert Fraction(old, ours + sum(foreign)) == Fraction(new, after)  # exactly the same
    canary = Fraction(out.split.canary, after)
    if scope == "ours" or weight == total:
        expected = Fraction(weight, total) * (1 - held)
    else:
        expected = Fraction(weight, total)
    assert canary == expected or out.rounded
    again = place(want, out.split.total, list(out.foreign), scope=scope)
    assert (again.split, again.foreign) == (out.split, out.foreign), "not a fixed point"


def test_place_in_a_fixed_total_keeps_the_foreign_weight_when_the_list_sums_to_it() -> None:
    out = place(split(TrafficState(weight=20)), 90, [10], total=100)
    assert (out.split.stable, out.split.canary, out.foreign) == (70, 20, (10,))
    with pytest.raises(WeightFitError, match="at most 90% fits"):
        place(split(TrafficState(weight=95)), 90, [10], total=100)
    # Promotion: the canary takes everything the foreign destination does not hold.
    out = place(split(TrafficState(weight=100)), 90, [10], total=100)
    assert (out.split.stable, out.split.canary, out.foreign) == (0, 90, (10,))


# -- remember / give_back: cleanup's undo of a rescale of weights we do not own ---------------


def test_give_back_undoes_an_exact_and_a_rounded_rescale() -> None:
    requested = Split(80, 20, (), 100)
    # Free sum: legacy 1 beside our 1 becomes 5 beside 5 (one factor).
    record: dict[str, dict[str, int]] = {}
    placed = place(requested, 1, [1])
    remember(record, "r", {"legacy": 1}, placed, ours=1)
    assert give_back(dict(record), "r", {"legacy": placed.foreign[0]}, placed.total - 5) == (
        {"legacy": 1},
        1,
    )
    # Fixed total 100: 10 of 110 is rounded to 9 of 100; our sum tells it apart.
    record = {}
    placed = place(requested, 100, [10], total=100)
    assert placed.foreign == (9,)
    remember(record, "r", {"legacy": 10}, placed, ours=100)
    assert give_back(dict(record), "r", {"legacy": 9}, 91) == ({"legacy": 10}, 100)
    # Someone set legacy to 7: 91 * 10/7 = 130 is whole (it looks like a rescale by 7/10),
    # but our sum was 100, so it is theirs: nothing is given back, and the entry is gone.
    assert give_back(record, "r", {"legacy": 7}, 91) is None
    assert record == {}
    # Recorded before our sum was kept (older ledgers): the factor alone decides.
    assert give_back({"r": {"legacy": 10}}, "r", {"legacy": 5}, 50) == ({"legacy": 10}, 100)
    # A backend added or removed since: not ours to guess.
    assert give_back({"r": {"legacy": 10, "(ours)": 100}}, "r", {"x": 9}, 91) is None


def test_unique_keys_keeps_one_service_on_two_ports_apart() -> None:
    assert unique_keys(["a", "b", "a", "a"]) == ["a", "b", "a#2", "a#3"]
