"""The idToken types a 2.0.1 station starts transactions with, answered by a strict station's
rules (StopTxOnInvalidId: any status but Accepted stops the transaction).

`NoAuthorization` (OCPP 2.0.1 IdTokenEnumType: "no authorization possible", a start button or a
key; the idToken is left empty) cannot be authorized by anyone: answering it `Unknown` stopped
every session of a free-vend station at its first TransactionEvent. It is Accepted. Every other
type keeps the id-tag rules (the site file's tags, then the store's)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.conftest import ID_TAG
from tests.v201_billing import sessions, tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)


async def _started(station, ref: str, at, id_token: dict):
    event = replace(tx_event("Started", ref, 0, at, register_wh=1000, id_tag=None),
                    id_token=id_token)
    return (await station.send(event)).id_token_info


async def test_a_free_vend_start_is_accepted_and_billed(harness, t0):
    station = await station201(harness)
    info = await _started(station, "nv-1", t0, {"id_token": "", "type": "NoAuthorization"})
    assert info == {"status": "Accepted"}
    answer = await station.send(replace(tx_event("Ended", "nv-1", 1, t0 + 30 * MIN,
                                                 register_wh=4000, id_tag=None),
                                        id_token={"id_token": "", "type": "NoAuthorization"}))
    assert answer.id_token_info == {"status": "Accepted"}
    [session] = await sessions(harness)
    assert (session.state, session.energy_wh, session.id_tag) == ("stopped", 3000, "")


async def test_other_types_keep_the_id_tag_rules(harness, t0):
    station = await station201(harness)
    for n, kind in enumerate(("Central", "KeyCode", "eMAID", "MacAddress", "Local",
                              "ISO15693")):
        at = t0 + n * MIN
        assert await _started(station, f"u-{n}", at, {"id_token": "NOT-KNOWN", "type": kind}) \
            == {"status": "Unknown"}, kind
        assert await _started(station, f"k-{n}", at, {"id_token": ID_TAG, "type": kind}) \
            == {"status": "Accepted"}, kind
