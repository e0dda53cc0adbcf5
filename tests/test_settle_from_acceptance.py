"""A default's settle time counts from when the station took it, not from its schedule's start.

The guard judges a sample as evidence of disobedience once it was taken the settle time after
the limit in force came into force (`installed.followed_since`). For a fail-safe default or an
idle share that was its schedule's start - the moment we built it - while a station busy or
far away takes it later: a sample taken in between, under the old default, read as drawing
over the new one ("guard: CP6/1 draws 6279 W, more than the 0 W its profiles allow", its idle
share lowered to 0 A as its car began, in test_disobedient_stations under the suite's load;
the car then planned as a fixed load). A plan's TxProfile counted from its answer already.

A scripted 1.6 station over a real WebSocket that answers its defaults late."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ocpp.v16 import call

from smartcharge.clock import format_ocpp_time, parse_ocpp_time
from smartcharge.site.topology import ConnectorRef
from tests.scripted_16 import TakesProfiles, one_station_site
from tests.site_e2e import wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = ConnectorRef("CP1", 1)
LATE_S = 20.0     # site seconds the station takes to answer a default


class LateStation(TakesProfiles):
    """Takes each TxDefaultProfile only once the site's clock is `LATE_S` past its start."""

    async def before_taking(self, connector_id: int, profile: dict) -> None:
        schedule = profile["charging_schedule"]
        if profile["charging_profile_purpose"] == "TxDefaultProfile" \
                and connector_id == 1 and "start_schedule" in schedule:
            start = parse_ocpp_time(schedule["start_schedule"])
            while self.clock.now() < start + timedelta(seconds=LATE_S):
                await asyncio.sleep(0.01)


async def test_a_defaults_settle_time_counts_from_its_answer(tmp_path):
    async with one_station_site(tmp_path, LateStation, "Late") as (site, clock, server, station):
        await station.call(call.StatusNotification(
            connector_id=1, error_code="NoError", status="Available",
            timestamp=format_ocpp_time(clock.now())), suppress=False)
        installed = server.dispatcher.installed

        def default_taken():
            return [at for at, p in station.accepted if p["connector_id"] == 1
                    and p["charging_profile_purpose"] == "TxDefaultProfile"]
        await wait_until(lambda: default_taken() and installed.step_of(REF), 10,
                         "connector 1's default taken")
        taken = default_taken()[0]
        since = installed.followed_since(REF)
        assert since is not None
        # not before the station had it, plus the settle time
        assert since >= taken + timedelta(seconds=site.server.settle_s), (since, taken)
