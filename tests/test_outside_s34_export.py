"""Session 34's judge: the billing CSV as a CPO reconciles it with the stations' own records. A
2.0.1 station names its transactions itself (a transactionId of up to 36 characters, on its
receipts and in its logs), a 1.6 station may use an id of its own; the JSON list gave it
(`station_transaction_id`), the CSV - the export a CPO bills from - did not, so a disputed row
could not be matched to the station's record. Real server, real WebSockets, real `ocpp` 2.0.1
messages from the strict station, real SQLite."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from tests.conftest import PASSWORD
from tests.ocpp201_station import station201 as strict201
from tests.v201_billing import tx_event

# the station's own ids: a plain one, and one a spreadsheet would run as a formula
REFS = ("5f0c8a1e-34aa-4bde-9e51-0c2d7a1b9e01", "=1+1")


async def test_the_csv_names_each_session_s_station_transaction_id(controlled):
    """Failed first: no `station_transaction_id` column."""
    harness = controlled
    ws_url = harness.url("/ocpp").replace("http", "ws", 1)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    async with strict201(ws_url, "CP1", PASSWORD) as cp1:
        for evse, ref in enumerate(REFS, start=1):
            await cp1.call(tx_event("Started", ref, 0, t0, register_wh=1_000, evse=evse))
            await cp1.call(tx_event("Ended", ref, 1, t0 + timedelta(minutes=30),
                                    register_wh=3_000, evse=evse))
    async with harness.api.get(harness.url("/api/sessions.csv?station=CP1")) as answer:
        assert answer.status == 200
        rows = list(csv.DictReader(io.StringIO(await answer.text())))
    assert [(r["station_transaction_id"], r["energy_wh"]) for r in rows] == [
        (REFS[0], "2000.0"), ("'" + REFS[1], "2000.0")]    # the formula made text
    async with harness.api.get(harness.url("/api/sessions?station=CP1")) as answer:
        listed = await answer.json()
    assert [s["station_transaction_id"] for s in listed] == list(REFS)   # the same ids
