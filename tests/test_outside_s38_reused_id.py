"""Session 38's judge: a 2.0.1 station whose firmware counts its transactionIds from 1 again
after a reboot (the ledger knows such firmware: `station_reused_transaction_id`) and whose new
transaction's Started never reached us - a station discards a TransactionEvent after its
`MessageAttemptsTransactionEvent` (our store refusing commits answers InternalError), or its
queue lost it at the power loss. Its first event we get is an Updated under the old
transaction's id, stamped after that transaction's end, numbered (`seqNo`) as the old one's
events were: a counter started again.

A real `smartcharge serve` subprocess on a real SQLite file, a station speaking OCPP-J frames
made by the `ocpp` library over a real WebSocket; the bill read from `/api/sessions.csv`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ocpp.v201 import call

from tests.test_outside_s37_late_stop import answered, billed, cp1_on_serve
from tests.v201_billing import tx_event

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
BOOT = call.BootNotification(reason="PowerUp", charging_station={
    "vendor_name": "Raw", "model": "R"})


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def billable_wh(rows: list[dict]) -> float:
    return sum(float(row["energy_wh"]) for row in rows if row["billable"] == "true")


async def test_a_reused_id_s_transaction_without_its_started_is_billed(tmp_path):
    """Transaction "1" (10 000 -> 12 000 Wh, Started, Updated, Ended: seqNo 0-2); the station
    reboots and its new transaction "1" (13 000 -> 15 000) reaches us from its Updated (seqNo
    1). Failed first: the Updated and the Ended went to the old, stopped session (only a
    revision of its bill) - the new transaction was on no row, 2 000 Wh billed to nobody, and
    never a session the site planned. Now it is its own session, billed from its registers."""
    async with cp1_on_serve(tmp_path, "ocpp2.0.1") as (server, cp1):
        await answered(cp1, "boot-1", BOOT)
        await answered(cp1, "started", tx_event("Started", "1", 0, at(0), register_wh=10_000))
        await answered(cp1, "updated", tx_event("Updated", "1", 1, at(10), register_wh=11_000))
        await answered(cp1, "ended", tx_event("Ended", "1", 2, at(20), register_wh=12_000))
        await answered(cp1, "boot-2", BOOT)
        await answered(cp1, "updated-2", tx_event("Updated", "1", 1, at(70),
                                                  register_wh=13_000))
        await answered(cp1, "ended-2", tx_event("Ended", "1", 2, at(90), register_wh=15_000))
        rows = await billed(server)
    assert [(row["transaction_id"], row["state"], row["energy_wh"], row["billable"])
            for row in rows] == [("1", "stopped", "2000.0", "true"),
                                 ("2", "stopped", "2000.0", "true")], rows
    assert "station_reused_transaction_id" in rows[1]["flags"], rows
    assert "started_event_missing" in rows[1]["flags"], rows
    assert [row["station_transaction_id"] for row in rows] == ["1", "1"], rows
    assert billable_wh(rows) == 4_000.0, rows


async def test_a_reused_id_does_not_reopen_the_session_a_reboot_closed(tmp_path):
    """The old transaction's Ended lost too: the reboot closed it (10 000 -> 11 000 in its
    registers). The new transaction "1" under the same id, its Started lost, on the other EVSE
    with another driver, numbered from 1 again (503 000 -> 504 000). Failed first: its Updated
    and Ended went to the old session (connector 1, the old driver's tag), stopped with the
    other EVSE's register (`implausible_jump`) and billed 2 000 Wh - its own 1 000 and the new
    driver's 1 000 on the old driver's bill; the new driver's charge never a session. Now the
    old session stays closed by the reboot and the new one is its own."""
    async with cp1_on_serve(tmp_path, "ocpp2.0.1") as (server, cp1):
        await answered(cp1, "boot-1", BOOT)
        await answered(cp1, "started", tx_event("Started", "1", 0, at(0), register_wh=10_000))
        await answered(cp1, "updated", tx_event("Updated", "1", 1, at(10), register_wh=11_000))
        await answered(cp1, "boot-2", BOOT)
        await answered(cp1, "updated-2", tx_event("Updated", "1", 1, datetime.now(UTC),
                                                  register_wh=503_000, evse=2,
                                                  id_tag="DRIVER-2"))
        await answered(cp1, "ended-2", tx_event(
            "Ended", "1", 2, datetime.now(UTC) + timedelta(minutes=2), register_wh=504_000,
            evse=2, id_tag="DRIVER-2"))
        rows = await billed(server)
    by_id = {row["transaction_id"]: row for row in rows}
    assert (by_id["1"]["state"], by_id["1"]["closed_by"], by_id["1"]["energy_wh"],
            by_id["1"]["connector_id"]) == ("closed_implicitly", "Reboot", "1000.0", "1"), rows
    assert (by_id["2"]["state"], by_id["2"]["energy_wh"], by_id["2"]["connector_id"],
            by_id["2"]["id_tag"]) == ("stopped", "1000.0", "2", "DRIVER-2"), rows
    assert billable_wh(rows) == 2_000.0, rows


async def test_a_late_event_of_the_old_transaction_stays_with_it(tmp_path):
    """A control: the old transaction's own Updated (seqNo 1, stamped before its Ended),
    delivered from the station's queue after the reboot, is still the old session's - passes
    before and after the change."""
    async with cp1_on_serve(tmp_path, "ocpp2.0.1") as (server, cp1):
        await answered(cp1, "boot-1", BOOT)
        await answered(cp1, "started", tx_event("Started", "1", 0, at(0), register_wh=10_000))
        await answered(cp1, "ended", tx_event("Ended", "1", 2, at(20), register_wh=12_000))
        await answered(cp1, "boot-2", BOOT)
        await answered(cp1, "updated", tx_event("Updated", "1", 1, at(10), register_wh=11_000,
                                                offline=True))
        rows = await billed(server)
    assert [(row["transaction_id"], row["state"], row["energy_wh"], row["billable"])
            for row in rows] == [("1", "stopped", "2000.0", "true")], rows
    assert "seq_gap" not in rows[0]["flags"], rows
