"""Contiguous partition ranges: which runs cover which keys, in the partitions' order (one planner for every caller).

Every import run covers one contiguous range of a market's file partitions (Dagster's single-run backfill tags
``dagster/asset_partition_range_start``/``_end``). The file sensors, the per-market schedules, ``mytrader run`` and a
dead-letter replay all plan their runs here. Dagster's own ``BackfillPolicy.single_run()`` on the assets does the
same for a backfill launched from the UI; these callers cannot use a backfill instead, because they must know each
run before it starts (a sensor returns run requests with run keys, a replay links run ids to its item first, and
``mytrader run`` executes in-process with no daemon to drive a backfill).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def plan_ranges(
    order: Sequence[str],
    wanted: Iterable[str],
    present: Iterable[str] | None = None,
    max_span: int | None = None,
) -> list[list[str]]:
    """Group ``wanted`` keys into runs over contiguous ranges of ``order`` (the partitions' order).

    A range never crosses a key absent from ``present`` (default: ``wanted``, so each range is a run of consecutive
    wanted keys); a present but unwanted key between wanted ones may be included (the asset skips files it already
    loaded). A range spans at most ``max_span`` keys (default: no bound). Wanted keys missing from ``order`` are not
    planned: add new partitions to ``order`` first. Returns each range as its list of keys, first to last.
    """
    if max_span is not None and max_span < 1:
        raise ValueError("max_span must be at least 1")
    wanted_set = set(wanted)
    present_set = wanted_set if present is None else set(present)
    ranges: list[list[str]] = []
    span: list[str] = []  # the current range, up to its last wanted key
    pending: list[str] = []  # present, unwanted keys after the current range's last wanted key
    for key in order:
        if key not in present_set:
            if span:
                ranges.append(span)
            span, pending = [], []
        elif key in wanted_set:
            if span and max_span is not None and len(span) + len(pending) + 1 > max_span:
                ranges.append(span)
                span, pending = [], []
            span.extend([*pending, key] if span else [key])
            pending = []
        elif span:
            pending.append(key)
    if span:
        ranges.append(span)
    return ranges


def keys_in_range(order: Sequence[str], first: str, last: str) -> list[str]:
    """The keys of the range ``first`` .. ``last`` of ``order``; just the two ends when either is not in ``order``."""
    if first not in order or last not in order:
        return [first] if first == last else [first, last]
    return list(order[order.index(first) : order.index(last) + 1])
