"""A station that answers and closes its connection at once - a Reset's answer, then the
reboot - was told to the caller as "disconnected during Reset" (409 from the REST API) though
the station had said Accepted: the answer and the close were read in one go, and the close
cancelled the call before it took its answer (test_sim201_remote_api, 1 of 24 copies at load
12+). A raw 1.6 socket against the real server; both frames written before the server reads."""

from __future__ import annotations

import asyncio
import json

from ocpp.v16 import call

from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.registry import StationOffline

BOOT = [2, "boot-1", "BootNotification", {"chargePointVendor": "Raw", "chargePointModel": "R"}]


async def _reset_sent(harness):
    """CP1 booted on a raw socket and our Reset on its way: (the socket, our pending call,
    the Reset frame as the station read it)."""
    ws = await harness.booted_raw_socket(BOOT)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    link = harness.app[REGISTRY].get("CP1")
    pending = asyncio.create_task(link.call(call.Reset(type="Hard"), timeout_s=5))
    frame = json.loads((await ws.receive(timeout=5)).data)
    assert frame[2] == "Reset"
    return ws, pending, frame


async def test_an_answer_followed_at_once_by_a_close_is_the_answer(harness):
    ws, pending, frame = await _reset_sent(harness)
    await ws.send_str(json.dumps([3, frame[1], {"status": "Accepted"}]))
    await ws.close()      # (no await in between that yields: both frames go out together)
    answer = await pending
    assert answer.status == "Accepted"


async def test_a_close_without_an_answer_is_still_offline(harness):
    ws, pending, _ = await _reset_sent(harness)
    await ws.close()
    try:
        await pending
    except StationOffline as offline:
        assert "disconnected during Reset" in str(offline)
    else:
        raise AssertionError("a call the station never answered was answered")
