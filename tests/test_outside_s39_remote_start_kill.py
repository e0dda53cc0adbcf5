"""Session 39's judge: `serve` SIGKILLed while an operator's remote start is in flight - the
RemoteStartTransaction / RequestStartTransaction has reached the station and its answer has
not reached us. The station accepts it (its answer goes nowhere), the driver plugs in, and
once a new `serve` is up on the same file the station's start comes with our tag.

The grant of a remote start (docs/api.md, `remote-start`) was written when the station's
Accepted arrived, or at the close of a connection whose remote start went unanswered (it may
have been taken: session 35's judge); a process killed between the send and the answer did
neither, and the tag - which the site does not list - was refused: 1.6 StartTransaction
`Invalid`, 2.0.1 Started `Unknown`; a station with `StopTransactionOnInvalidId` /
`StopTxOnInvalidId` ends the charge the operator asked for.

A real `smartcharge serve` on a real SQLite file, SIGKILLed; raw stations speaking frames of
the `ocpp` library (tests/test_kill_points.py's `RawStation`)."""

from __future__ import annotations

import asyncio

import aiohttp
from ocpp.messages import MessageType
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from tests.hang_budget import hang_budget_s
from tests.test_kill_points import RawStation
from tests.test_outside_s32_kills import _server
from tests.test_outside_s34_grants import GUEST, _now

ACTIONS = {"ocpp1.6": "RemoteStartTransaction", "ocpp2.0.1": "RequestStartTransaction"}
BOOTS = {"ocpp1.6": call16.BootNotification(charge_point_vendor="Raw", charge_point_model="R"),
         "ocpp2.0.1": call201.BootNotification(charging_station={"model": "R",
                                                                  "vendor_name": "Raw"},
                                               reason="PowerUp")}


class HoldingStation(RawStation):
    """A raw station that leaves one of the server's calls unanswered and says it came (every
    other call of the server is answered NotSupported, as `RawStation` does)."""

    def __init__(self, *args, hold: str) -> None:
        super().__init__(*args)
        self.hold = hold
        self.held: asyncio.Future = asyncio.get_running_loop().create_future()

    async def _on_call(self, ws, frame: list) -> None:
        if frame[2] != self.hold:
            await super()._on_call(ws, frame)
        elif not self.held.done():
            self.held.set_result(frame[3])


def _start_of(protocol: str, sent: dict):
    """The station's start with our tag, after the restart (no reboot: a new connection)."""
    if protocol == "ocpp1.6":
        return call16.StartTransaction(connector_id=1, id_tag=GUEST, meter_start=1_000,
                                       timestamp=_now())
    return call201.TransactionEvent(
        event_type="Started", timestamp=_now(), trigger_reason="RemoteStart", seq_no=0,
        transaction_info={"transaction_id": "RS-39", "charging_state": "Charging",
                          "remote_start_id": sent["remoteStartId"]},
        evse={"id": 1, "connector_id": 1},
        id_token={"id_token": GUEST, "type": sent["idToken"]["type"]},
        meter_value=[{"timestamp": _now(), "sampled_value": [
            {"value": 1000.0, "context": "Transaction.Begin",
             "measurand": "Energy.Active.Import.Register"}]}])


def _status_of(protocol: str, answer: list) -> str:
    info = answer[2]["idTagInfo" if protocol == "ocpp1.6" else "idTokenInfo"]
    return info["status"]


async def test_a_remote_start_in_flight_when_serve_is_killed_is_granted_after_the_restart(
        tmp_path, protocol):
    """Failed first (both versions): the station's start with the tag of the remote start it
    accepted while we died was answered Invalid (1.6) / Unknown (2.0.1) by the new process."""
    server = _server(tmp_path, 1)
    try:
        server.start()
        async with aiohttp.ClientSession() as http:
            cp = HoldingStation(http, server, "CP1", protocol, hold=ACTIONS[protocol])
            await cp.connect()
            assert (await cp.call("boot", BOOTS[protocol]))[0] == MessageType.CallResult
            asked = asyncio.create_task(server.api(
                "POST", "/api/stations/CP1/remote-start", {"id_tag": GUEST, "connector_id": 1}))
            sent = await asyncio.wait_for(asyncio.shield(cp.held), hang_budget_s(15))
            server.process.kill()      # in flight: sent, its answer not come
            server.process.wait(timeout=10)
            assert await asked is None   # the operator's request dropped with the process
            await cp.ws.close()
            server.start()
            await cp.connect()
            started = await cp.call("start", _start_of(protocol, sent))
            assert started[0] == MessageType.CallResult, started
            assert _status_of(protocol, started) == "Accepted", started
            # granted to that tag only
            other = await cp.call("other", call16.Authorize(id_tag="STRANGER-39")
                                  if protocol == "ocpp1.6" else call201.Authorize(
                                      id_token={"id_token": "STRANGER-39", "type": "ISO14443"}))
            assert _status_of(protocol, other) in ("Invalid", "Unknown"), other
    finally:
        server.stop()


async def test_a_refused_remote_start_still_grants_nothing(tmp_path, protocol):
    """The control: a remote start the station refuses leaves the tag as unknown as before -
    also after a restart (what is written before the send must not outlive a refusal)."""
    server = _server(tmp_path, 1)
    try:
        server.start()
        async with aiohttp.ClientSession() as http:
            cp = RawStation(http, server, "CP1", protocol)
            await cp.connect()
            assert (await cp.call("boot", BOOTS[protocol]))[0] == MessageType.CallResult
            asked = asyncio.create_task(server.api(
                "POST", "/api/stations/CP1/remote-start", {"id_tag": GUEST, "connector_id": 1}))
            sent = await cp.answer_next(ACTIONS[protocol], {"status": "Rejected"},
                                        hang_budget_s(15))
            status, answer = await asked
            assert status == 200 and answer["answer"]["status"] == "Rejected", answer
            server.process.kill()
            server.process.wait(timeout=10)
            await cp.ws.close()
            server.start()
            await cp.connect()
            started = await cp.call("start", _start_of(protocol, sent))
            assert _status_of(protocol, started) in ("Invalid", "Unknown"), started
    finally:
        server.stop()


def pytest_generate_tests(metafunc):
    if "protocol" in metafunc.fixturenames:
        metafunc.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
