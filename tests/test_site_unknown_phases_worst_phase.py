"""A car of unknown phases on a W station is planned on the worst of what it may be, phase by
phase: a single-phase car draws every W it is sent on its connector's L1 (a known site phase,
the site file's `phase`), a three-phase car a third on each. So 1/V A per W on that phase and
1/(3V) on the other two (optimizer.Problem.phase_a_per_w) - not 1/V on all three, which kept
two phases' worth of room from the cars on the other phases until its phases were known (the
quality benchmark's re-plan dips, benchmarks/README.md "s29-quality", "s30-quality")."""

from __future__ import annotations

from datetime import timedelta

from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, RateUnit, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef
from tests.two_cars import T0, start_session

V = 230.0
PHASE_A = 32.0          # the grid connection's limit on each phase


def _site() -> Site:
    # a single-phase bay on L2 and a W station whose three-phase connector's L1 is site L1
    return Site(name="worst-phase",
                circuits=(Circuit("grid", None, limit_a=PHASE_A),),
                stations=(Station("S2", "grid", (Connector(1, phases=1, phase="L2"),)),
                          Station("W1", "grid", (Connector(1),), rate_unit=RateUnit.WATTS)))


async def test_a_car_of_unknown_phases_counts_its_worst_case_on_each_phase():
    # The single-phase car on L2 and the new car on W1 both want more than the phases allow.
    # Counted at 1/V A on every phase, W1's car took L2's room W for W from the L2 car: the
    # two shared 7 360 W in all (32 A on L2). Its worst case on L2 is 1/(3V) A per W (it is a
    # three-phase car there, or draws nothing there): W1 may take L1's 32 A (7 360 W sent)
    # and the L2 car keeps 32 A less a third of that on L2 - 12 267 W in all, every phase's
    # worst case still within 32 A.
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock)
    s2, w1 = ConnectorRef("S2", 1), ConnectorRef("W1", 1)
    start_session(controller, s2, 1)
    controller.state.set_need(1, requested_wh=60_000.0, departure=T0 + timedelta(hours=8))
    start_session(controller, w1, 2)
    controller.state.set_need(2, requested_wh=60_000.0, departure=T0 + timedelta(hours=8))
    await controller.replan()
    assert not controller.plan.connectors[w1].phases_known
    l2_car_w = controller.allocated_now_w(s2)
    sent_w = controller.allocated_now_w(w1) / 3.0     # a third of its plan, in W
    # the worst case on each phase: W1's car single-phase on L1, or three-phase
    worst_a = (sent_w / V, l2_car_w / V + sent_w / (3 * V), sent_w / (3 * V))
    assert max(worst_a) <= PHASE_A + 1e-6, worst_a
    assert l2_car_w + sent_w >= 12_266.0, (l2_car_w, sent_w)
    assert sent_w >= 7_359.0 and l2_car_w >= 4_906.0, (l2_car_w, sent_w)
