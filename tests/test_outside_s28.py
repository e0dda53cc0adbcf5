"""Session 28's outside judge: a peer written elsewhere, at what sessions 21-27 did not walk
(docs/promises.md, "Audit, session 28 (judge)"). Real server, real WebSockets, real `ocpp`
messages, real SQLite."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

from tests.conftest import ocpp_time

MIN = timedelta(minutes=1)


async def _csv(harness, **query) -> list[dict]:
    params = {k: ocpp_time(v) for k, v in query.items()}
    async with harness.api.get(harness.url("/api/sessions.csv"), params=params) as answer:
        assert answer.status == 200, await answer.text()
        return list(csv.DictReader(io.StringIO(await answer.text())))


def _billed_wh(rows: list[dict]) -> Decimal:
    return sum((Decimal(r["energy_wh"]) for r in rows if r["billable"] == "true"), Decimal(0))


async def test_consecutive_billing_windows_bill_each_session_once(harness, t0):
    """The billing export by month, as docs/api.md shows it (`since`/`until`, "january.csv"):
    a session that runs over the windows' boundary, and one that stops at the boundary's very
    instant, were `billable` in both windows' exports - billed twice by an operator who bills
    every window's billable rows. The windows' billable rows together bill each session once,
    the whole export's the same."""
    station = await harness.station("CP1")
    boundary = t0 + 60 * MIN
    # across the boundary: 5 kWh; ends at the boundary's instant: 2 kWh; within each: 1 kWh
    spans = [(t0 + 30 * MIN, t0 + 90 * MIN, 5_000), (t0 + 40 * MIN, boundary, 2_000),
             (t0 + 5 * MIN, t0 + 20 * MIN, 1_000), (t0 + 100 * MIN, t0 + 110 * MIN, 1_000)]
    register = 100_000
    for n, (start, stop, used_wh) in enumerate(spans):
        connector = 1 + n % 2
        tx_id = (await station.start_tx(connector, register, start)).transaction_id
        register += used_wh
        await station.stop_tx(tx_id, register, stop)
    delivered = Decimal(sum(used for *_, used in spans))
    whole = await _csv(harness)
    assert _billed_wh(whole) == delivered
    first = await _csv(harness, since=t0 - 60 * MIN, until=boundary)
    second = await _csv(harness, since=boundary, until=t0 + 180 * MIN)
    assert _billed_wh(first) + _billed_wh(second) == delivered, (
        [(r["transaction_id"], r["energy_wh"], r["billable"]) for r in first],
        [(r["transaction_id"], r["energy_wh"], r["billable"]) for r in second])
