"""Session 37's judge: a 1.6 StopTransaction under a transaction id we never gave (-1 after a
reboot lost ours, or the station's own number) was matched to each connector's latest session
closed without its stop - however long ago, whatever began on that connector since. That old
session took the stop as its late one and was billed from its start register to this stop's:
every kWh of the sessions after it on that connector, each billed already, billed again.

Real `smartcharge serve` subprocesses on a real SQLite file (SIGKILLed at the exact moment by
tests/kill_point.py), a station speaking OCPP-J frames made by the `ocpp` library over a real
WebSocket; the bill is read from `/api/sessions.csv`, as a CPO reads it."""

from __future__ import annotations

import csv
import io
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.messages import MessageType
from ocpp.v16 import call

from tests.sim_fixtures import OPERATOR_TOKEN
from tests.test_kill_points import RawStation, Server

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
TAG = "DRIVER-1"


def stamp(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(transaction_id: int, minutes: int, wh: int) -> call.MeterValues:
    return call.MeterValues(connector_id=1, transaction_id=transaction_id, meter_value=[{
        "timestamp": stamp(minutes), "sampled_value": [{
            "value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}])


@asynccontextmanager
async def cp1_on_serve(tmp_path, protocol: str = "ocpp1.6", kill_point: str | None = None):
    """A real `serve` on its own SQLite file (SIGKILLed at `kill_point` when one is named,
    tests/kill_point.py) and station CP1 connected to it over `protocol`; the server is
    stopped however the test ends."""
    server = Server(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            cp1 = RawStation(http, server, "CP1", protocol)
            server.start(kill_point)
            await cp1.connect()
            yield server, cp1
    finally:
        server.stop()


async def answered(station: RawStation, unique_id: str, request) -> dict:
    frame = await station.call(unique_id, request)
    assert frame is not None and frame[0] == MessageType.CallResult, frame
    return frame[2]


async def boot(station: RawStation, unique_id: str) -> None:
    answer = await answered(station, unique_id, call.BootNotification(
        charge_point_vendor="Raw", charge_point_model="R"))
    assert answer["status"] == "Accepted", answer


async def an_old_session_closed_at_a_reboot(cp1: RawStation) -> None:
    """Session 1: 10 000 -> 12 000 Wh in its samples, its stop lost: the station's reboot
    closes it (2 000 Wh, billed); then session 2 on the same connector begins at 12 500."""
    await boot(cp1, "boot-1")
    first = (await answered(cp1, "start-1", call.StartTransaction(
        connector_id=1, id_tag=TAG, meter_start=10_000, timestamp=stamp(0))))["transactionId"]
    await answered(cp1, "meter-1", register(first, 10, 12_000))
    await boot(cp1, "boot-2")                  # rebooted: its stop never comes


async def billed(server: Server) -> list[dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) \
            as http:
        async with http.get(f"http://127.0.0.1:{server.port}/api/sessions.csv") as response:
            assert response.status == 200
            return list(csv.DictReader(io.StringIO(await response.text())))


def assert_each_session_billed_its_own(rows: list[dict], expected_wh: dict[str, str]) -> None:
    by_id = {row["transaction_id"]: row for row in rows}
    assert {i: by_id[i]["energy_wh"] for i in expected_wh} == expected_wh, rows
    billable_wh = sum(float(row["energy_wh"]) for row in rows if row["billable"] == "true")
    assert billable_wh == sum(float(wh) for wh in expected_wh.values()), rows
    # the old session is still the one its station's reboot closed, no stop taken for it
    assert (by_id["1"]["state"], by_id["1"]["closed_by"]) == ("closed_implicitly", "Reboot"), \
        rows
    assert "late_stop" not in by_id["1"]["flags"], rows


async def test_a_stop_re_sent_under_minus_1_after_a_kill_is_not_billed_again(tmp_path):
    """Session 2's stop (15 000 Wh) is committed and we die before its answer; the station
    reboots meanwhile, has lost our id and re-sends it under -1 without its optional idTag -
    the same stop. Failed first: session 1 took it as its late stop, billed 5 000 Wh
    (10 000 -> 15 000) beside session 2's 2 500: 7 500 Wh billable for 4 500 delivered."""
    async with cp1_on_serve(tmp_path, kill_point="answer:StopTransaction") as (server, cp1):
        await an_old_session_closed_at_a_reboot(cp1)
        second = (await answered(cp1, "start-2", call.StartTransaction(
            connector_id=1, id_tag=TAG, meter_start=12_500,
            timestamp=stamp(30))))["transactionId"]
        await answered(cp1, "meter-2", register(second, 40, 14_000))
        assert await cp1.call("stop-2", call.StopTransaction(
            meter_stop=15_000, timestamp=stamp(60), transaction_id=second, id_tag=TAG,
            reason="Local")) is None
        assert server.killed_at_its_point()

        server.start()
        await cp1.connect()
        await boot(cp1, "boot-3")
        await answered(cp1, "stop-2-again", call.StopTransaction(
            meter_stop=15_000, timestamp=stamp(60), transaction_id=-1, reason="Local"))
        rows = await billed(server)
    assert_each_session_billed_its_own(rows, {"1": "2000.0", "2": "2500.0"})


async def test_a_stop_of_an_unseen_transaction_is_not_an_old_session_s_late_stop(tmp_path):
    """After session 2 (12 500 -> 15 000 Wh, stopped under our id) a stop comes for a
    transaction whose start never reached us (the station's own number 4711, no idTag):
    not session 1's - session 2 began on that connector between them. Failed first: session 1
    billed 10 000 -> 18 000 (8 000 Wh) beside session 2's 2 500."""
    async with cp1_on_serve(tmp_path) as (server, cp1):
        await an_old_session_closed_at_a_reboot(cp1)
        second = (await answered(cp1, "start-2", call.StartTransaction(
            connector_id=1, id_tag=TAG, meter_start=12_500,
            timestamp=stamp(30))))["transactionId"]
        await answered(cp1, "stop-2", call.StopTransaction(
            meter_stop=15_000, timestamp=stamp(60), transaction_id=second, id_tag=TAG,
            reason="Local"))
        await answered(cp1, "stop-4711", call.StopTransaction(
            meter_stop=18_000, timestamp=stamp(90), transaction_id=4711, reason="Local"))
        rows = await billed(server)
    assert_each_session_billed_its_own(rows, {"1": "2000.0", "2": "2500.0"})
    unseen = [row for row in rows if row["station_transaction_id"] == "4711"]
    assert [(r["state"], r["billable"]) for r in unseen] == [("orphan_stop", "false")], rows


async def test_a_fleet_card_s_stop_is_not_taken_by_the_other_connector_s_meter(tmp_path):
    """A twin station, one fleet card, a meter per connector (connector 1 near 15 000 Wh,
    connector 2 near 500 000). Session 1 on connector 1 (15 000 -> 17 000 in its samples) is
    closed by the station's reboot, which lost our id: its stop comes later under -1 with the
    card's tag (18 000). Session 2 began on connector 2 meanwhile (500 000). Failed first: the
    stop fitted session 2 as a meter reset (its register far below 500 000), session 2 was
    stopped with it and billed 0 Wh, its own stop (507 000) became an orphan
    `second_stop_for_transaction`, session 1 kept 2 000 Wh - 8 000 Wh delivered and billed to
    nobody. Session 1's register rose to it: it is session 1's late stop."""
    async with cp1_on_serve(tmp_path) as (server, cp1):
        await boot(cp1, "boot-1")
        first = (await answered(cp1, "start-1", call.StartTransaction(
            connector_id=1, id_tag=TAG, meter_start=15_000,
            timestamp=stamp(0))))["transactionId"]
        await answered(cp1, "meter-1", register(first, 10, 17_000))
        await boot(cp1, "boot-2")
        second = (await answered(cp1, "start-2", call.StartTransaction(
            connector_id=2, id_tag=TAG, meter_start=500_000,
            timestamp=stamp(15))))["transactionId"]
        await answered(cp1, "stop-1", call.StopTransaction(
            meter_stop=18_000, timestamp=stamp(20), transaction_id=-1, id_tag=TAG,
            reason="EVDisconnected"))
        await answered(cp1, "stop-2", call.StopTransaction(
            meter_stop=507_000, timestamp=stamp(40), transaction_id=second, id_tag=TAG,
            reason="Local"))
        rows = await billed(server)
    by_id = {row["transaction_id"]: row for row in rows}
    assert [(i, by_id[i]["state"], by_id[i]["energy_wh"], by_id[i]["billable"])
            for i in ("1", "2")] == [("1", "stopped", "3000.0", "true"),
                                     ("2", "stopped", "7000.0", "true")], rows
    assert "late_stop" in by_id["1"]["flags"], rows
    assert len(rows) == 2, rows          # no stop left over as an orphan
