"""ConnectorPlan.window bisects to the slots inside the window (issue 10: it scanned all ~100 slots
of every connector's plan in every dispatch round): the same periods as the scan, for any plan
and window."""

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smartcharge.site.plan import ConnectorPlan
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def scanned(plan: ConnectorPlan, start: datetime, duration_s: float):
    offsets, powers = [0.0], [plan.power_at(start)]
    for slot_start, power in zip(plan.slot_starts, plan.power_w):
        offset = (slot_start - start).total_seconds()
        if 0 < offset < duration_s:
            offsets.append(offset)
            powers.append(float(power))
    return offsets, powers


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 3600), min_size=0, max_size=40),
       st.integers(-1000, 40_000), st.integers(1, 20_000), st.integers(0, 999_999))
def test_window_is_the_scan(gaps_s, start_s, duration_s, micros):
    starts = [T0]
    for gap in gaps_s:
        starts.append(starts[-1] + timedelta(seconds=gap))
    plan = ConnectorPlan(ref=ConnectorRef("CP1", 1), transaction_id=1, start=T0,
                         slot_starts=starts, power_w=np.arange(len(starts), dtype=float) * 100,
                         min_power_w=0.0)
    start = T0 + timedelta(seconds=start_s, microseconds=micros)
    assert plan.window(start, duration_s) == scanned(plan, start, duration_s)
