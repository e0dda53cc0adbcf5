"""A station with a single stack level (1.6 `ChargeProfileMaxStackLevel` 0, 2.0.1
`SmartChargingCtrlr.ProfileStackLevel` 0) has no room for an idle schedule above its fail-safe
default: its idle connectors keep that default, and a car arriving there draws it at once,
before anybody tells us. The room the plan gives the other cars must leave it free.

Found by the session 25 audit: with the default left out of the plan, a car charging on the
other station got the whole 30 kW grid on its TxProfile, so the installed profiles summed over
the grid, and a car arriving at the idle connector took the site over it until the re-plan."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smartcharge.clock import AcceleratedClock
from tests.site_e2e import a_second_car_stays_under_the_grid, two_stations

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 30_000.0


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_car_arriving_at_a_station_with_one_stack_level(tmp_path, version):
    # whatever is installed - CP2's plan, CP1's fail-safe default - and CP1's car drawn
    await a_second_car_stays_under_the_grid(
        two_stations("one-level", GRID_W), tmp_path, AcceleratedClock(T0, speed=60.0), GRID_W,
        fleet_kw={"max_stack_level": 0, "ocpp_versions": {"CP1": version, "CP2": version}})
