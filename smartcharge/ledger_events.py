"""The ledger's rules for OCPP 2.0.1 TransactionEvent: the same sessions, samples, energy rule and
implicit closes as 1.6 (`ledger.py`), for a protocol where the station makes the transaction id.

One function, run in the store's writer process (`await store.run(StoreOp(transaction_event,
...))`) so the station is answered only after the commit:
- the station's transactionId (text) names one session, ever: the first event we get of a
  transaction opens it — a Started, or, when that was lost or is late, whatever came first
  (flag `started_event_missing` until the Started arrives) — and every later event of it goes
  to that same row, so no kWh can be on two rows;
- every event is remembered by its meaning (`ledger_keys.transaction_event_key`): a duplicate
  (a retry after a lost answer, even re-worded) gets the same answer and changes nothing;
- energy comes from the registers in the events' meterValue (`Energy.Active.Import.Register`):
  start = the Transaction.Begin reading, stop = the Transaction.End reading, and between them
  the chain of all readings (`metering.session_energy`); an Ended without meter values is billed
  to the last register seen; readings that arrive late (an offline replay, out of order) revise
  the bill of a stopped session from all the evidence;
- what arrives late fills in what is missing: the Started's time and Begin register, the EVSE,
  the idToken (e.g. in an Updated after the car was plugged in);
- a Started for an id whose transaction already started (firmware that counts from 1 again
  after a reboot) is a new session (`station_reused_transaction_id`), and so is a first event
  without its Started, numbered again from the start after a reboot (`_counted_again`);
- seqNo gaps are visible (flag `seq_gap`, cleared when the missing events arrive) and
  `transaction_events` keeps every event's seqNo, type, triggerReason and `offline`;
- a session whose Ended never came is closed when its EVSE starts a newer transaction or the
  station reboots (`ledger.close_on_reboot`), as in 1.6; its Ended, if it comes late, still wins;
  an event after the reboot proves the transaction went on: it is open again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from smartcharge.ledger import (
    CLOSED_IMPLICITLY,
    OPEN,
    STOPPED,
    Closed,
    close_implicitly,
    energy_of,
    flags_of,
    revise_stopped,
    revisit_implicit_close,
    sample_rows,
)
from smartcharge.ledger_keys import transaction_event_key
from smartcharge.metering import ENERGY_FLAGS, Reading, billed_registers
from smartcharge.store import SessionRow, StoreTx, db_time, from_db_time

STARTED, UPDATED, ENDED = "Started", "Updated", "Ended"
BEGIN, END = "Transaction.Begin", "Transaction.End"
STARTED_MISSING, SEQ_GAP, OFFLINE = "started_event_missing", "seq_gap", "offline_events"
REUSED_ID = "station_reused_transaction_id"
SOURCE = "TransactionEvent"


@dataclass(frozen=True)
class TransactionEventIn:
    """One TransactionEvent, parsed: `connector_id` is the EVSE (None: not in this event)."""

    station_tx_ref: str
    event_type: str
    seq_no: int
    timestamp: datetime
    trigger_reason: str
    offline: bool
    connector_id: int | None
    id_tag: str | None
    stopped_reason: str | None
    readings: Sequence[Reading]
    payload: dict                   # as received, for the audit


@dataclass(frozen=True)
class EventOutcome:
    transaction_id: int             # our session
    connector_id: int | None
    duplicate: bool
    session: SessionRow | None = None     # the session after this event (None: duplicate)
    announce: bool = False          # the site should now hear of it (SessionStarted)
    stopped: bool = False           # this event stopped it (SessionStopped)
    reopened: bool = False          # it was closed at a reboot and is evidently still running
    closed: tuple[Closed, ...] = ()  # other sessions on the EVSE closed by this newer one


def transaction_event(tx: StoreTx, *, station_id: str, event: TransactionEventIn,
                      answer: dict, at: datetime, max_power_w: float,
                      clock_offset_s: float = 0.0) -> EventOutcome:
    """`clock_offset_s`: how far the station's clock ran ahead of ours at the boot that
    closed its sessions (`ledger.revisit_implicit_close`)."""
    key = transaction_event_key(event.station_tx_ref, event.event_type, event.seq_no,
                                event.timestamp, event.id_tag, event.readings)
    earlier = tx.seen_message(station_id, SOURCE, key)
    if earlier is not None:
        return EventOutcome(earlier["ourTransactionId"], earlier.get("connectorId"),
                            duplicate=True)
    session = _session_of(tx, station_id, event)
    closed: tuple[Closed, ...] = ()
    if session is None:
        reused = bool(tx.sessions_by_tx_ref(station_id, event.station_tx_ref))
        session, closed = _open(tx, station_id, event, at, max_power_w, reused)
        announce = session.connector_id is not None
    else:   # the site hears of a session once its EVSE is known
        announce = session.connector_id is None and event.connector_id is not None
        session = _fill_in(tx, session, event, at)
    tx.insert_samples(sample_rows(station_id, session.connector_id or 0,
                                  session.transaction_id, None, event.readings, SOURCE, at,
                                  event.station_tx_ref))
    _record(tx, station_id, session.transaction_id, event, at)
    session = _mark_sequence(tx, session, at)
    stopped = reopened = False
    if event.event_type == ENDED and session.state in (OPEN, CLOSED_IMPLICITLY):
        _stop(tx, session, event, at, max_power_w)
        stopped = True
    elif session.state == CLOSED_IMPLICITLY:
        reopened = revisit_implicit_close(
            tx, session, [event.timestamp, *(r.timestamp for r in event.readings)], at,
            max_power_w, clock_offset_s)
    elif session.state == STOPPED:
        revise_stopped(tx, session, at, max_power_w)   # late readings or a late start
    session = tx.session(session.transaction_id)
    tx.remember_message(station_id, SOURCE, key, event.payload,
                        {**answer, "ourTransactionId": session.transaction_id,
                         "connectorId": session.connector_id}, at)
    return EventOutcome(session.transaction_id, session.connector_id, duplicate=False,
                        session=session,
                        announce=(announce or reopened) and session.state == OPEN,
                        stopped=stopped, reopened=reopened, closed=closed)


def _session_of(tx: StoreTx, station_id: str, event: TransactionEventIn) -> SessionRow | None:
    """The session this event belongs to; None: a transaction we have not seen yet.

    The spec wants a station's transactionId unique; firmware that counts from 1 again after a
    reboot reuses it, so the sessions of one id are told apart by time. A Started belongs to
    the session that started at that instant, or to the first one still missing its Started
    whose earliest event is not before it; otherwise it begins a new transaction. Any other
    event goes to the latest session of the id that started at or before it."""
    candidates = tx.sessions_by_tx_ref(station_id, event.station_tx_ref)
    if not candidates:
        return None
    if event.event_type == STARTED:
        waiting = []
        for session in candidates:
            started = from_db_time(session.start_time)
            if STARTED_MISSING not in flags_of(session):
                if started == event.timestamp:
                    return session
            elif started is None or started >= event.timestamp:
                waiting.append(session)
        return min(waiting, key=lambda s: s.start_time or "", default=None)
    for index in range(len(candidates) - 1, -1, -1):
        session = candidates[index]
        started = from_db_time(session.start_time)
        if started is None or started <= event.timestamp:
            if _counted_again(tx, station_id, session, event):
                # the id's newer transaction, its Started lost: the first newer session of
                # the id still missing its Started, else a new one
                return next((s for s in candidates[index + 1:]
                             if STARTED_MISSING in flags_of(s)), None)
            return session
    return candidates[0]


def _counted_again(tx: StoreTx, station_id: str, session: SessionRow,
                   event: TransactionEventIn) -> bool:
    """Whether `event` is of a newer transaction under `session`'s id: firmware that counts
    its ids from 1 again after a reboot, the newer one's Started lost (session 38's judge: its
    events revised the old bill or reopened the old session - its charge on no row, or on the
    old driver's). So when the session is over (its Ended, or closed by us), the station
    booted after its latest event came, the event is stamped after every event of it, and
    the event's seqNo is one the session had reached already: numbered again from the start,
    not one more event of that transaction (its events after its Ended number on)."""
    if session.state not in (STOPPED, CLOSED_IMPLICITLY) or session.station_tx_ref is None:
        return False
    row = tx.execute(
        "SELECT MAX(seq_no), MAX(timestamp), MAX(received_at) FROM transaction_events "
        "WHERE transaction_id = ?", (session.transaction_id,)).fetchone()
    if row is None or row[0] is None:
        return False
    max_seq_no, latest_stamp, latest_received = row
    booted = tx.execute("SELECT boot_time FROM stations WHERE station_id = ?",
                        (station_id,)).fetchone()
    return booted is not None and booted[0] is not None and booted[0] > latest_received \
        and event.seq_no <= max_seq_no and event.timestamp > from_db_time(latest_stamp)


def _open(tx: StoreTx, station_id: str, event: TransactionEventIn, at: datetime,
          max_power_w: float, reused: bool) -> tuple[SessionRow, tuple[Closed, ...]]:
    """The first event we see of a transaction opens its session from what it says."""
    flags = set() if event.event_type == STARTED else {STARTED_MISSING}
    if reused:
        flags.add(REUSED_ID)
    closed: list[Closed] = []
    newer_start: datetime | None = None
    if event.connector_id is not None:
        for other in tx.open_sessions(station_id, event.connector_id):
            started = from_db_time(other.start_time)
            if started is None or started <= event.timestamp:
                closed.append(close_implicitly(tx, other, "NewSession", at, max_power_w))
            else:
                # an offline replay of an older transaction: a newer one already runs here,
                # so this one ended before that began; its Ended, when it comes, still wins
                newer_start = min(started, newer_start or started)
    transaction_id = tx.insert_session(
        station_id=station_id, connector_id=event.connector_id, id_tag=event.id_tag,
        start_time=event.timestamp, meter_start_wh=_register(event.readings, BEGIN),
        reservation_id=None, state=OPEN, at=at, station_tx_ref=event.station_tx_ref,
        flags=flags)
    session = tx.session(transaction_id)
    if newer_start is not None:
        close_implicitly(tx, session, "NewSession", newer_start, max_power_w)
        session = tx.session(transaction_id)
    return session, tuple(closed)


def _fill_in(tx: StoreTx, session: SessionRow, event: TransactionEventIn,
             at: datetime) -> SessionRow:
    """What this event knows and the session does not yet: its start, EVSE, idToken."""
    changes: dict = {}
    flags = flags_of(session)
    started = from_db_time(session.start_time)
    if event.event_type == STARTED and STARTED_MISSING in flags:
        changes["start_time"] = event.timestamp          # the Started's time is the start
        changes["flags"] = flags - {STARTED_MISSING}
    elif STARTED_MISSING in flags and (started is None or event.timestamp < started):
        changes["start_time"] = event.timestamp          # the earliest we know of, until then
    if session.meter_start_wh is None:
        begin_wh = _register(event.readings, BEGIN)
        if begin_wh is not None:
            changes["meter_start_wh"] = begin_wh
    if session.connector_id is None and event.connector_id is not None:
        changes["connector_id"] = event.connector_id
    if session.id_tag is None and event.id_tag is not None:
        changes["id_tag"] = event.id_tag                  # the idToken arrived late
    if not changes:
        return session
    tx.amend_session(session.transaction_id, at, **changes)
    return tx.session(session.transaction_id)


def _stop(tx: StoreTx, session: SessionRow, event: TransactionEventIn, at: datetime,
          max_power_w: float) -> None:
    # at the location the session is billed at (its samples are stored by now), as its start
    stop_wh = tx.context_register(session.transaction_id, END)
    # what the energy computed at an implicit close said gives way to this one's
    flags = flags_of(session) - ENERGY_FLAGS
    if session.state == CLOSED_IMPLICITLY:
        flags |= {"late_stop"}
    if stop_wh is None:
        flags |= {"no_stop_register"}   # billed to the last register seen
    energy = energy_of(tx, session, stop_wh, event.timestamp, max_power_w)
    tx.close_session(session.transaction_id, state=STOPPED, closed_by=SOURCE,
                     stop_time=event.timestamp, meter_stop_wh=stop_wh,
                     stop_reason=event.stopped_reason, stop_id_tag=event.id_tag,
                     energy_wh=energy.energy_wh, energy_method=energy.method,
                     flags=flags | energy.flags, at=at)


def _record(tx: StoreTx, station_id: str, transaction_id: int, event: TransactionEventIn,
            at: datetime) -> None:
    tx.execute(
        "INSERT OR IGNORE INTO transaction_events (station_id, station_tx_ref, transaction_id, "
        "seq_no, event_type, trigger_reason, offline, timestamp, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (station_id, event.station_tx_ref, transaction_id, event.seq_no, event.event_type,
         event.trigger_reason, int(event.offline), db_time(event.timestamp), db_time(at)))


def _mark_sequence(tx: StoreTx, session: SessionRow, at: datetime) -> SessionRow:
    """Flag a session whose events have a hole in their seqNo (or came offline); clear the
    flag once the missing events arrive."""
    rows = tx.execute("SELECT seq_no, offline FROM transaction_events WHERE transaction_id = ?",
                      (session.transaction_id,)).fetchall()
    seq_nos = sorted({row[0] for row in rows})
    gap = bool(seq_nos) and seq_nos[-1] - seq_nos[0] + 1 != len(seq_nos)
    flags = flags_of(session)
    wanted = (flags - {SEQ_GAP}) | ({SEQ_GAP} if gap else set()) \
        | ({OFFLINE} if any(row[1] for row in rows) else set())
    if wanted == flags:
        return session
    tx.set_flags(session.transaction_id, wanted)
    return tx.session(session.transaction_id)


def _register(readings: Sequence[Reading], context: str) -> float | None:
    """The total import register read in `context` (Wh), if the event has one."""
    values = [p.value_wh for p in billed_registers(r for r in readings if r.context == context)]
    return values[-1] if values else None
