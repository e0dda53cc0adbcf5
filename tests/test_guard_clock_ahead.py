"""A station whose clock runs ahead of ours: a sample it took before a decrease, read late, is
not taken for disobedience.

Its stamps are 10 min ahead, so the guard put the sample at the moment it arrived (a stamp is
never later than its arrival) - after the decrease and its settle time when the sample came
late, though the car had drawn its old rate before the decrease. Under CPU load the simulated
stations' samples came that late: "guard: CP1/2 draws 6900 W, more than the 0 W its profiles
allow" and a car planned as a fixed load at its old rate (test_restart_clock_ahead and
test_restart_first_round, 10 of 16 copies at load 12-16). The station's clock offset is known
from its own stamps (ocpp/clock_offset.py): the sample is put where the stamp says on our clock.

A scripted 1.6 station over a real WebSocket against the real server; the guard is asked
directly after each sample (its own pass is throttled)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from smartcharge.clock import AcceleratedClock, format_ocpp_time
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.connection import WsConnection
from smartcharge.site.topology import ConnectorRef
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
AHEAD_S = 600.0
REF = ConnectorRef("CP1", 1)
OLD_W, CAP_W = 11_000.0, 4_000.0


class AheadStation(ChargePoint):
    """Takes every profile; stamps its messages `AHEAD_S` ahead of the site's clock."""

    def __init__(self, connection, clock) -> None:
        super().__init__("CP1", connection, response_timeout=10)
        self.clock = clock
        self.accepted: list[tuple[datetime, dict]] = []   # (our time, the profile)

    def stamp(self, at: datetime | None = None) -> str:
        return format_ocpp_time((at or self.clock.now()) + timedelta(seconds=AHEAD_S))

    @on(Action.set_charging_profile)
    def set_profile(self, connector_id, cs_charging_profiles, **_):
        self.accepted.append((self.clock.now(), {"connector_id": connector_id,
                                                 **cs_charging_profiles}))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def clear_profile(self, **_):
        return call_result.ClearChargingProfile(status="Accepted")

    @on(Action.get_configuration)
    def get_configuration(self, key=None, **_):
        return call_result.GetConfiguration(configuration_key=[], unknown_key=key or None)

    @on(Action.change_configuration)
    def change_configuration(self, **_):
        return call_result.ChangeConfiguration(status="Accepted")

    async def sample(self, transaction_id: int, power_w: float, at: datetime) -> None:
        await self.call(call.MeterValues(connector_id=1, transaction_id=transaction_id,
                                         meter_value=[{"timestamp": self.stamp(at),
                                                       "sampled_value": [{
                                                           "value": f"{power_w:.0f}",
                                                           "measurand": "Power.Active.Import",
                                                           "unit": "W"}]}]), suppress=False)


def _limit_below(station: AheadStation, watts: float) -> datetime | None:
    """Our time at which the station accepted a profile for connector 1 below `watts` (W, or
    A at 230 V on three phases), None: not yet."""
    for at, profile in station.accepted:
        periods = profile["charging_schedule"]["charging_schedule_period"]
        unit = profile["charging_schedule"]["charging_rate_unit"]
        limit_w = float(periods[0]["limit"]) * (1.0 if unit == "W" else 230.0 * 3)
        if profile["connector_id"] == 1 and limit_w < watts:
            return at
    return None


async def test_a_late_sample_from_before_a_decrease_is_not_disobedience(tmp_path):
    site = Site(name="ahead", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=10.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock) as server, \
            aiohttp.ClientSession() as http:
        controller = server.controller
        ws = await http.ws_connect(f"{server.ws_url}/CP1", protocols=["ocpp1.6"])
        station = AheadStation(WsConnection(ws), clock)
        serving = asyncio.create_task(station.start())
        try:
            await station.call(call.BootNotification(charge_point_vendor="Test",
                                                     charge_point_model="Ahead"),
                               suppress=False)
            for connector_id in (0, 1):   # two own stamps agree: its clock is 10 min ahead
                await station.call(call.StatusNotification(
                    connector_id=connector_id, error_code="NoError", status="Available",
                    timestamp=station.stamp()), suppress=False)
            started = await station.call(call.StartTransaction(
                connector_id=1, id_tag="DRIVER-1", meter_start=0, timestamp=station.stamp()),
                suppress=False)
            tx = started.transaction_id
            await station.sample(tx, OLD_W, clock.now())
            await wait_until(lambda: REF in controller.state.sessions, 10, "the session")

            controller.limits.set_operator_cap(CAP_W, since=clock.now())
            controller.request_replan("test")
            await wait_until(lambda: _limit_below(station, CAP_W + 1) is not None, 10,
                             "the decrease accepted")
            decreased = _limit_below(station, CAP_W + 1)
            settled = decreased + timedelta(seconds=site.server.settle_s + 2)
            await wait_until(lambda: clock.now() > settled, 10, "its settle time over")

            # taken a second before the decrease (its old draw), read after the settle time
            await station.sample(tx, OLD_W, decreased - timedelta(seconds=1))
            controller.guard.check()
            assert REF not in controller.overdraw_w, controller.overdraw_w

            # taken after the settle time at its old draw: that is disobedience
            await station.sample(tx, OLD_W, settled)
            controller.guard.check()
            assert REF in controller.overdraw_w
        finally:
            serving.cancel()
            await ws.close()
