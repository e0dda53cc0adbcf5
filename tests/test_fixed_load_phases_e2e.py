"""A single-phase draw on a three-phase connector under a per-phase breaker, end to end (docs/
promises.md, promise 1; tests/test_fixed_load_phases.py at the planner level).

A free-vend station (no transaction: site/sessionless.py) draws 7.36 kW on L1 only - 32 A on
one phase, as its own per-phase meter values say - under a 40 A breaker. Counted balanced over
its connector's three phases (10.7 A each), the car that plugs in beside it was sent 29.3 A per
phase: 61.3 A on L1 of a 40 A breaker, and the guard saw 10.7 A there. Now the draw counts at
the most it may put on one phase (its phases unknown: all of it on one), the car is sent what
is left of that phase, and the guard counts the draw there too. Real server with its site
controller, real `ocpp` 1.6 stations over real WebSockets, real SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ocpp.v16 import call

from smartcharge.app import create_app
from smartcharge.clock import SystemClock
from smartcharge.model import Circuit, Connector, Station
from smartcharge.site.setup import CONTROLLER
from smartcharge.site.topology import ConnectorRef
from tests.conftest import PASSWORD, make_site, ocpp_time, serve_harness
from tests.test_outside_s32_16 import _station_taking_profiles

BREAKER_A = 40.0
VOLT = 230.0
CAR = ConnectorRef("CP1", 1)
FREE_VEND = ConnectorRef("CP2", 1)
DRAW_A = 32.0                       # on L1 only


@pytest.fixture
async def breaker_site(tmp_path):
    """CP1 and CP2, one 3-phase 32 A connector each (addressed in A), under a 40 A breaker."""
    site = make_site(circuits=(Circuit("grid", None, limit_w=100_000.0),
                               Circuit("breaker", "grid", limit_a=BREAKER_A)),
                     stations=tuple(Station(sid, "breaker", (Connector(1),), password=PASSWORD)
                                    for sid in ("CP1", "CP2")))
    clock = SystemClock()
    app = create_app(site, db_path=str(tmp_path / "s.sqlite"), clock=clock)
    async for harness in serve_harness(app):
        harness.clock = clock
        yield harness


async def _draw_without_a_transaction(station, currents_a=(DRAW_A, 0.0, 0.0)) -> None:
    """MeterValues without a transactionId: the total and each phase's current."""
    currents = [{"value": f"{a:g}", "measurand": "Current.Import", "unit": "A", "phase": phase}
                for phase, a in zip(("L1", "L2", "L3"), currents_a)]
    await station.call(call.MeterValues(connector_id=1, meter_value=[
        {"timestamp": ocpp_time(datetime.now(UTC)), "sampled_value": [
            {"value": f"{sum(currents_a) * VOLT:g}", "measurand": "Power.Active.Import",
             "unit": "W"},
            *currents]}]), suppress=False)


async def _drawing_beside(harness, currents_a) -> None:
    """CP2 says Charging and draws `currents_a` (L1, L2, L3) without a transaction, until the
    plan counts its draw."""
    controller = harness.app[CONTROLLER]
    free_vend = await _station_taking_profiles(harness, "CP2")
    await free_vend.call(call.StatusNotification(connector_id=1, error_code="NoError",
                                                 status="Charging"), suppress=False)
    await _draw_without_a_transaction(free_vend, currents_a)
    draw_w = sum(currents_a) * VOLT
    await harness.wait_for(lambda: controller.plan is not None
                           and controller.plan.sessionless_w == {FREE_VEND: draw_w}, 10)


def _tx_most_a(profile: dict) -> float:
    """The most per-phase current a TxProfile allows in any of its periods [A]."""
    schedule = profile["charging_schedule"]
    periods = schedule["charging_schedule_period"]
    if schedule["charging_rate_unit"] == "A":
        return max(float(p["limit"]) for p in periods)
    return max(float(p["limit"]) / (VOLT * p.get("number_phases", 3)) for p in periods)


async def test_a_single_phase_draw_leaves_the_car_only_what_its_phase_has(breaker_site):
    """Failed before the fix: the guard counted the draw at 10.7 A on the breaker's phases and
    the car was sent a TxProfile of 14.6 A, then 29.3 A per phase (61.3 A on L1 of the 40 A
    breaker)."""
    harness = breaker_site
    controller = harness.app[CONTROLLER]
    car = await _station_taking_profiles(harness, "CP1")
    await _drawing_beside(harness, (DRAW_A, 0.0, 0.0))
    # the guard counts the draw at least at what it puts on L1
    breaker = controller.topology.node_ids.index("breaker")
    _, load_a, _ = controller.guard.node_loads(controller.clock.now())
    assert load_a[breaker].max() >= DRAW_A - 1e-6, load_a[breaker]

    await car.start_tx(1, 1_000, datetime.now(UTC))
    await harness.wait_for(lambda: CAR in controller.plan.connectors and car.taken, 10)
    sent_a = max(_tx_most_a(profile) for _, profile in car.taken)
    planned_a = controller.allocated_now_w(CAR) / (3 * VOLT)
    # what L1 of the breaker carries once the car draws what it was sent, beside the draw
    assert DRAW_A + sent_a <= BREAKER_A + 1e-6, (sent_a, planned_a)
    assert DRAW_A + planned_a <= BREAKER_A + 1e-6, planned_a
    assert sent_a > 0.0                                   # it still charges beside it


@pytest.mark.parametrize("currents_a", [(DRAW_A, 0.0, 0.0), (16.0, 16.0, 16.0)],
                         ids=["single_phase_on_l1", "three_phase"])
async def test_a_draw_is_counted_on_the_phases_its_currents_show(breaker_site, currents_a):
    """Its per-phase currents show its phases: counted there, not at the worst case - the
    guard sees 32 A on L1 only, or 16 A on each phase, and a three-phase draw of 11 kW leaves
    the car the breaker's other 24 A (at the worst case of unknown phases: 8 A)."""
    harness = breaker_site
    controller = harness.app[CONTROLLER]
    car = await _station_taking_profiles(harness, "CP1")
    await _drawing_beside(harness, currents_a)
    breaker = controller.topology.node_ids.index("breaker")
    _, load_a, _ = controller.guard.node_loads(controller.clock.now())
    assert load_a[breaker] == pytest.approx(currents_a), load_a[breaker]

    await car.start_tx(1, 1_000, datetime.now(UTC))
    await harness.wait_for(lambda: CAR in controller.plan.connectors and car.taken, 10)
    sent_a = max(_tx_most_a(profile) for _, profile in car.taken)
    room_a = BREAKER_A - max(currents_a)
    assert room_a - 0.1 <= sent_a <= room_a + 1e-6, sent_a
