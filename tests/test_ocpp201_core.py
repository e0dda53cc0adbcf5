"""OCPP 2.0.1 beside 1.6 on one endpoint: negotiation, auth, boot, heartbeat, status, the edge in
2.0.1's error names, and our calls to a 2.0.1 station."""

from __future__ import annotations

import asyncio
import json
import aiohttp
import pytest
from ocpp.routing import on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from smartcharge.appkeys import REGISTRY
from smartcharge.events import ConnectorStatusChanged, StationBooted, StationConnected
from smartcharge.ocpp.registry import StationCallError, StationTimeout
from smartcharge.ocpp.v201 import CentralSystemV201
from tests.v201_fixtures import OCPP201, Station201, station201

BOOT = [2, "boot-1", "BootNotification", {"reason": "PowerUp", "chargingStation": {
    "vendorName": "Raw", "model": "R"}}]
HEARTBEAT = [2, "hb-1", "Heartbeat", {}]


async def test_a_station_offering_both_gets_2_0_1(harness):
    station = await station201(harness, protocols=("ocpp1.6", OCPP201))
    assert station.ws.protocol == OCPP201
    link = harness.app[REGISTRY].get("CP1")
    assert link.protocol == OCPP201 and isinstance(link.adapter, CentralSystemV201)
    assert any(isinstance(e, StationConnected) and e.protocol == OCPP201
               for e in harness.events)
    stored = await harness.store.run(lambda tx: tx.stations())
    assert stored[0]["protocol"] == OCPP201
    async with harness.api.get(harness.url("/api/stations/CP1")) as response:
        body = await response.json()
    assert body["ocpp_version"] == "2.0.1" and body["vendor"] == "Test"
    assert body["model"] == "T201" and body["firmware_version"] == "2.0"


async def test_a_1_6_station_still_gets_1_6(harness):
    station = await harness.station("CP2")
    assert station.ws.protocol == "ocpp1.6"
    stored = await harness.store.run(lambda tx: tx.stations())
    assert stored[0]["protocol"] == "ocpp1.6"


async def test_wrong_password_is_refused_for_2_0_1_too(harness):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.open_ws("CP1", password="not-the-password-x", protocols=(OCPP201,))
    assert refused.value.status == 401


async def test_boot_heartbeat_and_status(harness, t0):
    station = await station201(harness)
    booted = [e for e in harness.events if isinstance(e, StationBooted)]
    assert booted[0].accepted and booted[0].model == "T201"
    stored = (await harness.store.run(lambda tx: tx.stations()))[0]
    assert (stored["boot_status"], stored["serial_number"]) == ("Accepted", "SN-1")
    assert json.loads(stored["boot_json"])["reason"] == "PowerUp"
    beat = await station.send(call.Heartbeat())
    assert beat.current_time.endswith("Z")
    await station.status(2, "Occupied", t0)
    statuses = await harness.store.run(lambda tx: tx.connector_statuses("CP1"))
    assert [(s["connector_id"], s["status"]) for s in statuses] == [(2, "Occupied")]
    changed = [e for e in harness.events if isinstance(e, ConnectorStatusChanged)]
    assert (changed[0].connector_id, changed[0].status, changed[0].at) == (2, "Occupied", t0)


async def test_undeclared_station_is_refused(harness):
    # stations with passwords here: refused as a wrong password would be, not with the 404
    # that tells a scanner the id is unknown (tests/test_ocpp_handshake.py)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await station201(harness, "NOBODY")
    assert refused.value.status == 401


async def booted_raw_socket(harness, station_id="CP1"):
    return await harness.booted_raw_socket(BOOT, station_id, protocols=(OCPP201,))


@pytest.mark.parametrize("frame, expected", [
    ("this is not json", [4, "-1", "RpcFrameworkError"]),
    ('{"messageTypeId": 2}', [4, "-1", "RpcFrameworkError"]),
    ("[]", [4, "-1", "RpcFrameworkError"]),
    ([2, 17, "Heartbeat", {}], [4, "-1", "RpcFrameworkError"]),
    ([2, "m1", "Heartbeat"], [4, "m1", "RpcFrameworkError"]),
    ([7, "m3", "Heartbeat", {}], [4, "m3", "MessageTypeNotSupported"]),
    ([2, "m2", "Heartbeat", []], [4, "m2", "FormatViolation"]),
    ([2, "m4", "FlyToTheMoon", {}], [4, "m4", "NotImplemented"]),
    ([2, "m5", "RequestStartTransaction", {"idToken": {"idToken": "X", "type": "ISO14443"},
                                           "remoteStartId": 1}], [4, "m5", "NotSupported"]),
    ([2, "m6", "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", "evseId": 1,
                                      "connectorId": 1}],
     [4, "m6", "OccurrenceConstraintViolation"]),
    ([2, "m7", "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", "evseId": "one",
                                      "connectorId": 1, "connectorStatus": "Available"}],
     [4, "m7", "TypeConstraintViolation"]),
    ([2, "m8", "Heartbeat", {"unexpected": 1}], [4, "m8", "FormatViolation"]),
    ([2, "m9", "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", "evseId": 1,
                                      "connectorId": 1, "connectorStatus": "Charging"}],
     [4, "m9", "PropertyConstraintViolation"]),
    ([2, "m10", "StatusNotification", {"timestamp": "yesterday", "evseId": 1,
                                       "connectorId": 1, "connectorStatus": "Available"}],
     [4, "m10", "TypeConstraintViolation"]),
    ([2, "m11", "TransactionEvent", {"eventType": "Started", "triggerReason": "Authorized",
                                     "seqNo": 0, "timestamp": "9999-12-31T23:59:59-14:00",
                                     "transactionInfo": {"transactionId": "T1"}}],
     [4, "m11", "TypeConstraintViolation"]),
    ([2, "m12", "MeterValues", {"evseId": 2 ** 40, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": 1}]}]}],
     [4, "m12", "TypeConstraintViolation"]),
    ('[2, "m13", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": '
     '"2026-01-01T00:00:00Z", "sampledValue": [{"value": Infinity}]}]}]',
     [4, "-1", "RpcFrameworkError"]),
    ('[2, "m14", "Heartbeat", {"x": ' + "[" * 50_000 + "]" * 50_000 + "}]",
     [4, "-1", "RpcFrameworkError"]),
    # a lone surrogate escape: JSON's syntax, no Unicode text (RFC 8259 8.2)
    ('[2, "m30", "Authorize", {"idToken": {"idToken": "\\ud800", "type": "ISO14443"}}]',
     [4, "m30", "FormatViolation"]),
    # ids the spec numbers from 1 (EVSEs, their connectors; 0 is the station or its main
    # meter only where a message says so): a transaction on "EVSE 0" or "-3" was billed and
    # neither planned nor guarded
    ([2, "m15", "TransactionEvent", {"eventType": "Started", "triggerReason": "Authorized",
                                     "seqNo": 0, "timestamp": "2026-01-01T00:00:00Z",
                                     "transactionInfo": {"transactionId": "T1"},
                                     "evse": {"id": 0, "connectorId": 1}}],
     [4, "m15", "PropertyConstraintViolation"]),
    ([2, "m16", "TransactionEvent", {"eventType": "Started", "triggerReason": "Authorized",
                                     "seqNo": 0, "timestamp": "2026-01-01T00:00:00Z",
                                     "transactionInfo": {"transactionId": "T2"},
                                     "evse": {"id": 1, "connectorId": -1}}],
     [4, "m16", "PropertyConstraintViolation"]),
    ([2, "m17", "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", "evseId": -1,
                                       "connectorId": 1, "connectorStatus": "Available"}],
     [4, "m17", "PropertyConstraintViolation"]),
    ([2, "m18", "MeterValues", {"evseId": -1, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": 1}]}]}],
     [4, "m18", "PropertyConstraintViolation"]),
    ([2, "m19", "NotifyEVChargingNeeds", {"evseId": 0, "chargingNeeds": {
        "requestedEnergyTransfer": "AC_three_phase"}}],
     [4, "m19", "PropertyConstraintViolation"]),
])
async def test_malformed_frames_get_the_2_0_1_callerror(harness, frame, expected):
    await harness.assert_callerror(await booted_raw_socket(harness), frame, expected)


async def test_a_meter_value_out_of_range_is_answered_and_not_a_reading(harness):
    """A multiplier that takes the value past a float is a valid message (the schema bounds
    neither) but no reading: answered, the connection goes on, nothing billed from it."""
    ws = await booted_raw_socket(harness)
    for n, (value, multiplier) in enumerate([(1, 400), (1e308, 3), (1, 2 ** 31 - 1)]):
        frame = [2, f"mv{n}", "MeterValues", {"evseId": 1, "meterValue": [
            {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
                {"value": value, "unitOfMeasure": {"unit": "Wh", "multiplier": multiplier}}]}]}]
        assert await harness.raw_call(ws, frame) == [3, f"mv{n}", {}]
    assert (await harness.raw_call(ws, HEARTBEAT))[:2] == [3, "hb-1"]


async def test_binary_frame_is_answered_not_fatal(harness):
    ws = await booted_raw_socket(harness)
    await ws.send_bytes(b"\xff\xfe not text")
    answer = json.loads((await ws.receive(timeout=5)).data)
    assert answer[:3] == [4, "-1", "RpcFrameworkError"]
    assert (await harness.raw_call(ws, HEARTBEAT))[:2] == [3, "hb-1"]


async def test_call_before_boot_accepted_is_security_error(harness):
    ws = await harness.open_ws("CP2", protocols=(OCPP201,))
    assert (await harness.raw_call(ws, HEARTBEAT))[:3] == [4, "hb-1", "SecurityError"]
    assert (await harness.raw_call(ws, BOOT))[0] == 3
    assert (await harness.raw_call(ws, HEARTBEAT))[:2] == [3, "hb-1"]


class Answering(Station201):
    """Answers GetVariables; `hold` set -> never answers it (a timeout)."""

    hold = False

    @on(Action.get_variables)
    async def get_variables(self, get_variable_data, **_):
        if self.hold:
            await asyncio.Event().wait()
        return call_result.GetVariables(get_variable_result=[
            {"attribute_status": "Accepted", "attribute_value": "3",
             "component": item["component"], "variable": item["variable"]}
            for item in get_variable_data])


def get_entries():
    return call.GetVariables(get_variable_data=[
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Entries"}}])


async def test_our_calls_to_a_2_0_1_station(harness):
    await station201(harness, station_class=Answering)
    link = harness.app[REGISTRY].get("CP1")
    answer = await link.call(get_entries(), timeout_s=5)
    assert answer.get_variable_result[0]["attribute_value"] == "3"
    with pytest.raises(ValueError, match="GetVariables"):
        await link.call(call.GetVariables(get_variable_data=[]), timeout_s=5)


@pytest.mark.parametrize("code, expected", [
    ("OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    ("RpcFrameworkError", "RpcFrameworkError"),
    ("NotSupported", "NotSupported"),
])
async def test_callerror_answers_raise_station_call_error(harness, code, expected):
    ws = await booted_raw_socket(harness)
    failed = await harness.our_call_refused(ws, get_entries(), code)
    assert failed.code == expected


async def test_a_station_that_does_not_answer_times_out(harness):
    station = await station201(harness, station_class=Answering)
    station.hold = True
    with pytest.raises(StationTimeout):
        await harness.app[REGISTRY].get("CP1").call(get_entries(), timeout_s=0.3)


async def test_an_answer_with_a_bad_date_time_is_refused(harness):
    ws = await booted_raw_socket(harness)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP1") is not None)
    pending = asyncio.create_task(harness.app[REGISTRY].get("CP1").call(
        call.GetCompositeSchedule(duration=600, evse_id=1), timeout_s=5))
    request = json.loads((await ws.receive(timeout=5)).data)
    await ws.send_str(json.dumps([3, request[1], {"status": "Accepted", "schedule": {
        "evseId": 1, "duration": 600, "scheduleStart": "tomorrow", "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}}]))
    with pytest.raises(StationCallError) as refused:
        await pending
    assert refused.value.code == "TypeConstraintViolation"
    assert "scheduleStart" in refused.value.description
