"""Stations that keep to limits the spec lets them set, through the real server."""

from __future__ import annotations

from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_1_6_station_taking_few_keys_per_get_configuration_is_read_whole(tmp_path):
    """GetConfigurationMaxKeys under our 6 smart-charging keys: the station refuses the request
    (OccurenceConstraintViolation); its real limits are still learnt (GetConfiguration without
    keys: every key), not the defaults - here 5 periods, not 24."""
    site = Site(name="strict", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),))
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=3600, call_timeout_s=5.0,
                      quirks={"CP1": Quirks(max_periods=5, max_config_keys=2)})
        try:
            await fleet.start(wait_booted_s=10)
            control = server.dispatcher.stations
            await wait_until(lambda: "CP1" in control and control["CP1"].caps is not None, 10,
                             "CP1's capabilities read")
            assert control["CP1"].caps.max_periods == 5
        finally:
            await fleet.stop()
