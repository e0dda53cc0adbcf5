"""A station that refuses every profile (a 1.6 station without Smart Charging, or one that
says Rejected to all): what its idle connector will draw when a car arrives is only bounded by
the connector's maximum, and nobody tells us before the car draws. The room the site gives the
other cars must leave it free, as it leaves a connector the site file does not list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.sim.spec import Quirks
from tests.site_e2e import a_second_car_stays_under_the_grid, two_stations

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 30_000.0
CONNECTOR_MAX_W = 32 * 230.0 * 3      # a connector's default: 32 A on three phases


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_car_arriving_at_a_station_that_refuses_everything(tmp_path, version):
    def cp1_maximum_left_free(fleet) -> None:
        # the plan leaves CP1's maximum free, and so does CP2's fail-safe default (what
        # runs once we are gone): whatever is installed, under the grid for hours
        assert fleet.draw_w("CP2", 1) <= GRID_W - CONNECTOR_MAX_W + 1, fleet.draw_w("CP2", 1)

    await a_second_car_stays_under_the_grid(
        two_stations("refusing", GRID_W), tmp_path, AcceleratedClock(T0, speed=60.0), GRID_W,
        before_second=cp1_maximum_left_free,
        fleet_kw={"ocpp_versions": {"CP1": version, "CP2": version},
                  "quirks": {"CP1": Quirks(reject_all_profiles=True)}})
