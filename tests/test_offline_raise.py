"""A raise the station may have taken before its connection dropped counts as installed.

A station that goes away while our SetChargingProfile (an increase) is on its way may have
installed it: like an increase left unanswered (`test_dispatch_trust.py`), it is the upper
bound of what the connector may draw - planned so while the station is offline, and compared
with so once it is back. Before, a raise cut by `StationOffline` was forgotten: the site was
planned as if the connector still drew its old, lower limit."""

from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.sim.station import Quirks
from tests.test_dispatch_trust import REF1, REF2, start_three, trust_site, two_feeders
from tests.site_e2e import wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_raise_cut_off_by_a_dropped_connection_counts_as_installed(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(two_feeders(), tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        cp2 = fleet.station("CP2")
        await start_three(server, fleet, clock)
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2]
        cp2.quirks = Quirks(silent_profiles=True)   # holds the raise (~19 kW) unanswered
        controller.request_replan("test")
        await wait_until(lambda: cp2.profiles_held > 0, 10, "CP2's raise on its way")
        await cp2.go_offline()                      # and the connection drops under it
        await wait_until(lambda: not controller.state.online.get("CP2", True), 10,
                         "CP2 offline")
        control = server.dispatcher.stations["CP2"]
        await wait_until(lambda: 1 in control.sent and max(control.sent[1].limits) > 0
                         and controller.installed.installed_max_w(REF2) > 15_000, 10,
                         "the raise counted as installed")
        await wait_until(lambda: controller.plan is not None and REF2 in controller.plan.fixed_w
                         and controller.plan.fixed_w[REF2] > 15_000, 10,
                         "CP2 planned at the raise while offline")
        assert controller.plan.connectors[REF1].power_at(clock.now()) \
            <= 22_000 - controller.plan.fixed_w[REF2] + 1
