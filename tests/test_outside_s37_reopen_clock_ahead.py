"""Session 37's judge: a session a station's reboot closed is open again when the station's next
message shows it still running - a reading stamped after the reboot. The stamp is the station's
clock, the reboot's moment ours: a station whose clock runs 5 minutes ahead (it said so in
every stamp of its own before) delivers, after its reboot, the sample it measured just before
it from its queue - stamped 5 minutes "after" the reboot on our clock. The session was opened
again: a car planned (22 kW of the site held for it) on a connector whose transaction the
reboot had ended, and its bill left open until the connector's next session.

A real `smartcharge serve` on a real SQLite file, a station speaking OCPP-J frames made by the
`ocpp` library over a real WebSocket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
from ocpp.messages import MessageType
from ocpp.v16 import call

from tests.hang_budget import hang_budget_s
from tests.sim_fixtures import OPERATOR_TOKEN
from tests.test_kill_points import RawStation, Server
from tests.test_outside_s37_late_stop import TAG, answered, boot, cp1_on_serve

AHEAD = timedelta(minutes=5)
# from the station's last sample to its BootNotification: a reboot takes a while (the
# stamps' offset is known less the messages' transit - seconds on a loaded test machine)
REBOOT_TAKES = timedelta(seconds=60)


def station_clock(moment: datetime) -> str:
    return (moment + AHEAD).strftime("%Y-%m-%dT%H:%M:%SZ")


def sample(transaction_id: int, measured: datetime, wh: int) -> call.MeterValues:
    return call.MeterValues(connector_id=1, transaction_id=transaction_id, meter_value=[{
        "timestamp": station_clock(measured), "sampled_value": [{
            "value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}])


async def status(cp1: RawStation, unique_id: str, state: str) -> None:
    await answered(cp1, unique_id, call.StatusNotification(
        connector_id=1, error_code="NoError", status=state,
        timestamp=station_clock(datetime.now(UTC))))


async def sessions_and_site(server: Server) -> tuple[list[dict], dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) \
            as http:
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/api/sessions") as listed, \
                http.get(f"{base}/api/site") as site:
            return await listed.json(), await site.json()


async def test_a_queued_sample_from_before_the_reboot_does_not_reopen_the_session(tmp_path):
    """Failed first: the session `open` again (`reopened_after_boot`) and planned on CP1/1."""
    async with cp1_on_serve(tmp_path) as (server, cp1):
        await boot(cp1, "boot-1")
        await status(cp1, "status-1", "Preparing")
        started = datetime.now(UTC) - REBOOT_TAKES * 3
        transaction_id = (await answered(cp1, "start", call.StartTransaction(
            connector_id=1, id_tag=TAG, meter_start=10_000,
            timestamp=station_clock(started))))["transactionId"]
        await status(cp1, "status-2", "Charging")
        await answered(cp1, "meter-1", sample(transaction_id, started, 10_000))
        # its last sample, measured before the reboot and not sent before it
        measured = datetime.now(UTC) - REBOOT_TAKES
        await boot(cp1, "boot-2")           # rebooted: the transaction is over
        await answered(cp1, "meter-queued", sample(transaction_id, measured, 10_050))
        listed, site = await sessions_and_site(server)
    assert [(s["transaction_id"], s["state"], s["closed_by"]) for s in listed] == [
        (transaction_id, "closed_implicitly", "Reboot")], listed
    assert site["sessions"] == [], site["sessions"]


async def test_a_sample_after_a_boot_that_was_no_reboot_still_reopens_it(tmp_path):
    """The rule's reason stays: a station that sends BootNotification on a reconnect without
    rebooting goes on charging - its next sample, measured after the boot on its clock
    (5 minutes ahead, as before), opens the session again and the site plans it."""
    async with cp1_on_serve(tmp_path) as (server, cp1):
        await boot(cp1, "boot-1")
        await status(cp1, "status-1", "Preparing")
        started = datetime.now(UTC)
        transaction_id = (await answered(cp1, "start", call.StartTransaction(
            connector_id=1, id_tag=TAG, meter_start=10_000,
            timestamp=station_clock(started))))["transactionId"]
        await status(cp1, "status-2", "Charging")
        await boot(cp1, "boot-2")           # no reboot: the car charges on
        after = datetime.now(UTC) + timedelta(seconds=2)   # measured after the boot
        frame = await cp1.call("meter-after", sample(transaction_id, after, 10_050))
        assert frame is not None and frame[0] == MessageType.CallResult, frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hang_budget_s(10)
        while True:      # the site hears of it after the answer
            listed, site = await sessions_and_site(server)
            if site["sessions"] or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
    assert [(s["transaction_id"], s["state"]) for s in listed] == [
        (transaction_id, "open")], listed
    assert [s["session_id"] for s in site["sessions"]] == [transaction_id], site["sessions"]


async def test_a_201_queued_updated_from_before_the_reboot_does_not_reopen_it(tmp_path):
    """The same over OCPP 2.0.1: a station 5 minutes ahead, its transaction's Updated measured
    just before its reboot delivered from its queue after it (`offline`). Failed first: the
    session `open` again."""
    from ocpp.v201 import call as call201

    from tests.v201_billing import tx_event

    async with cp1_on_serve(tmp_path, "ocpp2.0.1") as (server, cp1):
        boot201 = call201.BootNotification(reason="PowerUp", charging_station={
            "vendor_name": "Raw", "model": "R"})
        await answered(cp1, "boot-1", boot201)
        for n, state in enumerate(("Occupied", "Occupied")):
            await answered(cp1, f"status-{n}", call201.StatusNotification(
                timestamp=station_clock(datetime.now(UTC)), connector_status=state,
                evse_id=1, connector_id=1))
        started = datetime.now(UTC) + AHEAD - REBOOT_TAKES * 3
        await answered(cp1, "started", tx_event("Started", "T-1", 0, started,
                                                register_wh=10_000))
        measured = datetime.now(UTC) + AHEAD - REBOOT_TAKES
        await answered(cp1, "boot-2", call201.BootNotification(
            reason="PowerUp", charging_station={"vendor_name": "Raw", "model": "R"}))
        await answered(cp1, "updated", tx_event("Updated", "T-1", 1, measured,
                                                register_wh=10_050, offline=True))
        listed, site = await sessions_and_site(server)
    assert [(s["state"], s["closed_by"]) for s in listed] == [
        ("closed_implicitly", "Reboot")], listed
    assert site["sessions"] == [], site["sessions"]
