"""A station that refuses every profile stays planned around when it is set up again.

CP1 refuses every SetChargingProfile (a 1.6 station without Smart Charging, one that says
Rejected to all) and its car charges: after its first refusal the plan counts it at what it may
really draw (its maximum: it holds nothing of ours) and CP2 gets the rest of the grid. Its link
then drops and comes back - or, on the same connection, its clock is seen moved or its set-up is
tried again after a timeout, which is how a loaded run met it (benchmarks/README.md, s31-suite,
item 3; s32-disobey): every set-up of a station ended by reporting each of its connectors
controllable again, whatever its answers had just been. The next plan counted CP1 at its car's
draw and gave CP2 the room CP1's maximum had held; CP1 refused the decrease, so CP2's raise
(and every other raise under the grid) was held - "decreases at CP1 not acknowledged;
re-planning" - until the plan after. A set-up whose fail-safe default the station refused
(or left unanswered) tells nothing new of its control: it must not clear what its refusals
(or its silence) taught."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smartcharge.site import learned
from smartcharge.site.topology import ConnectorRef
from tests.refusing_cp1 import CP1, control_regained_news, refusing_cp1_charging
from tests.site_e2e import wait_until

GRID_W = 30_000.0


async def two_site_minutes_dispatched(clock, dispatcher) -> None:
    done = clock.now() + timedelta(minutes=2)
    await wait_until(lambda: clock.now() > done and dispatcher.idle, 20,
                     "two site minutes after its set-up, every plan dispatched")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_refusing_station_set_up_again_stays_planned_around(tmp_path, version):
    async with refusing_cp1_charging(tmp_path, "refusing, set up again", GRID_W,
                                     version=version) as (server, fleet, clock, _):
        controller, dispatcher = server.controller, server.dispatcher
        await wait_until(lambda: controller.plan is not None and CP1 in controller.plan.fixed_w
                         and ConnectorRef("CP2", 1) in controller.plan.connectors
                         and dispatcher.idle, 20, "CP1 planned around after its refusal")
        # from here on: what the site bus carries (plans, what dispatch learned)
        seen: list = []
        unsubscribe = controller.site_bus.subscribe(seen.append)
        try:
            station = fleet.station("CP1")
            first = dispatcher.stations["CP1"].setup_link
            await station.go_offline()
            await wait_until(lambda: not controller.state.online.get("CP1", True), 10,
                             "CP1 offline")
            station.go_online()
            # set up on its new connection, and the site planned and dispatched after it
            await wait_until(lambda: dispatcher.stations["CP1"].setup_link not in (None, first)
                             and controller.state.online.get("CP1", False)
                             and dispatcher._setups_queued == 0, 20, "CP1 set up again")
            await two_site_minutes_dispatched(clock, dispatcher)
        finally:
            unsubscribe()
        # what the set-up told the controller, the plans made after it, the raises held
        assert control_regained_news(seen) == ([], [], [])
        assert fleet.draw_w("CP1", 1) > 6_000   # it charges as it pleases, planned so


async def test_a_refusing_station_set_up_again_on_the_same_connection(tmp_path):
    """The same on one connection: CP1's clock runs ahead (what it was sent went out moved
    onto it), then it is set to ours - its stamps say so - and everything it holds is sent
    again (`setup_station(moved=True)`); under load a link's latency read as a clock moved
    does the same. 1.6 (the set-up is version-neutral; the reconnect above covers 2.0.1)."""
    async with refusing_cp1_charging(tmp_path, "refusing, clock set", GRID_W, fleet_kw={
            "clock_offsets_s": {"CP1": 600.0}}) as (server, fleet, clock, _):
        controller, dispatcher = server.controller, server.dispatcher
        control = dispatcher.stations["CP1"]
        link = control.setup_link
        await wait_until(lambda: controller.plan is not None and CP1 in controller.plan.fixed_w
                         and ConnectorRef("CP2", 1) in controller.plan.connectors
                         and link.clock_offset_s is not None
                         and abs(link.clock_offset_s - 600.0) < 30 and dispatcher.idle, 20,
                         "CP1 planned around, its clock ahead known")
        seen: list = []
        unsubscribe = controller.site_bus.subscribe(seen.append)
        try:
            station = fleet.station("CP1")
            station.clock = clock                 # set to ours; its next stamps say so
            station._report_all_statuses()
            await wait_until(lambda: any(isinstance(e, learned.PlanMade) for e in seen)
                             and abs(link.clock_offset_s or 0.0) < 30
                             # everything sent again on its clock as it is now (ours)
                             and control.port.resent_on_its_clock
                             and all(abs(s) < 30 for s in control.port.sent_shifts_s)
                             and dispatcher._setups_queued == 0, 20,
                             "CP1 set up again on its new clock")
            assert control.setup_link is link     # the same connection
            await two_site_minutes_dispatched(clock, dispatcher)
        finally:
            unsubscribe()
        assert control_regained_news(seen) == ([], [], [])
