"""A station whose clock runs minutes ahead of ours (it ignores the time every BootNotification
and Heartbeat answer tells it) reads every absolute schedule we send on its own clock: the raise
a plan or a fail-safe default makes at a DR event's end comes into force minutes before the
event ends, in real time - the site over the event's limit for as long as the clocks disagree.
`server.edge_margin_s` (at most 60 s) is the disagreement the schedules are made safe for
(docs/site-file.md: "clocks further apart need setting"); nothing measures a station's offset
or refuses to rely on its clock. Known hole, left open by the session 23 audit (a station's
offset would have to be estimated from its messages' timestamps and every schedule it is sent
shifted by it, or its raises held by it): strict xfail until then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.limits import DemandResponseEvent
from tests.installed_limits import connector_limit_w
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
AHEAD_S = 180.0
EVENT_W = 5_000.0


@pytest.mark.xfail(strict=True, reason="a station's clock offset beyond edge_margin_s is not "
                   "compensated: raises at a DR event's end come early (session 23 audit)")
async def test_a_station_minutes_ahead_stays_under_a_dr_event_until_it_ends(tmp_path):
    site = Site(name="ahead", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=60.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=3600, call_timeout_s=5.0,
                      reconnect_min_s=0.05, reconnect_max_s=0.3,
                      clock_offsets_s={"CP1": AHEAD_S})
        try:
            await fleet.start(wait_booted_s=10)
            car = SimEV(capacity_wh=200_000, soc=0.1,
                        max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})
            assert await fleet.plug_in("CP1", 1, car, "DRIVER-1")
            await wait_until(lambda: fleet.draw_w("CP1", 1) > 15_000, 20, "the car charging")
            # announced ahead; it ends at a slot edge (the plan's 15 min slots)
            start, end = T0 + timedelta(minutes=5), T0 + timedelta(minutes=15)
            assert clock.now() < start - timedelta(minutes=2)
            controller = server.controller
            controller.limits.add_event(DemandResponseEvent("dr", start, end, limit_w=EVENT_W))
            controller.request_replan("dr")
            station = fleet.station("CP1")
            await wait_until(lambda: clock.now() > end - timedelta(minutes=1), 30,
                             "the event's last minute")
            # what the station applies now (read on its own clock, as it does)
            applied_w = connector_limit_w(station, 1, station.clock.now())[0]
            assert applied_w <= EVENT_W + 1.0, applied_w
        finally:
            await fleet.stop()
