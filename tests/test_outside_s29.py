"""Session 29's outside judge: a peer written elsewhere, at what sessions 21-28 did not walk
(docs/promises.md, "Audit, session 29 (judge)"). Real server, real WebSockets, real `ocpp`
messages, real SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import ID_TAG, ocpp_time

MIN = timedelta(minutes=1)


@pytest.mark.parametrize("resent_tag", [None, "OTHER-77"], ids=["no-tag", "another-tag"])
async def test_a_1_6_stop_re_sent_without_its_id_tag_is_the_same_stop(harness, t0, resent_tag):
    """A StopTransaction's idTag is optional (1.6: "contains the identifier which requested to
    stop the charging"): a station that re-sends its queued stop after a reboot from what it
    kept - without the tag, or with the tag of whoever it believes ended it - under our
    transaction id, with the same meterStop at the same instant (its milliseconds cut), sent
    the same stop. It made an `orphan_stop` row flagged `second_stop_for_transaction` (a
    session in the list and the CSV, a SessionStopped event) for a stop already billed. The
    transaction id, the stop register and the instant say it is the same stop: answered the
    same, one row."""
    from ocpp.v16 import call

    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id
    await station.meter(1, tx_id, t0 + 10 * MIN, 12_000)
    end = t0 + 20 * MIN + timedelta(milliseconds=250)
    await station.stop_tx(tx_id, 14_000, end)
    stopped_events = len(harness.events)
    await station.call(call.StopTransaction(
        meter_stop=14_000, timestamp=ocpp_time(end.replace(microsecond=0)),
        transaction_id=tx_id, reason="Reboot", id_tag=resent_tag), suppress=False)
    rows = await harness.store.run(lambda tx: tx.sessions())
    assert [(r.transaction_id, r.state, r.energy_wh) for r in rows] == [
        (tx_id, "stopped", 4_000)], [(r.state, r.flags) for r in rows]
    assert len(harness.events) == stopped_events, harness.events[stopped_events:]


async def test_a_1_6_second_stop_that_differs_is_still_kept_for_review(harness, t0):
    """The rule above is the same stop only: a second stop of a stopped transaction with
    another register is still a row for review (`second_stop_for_transaction`), never billed."""
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 10_000, t0)).transaction_id
    await station.stop_tx(tx_id, 14_000, t0 + 20 * MIN)
    await station.stop_tx(tx_id, 15_000, t0 + 20 * MIN)
    rows = await harness.store.run(lambda tx: tx.sessions())
    assert [(r.state, r.energy_wh) for r in rows][0] == ("stopped", 4_000)
    assert [r.state for r in rows] == ["stopped", "orphan_stop"]
    assert "second_stop_for_transaction" in rows[1].flags
