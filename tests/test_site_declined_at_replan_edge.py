"""A full car retried (`declined_retry_s`) and read at ~0 W by the sample that comes just after
a re-plan paused it is judged against the plan it was sampled under, not the new one.

The quality benchmark's demo day, the demo's drivers (19:11-19:25, under the 60 kW event;
benchmarks/README.md "s36-quality"): three silent drivers' full cars were offered power again
at their hourly retry. The slot edge's re-plan at 19:15 happened to give them 0 just before
their 19:15 samples read 0 W (stations sample on the quarter hours, where slots change) - the
closed loop judged those samples against the plan *now*, which offered nothing, so they proved
nothing; the next re-plan (an arrival, 19:17) offered the cars their power again, 11 / 4 / 3.6
kW not taken for 3-8 more minutes while 11-16 hungry cars waited: two 9-minute dips."""

from __future__ import annotations

from datetime import timedelta

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.topology import ConnectorRef
from tests.two_cars import T0, start_session, two_stations

V = 230.0
CAP_W = 40_000.0
RETRY_S = 1800.0


def _sample(controller, ref, tx, clock, power_w, register_wh):
    amps = power_w / 3 / V
    controller.on_event(ev.MeterSampled(ref.station_id, ref.connector_id, tx, clock.now(),
                                        "Sample.Periodic", energy_register_wh=register_wh,
                                        power_w=power_w, current_a=(amps, amps, amps),
                                        received_at=clock.now()))


async def test_a_retried_full_car_paused_by_the_replan_before_its_sample_declines():
    clock = ManualClock(T0)
    controller = SiteController(two_stations("declined-edge", cap_w=CAP_W), clock,
                                ControllerSettings(declined_retry_s=RETRY_S))
    full, hungry = ConnectorRef("CP1", 1), ConnectorRef("CP2", 1)
    start_session(controller, full, 1)        # a silent driver: the site's assumed need
    start_session(controller, hungry, 2)
    controller.state.set_need(2, requested_wh=200_000.0, departure=T0 + timedelta(hours=10))
    await controller.replan()
    assert controller.allocated_now_w(full) >= controller.plan.connectors[full].min_power_w
    # the full car draws a minute, then its station says it stopped by itself: it declines
    clock.advance(60)
    controller.on_event(ev.ChargingStateChanged("CP1", 1, 1, "Charging", clock.now()))
    _sample(controller, full, 1, clock, 11_000.0, 180.0)
    controller.on_event(ev.ChargingStateChanged("CP1", 1, 1, "SuspendedEV", clock.now()))
    await controller.replan()
    assert full in controller.declined_at
    assert controller.allocated_now_w(full) == 0.0
    # its retry: offered its power again (nothing new said: it stays SuspendedEV)
    clock.advance(RETRY_S + 60)
    await controller.replan()
    assert full not in controller.declined_at
    assert controller.allocated_now_w(full) >= controller.plan.connectors[full].min_power_w
    # two minutes at 0 W under that offer; then a limit that leaves it nothing is planned
    # in the same moment its sample comes, and the sample reads 0 W
    clock.advance(120)
    controller.limits.add_event(DemandResponseEvent("dip", clock.now(),
                                                    clock.now() + timedelta(minutes=2),
                                                    limit_w=10_000.0))
    await controller.replan()
    assert controller.allocated_now_w(full) == 0.0
    _sample(controller, full, 1, clock, 0.0, 180.0)
    # the limit lifts: a car that showed it takes nothing is not offered power again
    clock.advance(120)
    await controller.replan()
    assert full in controller.declined_at, "its 0 W sample under its offer proved nothing"
    assert controller.allocated_now_w(full) == 0.0
    assert controller.allocated_now_w(hungry) >= 22_000.0 - 1.0
