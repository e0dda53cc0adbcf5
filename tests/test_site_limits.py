"""Limits on the grid connection: most restrictive wins, sources, windows, DR events."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from smartcharge.model import CapWindow, Circuit, Site
from smartcharge.site.limits import DemandResponseEvent, SiteLimits

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _site(limit_w=100_000.0, cap_schedule=()):
    return Site(name="t", circuits=(Circuit("grid", None, limit_w=limit_w),), stations=(),
                cap_schedule=cap_schedule)


def _slots(n, minutes=60):
    starts = [T0 + i * timedelta(minutes=minutes) for i in range(n)]
    return starts, [s + timedelta(minutes=minutes) for s in starts]


def test_site_file_cap_and_schedule_most_restrictive_wins():
    site = _site(cap_schedule=(CapWindow(T0 + 2 * H, T0 + 4 * H, 60_000.0),))
    values, sources = SiteLimits(site).effective_root_limit_w(*_slots(6))
    assert values.tolist() == [100_000, 100_000, 60_000, 60_000, 100_000, 100_000]
    assert [s.id for s in sources] == ["grid", "grid", "cap_schedule[0]", "cap_schedule[0]",
                                       "grid", "grid"]
    assert {s.source for s in sources} == {"site"}


def test_operator_cap_only_wins_where_lower():
    limits = SiteLimits(_site(cap_schedule=(CapWindow(T0 + 2 * H, T0 + 3 * H, 60_000.0),)))
    limits.set_operator_cap(80_000, since=T0 + H)
    values, sources = limits.effective_root_limit_w(*_slots(4))
    assert values.tolist() == [100_000, 80_000, 60_000, 80_000]
    assert [s.source for s in sources] == ["site", "operator", "site", "operator"]
    limits.set_operator_cap(None)
    values, _ = limits.effective_root_limit_w(*_slots(4))
    assert values.tolist() == [100_000, 100_000, 60_000, 100_000]


def test_operator_cap_schedule_replaces_previous_and_validates():
    limits = SiteLimits(_site())
    limits.set_cap_schedule([(T0, T0 + H, 50_000.0)])
    limits.set_cap_schedule([(T0 + H, T0 + 2 * H, 40_000.0)])
    values, _ = limits.effective_root_limit_w(*_slots(3))
    assert values.tolist() == [100_000, 40_000, 100_000]
    with pytest.raises(ValueError, match="end"):
        limits.set_cap_schedule([(T0 + H, T0, 1.0)])
    with pytest.raises(ValueError, match="limit_w"):
        limits.set_cap_schedule([(T0, T0 + H, -1.0)])


def test_dr_event_partially_covering_a_slot_takes_the_whole_slot():
    limits = SiteLimits(_site())
    limits.add_event(DemandResponseEvent("dr-1", T0 + 90 * timedelta(minutes=1),
                                         T0 + 150 * timedelta(minutes=1), limit_w=30_000))
    values, sources = limits.effective_root_limit_w(*_slots(4))
    assert values.tolist() == [100_000, 30_000, 30_000, 100_000]
    assert sources[1].source == "utility" and sources[1].id == "dr-1"


def test_dr_reduction_is_taken_from_the_cap_in_force():
    limits = SiteLimits(_site(cap_schedule=(CapWindow(T0 + H, T0 + 2 * H, 60_000.0),)))
    limits.add_event(DemandResponseEvent("dr-2", T0, T0 + 2 * H, reduction_w=25_000))
    values, sources = limits.effective_root_limit_w(*_slots(3))
    assert values.tolist() == [75_000, 35_000, 100_000]
    assert sources[0].id == "dr-2" and sources[1].id == "dr-2"


def test_dr_reduction_without_a_cap_uses_the_uncapped_site_maximum():
    limits = SiteLimits(_site(limit_w=None), uncapped_w=50_000)
    limits.add_event(DemandResponseEvent("dr-3", T0, T0 + H, reduction_w=20_000))
    values, sources = limits.effective_root_limit_w(*_slots(2))
    assert values[0] == 30_000 and np.isinf(values[1]) and sources[1] is None


def test_dr_event_higher_than_cap_does_not_raise_the_cap():
    limits = SiteLimits(_site())
    limits.add_event(DemandResponseEvent("dr-4", T0, T0 + H, limit_w=150_000))
    values, sources = limits.effective_root_limit_w(*_slots(1))
    assert values[0] == 100_000 and sources[0].source == "site"


def test_event_update_cancel_and_state():
    limits = SiteLimits(_site())
    event = DemandResponseEvent("dr-5", T0 + H, T0 + 2 * H, limit_w=10_000, priority=1)
    limits.add_event(event)
    assert event.state(T0) == "scheduled" and event.state(T0 + H) == "active"
    assert event.state(T0 + 2 * H) == "completed"
    with pytest.raises(KeyError):
        limits.add_event(event)
    limits.update_event(DemandResponseEvent("dr-5", T0, T0 + H, limit_w=20_000))
    values, _ = limits.effective_root_limit_w(*_slots(2))
    assert values.tolist() == [20_000, 100_000]
    cancelled = limits.cancel_event("dr-5")
    assert cancelled.state(T0) == "cancelled"
    values, _ = limits.effective_root_limit_w(*_slots(2))
    assert values.tolist() == [100_000, 100_000]
    with pytest.raises(KeyError):
        limits.cancel_event("nope")


def test_event_starting_now_covers_the_current_slot():
    limits = SiteLimits(_site())
    now = T0 + timedelta(minutes=7)
    limits.add_event(DemandResponseEvent("dr-now", now, now + H, limit_w=5_000))
    values, _ = limits.effective_root_limit_w([now], [T0 + timedelta(minutes=15)])
    assert values[0] == 5_000


def test_ties_go_to_higher_priority_event():
    limits = SiteLimits(_site())
    limits.add_event(DemandResponseEvent("low", T0, T0 + H, limit_w=10_000, priority=5))
    limits.add_event(DemandResponseEvent("high", T0, T0 + H, limit_w=10_000, priority=0))
    _, sources = limits.effective_root_limit_w(*_slots(1))
    assert sources[0].id == "high"


@pytest.mark.parametrize("kwargs, message", [
    ({"limit_w": 1, "reduction_w": 1}, "exactly one"),
    ({}, "exactly one"),
    ({"limit_w": -5}, "limit_w"),
    ({"limit_w": 5, "priority": "x"}, "priority"),
])
def test_event_validation_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DemandResponseEvent("e", T0, T0 + H, **kwargs)
    with pytest.raises(ValueError, match="end"):
        DemandResponseEvent("e", T0, T0, limit_w=1)


def test_change_times_lists_future_boundaries():
    limits = SiteLimits(_site(cap_schedule=(CapWindow(T0 + H, T0 + 2 * H, 60_000.0),)))
    limits.add_event(DemandResponseEvent("d", T0 + 3 * H, T0 + 4 * H, limit_w=1))
    assert limits.change_times(T0 + H) == [T0 + 2 * H, T0 + 3 * H, T0 + 4 * H]
