"""What a station was sent before its clock offset was known - its set-up's fail-safe defaults
and the first round's schedules, sent at its BootNotification, before its first stamps - is on
our clock. A station whose clock runs 3 min behind (believed after a minute of its stamps,
`ocpp/clock_offset.py`) reads each of their starts 3 min in its future: nothing it was sent is
in force for its first 3 min, a car charges at the station's maximum meanwhile (seen: every
profile of both connectors starting at 12:00:06 our time, installed at 11:57:11 its time).
Once its offset is known beyond the edge margin, what it was sent is sent again on its clock
(`site/failsafe.py`, `setup_station(moved=True)`). Both versions, the simulator over real
OCPP, its clock set behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.appkeys import REGISTRY
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.site.dispatch import DispatchSettings
from tests.site_e2e import server_and_fleet, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# 10 min behind (a station 3 min behind was seen; the claim is the same for any offset beyond
# the edge margin): the set-up - boot, a car, a minute of stamps, the offset believed - must end
# before what the boot was sent starts on the station's clock, and at 60x under CPU load (four
# workers on two cores, load 11) it took 4.5 site-minutes; with 3 min the check below failed
# though nothing was wrong. 10 min leaves that set-up room without a slower clock
BEHIND_S = -600.0


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_what_a_station_behind_was_sent_before_its_clock_was_known_is_sent_again(
        tmp_path, version):
    site = Site(name="skew", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(site, tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"meter_interval_s": 10, "ocpp_versions": {"CP1": version},
                                          "clock_offsets_s": {"CP1": BEHIND_S}}) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        station = fleet.station("CP1")
        # a car on connector 2: its samples, a minute of them, tell the station's clock
        car = SimEV(capacity_wh=200_000, soc=0.1,
                    max_power_w_by_phases={1: 7_400.0, 3: 11_000.0})
        assert await fleet.plug_in("CP1", 2, car, "DRIVER-1")
        link = server.app[REGISTRY].get("CP1")
        await wait_until(lambda: link.clock_offset_s is not None
                         and abs(link.clock_offset_s - BEHIND_S) <= 20, 30,
                         "its offset known")
        # what it was sent at its boot starts -BEHIND_S after the boot on its clock
        assert clock.now() < T0 + timedelta(seconds=-BEHIND_S - 30), clock.now()

        def in_force() -> bool:
            """Both connectors held by a profile now, on the station's own clock."""
            now = station.clock.now()
            return all(station.profiles.limit_w(
                c, now, station.connectors[c].transaction.context()
                if station.connectors[c].transaction else None,
                voltage_v=station.spec.voltage_v, phases_in_use=3) is not None
                for c in (1, 2))

        await wait_until(in_force, 30, "what it was sent in force on its clock")
        assert clock.now() < T0 + timedelta(seconds=-BEHIND_S), clock.now()
