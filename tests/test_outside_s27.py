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


async def test_the_csv_kwh_column_is_the_billed_wh_in_decimal(harness, t0):
    """2.0.1 registers with half a Wh (decimals are valid there): the CSV's energy_kwh is the
    row's energy_wh / 1000 in decimal, a half rounded up at the third decimal (commercial
    rounding, as on an invoice) - the float quotient rounded 2.5 Wh up to 0.003 kWh but
    1000.5 Wh down to 1.000 (1.000499999... in binary): halves went either way by binary
    noise, and the column disagreed with energy_wh."""
    import csv
    import io
    from datetime import timedelta
    from decimal import ROUND_HALF_UP, Decimal

    from tests.v201_billing import tx_event
    from tests.v201_fixtures import station201

    station = await station201(harness)
    minute = timedelta(minutes=1)
    for n, used_wh in enumerate((1.5, 2.5, 1000.5, 12_345.5)):
        ref, at = f"tx-{n}", t0 + 30 * n * minute
        await station.send(tx_event("Started", ref, 0, at, register_wh=100_000.0))
        await station.send(tx_event("Ended", ref, 1, at + 20 * minute,
                                    register_wh=100_000.0 + used_wh))
    async with harness.api.get(harness.url("/api/sessions.csv")) as response:
        rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [float(r["energy_wh"]) for r in rows] == [1.5, 2.5, 1000.5, 12_345.5]
    wrong = [(r["energy_wh"], r["energy_kwh"]) for r in rows
             if r["energy_kwh"] != str((Decimal(r["energy_wh"]) / 1000).quantize(
                 Decimal("0.001"), ROUND_HALF_UP))]
    assert wrong == []


async def _raw_request(port: int, method: str, path: str, authorization: bytes
                       ) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the Authorization header's bytes as given (a client library
    would not send bytes that are no text): the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: 2\r\n".encode()
                     + b"Authorization: " + authorization + b"\r\n\r\n{}")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)     # until the server closes
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("token", [b"\xff\xfe", b"\xed\xa0\x80", b"abc\x80def"],
                         ids=["latin-1", "a surrogate in UTF-8", "a stray byte"])
async def test_a_bearer_token_that_is_no_utf_8_is_a_401_on_every_api_route(api, token, caplog):
    """Header bytes no UTF-8 reads (aiohttp keeps them as surrogate escapes): the token's
    fingerprint raised UnicodeEncodeError - a 500 and an ERROR with a traceback in the log for
    anyone, no token needed, on every route under /api, and no failed guess counted. Every
    route is read from the app's router, not from a list."""
    import logging

    server, _ = api
    from smartcharge.api.auth import AUTH, PUBLIC

    policy = server.app[AUTH].policy   # the public ones (the OpenAPI document, health) left out
    routes = sorted({(route.method, route.resource.canonical)
                     for route in server.app.router.routes()
                     if route.resource is not None and route.method != "HEAD"
                     and route.resource.canonical.startswith("/api/")
                     and policy.get((route.method, route.resource.canonical)) != PUBLIC})
    assert len(routes) >= 25
    path_values = {"station_id": "CP1", "transaction_id": "1", "event_id": "e"}
    wrong = []
    for method, path in routes:
        status, body = await _raw_request(server.port, method, path.format(**path_values),
                                          b"Bearer " + token)
        if status not in (401, 429) or b'"detail"' not in body:
            wrong.append((method, path, status, body[:80]))
    assert wrong == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- a register read coarser than the one before it ----------------------------------------
# A station that sends its Transaction.Begin register in Wh and its periodic samples in kWh
# with one decimal (valid: each value says its unit) reads 1234 Wh, then "1.2" kWh: 34 Wh lower,
# the same meter truncated. The chain read that step as a meter reset and counted the lower
# reading from zero - its whole 1200 Wh billed again (and counted live: the car's need met
# early) wherever the register is small (a new meter, a station counting per session).

async def _coarse_session(harness, t0, ref, values) -> object:
    from datetime import timedelta

    from ocpp.v201 import call

    from tests.conftest import ocpp_time
    from tests.v201_billing import sessions
    from tests.v201_fixtures import station201

    station = await station201(harness)
    for seq_no, (kind, minutes, value, unit, context) in enumerate(values):
        at = t0 + timedelta(minutes=minutes)
        meter = None if value is None else [{"timestamp": ocpp_time(at), "sampled_value": [{
            "value": value, "context": context, "measurand": "Energy.Active.Import.Register",
            "unit_of_measure": {"unit": unit}}]}]
        info = {"transaction_id": ref, **({"stopped_reason": "EVDisconnected"}
                                          if kind == "Ended" else {})}
        await station.send(call.TransactionEvent(
            event_type=kind, timestamp=ocpp_time(at), seq_no=seq_no, transaction_info=info,
            trigger_reason={"Started": "Authorized", "Updated": "MeterValuePeriodic",
                            "Ended": "EVCommunicationLost"}[kind],
            meter_value=meter, evse={"id": 1, "connector_id": 1},
            id_token={"id_token": "DRIVER-1", "type": "ISO14443"} if kind == "Started"
            else None))
    [session] = await sessions(harness)
    return session


async def test_a_coarser_sample_below_the_begin_register_is_no_meter_reset(harness, t0):
    """Begin 1234 Wh, then 1.2 and 4.5 kWh, an End without a register: the bill is the
    chain's 4500 - 1234 Wh, not 1200 + 3300."""
    session = await _coarse_session(harness, t0, "tx-coarse", [
        ("Started", 0, 1234, "Wh", "Transaction.Begin"),
        ("Updated", 15, 1.2, "kWh", "Sample.Periodic"),
        ("Updated", 30, 4.5, "kWh", "Sample.Periodic"),
        ("Ended", 45, None, None, None)])
    assert session.state == "stopped"
    assert session.energy_wh == 3266, (session.energy_wh, session.flags)
    assert "meter_reset" not in session.flags


async def test_an_end_register_read_coarser_than_the_begin_bills_nothing_twice(harness, t0):
    """Begin 1234 Wh, End 1.2 kWh (the car took less than the End's resolution): not a reset
    that bills the End's whole 1200 Wh."""
    session = await _coarse_session(harness, t0, "tx-short", [
        ("Started", 0, 1234, "Wh", "Transaction.Begin"),
        ("Ended", 2, 1.2, "kWh", "Transaction.End")])
    assert session.state == "stopped"
    assert session.energy_wh == 0, (session.energy_wh, session.flags)


def test_the_live_energy_reads_a_coarser_sample_as_the_bill_does(t0):
    """The controller's live energy (`LiveEnergy`, the same chain): 0 Wh after the coarser
    sample, 3266 Wh after 4.5 kWh - not 1200 and 4500."""
    from datetime import timedelta

    from smartcharge.metering import LiveEnergy

    live = LiveEnergy(1234.0, t0, 22_000.0)
    assert live.add(t0 + timedelta(minutes=15), 1200.0) == 0
    assert live.add(t0 + timedelta(minutes=30), 4500.0) == 3266


# --- a negative register ----------------------------------------------------------------------
# An import register is never below 0, yet the schemas allow it (1.6 meterStop is any integer,
# a 2.0.1 value any number) and firmware sends -1 for "not known". Read as a reset, it was
# counted from zero: -1 Wh on the bill - a negative energy, where docs/api.md promises never.

async def test_a_1_6_stop_register_of_minus_one_is_no_register(harness, t0):
    from datetime import timedelta

    from tests.v201_billing import sessions

    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 1_000, t0)).transaction_id
    await station.meter(1, tx_id, t0 + timedelta(minutes=20), 5_000)
    await station.stop_tx(tx_id, -1, t0 + timedelta(minutes=30))
    [session] = await sessions(harness)
    assert session.state == "stopped"
    assert session.energy_wh == 4_000, (session.energy_wh, session.flags)
    assert "no_stop_register" in session.flags


async def test_a_2_0_1_end_register_of_minus_one_bills_nothing_negative(harness, t0):
    session = await _coarse_session(harness, t0, "tx-minus", [
        ("Started", 0, 1234, "Wh", "Transaction.Begin"),
        ("Ended", 2, -1, "Wh", "Transaction.End")])
    assert session.energy_wh is None or session.energy_wh >= 0, (session.energy_wh,
                                                                 session.flags)


def test_the_live_energy_skips_a_negative_register(t0):
    from datetime import timedelta

    from smartcharge.metering import LiveEnergy

    live = LiveEnergy(1_000.0, t0, 22_000.0)
    assert live.add(t0 + timedelta(minutes=10), 2_000.0) == 1_000
    assert live.add(t0 + timedelta(minutes=20), -1.0) == 1_000
    assert live.add(t0 + timedelta(minutes=30), 3_000.0) == 2_000


async def test_an_evse_with_two_connectors_is_occupied_while_either_is(harness, t0):
    """A 2.0.1 EVSE may have more than one connector (CCS and CHAdeMO on one DC EVSE, valid:
    StatusNotification names evseId and connectorId). Its car on connector 2, connector 1
    still Available, reported after it (statuses after a reboot come in any order): the
    EVSE - the site's connector - read Available, the last status whatever its connector;
    the site takes an Available connector for one whose car has left (a session a reboot
    closed is over there, its room given to other cars)."""
    from datetime import timedelta

    from tests.v201_fixtures import station201

    station = await station201(harness)
    await station.status(1, "Occupied", t0, connector_id=2)
    await station.status(1, "Available", t0 + timedelta(seconds=1), connector_id=1)
    async with harness.api.get(harness.url("/api/stations/CP1")) as response:
        connectors = {c["connector_id"]: c["status"] for c in (await response.json())[
            "connectors"]}
    assert connectors[1] == "Occupied", connectors
    # and free again once no connector of it holds a car
    await station.status(1, "Available", t0 + timedelta(seconds=2), connector_id=2)
    async with harness.api.get(harness.url("/api/stations/CP1")) as response:
        connectors = {c["connector_id"]: c["status"] for c in (await response.json())[
            "connectors"]}
    assert connectors[1] == "Available", connectors


def test_live_energy_and_bill_agree_with_coarse_and_negative_registers():
    """The live energy (sample by sample, in any order) is the bill's chain, whatever mix of
    rises, coarser readings, resets and registers of -1 - and never negative."""
    from datetime import UTC, datetime, timedelta

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from smartcharge.metering import LiveEnergy, session_energy

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    steps = st.one_of(st.floats(0, 3_000), st.floats(-1_200, 0), st.just(-1e9),
                      st.sampled_from([-1.0, 0.0]))

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from([None, 0.0, 1_234.0, 50_000.0, -1.0]),
           st.lists(steps, min_size=1, max_size=8), st.randoms(use_true_random=False))
    def check(start_wh, moves, rnd):
        register, points = max(start_wh or 0.0, 500.0), []
        for i, move in enumerate(moves):
            if move == -1e9:
                value = 150.0                        # a reset
            elif move in (-1.0, 0.0) and rnd.random() < 0.5:
                value = -1.0                         # "not known"
            else:
                value = register + move
                register = max(register, value)
            points.append((t0 + timedelta(minutes=15 * (i + 1)), round(value, 1)))
        bill = session_energy(start_wh, t0, None, None, points, 22_000.0).energy_wh
        live, arrived = LiveEnergy(start_wh, t0, 22_000.0), points[:]
        rnd.shuffle(arrived)
        for at, wh in arrived:
            energy = live.add(at, wh)
        assert energy == bill
        assert bill is None or bill >= 0
    check()


@pytest.mark.parametrize("value", ["TRUE", " true", "True\n"])
async def test_smart_charging_turned_on_goes_out_as_ocpps_true(harness, value):
    """2.0.1's boolean is "true" or "false", nothing else (Part 2, data types). "TRUE" or
    " true" for SmartChargingCtrlr.Enabled was let through as turning it on and sent as
    written: a strict station rejects it (smart charging stays off), a lenient one may read
    anything but "true" as false - off, the station ignores every limit of the site. What
    goes out is "true"."""
    ws = await harness.booted_raw_socket(BOOT201, "CP2", protocols=("ocpp2.0.1",))
    request = asyncio.create_task(harness.api.post(
        harness.url("/api/stations/CP2/change-configuration"),
        json={"key": "SmartChargingCtrlr.Enabled", "value": value}))
    while (frame := json.loads((await ws.receive(timeout=5)).data))[2] != "SetVariables":
        await ws.send_str(json.dumps([4, frame[1], "NotSupported", "", {}]))
    item = frame[3]["setVariableData"][0]
    await ws.send_str(json.dumps([3, frame[1], {"setVariableResult": [{
        "attributeStatus": "Accepted", "component": item["component"],
        "variable": item["variable"]}]}]))
    response = await request
    assert response.status == 200, await response.text()
    assert item["attributeValue"] == "true", item


@pytest.mark.parametrize("version, path, body", [
    ("1.6", "remote-start", '{"id_tag": "\\ud800"}'),
    ("1.6", "change-configuration", '{"key": "A\\udc00", "value": "x"}'),
    ("2.0.1", "remote-start", '{"id_tag": "\\ud800"}'),
    ("2.0.1", "change-configuration", '{"key": "A.B", "value": "x\\udbff"}'),
    ("2.0.1", "remote-stop", '{"transaction_id": "\\ud800"}'),
], ids=["1.6-id-tag", "1.6-key", "2.0.1-id-token", "2.0.1-value", "2.0.1-transaction"])
async def test_a_command_with_a_lone_surrogate_is_a_422_and_nothing_is_sent(harness, version,
                                                                            path, body):
    """`"\\ud800"` is JSON's syntax but no Unicode text (RFC 8259 8.2): a station's frame with
    one gets the malformed message's CALLERROR here (tests/test_ocpp_errors.py). The API took
    it in a command's body and sent it on, so a strict station refused our frame as malformed
    (a 502 that says nothing of the client's mistake). A 422 now, before anything is sent."""
    station_id, boot, protocol = (("CP1", BOOT16, "ocpp1.6") if version == "1.6"
                                  else ("CP2", BOOT201, "ocpp2.0.1"))
    ws = await harness.booted_raw_socket(boot, station_id, protocols=(protocol,))
    sent = []

    async def station() -> None:
        async for message in ws:
            frame = json.loads(message.data)
            if frame[0] == 2:
                sent.append(frame[2])
                await ws.send_str(json.dumps([4, frame[1], "FormationViolation"
                                              if version == "1.6" else "FormatViolation",
                                              "not Unicode text", {}]))
    answering = asyncio.create_task(station())
    try:
        async with harness.api.post(harness.url(f"/api/stations/{station_id}/{path}"),
                                    data=body, headers={"Content-Type": "application/json"}
                                    ) as response:
            answer = await response.json()
            assert response.status == 422, answer
            assert "surrogate" in answer["detail"] or "Unicode" in answer["detail"], answer
    finally:
        answering.cancel()
    assert [action for action in sent if action not in (
        "GetConfiguration", "GetVariables", "GetBaseReport", "GetChargingProfiles")] == []
