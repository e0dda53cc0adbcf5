"""Session 38's judge: a 1.6 stop under an id we never gave, with a fleet card's tag, fitted the
other connector's open session as a meter reset - its register below that session's - where no
session's register rose to it (left open by session 37's judge).

Real: a twin station with a meter per connector (connector 1 near 15 000 Wh, connector 2 near
500 000) and one fleet card for every van of a depot. Connector 1's StartTransaction never
reached us (a 1.6 station drops a transaction message after its `TransactionMessageAttempts`,
e.g. while our store refused commits), so its stop comes under the station's own number. It
fits no session of ours by a rise. A meter that restarted after a session's latest reading can
show no more than the station could deliver since that reading, from zero: 18 000 Wh five
minutes after a reading is another meter, not a restart.

A real `smartcharge serve` subprocess on a real SQLite file, a station speaking OCPP-J frames
made by the `ocpp` library over a real WebSocket; the bill read from `/api/sessions.csv`."""

from __future__ import annotations

from ocpp.v16 import call

from tests.test_outside_s37_late_stop import answered, billed, boot, cp1_on_serve, stamp

FLEET_CARD = "DRIVER-1"


def register(connector_id: int, transaction_id: int, minutes: int, wh: int) -> call.MeterValues:
    return call.MeterValues(connector_id=connector_id, transaction_id=transaction_id,
                            meter_value=[{"timestamp": stamp(minutes), "sampled_value": [{
                                "value": str(wh), "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh"}]}])


async def test_an_unseen_transaction_s_stop_is_no_reset_of_the_other_meter(tmp_path):
    """Session 1 runs on connector 2 (500 000 -> 503 000 at minute 55). At minute 60 the stop
    of connector 1's transaction 4711, whose start never reached us, comes with the fleet
    card's tag and connector 1's register (18 000). Failed first: session 1 took it as its stop
    through a meter reset (18 000 below 503 000): stopped at minute 60 with 18 000, billed
    3 000 Wh (`meter_reset`), named 4711; its own stop (507 000) was then a
    `second_stop_for_transaction` orphan, not billable - 4 000 Wh delivered and billed to
    nobody. Now 4711 is an orphan and session 1 is billed its 7 000."""
    async with cp1_on_serve(tmp_path) as (server, cp1):
        await boot(cp1, "boot-1")
        first = (await answered(cp1, "start-1", call.StartTransaction(
            connector_id=2, id_tag=FLEET_CARD, meter_start=500_000,
            timestamp=stamp(0))))["transactionId"]
        await answered(cp1, "meter-1", register(2, first, 55, 503_000))
        await answered(cp1, "stop-4711", call.StopTransaction(
            meter_stop=18_000, timestamp=stamp(60), transaction_id=4711, id_tag=FLEET_CARD,
            reason="EVDisconnected"))
        await answered(cp1, "stop-1", call.StopTransaction(
            meter_stop=507_000, timestamp=stamp(90), transaction_id=first, id_tag=FLEET_CARD,
            reason="Local"))
        rows = await billed(server)
    by_id = {row["transaction_id"]: row for row in rows}
    assert (by_id["1"]["state"], by_id["1"]["energy_wh"], by_id["1"]["billable"],
            by_id["1"]["closed_by"]) == ("stopped", "7000.0", "true", "StopTransaction"), rows
    assert "reconciled_unknown_transaction_id" not in by_id["1"]["flags"], rows
    unseen = [row for row in rows if row["station_transaction_id"] == "4711"]
    assert [row["state"] for row in unseen] == ["orphan_stop"], rows
    billable_wh = sum(float(row["energy_wh"]) for row in rows if row["billable"] == "true")
    assert billable_wh == 7_000.0, rows


async def test_a_meter_restarted_after_the_latest_reading_still_fits(tmp_path):
    """The reset fit kept for what it is for: a station whose meter restarted (to 0) after
    session 1's latest reading and that lost our id sends the stop under -1 with the session's
    tag and a register it could reach from 0 since that reading (1 500 Wh in 10 minutes). It is
    session 1's stop, billed by the chain (3 000 before the restart + 1 500 after)."""
    async with cp1_on_serve(tmp_path) as (server, cp1):
        await boot(cp1, "boot-1")
        first = (await answered(cp1, "start-1", call.StartTransaction(
            connector_id=1, id_tag=FLEET_CARD, meter_start=500_000,
            timestamp=stamp(0))))["transactionId"]
        await answered(cp1, "meter-1", register(1, first, 50, 503_000))
        await answered(cp1, "stop-1", call.StopTransaction(
            meter_stop=1_500, timestamp=stamp(60), transaction_id=-1, id_tag=FLEET_CARD,
            reason="Local"))
        rows = await billed(server)
    assert [(row["transaction_id"], row["state"], row["energy_wh"], row["billable"])
            for row in rows] == [("1", "stopped", "4500.0", "true")], rows
    assert "reconciled_unknown_transaction_id" in rows[0]["flags"], rows
