"""The REST API's remote commands reach a simulated 2.0.1 station as 2.0.1 calls, end to end: the
real server, the 2.0.1 simulator over a real WebSocket, the operator's token. (The commands'
own tests use a scripted station; this is the simulator that the demo and the mixed-site test
use.)"""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from tests.site_e2e import control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OPERATOR = "op-token"


async def test_remote_commands_reach_a_2_0_1_simulated_station(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    site = Site(name="remote 2.0.1", circuits=(Circuit("grid", None, limit_w=50_000.0),),
                stations=(Station("CS1", "grid", (Connector(1), Connector(2)),
                                  password="sim-password-0123"),),
                id_tags=frozenset({"DRIVER-1"}), operator_tokens=frozenset({OPERATOR}))
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=600.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, ocpp_versions={"CS1": "2.0.1"},
                      meter_interval_s=30, call_timeout_s=5.0)
        station = fleet.station("CS1")
        headers = {"Authorization": f"Bearer {OPERATOR}"}
        try:
            await fleet.start(wait_booted_s=10)
            async with aiohttp.ClientSession(base_url=server.http_url, headers=headers) as http:
                async def command(name, body=None, query=""):
                    method = http.get if body is None else http.post
                    async with method(f"/api/stations/CS1/{name}{query}", json=body) as resp:
                        assert resp.status == 200, (name, resp.status, await resp.text())
                        return (await resp.json())["answer"]

                await fleet.plug_in("CS1", 1, SimEV(capacity_wh=60_000, soc=0.3), None)
                answer = await command("remote-start", {"id_tag": "DRIVER-1", "connector_id": 1})
                assert answer["status"] == "Accepted"
                await wait_until(lambda: station.connectors[1].transaction is not None, 10,
                                 "the remote start")
                tx = station.connectors[1].transaction
                answer = await command("configuration", query="?key=SmartChargingCtrlr.RateUnit")
                assert answer["getVariableResult"][0]["attributeValue"] == "A,W"
                answer = await command("change-configuration",
                                       {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "90"})
                assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
                assert station._heartbeat_interval_s() == 90
                answer = await command("trigger-message", {"requested_message": "MeterValues",
                                                           "connector_id": 2})
                assert answer["status"] == "Accepted"
                answer = await command("composite-schedule",
                                       query="?connector_id=1&duration_s=3600")
                assert answer["status"] == "Accepted"
                assert answer["schedule"]["evseId"] == 1
                answer = await command("remote-stop", {"transaction_id": tx.transaction_id})
                assert answer["status"] == "Accepted"
                await wait_until(lambda: station.connectors[1].transaction is None, 10,
                                 "the remote stop")
                # its Ended acknowledged before the reset (queued behind the periodic events
                # under load, a Reset's reboot sent it only after the next boot)
                await wait_until(lambda: any(
                    action == "TransactionEvent" and request.event_type == "Ended"
                    and request.transaction_info["transaction_id"] == tx.transaction_id
                    for action, request, _ in station.acknowledged), 10, "the stop's Ended")
                answer = await command("unlock-connector", {"connector_id": 1})
                assert answer["status"] == "Unlocked"
                answer = await command("reset", {"type": "Hard"})
                assert answer["status"] == "Accepted"
                await wait_until(lambda: station.boots == 2, 10, "the reboot")
        finally:
            await fleet.stop()
    events = [request for action, request, _ in station.acknowledged
              if action == "TransactionEvent"
              and request.transaction_info["transaction_id"] == tx.transaction_id]
    told = [(e.event_type, e.trigger_reason, e.seq_no, e.timestamp) for e in events]
    assert events[0].trigger_reason == "RemoteStart", told
    assert events[-1].trigger_reason == "RemoteStop", told
    assert [e.seq_no for e in events] == list(range(len(events)))
    # a TxProfile of the plan made before the stop's Ended reached us may find the transaction
    # ended at the station (it ends it when it takes RequestStopTransaction): TxNotFound for
    # that transaction is the spec's answer to a race no central system can close
    raced = f"got {tx.transaction_id!r}"
    assert [r for r in station.rejections if not (r[0] == "TxNotFound" and raced in r[1])] == []
