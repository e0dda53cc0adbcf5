"""Finer slots near now: a car near its need takes what it can at once, not its need spread
over a 15-minute slot.

Over a 15-min first slot the LP sees a car 2 kWh from full as 2 kWh over the slot: 8 kW, where
it could take 22 kW for a few minutes and leave the rest of the slot to the others. While the
others are at their own maximum, the difference stands unused under a binding cap (the demo
day, truthful: 23.6 of the 90 kWh the limit left unused while the site was short). The cars
are the simulator's (`sim.ev.SimEV`)."""

from __future__ import annotations

from datetime import timedelta

from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.site import plan_inputs
from smartcharge.site.controller import ControllerSettings, SiteController
from tests.two_cars import T0, charge_by_minute, two_stations

CAP_W = 30_000.0
NEAR = ControllerSettings(near_slot_s=300.0)   # off by default (benchmarks/README.md says why)


def _site() -> Site:
    """CP1 (22 kW) and CP2 (16 A: 11 kW) under 30 kW."""
    return Site(name="near", circuits=(Circuit("grid", None, limit_w=CAP_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1, max_current_a=16.0),))))


async def test_a_car_near_its_need_takes_the_room_at_once_while_the_other_is_at_its_maximum():
    # 2 kWh to go at up to 22 kW beside a car at its own 11 kW maximum, under 30 kW: with one
    # 15-min first slot the near car was planned at 8 kW (its need over the slot) and the site
    # drew 19 of its 30 kW for 15 minutes, while the near car could have taken 19.
    nearly = SimEV(capacity_wh=40_000.0, soc=0.5, target_soc=0.55,
                   max_power_w_by_phases={3: 22_000.0})
    other = SimEV(capacity_wh=80_000.0, soc=0.2, max_power_w_by_phases={3: 11_000.0})
    minutes = await charge_by_minute(_site(), 15, nearly, other, told_needs=True,
                                     settings=NEAR)
    assert nearly.full
    # before: 19.0 kW a minute over the first five (8 + 11); now the cap's room goes to the
    # car that can take it
    first_five_kw = [w / 1000.0 for w in minutes.site_w[:5]]
    assert min(first_five_kw) >= 0.95 * CAP_W / 1000.0, first_five_kw
    # and so it is full two 5-minute slots in (19 kW, then the rest), not at the 15 minutes'
    # end (before: 8 kW until 12:15)
    full_at = next(i for i, w in enumerate(minutes.taken_w) if w < 1.0)
    assert full_at <= 10, minutes.taken_w


def test_near_slots_lie_on_the_grid_and_keep_their_edges_from_one_re_plan_to_the_next():
    controller = SiteController(two_stations("near", CAP_W), ManualClock(T0), NEAR)
    now = T0 + timedelta(minutes=3, seconds=20)          # 12:03:20
    starts, ends = plan_inputs.slots(controller, now)
    assert starts[0] == now
    assert [e - T0 for e in ends[:3]] == [timedelta(minutes=m) for m in (5, 10, 15)]
    later = now + timedelta(minutes=5)                   # 12:08:20: 12:10, 12:15, 12:20
    starts, ends = plan_inputs.slots(controller, later)
    assert [e - T0 for e in ends[:4]] == [timedelta(minutes=m) for m in (10, 15, 20, 30)]
    # no slot shorter than a minute at now: 12:04:30 plans 12:04:30-12:10
    starts, ends = plan_inputs.slots(controller, T0 + timedelta(minutes=4, seconds=30))
    assert ends[0] - T0 == timedelta(minutes=10)
    # off (the default): the slot_s grid only
    off = SiteController(two_stations("near", CAP_W), ManualClock(T0))
    starts, ends = plan_inputs.slots(off, now)
    assert [e - T0 for e in ends[:2]] == [timedelta(minutes=15), timedelta(minutes=30)]
