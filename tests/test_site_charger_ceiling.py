"""A three-phase car that has taken every W it was offered is planned at 16 A a phase until it
draws that, not at its bay's 32 A.

An 11 kW car charging at 10 kW under a demand-response limit had told nothing of its on-board
charger: when the limit ended the plan raised it to its 22 kW bay and it took 11 kW of that; the
other 11 kW stood unused until its next meter sample while the 22 kW car beside it wanted them
(the quality days, truthful: 2.5-4.7 kWh a day of limit unused while the site was short,
benchmarks/README.md "s38-gap"). Three-phase on-board chargers take 16 A (11 kW) or 32 A (22 kW) a
phase: planned at 16 A plus headroom until a sample shows it drawing that
(`site/charger_ceiling.py`), the 11 kW car leaves the rest to the other at once, and a 22 kW car
that draws the 16 A is planned at its bay's maximum from that sample on. Off by default
(`ControllerSettings.charger_guess_a` None: benchmarks/README.md "s39-gap"); these tests set it.
"""

from __future__ import annotations

from datetime import timedelta

from smartcharge.sim.ev import SimEV
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.limits import DemandResponseEvent
from tests.two_cars import T0, charge_by_minute, two_stations

GRID_W = 30_000.0       # less than the two cars' 11 + 22 kW
EVENT_W = 10_000.0      # under the event the first car takes all it is given (10 kW)
EVENT_END_MIN = 30      # at a slot edge; the samples come at minutes 4, 9, ..., 34
SAMPLE_OFFSET_MIN = 4
RAISED = slice(EVENT_END_MIN, EVENT_END_MIN + SAMPLE_OFFSET_MIN)   # before the next sample
MINUTES = 40


GUESS_A = 16.0


async def _minutes(first: SimEV, second: SimEV, stays_s=(7200.0, 7200.0), **settings):
    event = DemandResponseEvent("event", T0, T0 + timedelta(minutes=EVENT_END_MIN),
                                limit_w=EVENT_W)
    return await charge_by_minute(two_stations("ceiling", cap_w=GRID_W), MINUTES, first,
                                  second, settings=ControllerSettings(**settings),
                                  told_needs=True, stays_s=stays_s, dr_events=(event,),
                                  phase_currents=True, sample_offset_min=SAMPLE_OFFSET_MIN)


def _car(max_w: float) -> SimEV:
    # at 20 % of 80 kWh: not in taper, and hungry for the whole 40 minutes
    return SimEV(capacity_wh=80_000.0, soc=0.2, max_power_w_by_phases={3: max_w})


async def test_an_11_kw_car_leaves_what_it_cannot_take_to_the_other_when_the_limit_ends():
    out = await _minutes(_car(11_000.0), _car(22_000.0), charger_guess_a=GUESS_A)
    assert max(out.taken_w[:EVENT_END_MIN]) <= EVENT_W   # never seen at its ceiling
    # before: raised to its 22 kW bay, it took 11 kW and 11.08 kW stood unused for the four
    # minutes to its next sample, the site at 18.9 of its 30 kW
    assert min(out.site_w[RAISED]) >= GRID_W - 200.0, out.site_w
    assert max(out.unused_w[RAISED]) <= 200.0, out.unused_w


async def test_a_22_kw_car_held_at_the_guess_takes_the_room_nobody_else_can():
    # the second car is full within minutes: from minute 30 the first has the site to itself.
    # Planned at its guess, it is given the room no other car can take (up to its bay's
    # maximum) and takes its 22 kW at once; its sample at 34 shows it drawing more than the
    # guess, and it is planned at its bay's maximum from then on
    nearly_full = SimEV(capacity_wh=80_000.0, soc=0.995, max_power_w_by_phases={3: 22_000.0})
    out = await _minutes(_car(22_000.0), nearly_full, charger_guess_a=GUESS_A)
    assert max(out.taken_w[:EVENT_END_MIN]) <= EVENT_W   # never seen at its ceiling
    assert min(out.taken_w[EVENT_END_MIN:]) >= 22_000.0 - 1e-6, out.taken_w


async def test_without_the_guess_the_raise_offers_what_the_car_cannot_take():
    # the default
    out = await _minutes(_car(11_000.0), _car(22_000.0))
    assert min(out.unused_w[RAISED]) >= 10_000.0, out.unused_w
