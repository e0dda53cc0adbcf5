"""The station's maximum (1.6 ChargePointMaxProfile, 2.0.1 ChargingStationMaxProfile) is in
force the moment a station whose clock runs a little behind ours installs it.

It started at our "now": on a station whose clock is a few seconds behind, that start was in
its future, and the station had no maximum until its clock got there - the only bound of a
connector the site file does not list. The fail-safe defaults begin `edge_margin_s` early
(`site/edges.py`); so does the maximum now."""

from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")


def _station_max(station):
    return next((p for p in station.profiles.profiles if p.purpose in MAX_PURPOSES), None)


async def test_the_station_maximum_is_in_force_on_a_clock_behind_ours(tmp_path):
    site = Site(name="clocks", circuits=(Circuit("grid", None, limit_w=40_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2)),
                                  max_power_w=22_000),
                          Station("CP2", "grid", (Connector(1), Connector(2)),
                                  max_power_w=22_000)))
    clock = AcceleratedClock(T0, speed=1.0)
    dispatch = DispatchSettings(call_timeout_s=5.0, edge_margin_s=5.0)
    async with server_and_fleet(site, tmp_path, clock, dispatch=dispatch, fleet_kw=dict(
            ocpp_versions={"CP2": "2.0.1"},
            clock_offsets_s={"CP1": -3.0, "CP2": -3.0})) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        for sid in ("CP1", "CP2"):
            station = fleet.station(sid)
            await wait_until(lambda: _station_max(station) is not None, 10,
                             f"{sid}'s maximum installed")
            profile = _station_max(station)
            # installed_at is the station's own clock
            assert profile.schedule.start <= profile.installed_at, (sid, profile)
            assert station.profiles.station_limit(profile.installed_at) is not None, sid
