"""A car of unknown phases on a station addressed in W is sent a third of its plan
(installed.w_factor): the sample that shows its phases is read against that third, with
stations or without (the controller alone, as the quality benchmark runs it)."""

from __future__ import annotations

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, RateUnit, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef
from tests.two_cars import T0, start_session


async def _a_new_car_on_a_w_station():
    """A 22 kW bay on a station addressed in W under a per-phase breaker, a car whose phases
    are not known yet on it, planned: (clock, controller, its connector)."""
    clock = ManualClock(T0)
    site = Site(name="w-third",
                circuits=(Circuit("grid", None, limit_w=60_000.0, limit_a=100.0),),
                stations=(Station("CP1", "grid", (Connector(1),), rate_unit=RateUnit.WATTS),))
    controller = SiteController(site, clock)
    ref = ConnectorRef("CP1", 1)
    start_session(controller, ref, 1)
    await controller.replan()
    return clock, controller, ref


async def test_a_w_stations_car_drawing_the_third_it_was_sent_is_not_capped_at_it():
    # A 22 kW bay on a station addressed in W under a per-phase breaker: a car whose phases
    # are not known yet is planned at 22 kW and sent a third of it (a single-phase car would
    # draw a W limit on one phase). Its first sample shows three phases and 7.36 kW: all it
    # was sent. Without stations the closed loop read it against the plan's 22 kW and capped
    # the car at 7.5 kW until its next sample (the quality benchmark's depot bays: a new
    # 22 kW car drew a third for a meter interval, ~1 kWh each while the site had room);
    # with phases known it is planned at its 22 kW at once.
    clock, controller, ref = await _a_new_car_on_a_w_station()
    plan = controller.plan.connectors[ref]
    assert not plan.phases_known
    assert controller.allocated_now_w(ref) == 22_080.0
    clock.advance(60)
    sent_w = 22_080.0 / 3
    amps = sent_w / 3 / 230.0
    controller.on_event(ev.MeterSampled("CP1", 1, 1, clock.now(), "Trigger",
                                        energy_register_wh=120.0, power_w=sent_w,
                                        current_a=(amps, amps, amps), received_at=clock.now()))
    assert controller.state.sessions[ref].phases_in_use == 3
    assert ref not in controller.ev_cap_w
    await controller.replan()
    assert controller.plan.connectors[ref].phases_known
    assert controller.allocated_now_w(ref) == 22_080.0


async def test_a_w_stations_car_drawing_less_than_its_third_is_still_followed():
    # ... and one that draws clearly less than the third it was sent (an 11 kW car sent
    # 7.36 kW, taking 5 kW: a battery in taper) is capped at what it draws, as any other
    clock, controller, ref = await _a_new_car_on_a_w_station()
    clock.advance(60)
    amps = 5_000.0 / 3 / 230.0
    controller.on_event(ev.MeterSampled("CP1", 1, 1, clock.now(), "Trigger",
                                        energy_register_wh=80.0, power_w=5_000.0,
                                        current_a=(amps, amps, amps), received_at=clock.now()))
    assert controller.ev_cap_w.get(ref) == 5_000.0 + controller.settings.ev_headroom_w
