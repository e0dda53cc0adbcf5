"""planner.departure_slot finds the first slot ending at or after the car's departure (or an
overstay's hour) by bisection over the increasing slot ends (s35-replan); it gives what the
scan of every slot it replaced gave. The replaced code is kept here verbatim as the reference."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from smartcharge.site.planner import OVERSTAY_S, departure_slot

NOW = datetime(2026, 12, 7, 16, 3, 27, tzinfo=UTC)


def reference_departure_slot(departure: datetime, now: datetime, ends) -> int:
    """The replaced implementation, verbatim."""
    until = departure if departure > now else now + timedelta(seconds=OVERSTAY_S)
    slot = next((i for i, end in enumerate(ends) if end >= until), len(ends) - 1) + 1
    return int(min(slot, len(ends)))


def slot_ends(rng, now: datetime) -> tuple:
    """Ends as plan_inputs.slots makes them: increasing, a short first slot, 15-min slots,
    finer ones near now and a few odd edges (limit changes, departures)."""
    first = (now.timestamp() // 900 + 1) * 900
    edges = {now, *(datetime.fromtimestamp(first + 900 * k, UTC) for k in range(97))}
    edges |= {now + timedelta(seconds=float(s)) for s in rng.uniform(60, 86_400, 6)}
    edges |= {datetime.fromtimestamp((now.timestamp() // 300 + k) * 300, UTC)
              for k in range(1, 4)}
    ordered = sorted(e for e in edges if e >= now)
    return tuple(ordered[1:])


@pytest.mark.parametrize("seed", range(10))
def test_departure_slot_gives_the_scans_slot(seed):
    rng = np.random.default_rng(seed)
    ends = slot_ends(rng, NOW)
    # departures: past (overstay), now, exactly at every end, a microsecond around each,
    # random ones, beyond the horizon
    departures = [NOW - timedelta(hours=2), NOW, NOW + timedelta(days=3)]
    for end in ends:
        departures += [end, end - timedelta(microseconds=1), end + timedelta(microseconds=1)]
    departures += [NOW + timedelta(seconds=float(s)) for s in rng.uniform(-7200, 90_000, 200)]
    slots = set()
    for departure in departures:
        got = departure_slot(departure, NOW, ends)
        assert got == reference_departure_slot(departure, NOW, ends), departure
        slots.add(got)
    assert len(slots) == len(ends)   # every slot met, the last one too


def test_departure_slot_without_slots_and_with_one():
    assert departure_slot(NOW + timedelta(hours=1), NOW, ()) == \
        reference_departure_slot(NOW + timedelta(hours=1), NOW, ()) == 0
    one = (NOW + timedelta(minutes=10),)
    for departure in (NOW - timedelta(minutes=1), NOW + timedelta(minutes=5), one[0],
                      NOW + timedelta(hours=5)):
        assert departure_slot(departure, NOW, one) == reference_departure_slot(departure, NOW, one)
