"""Session 27's outside judge: a peer written elsewhere, testing what sessions 21-26 did not -
REST command routes fuzzed against live stations of both versions, and more (docs/promises.md,
"Audit, session 27 (judge)")."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

BOOT16 = [2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]
BOOT201 = [2, "b", "BootNotification", {"reason": "PowerUp", "chargingStation": {
    "model": "M", "vendorName": "V"}}]


async def _refuse_every_call(ws) -> None:
    """A station that answers each of our calls NotSupported (only our input checks matter)."""
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            return
        frame = json.loads(message.data)
        if frame[0] == 2:
            await ws.send_str(json.dumps([4, frame[1], "NotSupported", "", {}]))


@pytest.fixture
async def online_2_0_1(harness):
    ws = await harness.booted_raw_socket(BOOT201, "CP2", protocols=("ocpp2.0.1",))
    task = asyncio.create_task(_refuse_every_call(ws))
    yield harness
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("method, path, body, query", [
    # our session id past SQLite's 64 bits: the store's lookup raised OverflowError
    ("POST", "remote-stop", {"transaction_id": 2 ** 63}, None),
    ("POST", "remote-stop", {"transaction_id": 10 ** 30}, None),
    ("GET", "transaction-status", None, {"transaction_id": "99999999999999999999"}),
    # digits to str.isdigit, no number to int(): a superscript (the station's own id, then:
    # sent, and refused by this station - a 502), past int()'s 4 300 digits
    ("GET", "transaction-status", None, {"transaction_id": "\u00b2"}),
    ("GET", "transaction-status", None, {"transaction_id": "9" * 5000}),
])
async def test_2_0_1_transaction_ids_no_session_holds_are_answered_not_a_500(online_2_0_1, method,
                                                                          path, body, query):
    harness = online_2_0_1
    async with harness.api.request(method, harness.url(f"/api/stations/CP2/{path}"),
                                   json=body, params=query) as response:
        answer = await response.json()
        assert 400 <= response.status < 500 or (
            response.status == 502 and answer["code"] == "NotSupported"), (response.status,
                                                                          answer)
        assert answer["detail"], answer
