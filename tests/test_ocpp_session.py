"""Full sessions over real WebSockets and a real SQLite file: billed energy is the meter delta."""

from __future__ import annotations

from datetime import timedelta

from smartcharge.events import SessionStarted, SessionStopped


async def _session(harness, transaction_id):
    return await harness.store.run(lambda tx: tx.session(transaction_id))


async def test_full_session_bills_exactly_the_register_delta(harness, t0):
    station = await harness.station("CP1")
    started = await station.start_tx(1, 1_234_567, t0)
    assert started.id_tag_info["status"] == "Accepted"
    tx_id = started.transaction_id
    for minute, register in ((5, 1_235_400), (10, 1_236_350)):
        await station.meter(1, tx_id, t0 + timedelta(minutes=minute), register)
    await station.stop_tx(tx_id, 1_237_002, t0 + timedelta(minutes=15))
    row = await _session(harness, tx_id)
    assert row.state == "stopped"
    assert row.energy_wh == 1_237_002 - 1_234_567
    assert row.energy_method == "registers"
    kinds = [type(e) for e in harness.events]
    assert SessionStarted in kinds and SessionStopped in kinds
