"""A new car of unknown phases on a station addressed in W, behind a breaker its running
neighbours nearly fill, is started at its minimum so that it shows its phases.

Sent in W while its phases are unknown, the car may be single-phase and draw all it is sent on
one phase: the planner counts every W of it as 1/V A on each phase (the worst case), three
times what a three-phase neighbour's W costs there. With 15 A left on a 63 A breaker its
minimum (4.14 kW: 18 A on one phase in the worst case) does not fit, the plan sees its energy
as deferrable and never offers it anything, and a car offered nothing never shows its phases
(the quality benchmark's workplace day, 08:15-08:28: ~10 kW of the breaker unused for 14
minutes while the site was short, benchmarks/README.md "s28-quality", "s29-quality")."""

from __future__ import annotations

from datetime import timedelta

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, RateUnit, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef
from tests.two_cars import T0, start_session

V = 230.0
BREAKER_A = 63.0
GRID_W = 200_000.0


def _site(grid_w: float = GRID_W) -> Site:
    return Site(name="unknown-phases",
                circuits=(Circuit("grid", None, limit_w=grid_w),
                          Circuit("depot", "grid", limit_a=BREAKER_A)),
                stations=(Station("A1", "depot", (Connector(1),)),
                          Station("A2", "depot", (Connector(1, max_current_a=16.0),)),
                          Station("W1", "depot", (Connector(1),), rate_unit=RateUnit.WATTS)))


def _three_phase_sample(controller, ref, tx, clock, power_w, register_wh):
    amps = power_w / 3 / V
    controller.on_event(ev.MeterSampled(ref.station_id, ref.connector_id, tx, clock.now(),
                                        "Sample.Periodic", energy_register_wh=register_wh,
                                        power_w=power_w, current_a=(amps, amps, amps),
                                        received_at=clock.now()))


def _worst_phase_a(controller, refs) -> float:
    """The breaker's worst phase now: a three-phase car's balanced current is its W over 3 V;
    a car of unknown phases is sent a third of its plan in W, which it may draw on one phase:
    the same W over 3 V."""
    return sum(controller.allocated_now_w(ref) for ref in refs) / (3 * V)


async def test_a_new_car_of_unknown_phases_behind_a_nearly_full_breaker_is_started():
    # Two three-phase cars fill 48 of a depot's 63 A, each with more need than its stay
    # allows; a car arrives on the depot's W station, staying longer. Its minimum in the worst
    # case (18 A on one phase) does not fit beside the two, and its need fits after they
    # leave: the plan left it at 0, so its phases stayed unknown and the 15 A it could draw on
    # three phases went unused. Now it is started at its minimum (the two give up a little),
    # shows three phases, and then draws the breaker's room beside them.
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock)
    a1, a2, w1 = (ConnectorRef(s, 1) for s in ("A1", "A2", "W1"))
    stay = T0 + timedelta(hours=4)
    cars = ((1, a1, 90_000.0, 32.0), (2, a2, 45_000.0, 16.0))
    for tx, ref, need_wh, _ in cars:
        start_session(controller, ref, tx)
        controller.state.set_need(tx, requested_wh=need_wh, departure=stay)
    await controller.replan()
    clock.advance(60)
    for tx, ref, _, amps in cars:
        _three_phase_sample(controller, ref, tx, clock, amps * 3 * V, amps * 3 * V / 60)
    await controller.replan()
    assert all(controller.state.sessions[ref].phases_in_use == 3 for _, ref, _, _ in cars)
    assert _worst_phase_a(controller, (a1, a2)) == 48.0
    clock.advance(60)
    start_session(controller, w1, 3, at=clock.now())
    controller.state.set_need(3, requested_wh=45_000.0, departure=T0 + timedelta(hours=8))
    await controller.replan()
    plan = controller.plan.connectors[w1]
    assert not plan.phases_known
    offered_w = controller.allocated_now_w(w1)
    assert offered_w >= plan.min_power_w - 1e-6, "a car offered nothing never shows its phases"
    assert _worst_phase_a(controller, (a1, a2, w1)) <= BREAKER_A + 1e-6
    assert plan.binding.id == "depot"     # what holds it: the breaker, in the worst case
    # its first sample shows three phases (it drew the third it was sent): planned on them,
    # it takes what the breaker has left
    clock.advance(60)
    _three_phase_sample(controller, w1, 3, clock, offered_w / 3, offered_w / 180)
    assert controller.state.sessions[w1].phases_in_use == 3
    await controller.replan()
    assert controller.plan.connectors[w1].phases_known
    assert controller.allocated_now_w(w1) >= controller.plan.connectors[w1].min_power_w - 1e-6
    assert BREAKER_A - 0.5 <= _worst_phase_a(controller, (a1, a2, w1)) <= BREAKER_A + 1e-6


async def test_a_car_of_unknown_phases_is_not_started_where_a_cap_leaves_no_room():
    # ... but not where the grid's cap binds: there its phases would win nothing now, and
    # the cars that leave first keep the cap (the new car's need fits after they leave)
    clock = ManualClock(T0)
    controller = SiteController(_site(grid_w=30_000.0), clock)
    a1, a2, w1 = (ConnectorRef(s, 1) for s in ("A1", "A2", "W1"))
    stay = T0 + timedelta(hours=4)
    for tx, ref, need_wh in ((1, a1, 90_000.0), (2, a2, 45_000.0)):
        start_session(controller, ref, tx)
        controller.state.set_need(tx, requested_wh=need_wh, departure=stay)
    await controller.replan()
    start_session(controller, w1, 3)
    controller.state.set_need(3, requested_wh=45_000.0, departure=T0 + timedelta(hours=8))
    await controller.replan()
    assert not controller.plan.connectors[w1].phases_known
    assert controller.allocated_now_w(w1) == 0.0
    assert controller.allocated_now_w(a1) + controller.allocated_now_w(a2) >= 30_000.0 - 1.0
