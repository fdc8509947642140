"""The one range planner: which runs cover which partition keys (pure: no Dagster, no database)."""

import pytest

from mytrader_pipeline.core.ranges import keys_in_range, plan_ranges

ORDER = list("abcdefgh")


@pytest.mark.parametrize(
    ("wanted", "present", "max_span", "expected"),
    [
        ("abcdefgh", "abcdefgh", 3, ["abc", "def", "gh"]),  # a first sight: bounded runs over contiguous ranges
        ("bg", "abcdefgh", 8, ["bcdefg"]),  # scattered changes share a run; the asset skips c..f (unchanged)
        ("bg", "abcdefgh", 4, ["b", "g"]),  # ... unless the span would pass the bound
        ("bg", "abcefgh", 8, ["b", "g"]),  # never across a deleted file (d): its run would fail
        ("", "abc", 3, []),
        ("bg", "abcdefgh", None, ["bcdefg"]),  # no bound
    ],
)
def test_plan_ranges_bounds_spans_and_never_crosses_an_absent_key(
    wanted: str, present: str, max_span: int | None, expected: list[str]
) -> None:
    ranges = plan_ranges(ORDER, list(wanted), list(present), max_span)
    assert ["".join(r) for r in ranges] == expected


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("abcdefgh", ["abcdefgh"]),
        ("abdefh", ["ab", "def", "h"]),  # a key not wanted ends a range: replays and mytrader run load only theirs
        ("h", ["h"]),
        ("", []),
        ("xz", []),  # keys not in the order are not planned
    ],
)
def test_plan_ranges_without_present_is_runs_of_consecutive_wanted_keys(wanted: str, expected: list[str]) -> None:
    assert ["".join(r) for r in plan_ranges(ORDER, wanted)] == expected


def test_plan_ranges_refuses_a_span_below_one() -> None:
    with pytest.raises(ValueError, match="max_span"):
        plan_ranges(ORDER, "a", max_span=0)


def test_keys_in_range_expands_a_range_tag_pair() -> None:
    assert keys_in_range(ORDER, "c", "e") == ["c", "d", "e"]
    assert keys_in_range(ORDER, "d", "d") == ["d"]
    assert keys_in_range(ORDER, "x", "x") == ["x"]  # an unknown end (partition deleted since): the ends alone
    assert keys_in_range(ORDER, "a", "x") == ["a", "x"]
