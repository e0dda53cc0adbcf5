"""Session 34's judge: the grant a remote start gives its tag (docs/api.md, `remote-start`: once
the station answered Accepted, the tag is Accepted on that station for 300 s and on the
transaction it starts then) must outlive what happens on a real site between the operator's
click and the car: `serve` SIGKILLed and started again, the station's connection dropped and
made again. Before the fix the grant lived in the connection's memory: after either, a strict
station's StartTransaction / TransactionEvent for our own remote start was answered Invalid /
Unknown, and the station refused or ended the start the operator had asked for (a 2.0.1 station
with `StopTxOnInvalidId` stops a running car on a later event's Unknown).

Real `smartcharge serve` processes and a real SQLite file for the kills, the app on a real
socket for the rest; stations speak OCPP-J frames made from the `ocpp` library's calls."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.messages import MessageType
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from smartcharge.clock import format_ocpp_time
from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.remote_started import REMOTE_START_GRACE_S
from tests.conftest import PASSWORD, make_site
from tests.hang_budget import hang_budget_s
from tests.ocpp201_station import StationSetup
from tests.ocpp201_station import station201 as strict201
from tests.sim_fixtures import real_server
from tests.test_kill_points import RawStation
from tests.test_outside_s32_kills import _server
from tests.test_remote_start_authorized import SteppedClock, stepped  # noqa: F401 (fixture)

GUEST = "GUEST-34"          # in neither the site's id_tags nor the store


class AnsweringStation(RawStation):
    """A raw station that also answers one of the server's calls as told."""

    async def answer_until(self, action: str, answer: dict) -> dict:
        """Answer the server's next `action` call `answer` (every other call NotSupported);
        its payload."""
        return await self.answer_next(action, answer, hang_budget_s(15))


def _now() -> str:
    return format_ocpp_time(datetime.now(UTC))


async def _remote_started(server, cp: AnsweringStation, action: str, body: dict) -> dict:
    """The operator's remote start, accepted by the station: what the station was sent."""
    asked = asyncio.create_task(server.api("POST", "/api/stations/CP1/remote-start", body))
    sent = await cp.answer_until(action, {"status": "Accepted"})
    status, answer = await asked
    assert status == 200 and answer["answer"]["status"] == "Accepted", answer
    return sent


async def _booted(server, http, protocol: str, boot) -> AnsweringStation:
    """The raw station CP1 connected, its BootNotification answered."""
    cp = AnsweringStation(http, server, "CP1", protocol)
    await cp.connect()
    assert (await cp.call("boot", boot))[0] == MessageType.CallResult
    return cp


async def _killed_and_back(server, cp: AnsweringStation) -> None:
    """SIGKILL, a new `serve` on the same file, the station reconnected (no reboot)."""
    server.process.kill()
    server.process.wait(timeout=10)
    await cp.ws.close()
    server.start()
    await cp.connect()


async def test_a_1_6_remote_start_s_grant_survives_a_sigkill_of_serve(tmp_path):
    """Failed first: Authorize and StartTransaction of the remote-started tag answered Invalid
    after the restart."""
    server = _server(tmp_path, 1)
    try:
        server.start()
        async with aiohttp.ClientSession() as http:
            cp = await _booted(server, http, "ocpp1.6", call16.BootNotification(
                charge_point_vendor="Raw", charge_point_model="R"))
            sent = await _remote_started(server, cp, "RemoteStartTransaction",
                                         {"id_tag": GUEST, "connector_id": 1})
            assert sent["idTag"] == GUEST
            await _killed_and_back(server, cp)
            authorized = await cp.call("auth", call16.Authorize(id_tag=GUEST))
            assert authorized[2]["idTagInfo"]["status"] == "Accepted", authorized
            started = await cp.call("start", call16.StartTransaction(
                connector_id=1, id_tag=GUEST, meter_start=1_000, timestamp=_now()))
            assert started[2]["idTagInfo"]["status"] == "Accepted", started
            # granted to that tag only
            other = await cp.call("other", call16.Authorize(id_tag="STRANGER-34"))
            assert other[2]["idTagInfo"]["status"] == "Invalid", other
    finally:
        server.stop()


async def test_a_2_0_1_remote_start_s_grant_survives_a_sigkill_of_serve(tmp_path):
    """Failed first: the Started event of the remote-started token answered Unknown after the
    restart."""
    server = _server(tmp_path, 1)
    try:
        server.start()
        async with aiohttp.ClientSession() as http:
            cp = await _booted(server, http, "ocpp2.0.1", call201.BootNotification(
                charging_station={"model": "R", "vendor_name": "Raw"}, reason="PowerUp"))
            sent = await _remote_started(server, cp, "RequestStartTransaction",
                                         {"id_tag": GUEST, "connector_id": 1})
            await _killed_and_back(server, cp)
            token = {"id_token": GUEST, "type": sent["idToken"]["type"]}
            started = await cp.call("start", call201.TransactionEvent(
                event_type="Started", timestamp=_now(), trigger_reason="RemoteStart", seq_no=0,
                transaction_info={"transaction_id": "RS-34", "charging_state": "Charging",
                                  "remote_start_id": sent["remoteStartId"]},
                evse={"id": 1, "connector_id": 1}, id_token=token,
                meter_value=[{"timestamp": _now(), "sampled_value": [
                    {"value": 0.0, "context": "Transaction.Begin",
                     "measurand": "Energy.Active.Import.Register"}]}]))
            assert started[2]["idTokenInfo"]["status"] == "Accepted", started
    finally:
        server.stop()


def _event201(event_type: str, ref: str, seq_no: int, token: dict, trigger: str,
              at: datetime) -> call201.TransactionEvent:
    return call201.TransactionEvent(
        event_type=event_type, timestamp=format_ocpp_time(at), trigger_reason=trigger,
        seq_no=seq_no, transaction_info={"transaction_id": ref, "charging_state": "Charging"},
        evse={"id": 1, "connector_id": 1}, id_token=token)


async def test_the_transaction_a_remote_start_began_keeps_its_grant_after_a_restart(tmp_path):
    """A 2.0.1 transaction started by our remote start within its grace; `serve` restarts and
    the station's next event with the token (its offline queue, a re-authorization) comes
    after the 300 s: Accepted - Unknown made a strict station end the car's charge. A new
    transaction of the token after the grace is not granted. Failed first: Unknown."""
    clock = SteppedClock()
    db_path = tmp_path / "s.sqlite"
    site = make_site()
    async with real_server(site, db_path, clock) as server:
        async with strict201(server.ws_url, "CP1", PASSWORD) as cp1:
            async with aiohttp.ClientSession(headers={
                    "Authorization": "Bearer test-operator-token"}) as http:
                async with http.post(f"{server.http_url}/api/stations/CP1/remote-start",
                                     json={"id_tag": GUEST, "connector_id": 1}) as answer:
                    assert answer.status == 200, await answer.text()
            sent = cp1.of("RequestStartTransaction")[0]
            token = {"id_token": GUEST, "type": sent["idToken"]["type"]}
            started = await cp1.call(_event201("Started", "RS-1", 0, token, "RemoteStart",
                                               clock.now()))
            assert started.id_token_info["status"] == "Accepted"
    clock.ahead = timedelta(seconds=REMOTE_START_GRACE_S + 60)
    async with real_server(site, db_path, clock) as server:
        async with strict201(server.ws_url, "CP1", PASSWORD, boot=False,
                             setup=StationSetup(registered_from_before=True)) as cp1:
            updated = await cp1.call(_event201("Updated", "RS-1", 1, token, "Authorized",
                                               clock.now()))
            assert updated.id_token_info["status"] == "Accepted"
            other = await cp1.call(_event201("Started", "RS-2", 0, token, "Authorized",
                                             clock.now()))
            assert other.id_token_info["status"] == "Unknown"


async def test_a_remote_start_s_grant_survives_the_station_s_reconnection(controlled):
    """The station's connection drops after it accepted our remote start and it connects
    again (no reboot) before the car is plugged in. Failed first: Invalid - the grant was
    the dropped connection's."""
    harness = controlled
    cp1 = await harness.station("CP1")
    async with harness.api.post(harness.url("/api/stations/CP1/remote-start"),
                                json={"id_tag": GUEST, "connector_id": 1}) as answer:
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["answer"] == {"status": "Accepted"}
    await cp1.ws.close()
    again = await harness.station("CP1", boot=False)
    started = await again.call(call16.StartTransaction(
        connector_id=1, id_tag=GUEST, meter_start=0, timestamp=_now()))
    assert started.id_tag_info["status"] == "Accepted"


async def test_a_start_queued_in_the_grace_and_sent_after_it_is_granted(stepped):
    """The car is plugged in within the 300 s, but the station is offline then (a mobile
    network's gap): its StartTransaction waits in its queue and arrives after the grace, with
    the time it started. A 1.6 station with `StopTransactionOnInvalidId` stops a charge whose
    queued start is answered Invalid. Granted by when the station says it started; a start it
    stamps after the grace is not. Failed first: Invalid."""
    harness, clock = stepped
    cp1 = await harness.station("CP1")
    granted_at = clock.now()
    async with harness.api.post(harness.url("/api/stations/CP1/remote-start"),
                                json={"id_tag": GUEST, "connector_id": 1}) as answer:
        assert answer.status == 200, await answer.text()
    clock.ahead = timedelta(seconds=REMOTE_START_GRACE_S * 3)
    queued = await cp1.call(call16.StartTransaction(
        connector_id=1, id_tag=GUEST, meter_start=0,
        timestamp=format_ocpp_time(granted_at + timedelta(seconds=60))))
    assert queued.id_tag_info["status"] == "Accepted"
    late = await cp1.call(call16.StartTransaction(
        connector_id=2, id_tag=GUEST, meter_start=0,
        timestamp=format_ocpp_time(granted_at + timedelta(seconds=REMOTE_START_GRACE_S + 60))))
    assert late.id_tag_info["status"] == "Invalid"


async def test_a_2_0_1_started_queued_in_the_grace_and_sent_after_it_is_granted(stepped):
    """As above for a 2.0.1 station's offline Started. Failed first: Unknown."""
    harness, clock = stepped
    ws_url = harness.url("/ocpp").replace("http", "ws", 1)
    async with strict201(ws_url, "CP1", PASSWORD) as cp1:
        granted_at = clock.now()
        async with harness.api.post(harness.url("/api/stations/CP1/remote-start"),
                                    json={"id_tag": GUEST, "connector_id": 1}) as answer:
            assert answer.status == 200, await answer.text()
        sent = cp1.of("RequestStartTransaction")[0]
        token = {"id_token": GUEST, "type": sent["idToken"]["type"]}
        clock.ahead = timedelta(seconds=REMOTE_START_GRACE_S * 3)
        for ref, after_s, status in (("Q-1", 60, "Accepted"),
                                     ("Q-2", REMOTE_START_GRACE_S + 60, "Unknown")):
            event = _event201("Started", ref, 0, token, "RemoteStart",
                              granted_at + timedelta(seconds=after_s))
            event.offline = True
            answer = await cp1.call(event)
            assert answer.id_token_info["status"] == status, ref


BOOT16 = [2, "boot", "BootNotification", {"chargePointVendor": "Slow", "chargePointModel": "S"}]


async def test_a_remote_start_the_station_accepts_after_our_timeout_is_granted(harness):
    """A slow station (a mobile link) answers our RemoteStartTransaction Accepted after the
    API's time ran out: the operator was told 504 (sent, no answer), and the station starts
    the transaction all the same. Its StartTransaction was answered Invalid - the answer was
    dropped as late, its grant with it - and the station refused the start. Failed first."""
    ws = await harness.booted_raw_socket(BOOT16)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    async with harness.api.post(harness.url("/api/stations/CP1/remote-start?timeout_s=1"),
                                json={"id_tag": GUEST, "connector_id": 1}) as response:
        body = await response.json()
        assert response.status == 504 and body["sent"] is True, body
    request = json.loads((await ws.receive(timeout=hang_budget_s(10))).data)
    assert request[2] == "RemoteStartTransaction" and request[3]["idTag"] == GUEST
    await ws.send_str(json.dumps([3, request[1], {"status": "Accepted"}]))   # late
    start = [2, "start", "StartTransaction", {"connectorId": 1, "idTag": GUEST,
                                              "meterStart": 0, "timestamp": _now()}]
    answer = await harness.raw_call(ws, start)
    assert answer[2]["idTagInfo"]["status"] == "Accepted", answer
    # a late answer that refused grants nothing
    async with harness.api.post(harness.url("/api/stations/CP1/remote-start?timeout_s=1"),
                                json={"id_tag": "OTHER-34", "connector_id": 2}) as response:
        assert response.status == 504
    request = json.loads((await ws.receive(timeout=hang_budget_s(10))).data)
    await ws.send_str(json.dumps([3, request[1], {"status": "Rejected"}]))
    other = await harness.raw_call(ws, [2, "a2", "Authorize", {"idTag": "OTHER-34"}])
    assert other[2]["idTagInfo"]["status"] == "Invalid", other
