"""A 1.6 StartTransaction that means the same as one already answered (connector, id tag,
start register, instant) is a retry of it - unless the station stopped that transaction by our
id (it had the answer) at that very instant: then the same start again is a new transaction - a
car that took nothing, stopped and started again within the second (a station stamping whole
seconds), or a station whose clock stands still. (A start re-sent after a later stop is still
a retry: tests/test_billing_property.py.)

Found by the session 25 audit: the second start was answered with the first, stopped
transaction's id; its StopTransaction became a `second_stop_for_transaction` orphan, never
billable - the 4 kWh the second car took were billed to nobody."""

from __future__ import annotations

from datetime import timedelta

from tests.v201_billing import sessions

MIN = timedelta(minutes=1)


async def test_the_same_start_after_its_stop_is_a_new_transaction(harness, t0):
    station = await harness.station("CP1")
    first = await station.start_tx(1, 1000, t0)
    retried = await station.start_tx(1, 1000, t0)      # our answer lost: the same again
    assert retried.transaction_id == first.transaction_id
    await station.stop_tx(first.transaction_id, 1000, t0, reason="EVDisconnected")
    second = await station.start_tx(1, 1000, t0)
    assert second.transaction_id != first.transaction_id
    await station.meter(1, second.transaction_id, t0 + 30 * MIN, 3000)
    await station.stop_tx(second.transaction_id, 5000, t0 + 59 * MIN)
    rows = {s.transaction_id: s for s in await sessions(harness)}
    assert [(s.state, s.energy_wh) for s in rows.values()] == [("stopped", 0.0),
                                                              ("stopped", 4000.0)]
