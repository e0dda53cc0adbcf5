"""A SetChargingProfile is serialised once (issue 10, s26-dr: ~1 400 of them in a DR event at
1 000 connectors): the frame the station receives is made around the payload's JSON text, and
the audit row keeps that same text - what went out, byte for byte, not a second serialisation
of it. Over a real WebSocket, answered by hand on a raw socket, into the real SQLite store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from smartcharge.appkeys import REGISTRY, STORE
from smartcharge.clock import SystemClock
from smartcharge.ocpp.port import Answer, PortSettings, PowerSchedule
from smartcharge.ocpp.ports import port_factory
from smartcharge.ocpp.v16 import profiles as P

BOOT = [2, "boot-1", "BootNotification", {"chargePointVendor": "Raw", "chargePointModel": "R"}]


async def test_the_audit_row_is_the_text_the_station_received(harness):
    ws = await harness.booted_raw_socket(BOOT)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    link = harness.app[REGISTRY].get("CP1")
    rows: list[tuple] = []
    port = port_factory(SystemClock())(link, lambda *row: rows.append(row), voltage_v=230.0,
                                       unit="A", settings=PortSettings(call_timeout_s=5.0))
    port.caps16 = P.Capabilities()
    schedule = PowerSchedule(start=datetime.now(UTC), offsets_s=[0.0, 900.0],
                             power_w=[7_000.0, 3_333.3], current_a=[10.1, 4.8], phases=3,
                             duration_s=3_600)
    pending = asyncio.create_task(port.install_failsafe(1, schedule))
    frame_text = (await ws.receive(timeout=5)).data
    frame = json.loads(frame_text)
    assert frame[0] == 2 and frame[2] == "SetChargingProfile"
    await ws.send_str(json.dumps([3, frame[1], {"status": "Accepted"}]))
    answer, _ = await pending
    assert answer is Answer.ACCEPTED

    (station_id, connector_id, purpose, payload, status, sent_json) = rows[0]
    assert (station_id, connector_id, purpose, status) == ("CP1", 1, "TxDefaultProfile",
                                                           "Accepted")
    # the frame is the library's shape around the very text the row keeps
    assert frame_text == f'[2,"{frame[1]}","SetChargingProfile",{sent_json}]'
    assert json.loads(sent_json) == payload == frame[3]

    store = harness.app[STORE]
    await store.run(lambda tx: tx.insert_profiles_sent(
        [(station_id, connector_id, purpose, sent_json, status, datetime.now(UTC)),
         (station_id, connector_id, purpose, payload, status, datetime.now(UTC))]))
    stored = await store.run(lambda tx: tx.profiles_sent("CP1"))
    assert stored[-2]["profile_json"] == sent_json            # kept as it was sent
    assert json.loads(stored[-1]["profile_json"]) == payload   # a dict: serialised there
