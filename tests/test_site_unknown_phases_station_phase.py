"""A new car of unknown phases on a W station whose one phase a single-phase neighbour fills
is started at its minimum, so that it shows its phases.

The quality benchmark's demo day (truthful drivers, 16:15-16:27, benchmarks/README.md
"s36-quality"): at depot-b's W station CP019 a single-phase car drew ~30 of the station's 32 A
on L1, and a 22 kW car arrived at its other connector. Planned on its worst case (all it is
sent on L1), its minimum did not fit beside the neighbour - nor did its three-phase minimum
(6 A on L1): `unknown_phases_started` asked for that beside the plan on every phase. So it was
offered nothing for 12 minutes while the site was 22 kW under its cap, and a car offered
nothing never shows its phases; L2 and L3 stood empty. Three-phase, each A of L1 it takes
carries three times the neighbour's W. Where every node above it has W room for its minimum
and room on the phases its worst case does not load, its worst phase is made room on by the
others (the re-solve at UNKNOWN_PHASES_WEIGHT), as on a breaker."""

from __future__ import annotations

from datetime import timedelta

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, RateUnit, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef
from tests.two_cars import T0, start_session

V = 230.0
STATION_A = 32.0


def _site(grid_w: float = 200_000.0) -> Site:
    return Site(name="unknown-phases-station",
                circuits=(Circuit("grid", None, limit_w=grid_w),),
                stations=(Station("W1", "grid", (Connector(1), Connector(2)),
                                  max_current_a=STATION_A, rate_unit=RateUnit.WATTS),))


def _sample(controller, ref, tx, clock, current_a, register_wh):
    controller.on_event(ev.MeterSampled(ref.station_id, ref.connector_id, tx, clock.now(),
                                        "Sample.Periodic", energy_register_wh=register_wh,
                                        power_w=sum(current_a) * V, current_a=current_a,
                                        received_at=clock.now()))


def _phase_a(controller, single, new, new_phases: int) -> list[float]:
    """The station's current per phase now: the single-phase car on L1, the new car's W on
    its phases (a W station's car of unknown phases is sent a third of its plan: installed.py)."""
    single_a = controller.allocated_now_w(single) / V
    plan = controller.plan.connectors[new]
    sent_w = controller.allocated_now_w(new) / (1.0 if plan.phases_known else 3.0)
    if new_phases == 1:
        return [single_a + sent_w / V, 0.0, 0.0]
    return [single_a + sent_w / (3 * V), sent_w / (3 * V), sent_w / (3 * V)]


async def _site_with_l1_full(grid_w: float, new_stay_h: float):
    clock = ManualClock(T0)
    controller = SiteController(_site(grid_w), clock)
    single, new = ConnectorRef("W1", 2), ConnectorRef("W1", 1)
    start_session(controller, single, 1)
    controller.state.set_need(1, requested_wh=60_000.0, departure=T0 + timedelta(hours=3))
    await controller.replan()
    clock.advance(60)
    # it shows one phase: a single-phase car, planned at its most - 32 A on the station's L1
    _sample(controller, single, 1, clock, (STATION_A, 0.0, 0.0), STATION_A * V / 60)
    await controller.replan()
    assert controller.state.sessions[single].phases_in_use == 1
    assert controller.allocated_now_w(single) == STATION_A * V
    clock.advance(60)
    start_session(controller, new, 2, at=clock.now())
    controller.state.set_need(2, requested_wh=60_000.0,
                              departure=T0 + timedelta(hours=new_stay_h))
    await controller.replan()
    return clock, controller, single, new


async def test_a_car_of_unknown_phases_beside_a_full_phase_is_started_and_shows_three():
    # leaving an hour after the single-phase car: its need does not fit after it, and each A
    # of L1 it takes carries three times the neighbour's W if it is three-phase (in its worst
    # case the same W: the plan without its phases leaves L1 to the car that leaves first)
    clock, controller, single, new = await _site_with_l1_full(200_000.0, new_stay_h=4.0)
    plan = controller.plan.connectors[new]
    assert not plan.phases_known
    offered_w = controller.allocated_now_w(new)
    assert offered_w >= plan.min_power_w - 1e-6, \
        f"offered {offered_w:.0f} W: a car offered nothing never shows its phases"
    # lawful in its worst case: all it is sent on L1
    assert max(_phase_a(controller, single, new, 1)) <= STATION_A + 1e-6
    # its first sample shows three phases (the third it was sent, on each): planned on them
    # it takes what three phases give, the single-phase car keeping what L1 has left
    clock.advance(60)
    amps = offered_w / 3 / 3 / V
    _sample(controller, new, 2, clock, (amps, amps, amps), offered_w / 3 / 60)
    assert controller.state.sessions[new].phases_in_use == 3
    await controller.replan()
    assert controller.plan.connectors[new].phases_known
    both_w = controller.allocated_now_w(new) + controller.allocated_now_w(single)
    assert both_w > STATION_A * V + 1_000.0, f"the station gives {both_w:.0f} W"
    assert max(_phase_a(controller, single, new, 3)) <= STATION_A + 1e-6


async def test_not_started_beside_a_full_phase_where_the_cap_leaves_no_room():
    # under a cap the single-phase car fills, the three-phase hypothesis wins nothing now (the
    # new car's need fits after its neighbour leaves)
    clock, controller, single, new = await _site_with_l1_full(STATION_A * V, new_stay_h=8.0)
    assert not controller.plan.connectors[new].phases_known
    assert controller.allocated_now_w(new) == 0.0
    assert controller.allocated_now_w(single) == STATION_A * V
