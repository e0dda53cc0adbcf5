"""Strict or odd stations, valid by the spec, through the real server: limits the spec lets
them set, clocks at the end of the calendar."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import aiohttp

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.fleet import Fleet
from smartcharge.sim.station import Quirks
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
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


async def test_a_session_stamped_at_the_end_of_the_calendar_is_still_planned(tmp_path,
                                                                              caplog):
    """A station whose clock says 9999-12-31T23:59:59Z starts a transaction: the start is
    valid OCPP and billed; the site must still plan the session (the default departure, start
    + the default stay, is past the calendar: the controller dropped the session)."""
    site = Site(name="strict", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server, \
            aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.ws_url}/CP1", protocols=("ocpp1.6",))
        frames = [[2, "b", "BootNotification", {"chargePointVendor": "V",
                                                "chargePointModel": "M"}],
                  [2, "s", "StartTransaction", {"connectorId": 1, "idTag": "DRIVER-1",
                                                "meterStart": 0,
                                                "timestamp": "9999-12-31T23:59:59Z"}]]
        for frame in frames:
            await ws.send_str(json.dumps(frame))
            while (answer := json.loads((await ws.receive(timeout=5)).data))[1] != frame[1]:
                await ws.send_str(json.dumps([4, answer[1], "NotSupported", "", {}]))
            assert answer[0] == 3, answer
        ref, controller = ConnectorRef("CP1", 1), server.controller
        await wait_until(lambda: controller.plan is not None and ref in controller.plan.connectors,
                         5, "the session planned")
        await ws.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _raw_calls(ws, frames) -> None:
    """Each frame answered with a CALLRESULT; the server's own calls get NotSupported."""
    for frame in frames:
        await ws.send_str(json.dumps(frame))
        while (answer := json.loads((await ws.receive(timeout=5)).data))[1] != frame[1]:
            await ws.send_str(json.dumps([4, answer[1], "NotSupported", "", {}]))
        assert answer[0] == 3, answer


async def test_a_2_0_1_limit_at_the_end_of_the_calendar_stops_no_plan_nor_restart(tmp_path,
                                                                                   caplog):
    """An EMS limit whose schedule starts 9999-12-31T23:00:00Z and lasts two hours (valid
    2.0.1): its end is past the calendar. Every re-plan of the site failed on it, and so would
    the start after a restart that reloads it."""
    site = Site(name="strict", circuits=(Circuit("grid", None, limit_w=22_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),),
                id_tags=frozenset({"DRIVER-1"}))
    clock = AcceleratedClock(T0, speed=1.0)
    now = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = [
        [2, "b", "BootNotification", {"reason": "PowerUp", "chargingStation": {
            "model": "M", "vendorName": "V"}}],
        [2, "t", "TransactionEvent", {
            "eventType": "Started", "timestamp": now, "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": "T-1"}, "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "DRIVER-1", "type": "ISO14443"}}],
        [2, "l", "NotifyChargingLimit", {"evseId": 1, "chargingLimit": {
            "chargingLimitSource": "EMS"}, "chargingSchedule": [{
                "id": 1, "chargingRateUnit": "W", "startSchedule": "9999-12-31T23:00:00Z",
                "duration": 7200, "chargingSchedulePeriod": [{"startPeriod": 0,
                                                              "limit": 1000}]}]}]]
    ref = ConnectorRef("CP1", 1)
    for life in range(2):     # the second: a restart that reloads the stored limit
        async with control_server(site, tmp_path / "sc.sqlite", clock,
                                  dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
            controller = server.controller
            if life == 0:
                async with aiohttp.ClientSession() as http:
                    ws = await http.ws_connect(f"{server.ws_url}/CP1",
                                               protocols=("ocpp2.0.1",))
                    await _raw_calls(ws, frames)
                    await wait_until(lambda: controller.plan is not None
                                     and ref in controller.plan.connectors
                                     and controller.reports.external, 5,
                                     "planned with the limit")
                    controller.request_replan("again")
                    await ws.close()
            else:
                # the station is offline now: its session is planned at what it may draw
                await wait_until(lambda: controller.plan is not None and (
                    ref in controller.plan.connectors or ref in controller.plan.fixed_w)
                    and controller.reports.external, 5, "planned again, the limit reloaded")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
