"""An idle connector's idle share (idle.py) that is what the station applies there already -
its fail-safe default, now, until the plans' common end and after - is not sent: the request
would change nothing the station allows a car.

Every new station of a boot storm under a binding cap is idle when its set-up ends (told
Pending until then, no car can start: site/registration.py), and a plan with no car splits the
room equally among the idle connectors - the share its fail-safe default gives it already. One
SetChargingProfile per station went out for nothing (s30-pending, counted per station by
`python -m benchmarks.boot_pending --cars`: "idle first" 1.00 per station, 0.47 on main where
most cars started before their station's set-up ended)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from smartcharge.appkeys import STORE
from smartcharge.clock import AcceleratedClock
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from tests.site_e2e import server_and_fleet, two_stations, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 22_080.0                 # two 22 080 W connectors: the cap binds
SHARE_W = GRID_W / 2              # each one's fail-safe default, and its idle share


def _idle_layer_rows(rows: list[dict]) -> list[dict]:
    """The audit's TxDefaultProfiles above the fail-safe default's stack level 0 (either
    version's payload): idle schedules."""
    out = []
    for row in rows:
        payload = json.loads(row["profile_json"])
        profile = payload.get("csChargingProfiles") or payload.get("chargingProfile")
        if profile["chargingProfilePurpose"] == "TxDefaultProfile" \
                and profile["stackLevel"] > 0:
            out.append(row)
    return out


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_an_idle_share_equal_to_the_default_is_not_sent(tmp_path, version):
    clock = AcceleratedClock(T0, speed=60.0)
    async with server_and_fleet(two_stations("idle", GRID_W), tmp_path, clock,
                                dispatch=DispatchSettings(call_timeout_s=5.0),
                                fleet_kw={"ocpp_versions": {"CP1": version, "CP2": version}}
                                ) as (server, fleet):
        await fleet.start(wait_booted_s=10)
        dispatcher, controller = server.dispatcher, server.controller
        await wait_until(lambda: all(1 in c.default_layer and c.caps is not None
                                     for c in dispatcher.stations.values()), 10,
                         "both stations' defaults accepted")
        made = controller.stats.replans
        controller.request_replan("test")
        await wait_until(lambda: controller.stats.replans > made and dispatcher.idle, 10,
                         "a plan made after both set-ups dispatched")
        plan = controller.plan
        for sid in ("CP1", "CP2"):
            control = dispatcher.stations[sid]
            assert control.caps.idle_layer, "the station has a layer for idle schedules"
            # the plan's share is the default's (what makes the request one for nothing)
            assert plan.idle_w[ConnectorRef(sid, 1)] == pytest.approx(SHARE_W, abs=1.0)
            assert {w for _, w in control.default_sent[1]} == {SHARE_W}
        await dispatcher.flush_audit()
        rows = await server.app[STORE].run(lambda tx: tx.profiles_sent())
        assert not _idle_layer_rows(rows), _idle_layer_rows(rows)
        assert {sid: c.idle_sent for sid, c in dispatcher.stations.items()} \
            == {"CP1": {}, "CP2": {}}
