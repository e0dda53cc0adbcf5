"""A tapering car the plan resumed is not paused again for its worth within the hour.

A car whose battery takes less than its 6 A minimum is worth its acceptance over its minimum
(`planner.taper_worth`): while the site is short it waits, and it runs again when there is room
to spare. On a day whose room came and went the plan paused such a car at every short spell
(benchmarks/README.md "s38-gap": the tight day, truthful, car 25 paused by its worth at 07:40 and
at 09:15, more than once an hour with the guard's pauses). Once resumed, it keeps its full worth
for `ControllerSettings.taper_worth_hold_s` (an hour): the next short spell within it does not
pause it for its worth (the plan is then as without the worth: equal value, the running car kept).
"""

from __future__ import annotations

from datetime import timedelta

from smartcharge.sim.ev import SimEV
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.limits import DemandResponseEvent
from tests.two_cars import T0, charge_by_minute, two_stations

GRID_W = 40_000.0       # room for both cars: the hungry one's 22 kW and the other's minimum
SHORT_W = 20_000.0      # not: what one takes is the other's
# (start, end) minutes of the short spells: the car is resumed at 45 and short again at 60
SHORT_MIN = ((30, 45), (60, 90))
MINUTES = 90
STAY_S = MINUTES * 60.0   # both leave at the end of the last short spell


def _cars() -> tuple[SimEV, SimEV]:
    # an 11 kW car at 90 % of 82 kWh, in taper from 50 %: its battery takes 11 kW x (1 - 0.8 x
    # 0.9) = 3.08 kW, under its 4.14 kW minimum, falling slowly (0.24 W per Wh), and it wants
    # 8.2 kWh, more than it can take in the 90 minutes; a 22 kW car at 20 % of 80 kWh that takes
    # all it is given for the whole 90 minutes. Neither car's need can be met: a W to either is
    # energy, and only the worth tells them apart.
    tapering = SimEV(capacity_wh=82_000.0, soc=0.9, taper_start_soc=0.5,
                     max_power_w_by_phases={3: 11_000.0})
    hungry = SimEV(capacity_wh=80_000.0, soc=0.2, max_power_w_by_phases={3: 22_000.0})
    return tapering, hungry


async def _minutes(**settings):
    tapering, hungry = _cars()
    events = tuple(DemandResponseEvent(f"short-{n}", T0 + timedelta(minutes=start),
                                       T0 + timedelta(minutes=end), limit_w=SHORT_W)
                   for n, (start, end) in enumerate(SHORT_MIN))
    return await charge_by_minute(two_stations("taper-hold", cap_w=GRID_W), MINUTES, tapering,
                                  hungry, settings=ControllerSettings(**settings),
                                  told_needs=True, stays_s=(STAY_S, STAY_S), dr_events=events)


def _pauses(taken_w: list[float]) -> list[int]:
    """The minutes the car stopped drawing after a minute it drew."""
    return [m for m in range(1, len(taken_w)) if taken_w[m - 1] > 0.0 and taken_w[m] <= 0.0]


async def test_a_resumed_tapering_car_is_not_paused_again_for_its_worth_within_the_hour():
    out = await _minutes()
    first, second = SHORT_MIN
    pauses = _pauses(out.taken_w)
    # the worth still acts: in the first short spell the car waits and the hungry one takes
    # all of the 20 kW
    assert len(pauses) == 1 and first[0] <= pauses[0] < first[0] + 5, (pauses, out.taken_w)
    assert max(out.site_w[first[0] + 5:first[1]]) <= SHORT_W + 1.0
    assert min(out.site_w[first[0] + 5:first[1]]) >= SHORT_W - 1.0, out.site_w
    # resumed when the room is back, and 15 minutes later, short again, it keeps running
    assert all(w > 0.0 for w in out.taken_w[first[1] + 1:]), out.taken_w


async def test_without_the_hold_it_is_paused_at_every_short_spell():
    # the hold off: the worth pauses the car again 15 minutes after it was resumed
    out = await _minutes(taper_worth_hold_s=0.0)
    pauses = _pauses(out.taken_w)
    assert len(pauses) == 2, (pauses, out.taken_w)
    assert [start for start, _ in SHORT_MIN] == [p - p % 5 for p in pauses], pauses
