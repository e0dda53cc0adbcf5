"""An idle share's raise is held by its own schedule, like a plan's (edges.held): it goes out as
soon as the decreases it relies on are acknowledged and comes into force no sooner than the
settle time after them - not held back a settle time in the round first and then again by the
clocks' margin. One grid, CP1 charging and CP2 idle: CP1 lowered, CP2's idle share rises into
the room CP1 left."""

from datetime import timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import wait_until
from tests.test_dispatch_trust import (REF1, REF2, SPEED, T0, big_ev, limit_w, one_grid,
                                       trust_site)

SETTLE_S = 45.0


async def test_an_idle_raise_goes_out_at_once_and_is_in_force_after_the_settle_time(tmp_path):
    clock = AcceleratedClock(T0, speed=SPEED)
    dispatch = DispatchSettings(call_timeout_s=5.0, settle_s=SETTLE_S)
    async with trust_site(one_grid(22_000), tmp_path, clock, dispatch=dispatch) \
            as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")
        await wait_until(lambda: controller.plan is not None
                         and REF1 in controller.plan.connectors, 10, "CP1 planned")
        controller.ev_cap_w[REF1] = 11_000.0
        controller.request_replan("test")
        # (CP2's share rose from the 0 W of CP1's first plan: held a while after its send)
        await wait_until(lambda: abs(limit_w(fleet, REF1) - 11_000) < 100
                         and abs(limit_w(fleet, REF2) - 11_000) < 100 and dispatcher.idle, 10,
                         "CP1 at 11 kW, CP2's idle share the rest, in force")
        before_w = limit_w(fleet, REF2)
        # (site time, station, the installed limits for a car there over the next 120 s)
        installs = []
        for station in fleet.stations.values():
            station.on_profiles_changed = lambda st: installs.append(
                (clock.now(), st.spec.station_id, [
                    limit_w(fleet, REF1 if st.spec.station_id == "CP1" else REF2,
                            clock.now() + timedelta(seconds=s)) for s in range(120)]))
        controller.ev_cap_w[REF1] = 3_000.0
        controller.request_replan("test")
        await wait_until(lambda: limit_w(fleet, REF2, clock.now() + timedelta(seconds=119))
                         > before_w + 3_000, 10, "CP2's idle share raised")
        lowered = max(at for at, sid, ws in installs if sid == "CP1" and ws[0] < 5_000)
        sent, in_force = min(
            (at, at + timedelta(seconds=next(s for s, w in enumerate(ws)
                                             if w > before_w + 3_000)))
            for at, sid, ws in installs if sid == "CP2" and max(ws) > before_w + 3_000)
        raise_delay_s = SETTLE_S + dispatch.edge_margin_s
        assert (in_force - lowered).total_seconds() >= SETTLE_S - 0.5
        # sent once CP1's decrease was acknowledged: in force its own hold after that
        assert (sent - lowered).total_seconds() < SETTLE_S, (sent, lowered)
        assert (in_force - sent).total_seconds() <= raise_delay_s + 1
