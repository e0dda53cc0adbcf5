"""Our calls to a 1.6 station over a real WebSocket, answered by hand on a raw socket: the link
runs the call in the caller's task (no task per call, issue 10) with the same outcomes - the
answer to its own id, StationOffline when the station goes away meanwhile, StationTimeout, a
late answer dropped - and a caller cancelled from outside cancels its call, so the station's
next call does not wait behind an answer nobody will read."""

from __future__ import annotations

import asyncio
import json

import pytest
from ocpp.v16 import call

from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.registry import StationOffline, StationTimeout

BOOT = [2, "boot-1", "BootNotification", {"chargePointVendor": "Raw", "chargePointModel": "R"}]


def trigger() -> call.TriggerMessage:
    return call.TriggerMessage(requested_message="Heartbeat")


async def linked(harness):
    ws = await harness.booted_raw_socket(BOOT)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    return ws, harness.app[REGISTRY].get("CP1")


async def request_of(ws) -> list:
    frame = json.loads((await ws.receive(timeout=5)).data)
    assert frame[0] == 2 and frame[2] == "TriggerMessage"
    return frame


async def test_each_call_gets_the_answer_to_its_own_id(harness):
    ws, link = await linked(harness)
    ids = []
    for status in ("Accepted", "Rejected", "NotImplemented"):
        pending = asyncio.create_task(link.call(trigger(), timeout_s=5))
        frame = await request_of(ws)
        ids.append(frame[1])
        await ws.send_str(json.dumps([3, "not-" + frame[1], {"status": "Accepted"}]))  # dropped
        await ws.send_str(json.dumps([3, frame[1], {"status": status}]))
        assert (await pending).status == status
    assert len(set(ids)) == 3 and all(len(i) <= 36 for i in ids)   # OCPP-J: at most 36


async def test_a_late_answer_is_dropped_and_the_next_call_gets_its_own(harness):
    ws, link = await linked(harness)
    with pytest.raises(StationTimeout):
        await link.call(trigger(), timeout_s=0.2)
    late = await request_of(ws)
    pending = asyncio.create_task(link.call(trigger(), timeout_s=5))
    await ws.send_str(json.dumps([3, late[1], {"status": "Rejected"}]))   # too late: dropped
    frame = await request_of(ws)
    await ws.send_str(json.dumps([3, frame[1], {"status": "Accepted"}]))
    assert (await pending).status == "Accepted"


async def test_a_station_gone_during_our_call_is_offline_at_once(harness):
    ws, link = await linked(harness)
    pending = asyncio.create_task(link.call(trigger(), timeout_s=30))
    await request_of(ws)
    await ws.close()
    # long before the 30 s timeout: the link's close cuts the call
    with pytest.raises(StationOffline):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(StationOffline):   # and the closed link refuses new calls
        await link.call(trigger(), timeout_s=5)


async def test_a_cancelled_caller_does_not_hold_the_next_call(harness):
    ws, link = await linked(harness)
    first = asyncio.create_task(link.call(trigger(), timeout_s=30))
    await request_of(ws)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # one call in flight per station: the cancelled one no longer waits for its answer
    # (the server's response timeout, 30 s), so the next goes out now
    second = asyncio.create_task(link.call(trigger(), timeout_s=3))
    frame = await request_of(ws)
    await ws.send_str(json.dumps([3, frame[1], {"status": "Accepted"}]))
    assert (await second).status == "Accepted"
