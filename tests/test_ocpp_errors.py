"""Malformed input from a station: each gets the CALLERROR OCPP 1.6 names, the connection stays up."""

from __future__ import annotations

import asyncio
import json

import pytest
from ocpp.v16 import call

from smartcharge.appkeys import REGISTRY
from smartcharge.ocpp.registry import StationCallError

BOOT = [2, "boot-1", "BootNotification", {"chargePointVendor": "Raw", "chargePointModel": "R"}]
HEARTBEAT = [2, "hb-1", "Heartbeat", {}]


async def booted_raw_socket(harness, station_id="CP1"):
    return await harness.booted_raw_socket(BOOT, station_id)


async def assert_still_up(harness, ws):
    await harness.assert_still_up(ws)


@pytest.mark.parametrize("frame, expected", [
    ("this is not json", [4, "-1", "FormationViolation"]),
    ('[2, "a", "Heartbeat", {', [4, "-1", "FormationViolation"]),
    ('{"messageTypeId": 2}', [4, "-1", "FormationViolation"]),
    ("42", [4, "-1", "FormationViolation"]),
    ("[]", [4, "-1", "FormationViolation"]),
    ([2, "m1", "Heartbeat"], [4, "m1", "ProtocolError"]),
    ([2, "m2", "Heartbeat", []], [4, "m2", "FormationViolation"]),
    ([2, 17, "Heartbeat", {}], [4, "-1", "FormationViolation"]),
    ([7, "m3", "Heartbeat", {}], [4, "m3", "PropertyConstraintViolation"]),
    ([2, "m4", "FlyToTheMoon", {}], [4, "m4", "NotImplemented"]),
    ([2, "m5", "RemoteStartTransaction", {"idTag": "X"}], [4, "m5", "NotSupported"]),
    ([2, "m6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError"}],
     [4, "m6", "OccurenceConstraintViolation"]),
    ([2, "m7", "StatusNotification", {"connectorId": "one", "errorCode": "NoError",
                                      "status": "Available"}],
     [4, "m7", "TypeConstraintViolation"]),
    ([2, "m8", "Heartbeat", {"unexpected": 1}], [4, "m8", "FormationViolation"]),
    ([2, "m9", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                      "status": "Sleeping"}],
     [4, "m9", "PropertyConstraintViolation"]),
    ([2, "m10", "Authorize", {"idTag": "X" * 21}], [4, "m10", "TypeConstraintViolation"]),
    ([2, "m11", "MeterValues", {"connectorId": 1, "meterValue": []}],
     [4, "m11", "OccurenceConstraintViolation"]),
    # a zone that pushes the time out of the calendar (year 0 in UTC)
    ([2, "m12", "StartTransaction", {"connectorId": 1, "idTag": "DRIVER-1", "meterStart": 1,
                                     "timestamp": "0001-01-01T00:00:00+14:00"}],
     [4, "m12", "TypeConstraintViolation"]),
    # OCPP's integer is 32 bits (1.6 part 2, data types): a bigger one is no valid id or count
    ([2, "m13", "MeterValues", {"connectorId": 1, "transactionId": 2 ** 63, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}]}],
     [4, "m13", "TypeConstraintViolation"]),
    ([2, "m14", "StatusNotification", {"connectorId": 2 ** 31, "errorCode": "NoError",
                                       "status": "Available"}],
     [4, "m14", "TypeConstraintViolation"]),
    ([2, "m15", "StopTransaction", {"transactionId": 1, "meterStop": 10 ** 30,
                                    "timestamp": "2026-01-01T00:00:00Z"}],
     [4, "m15", "TypeConstraintViolation"]),
    # NaN and Infinity are not JSON (RFC 8259), though Python's parser reads them
    ('[2, "m16", "StartTransaction", {"connectorId": 1, "idTag": "DRIVER-1", '
     '"meterStart": NaN, "timestamp": "2026-01-01T00:00:00Z"}]', [4, "-1", "FormationViolation"]),
    # nested past the parser's recursion limit: it was never answered at all
    ('[2, "m17", "Heartbeat", {"x": ' + "[" * 50_000 + "]" * 50_000 + "}]",
     [4, "-1", "FormationViolation"]),
    # a transaction's connector is > 0 (1.6 StartTransaction.req); 0 is the charge point
    # itself in a status, its main meter in meter values, never negative: a session on
    # connector 0 or -1 was billed and neither planned nor guarded
    ([2, "m18", "StartTransaction", {"connectorId": 0, "idTag": "DRIVER-1", "meterStart": 0,
                                     "timestamp": "2026-01-01T00:00:00Z"}],
     [4, "m18", "PropertyConstraintViolation"]),
    ([2, "m19", "StartTransaction", {"connectorId": -1, "idTag": "DRIVER-1", "meterStart": 0,
                                     "timestamp": "2026-01-01T00:00:00Z"}],
     [4, "m19", "PropertyConstraintViolation"]),
    ([2, "m20", "StatusNotification", {"connectorId": -1, "errorCode": "NoError",
                                       "status": "Available"}],
     [4, "m20", "PropertyConstraintViolation"]),
    ([2, "m21", "MeterValues", {"connectorId": -2, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}]}],
     [4, "m21", "PropertyConstraintViolation"]),
    # deep inside: a sample's time, and an integer past its sampled values (the edge skips the
    # parts of a schema with nothing to check, not these)
    ([2, "m22", "MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]},
        {"timestamp": "yesterday", "sampledValue": [{"value": "2"}]}]}],
     [4, "m22", "TypeConstraintViolation"]),
    ([2, "m23", "StopTransaction", {"transactionId": 1, "meterStop": 10,
                                    "timestamp": "2026-01-01T00:00:00Z", "transactionData": [
                                        {"timestamp": "soon", "sampledValue": [{"value": "1"}]}]}],
     [4, "m23", "TypeConstraintViolation"]),
    # a lone surrogate escape is JSON's syntax but no Unicode text (RFC 8259 8.2): no UTF-8
    # holds it, and the store's encoding raised - an InternalError, the message never stored
    ('[2, "m24", "Authorize", {"idTag": "\\ud800X"}]', [4, "m24", "FormationViolation"]),
    ('[2, "m25", "StartTransaction", {"connectorId": 1, "idTag": "A\\udc00", "meterStart": 0, '
     '"timestamp": "2026-01-01T00:00:00Z"}]', [4, "m25", "FormationViolation"]),
    ('[2, "m26", "DataTransfer", {"vendorId": "v", "data": "\\uDBFF"}]',
     [4, "m26", "FormationViolation"]),
    ('[2, "m27", "StatusNotification", {"connectorId": 1, "errorCode": "OtherError", '
     '"status": "Faulted", "vendorErrorCode": "\\ud800\\ud800"}]',
     [4, "m27", "FormationViolation"]),
])
async def test_malformed_frames_get_the_named_callerror(harness, frame, expected):
    await harness.assert_callerror(await booted_raw_socket(harness), frame, expected)


async def test_bad_timestamp_is_type_constraint_violation_and_not_stored(harness):
    ws = await booted_raw_socket(harness)
    start = [2, "s1", "StartTransaction", {"connectorId": 1, "idTag": "DRIVER-1",
                                           "meterStart": 100, "timestamp": "yesterday"}]
    answer = await harness.raw_call(ws, start)
    assert answer[:3] == [4, "s1", "TypeConstraintViolation"]
    assert "timestamp" in answer[3]
    sessions = await harness.store.run(lambda tx: tx.sessions())
    assert sessions == []
    nested = [2, "s2", "MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2026-13-45T99:00:00", "sampledValue": [{"value": "1"}]}]}]
    answer = await harness.raw_call(ws, nested)
    assert answer[:3] == [4, "s2", "TypeConstraintViolation"]
    await assert_still_up(harness, ws)


async def test_call_before_boot_accepted_is_security_error(harness):
    ws = await harness.open_ws("CP2")       # TC_B_30: a fresh station that never booted
    answer = await harness.raw_call(ws, HEARTBEAT)
    assert answer[:3] == [4, "hb-1", "SecurityError"]
    status = [2, "st", "StatusNotification", {"connectorId": 0, "errorCode": "NoError",
                                              "status": "Available"}]
    assert (await harness.raw_call(ws, status))[:3] == [4, "st", "SecurityError"]
    assert (await harness.raw_call(ws, BOOT))[0] == 3
    await assert_still_up(harness, ws)


@pytest.mark.parametrize("code, expected", [
    ("OccurrenceConstraintViolation", "OccurenceConstraintViolation"),
    ("OccurenceConstraintViolation", "OccurenceConstraintViolation"),
    ("NotSupported", "NotSupported"),
])
async def test_callerror_answers_to_our_calls_raise_with_either_spelling(harness, code,
                                                                         expected):
    ws = await booted_raw_socket(harness)
    failed = await harness.our_call_refused(ws, call.GetConfiguration(key=["X"]), code)
    assert failed.code == expected
    await assert_still_up(harness, ws)


async def test_binary_frame_is_answered_not_fatal(harness):
    ws = await booted_raw_socket(harness)
    await ws.send_bytes(b"\xff\xfe not text")
    answer = json.loads((await ws.receive(timeout=5)).data)
    assert answer[:3] == [4, "-1", "FormationViolation"]
    await assert_still_up(harness, ws)


async def test_our_own_invalid_request_is_a_value_error_not_a_station_error(harness):
    await booted_raw_socket(harness)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    link = harness.app[REGISTRY].get("CP1")
    with pytest.raises(ValueError, match="ChangeConfiguration"):
        await link.call(call.ChangeConfiguration(key="K" * 60, value="1"), timeout_s=5)


async def test_station_answer_with_a_bad_date_time_is_refused(harness):
    ws = await booted_raw_socket(harness)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    link = harness.app[REGISTRY].get("CP1")
    pending = asyncio.create_task(link.call(
        call.GetCompositeSchedule(connector_id=1, duration=600), timeout_s=5))
    request = json.loads((await ws.receive(timeout=5)).data)
    await ws.send_str(json.dumps([3, request[1], {
        "status": "Accepted", "connectorId": 1, "scheduleStart": "tomorrow",
        "chargingSchedule": {"chargingRateUnit": "A",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}}]))
    with pytest.raises(StationCallError) as refused:
        await pending
    assert refused.value.code == "TypeConstraintViolation"
    assert "scheduleStart" in refused.value.description


async def test_station_answer_that_breaks_the_schema_is_still_refused(harness):
    """Our requests are schema-checked once (issue 10: the library checked them again); the
    station's answers still are, every one."""
    ws = await booted_raw_socket(harness)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    link = harness.app[REGISTRY].get("CP1")
    pending = asyncio.create_task(link.call(
        call.ChangeConfiguration(key="MeterValueSampleInterval", value="60"), timeout_s=5))
    request = json.loads((await ws.receive(timeout=5)).data)
    assert request[2] == "ChangeConfiguration"
    await ws.send_str(json.dumps([3, request[1], {"status": "Maybe"}]))   # not in its enum
    with pytest.raises(StationCallError):
        await pending
    await assert_still_up(harness, ws)


async def test_answers_once_found_valid_do_not_let_a_different_one_through(harness):
    """Valid answers are remembered by their whole content (issue 10: thousands of identical
    {"status": "Accepted"} validated again per DR event): the same content passes, any other
    - another value, the same value as another JSON type - is checked and refused."""
    ws = await booted_raw_socket(harness)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    link = harness.app[REGISTRY].get("CP1")
    for status, valid in (("Accepted", True), ("Accepted", True), ("Maybe", False), (1, False),
                          (True, False)):
        pending = asyncio.create_task(link.call(
            call.ChangeConfiguration(key="MeterValueSampleInterval", value="60"), timeout_s=5))
        request = json.loads((await ws.receive(timeout=5)).data)
        await ws.send_str(json.dumps([3, request[1], {"status": status}]))
        if valid:
            assert (await pending).status == "Accepted"
        else:
            with pytest.raises(StationCallError):
                await pending
    await assert_still_up(harness, ws)


def test_a_request_that_cannot_be_serialised_is_refused_not_sent_empty():
    """Serialising our own request failed into `{}`, which the schema check passes for an
    action without required fields: a request the library cannot serialise (here a plain
    dict where its dataclass belongs) would have gone out as an empty payload - for a
    ClearChargingProfile, one that clears every profile on the station."""
    from smartcharge.ocpp.central import camel_payload

    with pytest.raises(ValueError, match="cannot be serialised"):
        camel_payload({"id": 1})


async def test_a_leap_second_is_a_time_not_a_malformed_frame(harness):
    """RFC 3339 (OCPP's date-time) allows a leap second, 23:59:60 UTC. A station whose clock
    follows one was answered TypeConstraintViolation: its StartTransaction was never stored
    and a station retries such a message until it gives it up - a session lost to billing.
    The leap second reads as the last instant of its minute, so order is kept."""
    ws = await booted_raw_socket(harness)
    start = [2, "s1", "StartTransaction", {"connectorId": 1, "idTag": "DRIVER-1",
                                           "meterStart": 100,
                                           "timestamp": "2016-12-31T23:59:60Z"}]
    answer = await harness.raw_call(ws, start)
    assert answer[0] == 3, answer
    sessions = await harness.store.run(lambda tx: tx.sessions())
    assert len(sessions) == 1
    await assert_still_up(harness, ws)


async def test_a_surrogate_pair_escape_is_text(harness):
    """An escaped pair (an emoji) is Unicode text: answered as any id tag."""
    ws = await booted_raw_socket(harness)
    await ws.send_str('[2, "p1", "Authorize", {"idTag": "\\ud83d\\ude00"}]')
    answer = json.loads((await ws.receive()).data)
    assert answer[:2] == [3, "p1"] and answer[2]["idTagInfo"]["status"] == "Invalid"
    await assert_still_up(harness, ws)
