"""id tags are case-insensitive (OCPP 1.6: `CiString20Type`; 2.0.1: "IdToken is case
insensitive"): a card a reader spells in lower-case hex is the same card as the site file's.

Found by the session 25 audit: `driver-1` against the site file's `DRIVER-1` was answered
`Invalid` (1.6 Authorize and StartTransaction) and `Unknown` (2.0.1 Authorize and
TransactionEvent) - a strict station refuses or stops the driver's charge."""

from __future__ import annotations

from ocpp.v16 import call
from ocpp.v201 import call as call201

from tests.conftest import ID_TAG
from tests.v201_billing import tx_event
from tests.v201_fixtures import station201

OTHER_CASE = ID_TAG.lower()
assert OTHER_CASE != ID_TAG


async def test_1_6_accepts_an_id_tag_in_another_case(harness, t0):
    station = await harness.station("CP1")
    authorized = await station.call(call.Authorize(id_tag=OTHER_CASE), suppress=False)
    assert authorized.id_tag_info["status"] == "Accepted"
    started = await station.start_tx(1, 1000, t0, id_tag=OTHER_CASE)
    assert started.id_tag_info["status"] == "Accepted"


async def test_2_0_1_accepts_an_id_token_in_another_case(harness, t0):
    station = await station201(harness)
    authorized = await station.send(call201.Authorize(
        id_token={"id_token": OTHER_CASE, "type": "ISO14443"}))
    assert authorized.id_token_info["status"] == "Accepted"
    started = await station.send(tx_event("Started", "tx-C", 0, t0, register_wh=0,
                                          id_tag=OTHER_CASE))
    assert started.id_token_info["status"] == "Accepted"


async def test_another_tag_is_still_refused(harness):
    station = await harness.station("CP1")
    authorized = await station.call(call.Authorize(id_tag=ID_TAG + "X"), suppress=False)
    assert authorized.id_tag_info["status"] == "Invalid"
