"""Everything a strict station of either version may send, with the fewest fields and with every
field (customData too), as the `ocpp` library's schemas allow: each gets a CALLRESULT its own
schema accepts, or NotSupported for the few a central system need not do (certificates), and
the connection goes on."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import HEARTBEAT_FRAME
from tests.ocpp_payloads import STATION_ACTIONS, answer_problems, instance, request_schema

BOOTS = {"1.6": [2, "boot", "BootNotification", {"chargePointVendor": "V",
                                                 "chargePointModel": "M"}],
         "2.0.1": [2, "boot", "BootNotification", {"reason": "PowerUp", "chargingStation": {
             "vendorName": "V", "model": "M"}}]}
PROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
# we run no certificate authority: the spec's CALLERROR for a known action we do not do
NOT_SUPPORTED = {"SignCertificate", "Get15118EVCertificate", "GetCertificateStatus"}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("edge", [None, "high", "low"])
async def test_every_station_message_gets_a_valid_answer(harness, version, edge, caplog):
    """`edge`: every field at an end of what its schema allows (`ocpp_payloads.instance`)."""
    ws = await harness.booted_raw_socket(BOOTS[version], protocols=(PROTOCOLS[version],))
    wrong = []
    for full in (False, True) if edge is None else (True,):
        for action in STATION_ACTIONS[version]:
            payload = instance(request_schema(action, version), full=full, edge=edge)
            unique_id = f"{action}-{'full' if full else 'min'}-{edge}"
            answer = await harness.raw_call(ws, [2, unique_id, action, payload])
            if action in NOT_SUPPORTED:
                ok = answer[:3] == [4, unique_id, "NotSupported"]
            else:
                ok = answer[:2] == [3, unique_id] and not answer_problems(action, version,
                                                                         answer[2])
            if not ok:
                wrong.append((unique_id, answer))
    assert wrong == []
    assert (await harness.raw_call(ws, HEARTBEAT_FRAME))[:2] == [3, "hb-1"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
