"""A 1.6 station in step, back after 4 minutes offline, sends what it queued meanwhile one
message a minute (it marks nothing as queued): its samples, taken every 10 s, arrive stamped
minutes before we receive them. Read as a clock behind (session 23 believed it after a minute
of stamps), every absolute time it was sent would be moved minutes into its past: schedules
ending before they arrive, raises early. The simulator over real OCPP (quirk `drip_queue_s`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.appkeys import REGISTRY
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.ocpp.clock_offset import shift_s
from smartcharge.sim.ev import SimEV
from smartcharge.sim.spec import Quirks
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_queue_dripped_out_after_a_reconnect_is_not_taken_for_a_clock_behind(tmp_path):
    site = Site(name="drip", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"meter_interval_s": 10, "ocpp_versions": {"CP1": "1.6"},
                                          "quirks": {"CP1": Quirks(drip_queue_s=60.0)}}
                                ) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        station = fleet.station("CP1")
        car = SimEV(capacity_wh=200_000, soc=0.1,
                    max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})
        assert await fleet.plug_in("CP1", 1, car, "DRIVER-1")
        await wait_until(lambda: fleet.draw_w("CP1", 1) > 15_000, 20, "the car charging")
        await station.go_offline()
        # offline, at 4x the pace (nothing reaches us: the station only queues its samples,
        # stamped on site time as before); back at 60x before it reconnects, so its queue
        # drips out at the pace the test was made for. 3 s less of waiting (of 9.1)
        back = clock.now() + timedelta(minutes=4)
        clock.set_speed(240.0)
        try:
            await wait_until(lambda: clock.now() > back, 20, "4 minutes offline")
        finally:
            clock.set_speed(60.0)
        station.go_online()
        await wait_until(lambda: server.app[REGISTRY].get("CP1") is not None, 20,
                         "back")
        link = server.app[REGISTRY].get("CP1")
        # its queue: ~24 samples, dripped a minute apart - watch 5 minutes of it
        offsets, until = [], clock.now() + timedelta(minutes=5)
        while clock.now() < until:
            offsets.append(link.clock_offset_s)
            await clock.sleep(10)
        assert station.outbox, "the queue still dripping"
        believed = [o for o in offsets if o is not None]
        assert all(shift_s(o, 5) == 0 for o in believed), believed
