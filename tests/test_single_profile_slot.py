"""A station that holds a single charging profile (1.6 `MaxChargingProfilesInstalled` 1,
2.0.1 `SmartChargingCtrlr.Entries` 1): that one slot is all the site can limit it by, so it goes
to the connector's fail-safe default, not to a station maximum that only repeats what the
station can draw anyway.

Found by the session 25 audit: the station maximum took the slot, every default and plan after
it was refused (`TooManyProfiles`), and two such stations' cars drew 22 kW each on a 30 kW grid
for as long as they charged (the profiles installed: 44.2 kW for hours)."""


from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smartcharge.clock import AcceleratedClock
from tests.site_e2e import a_second_car_stays_under_the_grid, two_stations

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 30_000.0


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_stations_holding_one_profile(tmp_path, version):
    # whatever is installed - CP2's plan, CP1's fail-safe default - and CP1's car drawn
    await a_second_car_stays_under_the_grid(
        two_stations("one-slot", GRID_W), tmp_path, AcceleratedClock(T0, speed=60.0), GRID_W,
        fleet_kw={"max_installed": 1, "ocpp_versions": {"CP1": version, "CP2": version}})


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_an_idle_schedule_refused_for_want_of_slots(tmp_path, version):
    """Two connectors and four slots: the maximum, two defaults and the charging car's
    TxProfile fill them, so the idle connector's idle schedule is refused (`TooManyProfiles`)
    and it keeps its fail-safe default under a car that arrives: kept free in the plan, as for
    a station with one stack level (found by the session 25 audit: 37 kW installed and drawn
    on the 30 kW grid)."""
    await a_second_car_stays_under_the_grid(
        two_stations("few-slots", GRID_W, connectors=2), tmp_path,
        AcceleratedClock(T0, speed=60.0), GRID_W, second=("CP2", 2),
        fleet_kw={"max_installed": 4, "ocpp_versions": {"CP1": version, "CP2": version}})
