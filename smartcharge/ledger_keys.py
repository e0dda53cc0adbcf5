"""Idempotency keys for billing messages: what a message means, not how it is written.

A station re-sends a message whose answer it did not get, and may re-word it: other sample order,
kWh instead of Wh, another way to write the same instant, other transactionData. The ledger
remembers each message under these keys, so a re-sent one is answered the same and changes
nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

from smartcharge.metering import Reading
from smartcharge.store import db_time


def start_key(connector_id: int, id_tag: str, meter_start_wh: float,
              timestamp: datetime) -> str:
    """A StartTransaction is the same one when the connector, tag, register and instant are."""
    return _digest("start", connector_id, id_tag, _wh(meter_start_wh), db_time(timestamp))


def stop_key(station_tx_id: int, meter_stop_wh: float, timestamp: datetime,
             id_tag: str | None) -> str:
    """A StopTransaction is the same one when the id, stop register, instant and tag are (two
    connectors may stop under id -1 at one instant with equal registers); its transactionData
    is evidence, not identity (stations re-word it on retries)."""
    return _digest("stop", station_tx_id, _wh(meter_stop_wh), db_time(timestamp), id_tag)


def meter_key(connector_id: int, station_tx_id: int | None,
              readings: Sequence[Reading]) -> str:
    """A MeterValues is the same one when it holds the same set of values (in SI units, at the
    same instants), whatever their order and wording."""
    return _digest("meter", connector_id, station_tx_id, _values(readings))


def transaction_event_key(station_tx_ref: str, event_type: str, seq_no: int,
                          timestamp: datetime, id_tag: str | None,
                          readings: Sequence[Reading]) -> str:
    """An OCPP 2.0.1 TransactionEvent is the same one when its transaction, type, seqNo,
    instant, idToken and set of values are (however written: other order, kWh for Wh, another
    way to write the instant); the triggerReason and `offline` describe it, they are not it."""
    return _digest("tx-event", station_tx_ref, event_type, seq_no, db_time(timestamp), id_tag,
                   _values(readings))


def _values(readings: Sequence[Reading]) -> list:
    """The set of values, in SI units at their instants, in a canonical order. One time text
    per timestamp: a MeterValue's sampled values share theirs (the writer thread makes these
    while the event loop waits for the GIL, issue 10)."""
    values, last, stamp = set(), None, None
    for r in readings:
        if r.timestamp is not last:
            last, stamp = r.timestamp, db_time(r.timestamp)
        values.add((stamp, r.measurand, r.phase, r.location, r.context,
                    _wh(r.value_si) if r.value_si is not None else f"{r.format}:{r.value_text}"))
    return sorted(values, key=repr)


def _wh(value: float) -> float:
    return round(float(value), 3)   # 11.9 kWh * 1000 is 11900.000000000002


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
