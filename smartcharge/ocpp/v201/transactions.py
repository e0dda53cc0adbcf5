"""OCPP 2.0.1 transactions (block E): TransactionEvent into the ledger (`ledger_events.py`), answered
after the commit, then the same domain events as 1.6 (SessionStarted, MeterSampled,
SessionStopped) with our integer transaction id, so the site needs no change.

The station makes the transaction id (text, at most 36 characters); our session keeps its
integer `transaction_id` and stores the station's as `station_tx_ref`.
`station_transaction_id(ours)` gives the station's back (for a TxProfile or a
RequestStopTransaction; from a link: `station_transaction(link, ours)`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from smartcharge.clock import parse_ocpp_time
from smartcharge.events import ChargingStateChanged, SessionStarted, SessionStopped
from smartcharge.ledger_events import (
    BEGIN,
    EventOutcome,
    TransactionEventIn,
    transaction_event,
)
from smartcharge.metering import billed_registers
from smartcharge.ocpp.sampled import samples_to_events
from smartcharge.ocpp.v201.meter import parse_meter_values
from smartcharge.store import from_db_time
from smartcharge.store_ops import StoreOp

log = logging.getLogger(__name__)


async def station_transaction(link: Any, transaction_id: int) -> str | None:
    """The station's own transactionId of our session, asked of the adapter behind `link` (the
    station's live connection); None: not known there (or no 2.0.1 adapter)."""
    lookup = getattr(getattr(link, "adapter", None), "station_transaction_id", None)
    return None if lookup is None else await lookup(transaction_id)


class TransactionHandlers:
    """Mixin of the 2.0.1 adapter (needs `self._ctx`, `self.id`, `self._max_power_w`,
    `self.token_status`, `self.publish_closed`, `self.offset_at_boot_s`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tx_refs: dict[int, str] = {}    # our transaction id -> the station's

    async def station_transaction_id(self, transaction_id: int) -> str | None:
        """The station's own transactionId of our session `transaction_id` (None: not one of
        this station's 2.0.1 transactions)."""
        refs = self._tx_refs
        if transaction_id not in refs:
            session = await self._ctx.store.run(StoreOp("session", transaction_id))
            if session is None or session.station_id != self.id \
                    or session.station_tx_ref is None:
                return None
            refs[transaction_id] = session.station_tx_ref
        # "" is valid for the schema (no minLength) but no TxProfile can name it (K01.FR.03):
        # as unknown, the plan goes out as the EVSE's default
        return refs[transaction_id] or None

    @on(Action.transaction_event)
    async def on_transaction_event(self, event_type: str, timestamp: str, trigger_reason: str,
                                   seq_no: int, transaction_info: dict, **optional: Any
                                   ) -> call_result.TransactionEvent:
        now = self._ctx.clock.now()
        id_token = optional.get("id_token")
        answer = {}
        if id_token is not None:
            # a queued event's token: granted as of when the station says it happened too
            answer["idTokenInfo"] = {"status": await self.token_status(
                id_token, transaction_info["transaction_id"], parse_ocpp_time(timestamp))}
        event = TransactionEventIn(
            station_tx_ref=transaction_info["transaction_id"], event_type=event_type,
            seq_no=seq_no, timestamp=parse_ocpp_time(timestamp), trigger_reason=trigger_reason,
            offline=bool(optional.get("offline", False)),
            connector_id=(optional.get("evse") or {}).get("id"),   # the EVSE is our connector
            id_tag=id_token["id_token"] if id_token else None,
            stopped_reason=transaction_info.get("stopped_reason"),
            readings=parse_meter_values(optional.get("meter_value") or []),
            payload=snake_to_camel_case({"eventType": event_type, "timestamp": timestamp,
                                         "triggerReason": trigger_reason, "seqNo": seq_no,
                                         "transactionInfo": transaction_info, **optional}))
        outcome = await self._ctx.store.run(StoreOp(
            transaction_event, station_id=self.id, event=event, answer=answer, at=now,
            max_power_w=self._max_power_w, clock_offset_s=self.offset_at_boot_s))
        self._tx_refs[outcome.transaction_id] = event.station_tx_ref
        log.info("station %s: TransactionEvent %s %s seq %d (%s%s) -> session %d%s", self.id,
                 event_type, event.station_tx_ref, seq_no, trigger_reason,
                 ", offline" if event.offline else "", outcome.transaction_id,
                 " (duplicate)" if outcome.duplicate else "")
        if not outcome.duplicate:
            self._publish(event, outcome, now, transaction_info.get("charging_state"))
        return call_result.TransactionEvent(id_token_info=answer.get("idTokenInfo"))

    def _publish(self, event: TransactionEventIn, outcome: EventOutcome,
                 now: datetime, charging_state: str | None = None) -> None:
        session = outcome.session
        self.publish_closed(outcome.closed, now)
        if outcome.announce:
            self._ctx.events.publish(SessionStarted(
                self.id, session.connector_id, session.transaction_id, session.id_tag or "",
                session.meter_start_wh, from_db_time(session.start_time) or event.timestamp,
                outcome.closed[0].transaction_id if outcome.closed else None,
                meter_start_location=_begin_location(event, session.meter_start_wh),
                queued=event.offline))
        if session.connector_id is not None:
            for sampled in samples_to_events(self.id, session.connector_id,
                                             session.transaction_id, list(event.readings),
                                             now):
                self._ctx.events.publish(sampled)
        if charging_state is not None and session.connector_id is not None \
                and not event.offline and not outcome.stopped:
            # whether the car takes what it is offered (a car that stops by itself while
            # offered power is full: site/closed_loop.py); a queued one is history
            self._ctx.events.publish(ChargingStateChanged(
                self.id, session.connector_id, session.transaction_id, charging_state,
                event.timestamp))
        if outcome.stopped:
            self._ctx.events.publish(SessionStopped(
                self.id, session.connector_id, session.transaction_id,
                from_db_time(session.stop_time) or event.timestamp, session.energy_wh,
                event.stopped_reason or "Local"))


def _begin_location(event: TransactionEventIn, meter_start_wh: float | None) -> str | None:
    """Where the session's start register was measured, when this event carries it (its
    Transaction.Begin value): the live chain of that location alone starts from it."""
    begin = billed_registers(r for r in event.readings if r.context == BEGIN)
    if begin and meter_start_wh is not None and begin[-1].value_wh == meter_start_wh:
        return begin[-1].location
    return None

