"""Session 33's outside judge (1.6): what the REST API tells an operator about a station's
answer to a remote command, against stations that answer in ways the spec does not allow
(docs/promises.md, "Audit, session 33 (judge, 1.6)"). Real server, real WebSockets (a raw
station socket: no library between the station and the frame it sends), real SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v16 import call

from smartcharge.app import create_app
from smartcharge.appkeys import REGISTRY
from smartcharge.clock import AcceleratedClock
from tests.conftest import make_site, serve_harness
from tests.hang_budget import hang_budget_s
from tests.test_ocpp201_core import BOOT as BOOT_201

BOOT = [2, "boot-1", "BootNotification", {"chargePointVendor": "Judge", "chargePointModel": "J"}]
T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


async def _reset_answered_with(harness, answer_of, timeout_s: int = 10, version: str = "1.6"):
    """POST /api/stations/CP1/reset with CP1 a raw socket (OCPP `version`) that answers our
    Reset with the frame `answer_of(its unique id)` builds: (the HTTP status, the JSON body)."""
    if version == "1.6":
        ws = await harness.booted_raw_socket(BOOT)
    else:
        ws = await harness.booted_raw_socket(BOOT_201, protocols=("ocpp2.0.1",))
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    posted = asyncio.create_task(harness.api.post(
        harness.url(f"/api/stations/CP1/reset?timeout_s={timeout_s}"), json={"type": "Soft"}))
    request = json.loads((await ws.receive(timeout=timeout_s)).data)
    assert request[:3] == [2, request[1], "Reset"], request
    await ws.send_str(answer_of(request[1]))
    async with await posted as response:
        body = await response.json()
        status = response.status
    await harness.assert_still_up(ws)
    return status, body


# -- an answer the 1.6 schema does not allow -----------------------------------------------------
# A CALLRESULT whose payload breaks its schema was reported as a CALLERROR the station never
# sent: 502 `station_call_error` with `code` FormationViolation / ProtocolError and the
# library's generic words ("Payload for Action is syntactically incorrect..."), which neither
# said what was wrong nor showed what the station answered - an operator chased a CALLERROR in
# the station's logs that was never there.
@pytest.mark.parametrize("payload, named", [
    ({"status": "Maybe"}, "'Maybe'"),                      # outside its enumeration
    ({}, "'status'"),                                      # its one required field missing
    ({"status": "Accepted", "info": "ok"}, "'info'"),      # a field 1.6 does not have
    ({"status": 1}, "status"),                             # a wrong type
], ids=["enum", "missing", "extra", "type"])
async def test_an_answer_its_schema_refuses_is_told_as_it_came(harness, payload, named):
    """Failed first: 502 `station_call_error`, `code` FormationViolation / ProtocolError /
    TypeConstraintViolation, no word of what was wrong, no answer."""
    status, body = await _reset_answered_with(
        harness, lambda unique_id: json.dumps([3, unique_id, payload]))
    assert status == 502, body
    assert body["error"] == "station_answer_invalid", body
    assert named in body["detail"] and "Reset" in body["detail"], body
    assert body["answer"] == payload, body
    assert "code" not in body, body      # the station sent no CALLERROR


async def test_a_201_answer_its_schema_refuses_is_told_as_it_came(harness):
    """The same edge serves 2.0.1 (its Reset answers Accepted, Rejected or Scheduled)."""
    status, body = await _reset_answered_with(
        harness, lambda unique_id: json.dumps([3, unique_id, {"status": "Maybe"}]),
        version="2.0.1")
    assert (status, body["error"]) == (502, "station_answer_invalid"), body
    assert "'Maybe'" in body["detail"] and "2.0.1" in body["detail"], body
    assert body["answer"] == {"status": "Maybe"}, body


async def test_a_callerror_code_outside_the_spec_is_told_as_the_station_sent_it(harness):
    """A CALLERROR whose code is none of 1.6's (firmware's own words) was told as `code`
    `UnknownErrorCode` with the library's sentence - the station's code and description lost.
    Failed first: code 'UnknownErrorCode'."""
    status, body = await _reset_answered_with(harness, lambda unique_id: json.dumps(
        [4, unique_id, "RelayWelded", "contactor K1 welded", {"temperature": 71}]))
    assert status == 502, body
    assert body["error"] == "station_call_error", body
    assert (body["code"], body["description"]) == ("RelayWelded", "contactor K1 welded"), body


# -- an answer whose frame is malformed, to a call we are waiting on ----------------------------
# Its message id is readable, so it is the answer to our call - only not one we can read. It was
# dropped and the call waited its whole timeout: the operator waited (30 s by default) for a 504
# saying the station "did not answer", and the station had answered at once.
@pytest.mark.parametrize("frame_of", [
    lambda unique_id: json.dumps([3, unique_id]),
    lambda unique_id: json.dumps([3, unique_id, ["Accepted"]]),
    lambda unique_id: json.dumps([3, unique_id, {"status": "Accepted"}, {}]),
    lambda unique_id: json.dumps([4, unique_id, "GenericError"]),
    lambda unique_id: json.dumps([4, unique_id, 17, "bad code", {}]),
    lambda unique_id: f'[3, "{unique_id}", {{"status": "\\ud800"}}]',
], ids=["result-short", "result-list", "result-long", "error-short", "error-code-number",
        "lone-surrogate"])
async def test_a_malformed_answer_to_our_call_is_told_not_waited_for(harness, frame_of):
    """Failed first: 504 `station_timeout` after the call's 10 s."""
    status, body = await _reset_answered_with(harness, frame_of)
    assert status == 502, body
    assert body["error"] == "station_answer_invalid", body
    assert "Reset" in body["detail"], body


# -- what a station's DataTransfers leave in the store ------------------------------------------
# Every DataTransfer is stored (`data_transfers`: its vendor, message id and data - up to the
# 1 Mi characters a frame may carry) and nothing ever read or pruned them: the raw billing
# messages and 2.0.1's information-only reports go after `server.inbound_retention_days`, a
# vendor's telemetry by DataTransfer (often one a minute per station) grew the file for ever.
async def test_a_stations_data_transfers_are_pruned_with_its_raw_messages(tmp_path):
    """Failed first: the 100-day-old DataTransfer was still in the file after the start's
    prune (the wait below ran out)."""
    path = str(tmp_path / "dt.sqlite")
    long_ago = AcceleratedClock(T0 - timedelta(days=100), speed=1.0)
    app = create_app(make_site(), db_path=path, clock=long_ago, smart_charging=False)
    async with contextlib.aclosing(serve_harness(app)) as served:
        harness = await anext(served)
        station = await harness.station("CP1")
        await station.call(call.DataTransfer(vendor_id="com.example", message_id="telemetry",
                                             data="x" * 100_000), suppress=False)
    app = create_app(make_site(), db_path=path, clock=AcceleratedClock(T0, speed=1.0),
                     smart_charging=False)
    async with contextlib.aclosing(serve_harness(app)) as served:
        harness = await anext(served)
        station = await harness.station("CP1")
        await station.call(call.DataTransfer(vendor_id="com.example", message_id="recent"),
                           suppress=False)

        async def kept() -> list:
            return [row["message_id"] for row in
                    await harness.store.read(lambda tx: tx.data_transfers("CP1"))]
        await _until(kept, ["recent"])


async def _until(read, expected, timeout_s: float = 10.0) -> None:
    """Until the async `read()` returns `expected` (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hang_budget_s(timeout_s)
    while (found := await read()) != expected:
        assert loop.time() < deadline, found
        await asyncio.sleep(0.02)


# -- a billing window that ends before it starts ---------------------------------------------
@pytest.mark.parametrize("path", ["/api/sessions.csv", "/api/sessions"])
@pytest.mark.parametrize("since, until", [
    ("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z"),       # the two swapped
    ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"),  # the same instant: no window
], ids=["swapped", "empty"])
async def test_a_window_that_ends_before_it_starts_is_refused(api, path, since, until):
    """A biller who swapped `since` and `until` got 200 and a header row: a month's export
    with no session in it, billed as nothing - the window selects what overlaps [since,
    until), and such a window holds no instant. Failed first: 200. A 422 naming `until` now,
    as a cap window or DR event whose end is not after its start."""
    server, http = api
    query = f"?since={since}&until={until}".replace("+", "%2B")
    async with http.get(f"http://127.0.0.1:{server.port}{path}{query}") as response:
        body = await response.json(content_type=None)
        assert response.status == 422, (response.status, body)
    assert body["error"] == "invalid_body" and "until" in body["detail"], body
