"""Frames bigger than a station should send (1 MiB of text, `edge.MAX_FRAME_CHARS`): the
station gets the CALLERROR of a malformed message with the message id it sent (1.6
FormationViolation, 2.0.1 FormatViolation) and the connection goes on - closing it (WebSocket
1009) made a station that queued such a message reconnect and send it again, forever. Only a
frame past what we read at all (`server.MAX_RECEIVED_BYTES`, 4 MiB) ends the connection (1009).
Frames up to the limit are handled as any other."""

from __future__ import annotations

import contextlib
import json

import aiohttp
import pytest

from smartcharge.events import StationDisconnected
from smartcharge.ocpp.edge import MAX_FRAME_CHARS
from smartcharge.ocpp.server import MAX_RECEIVED_BYTES
from tests.test_ocpp201_core import BOOT as BOOT_201

BOOT_16 = [2, "boot-1", "BootNotification", {"chargePointVendor": "Raw",
                                             "chargePointModel": "R"}]
VERSIONS = [("ocpp1.6", BOOT_16, "FormationViolation"),
            ("ocpp2.0.1", BOOT_201, "FormatViolation")]


def _data_transfer(unique_id: str, size_chars: int) -> str:
    """A DataTransfer CALL of exactly `size_chars` characters."""
    head = json.dumps([2, unique_id, "DataTransfer", {"vendorId": "big", "data": ""}])
    return head[:-3] + "x" * (size_chars - len(head)) + head[-3:]


@pytest.mark.parametrize("protocol, boot, code", VERSIONS)
async def test_an_oversized_call_gets_a_callerror_and_the_connection_stays(harness, protocol,
                                                                           boot, code):
    ws = await harness.booted_raw_socket(boot, protocols=(protocol,))
    await harness.assert_callerror(ws, _data_transfer("big-1", MAX_FRAME_CHARS + 1),
                                   [4, "big-1", code])


@pytest.mark.parametrize("protocol, boot, code", VERSIONS)
async def test_a_call_at_the_limit_is_handled(harness, protocol, boot, code):
    ws = await harness.booted_raw_socket(boot, protocols=(protocol,))
    answer = await harness.raw_call(ws, _data_transfer("big-2", MAX_FRAME_CHARS))
    assert answer[:2] == [3, "big-2"], answer[:4]
    await harness.assert_still_up(ws)



@pytest.mark.parametrize("protocol, boot, code", VERSIONS)
async def test_an_oversized_frame_of_an_unknown_type_is_answered_as_a_small_one(
        harness, protocol, boot, code):
    """MessageTypeId 7: a small frame gets this version's CALLERROR for an unknown type; an
    oversized one was dropped without a word."""
    ws = await harness.booted_raw_socket(boot, protocols=(protocol,))
    small = await harness.raw_call(ws, json.dumps([7, "odd-1", "DataTransfer", {}]))
    assert small[:2] == [4, "odd-1"], small
    big = "[7" + _data_transfer("odd-2", MAX_FRAME_CHARS + 1)[2:]
    await harness.assert_callerror(ws, big, small[:1] + ["odd-2"] + small[2:3])

async def test_an_oversized_answer_is_dropped_and_the_connection_stays(harness):
    ws = await harness.booted_raw_socket(BOOT_16)
    await ws.send_str(json.dumps([3, "nobody-asked", {"x": "y" * MAX_FRAME_CHARS}]))
    await harness.assert_still_up(ws)


async def test_a_frame_past_what_we_read_ends_the_connection(harness):
    """The server stops reading (1009) and the station is disconnected; the peer may see its
    send fail mid-frame rather than the close frame."""
    ws = await harness.booted_raw_socket(BOOT_16)
    with contextlib.suppress(ConnectionError):
        await ws.send_str(_data_transfer("huge", MAX_RECEIVED_BYTES + 1))
        message = await ws.receive(timeout=10)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR)
    await harness.wait_for(lambda: any(isinstance(e, StationDisconnected)
                                       for e in harness.events))


@pytest.mark.parametrize("protocol, boot, code", VERSIONS)
async def test_callerror_descriptions_stay_within_255_characters(harness, protocol, boot, code):
    """OCPP-J (2.0.1 part 4 4.2.3: errorDescription at most 255 characters; 1.6 peers hold
    the same): a CALLERROR that quoted what the station sent - a 1 000-character action, a
    string far past its maxLength - was as long as that, and a strict station refuses such
    a frame."""
    ws = await harness.booted_raw_socket(boot, protocols=(protocol,))
    long_value = "Z" * 1_000
    heartbeat = [2, "a1", "X" * 1_000, {}]
    authorize = [2, "a2", "Authorize", {"idTag": long_value} if protocol == "ocpp1.6"
                 else {"idToken": {"idToken": long_value, "type": "ISO14443"}}]
    for frame in (heartbeat, authorize):
        answer = await harness.raw_call(ws, frame)
        assert answer[0] == 4 and answer[1] == frame[1], answer[:3]
        assert len(answer[3]) <= 255, (answer[2], len(answer[3]))
    await harness.assert_still_up(ws)
