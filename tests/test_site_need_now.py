"""A re-plan between a car's meter samples plans it on its need now, not at its last sample.

The register a plan starts from is the one of the car's last sample; a re-plan between samples
(a slot edge, an arrival) planned a car near its told need on energy it had already taken since,
so it was full early in the slot while the power it was given stood unused until its next
sample (demo day, truthful drivers: 15 kWh a day, every watt within 5 minutes of a car becoming
full). The cars are the simulator's (`sim.ev.SimEV`)."""

from __future__ import annotations

from datetime import UTC, datetime

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CAP_W = 20_000.0


def _site() -> Site:
    return Site(name="need-now", circuits=(Circuit("grid", None, limit_w=CAP_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1),))))


async def _run(minutes: int, nearly: SimEV, hungry: SimEV, sample_offset_min: int):
    """Both cars charge minute by minute at what the plan offers; meter samples every 5 min,
    `sample_offset_min` after the slot edges; a re-plan whenever the controller asks and at
    every slot edge. Returns the power offered to `nearly` it did not take, per minute."""
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock)
    cars = {ConnectorRef("CP1", 1): (1, nearly), ConnectorRef("CP2", 1): (2, hungry)}
    register = {ref: 0.0 for ref in cars}
    for ref, (tx, car) in cars.items():
        controller.on_event(ev.StationBooted(ref.station_id, T0, True, "v", "m"))
        controller.on_event(ev.SessionStarted(ref.station_id, 1, tx, "TAG", 0.0, T0))
        controller.state.set_need(tx, requested_wh=car.energy_need_wh)
    await controller.replan()
    unused = []
    for minute in range(minutes):
        if controller._replan.is_set() or minute % 15 == 0:
            controller._replan.clear()
            await controller.replan()
        draws = {}
        for ref, (tx, car) in cars.items():
            offered = controller.allocated_now_w(ref) or 0.0
            draws[ref] = car.advance(60, offered)
            register[ref] += draws[ref] / 60
            if car is nearly:
                unused.append(offered - draws[ref])
        clock.advance(60)
        if (minute + 1) % 5 == sample_offset_min:
            for ref, (tx, _) in cars.items():
                controller.on_event(ev.MeterSampled(
                    ref.station_id, ref.connector_id, tx, clock.now(), "Sample.Periodic",
                    energy_register_wh=register[ref], power_w=draws[ref],
                    received_at=clock.now()))
    return unused


async def test_a_car_near_its_need_is_planned_on_what_it_has_taken_since_its_sample():
    # 5.05 kWh to go at 11 kW beside a hungry 22 kW car under 20 kW; samples a minute after
    # each 5-minute mark, so the 12:15 slot edge re-plans on the 12:11 register: 4 minutes
    # (733 Wh) behind. Planned on it, the car was given 11 kW for the slot, was full at
    # 12:27:30 and its 11 kW stood unused until its 12:31 sample.
    nearly = SimEV(capacity_wh=40_000.0, soc=0.5, target_soc=0.5 + 5_050.0 / 40_000.0,
                   max_power_w_by_phases={3: 11_000.0})
    hungry = SimEV(capacity_wh=80_000.0, soc=0.2, max_power_w_by_phases={3: 22_000.0})
    unused = await _run(45, nearly, hungry, sample_offset_min=1)
    assert nearly.full
    # (the first minute the car is offered the 22 kW bay's 20 kW: its phases are not known)
    # before: 35.5 kW-minutes offered and not taken, 31.6 of them 12:27-12:30; after: 11.9,
    # the minute it is full in (the simulator's steps) and the next slot's first minute
    assert sum(unused[1:]) / 1000.0 <= 15.0, sum(unused[1:]) / 1000.0


async def test_an_estimate_never_plans_a_car_done_before_its_register_says_so():
    # The car's register said 4.7 of its 5 kWh four minutes ago while it drew 11 kW: by the
    # estimate it is done (733 Wh since). Only a register says so: planned at 0 on a guess, a
    # car still charging (a slower minute, a clock a little off) is paused until its next
    # sample. It keeps at least its minimum until then.
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock)
    ref = ConnectorRef("CP1", 1)
    controller.on_event(ev.StationBooted("CP1", T0, True, "v", "m"))
    controller.on_event(ev.SessionStarted("CP1", 1, 1, "TAG", 0.0, T0))
    controller.state.set_need(1, requested_wh=5_000.0)
    await controller.replan()
    clock.advance(60)
    controller.on_event(ev.MeterSampled("CP1", 1, 1, clock.now(), "Sample.Periodic",
                                        energy_register_wh=4_700.0, power_w=11_000.0,
                                        current_a=(16.0, 16.0, 16.0), received_at=clock.now()))
    await controller.replan()
    clock.advance(240)
    assert controller.closed_loop.drawn_since_sample_wh(ref, clock.now()) > 300.0
    await controller.replan()
    plan = controller.plan.connectors[ref]
    assert controller.allocated_now_w(ref) >= plan.min_power_w > 0


async def test_a_need_under_one_slot_at_the_minimum_is_planned_at_the_minimum_not_more():
    # 100 Wh to go, planned 3 minutes before a slot edge: a need under one slot at the
    # minimum rate is asked as one slot at the minimum (1 035 Wh at 4 140 W), and the LP gave
    # it in the short first slot at 20.7 kW; the car took its 100 Wh in 17 s and 20.7 kW stood
    # unused until its next sample (demo day, truthful: most of the 14 kWh offered to full
    # cars). At its minimum it still runs; it is not given more.
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock)
    ref = ConnectorRef("CP1", 1)
    controller.on_event(ev.StationBooted("CP1", T0, True, "v", "m"))
    controller.on_event(ev.SessionStarted("CP1", 1, 1, "TAG", 0.0, T0))
    controller.state.set_need(1, requested_wh=5_000.0)
    clock.advance(12 * 60)
    controller.on_event(ev.MeterSampled("CP1", 1, 1, clock.now(), "Sample.Periodic",
                                        energy_register_wh=4_900.0, power_w=0.0,
                                        received_at=clock.now()))
    await controller.replan()
    plan = controller.plan.connectors[ref]
    assert plan.min_power_w > 0
    assert controller.allocated_now_w(ref) == plan.min_power_w
