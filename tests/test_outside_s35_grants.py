"""Session 35, an outside judge of our remote starts' grants (s34-judge's
`smartcharge/store_grants.py`) on stations whose clocks are not ours: the in-process app on a
real socket with a stepped clock, a real SQLite file, 1.6 frames of the `ocpp` library. Each
test failed before its fix."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from ocpp.v16 import call as call16

from smartcharge.appkeys import REGISTRY
from smartcharge.clock import format_ocpp_time
from smartcharge.ocpp.remote_started import REMOTE_START_GRACE_S
from tests.hang_budget import hang_budget_s
from tests.test_outside_s34_grants import BOOT16, GUEST, _now
from tests.test_remote_start_authorized import stepped  # noqa: F401 (fixture)

AHEAD_S = 120.0   # the station's clock runs two minutes ahead of ours


async def _stamped_ahead(cp, clock) -> None:
    """Two StatusNotifications stamped on the station's clock: its offset is measured."""
    for status in ("Available", "Preparing"):
        await cp.call(call16.StatusNotification(
            connector_id=2, error_code="NoError", status=status,
            timestamp=format_ocpp_time(clock.now() + timedelta(seconds=AHEAD_S))))


async def test_a_queued_start_is_granted_on_the_station_s_clock_after_a_reconnection(stepped):
    """The station runs 2 minutes ahead. Our remote start is accepted; the station loses its
    network, the car is plugged in 250 s later (inside the 300 s grace) and the station stamps
    the start on its own clock (+370 s); back online after the grace, on a new connection, it
    sends its queue first. The grant's window is on our clock, the stamp compared with it as
    it was: Invalid - our own remote start refused, and a station with
    `StopTransactionOnInvalidId` stops that charge. A start 360 s after the grant (its stamp
    +480 s) is after the grace whichever clock reads it."""
    harness, clock = stepped
    cp1 = await harness.station("CP1")
    await _stamped_ahead(cp1, clock)
    granted_at = clock.now()
    async with harness.api.post(harness.url("/api/stations/CP1/remote-start"),
                                json={"id_tag": GUEST, "connector_id": 1}) as answer:
        assert answer.status == 200, await answer.text()
    await cp1.ws.close()
    clock.ahead += timedelta(seconds=REMOTE_START_GRACE_S * 3)
    cp1 = await harness.station("CP1", boot=False)
    queued = await cp1.call(call16.StartTransaction(
        connector_id=1, id_tag=GUEST, meter_start=0,
        timestamp=format_ocpp_time(granted_at + timedelta(seconds=AHEAD_S + 250))))
    assert queued.id_tag_info["status"] == "Accepted"
    late = await cp1.call(call16.StartTransaction(
        connector_id=2, id_tag=GUEST, meter_start=0,
        timestamp=format_ocpp_time(granted_at + timedelta(seconds=AHEAD_S + 360))))
    assert late.id_tag_info["status"] == "Invalid"


async def test_a_remote_start_whose_answer_the_dropped_connection_lost_is_granted(harness):
    """Our RemoteStartTransaction reaches the station; it accepts and starts - and its
    connection drops before the answer reaches us (a mobile network's gap). It connects
    again and sends its StartTransaction with our tag: answered Invalid, as for any unknown
    tag - the start the operator asked for refused, and stopped by a station with
    `StopTransactionOnInvalidId`. Sent and never answered, it may have been taken: granted as
    for a late Accepted (the operator asked for this tag on this station)."""
    ws = await harness.booted_raw_socket(BOOT16)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    asked = asyncio.create_task(harness.api.post(
        harness.url("/api/stations/CP1/remote-start"), json={"id_tag": GUEST,
                                                             "connector_id": 1}))
    request = json.loads((await ws.receive(timeout=hang_budget_s(10))).data)
    assert request[2] == "RemoteStartTransaction" and request[3]["idTag"] == GUEST
    await ws.close()   # accepted at the station; its answer lost with the connection
    async with await asked as response:
        assert response.status == 409, await response.text()   # disconnected during it
    ws = await harness.open_ws("CP1")
    start = [2, "start", "StartTransaction", {"connectorId": 1, "idTag": GUEST,
                                              "meterStart": 0, "timestamp": _now()}]
    answer = await harness.raw_call(ws, start)
    assert answer[2]["idTagInfo"]["status"] == "Accepted", answer
    # a tag never sent is not granted by it
    other = await harness.raw_call(ws, [2, "a2", "Authorize", {"idTag": "OTHER-35"}])
    assert other[2]["idTagInfo"]["status"] == "Invalid", other
