"""The SQL of acknowledged obligations: the operator's cap and cap schedule, utilities'
demand-response events, session needs, and what the controller rebuilds its live site from.

Every function takes the `StoreTx` of one `Store.run()`, so the API can answer 2xx only after
the commit that holds the obligation. Plain rows in, plain rows out: the site's types
(`DemandResponseEvent`, `Session`) are made in `site/restore.py` and `api/site_limits.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smartcharge.metering import billed_location, register_points
from smartcharge.store_tx import (
    SessionRow,
    StoreTx,
    billed_location_sql,
    db_time,
    from_db_time,
)

# An event that ended is kept this long (audit: "was it honoured?"), then pruned at start.
ENDED_EVENT_KEEP_S = 24 * 3600.0
EVENT_ID_PREFIX = "dr-"


@dataclass(frozen=True)
class EventRow:
    event_id: str
    start: datetime
    end: datetime
    limit_w: float | None
    reduction_w: float | None
    priority: int
    cancelled: bool
    circuit_id: str | None = None      # None: the grid connection


@dataclass(frozen=True)
class NeedRow:
    transaction_id: int
    requested_wh: float | None
    departure: datetime | None


@dataclass
class Obligations:
    operator_cap: tuple[float, datetime | None] | None = None    # (limit_w, since)
    cap_windows: list[tuple[datetime, datetime, float]] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    needs: dict[int, NeedRow] = field(default_factory=dict)


# --- writes ---------------------------------------------------------------------------------
def set_operator_cap(tx: StoreTx, limit_w: float | None, since: datetime | None, *,
                     at: datetime) -> None:
    """The operator's cap from `since` on; limit_w None clears it."""
    if limit_w is None:
        tx.execute("DELETE FROM site_operator_cap")
        return
    tx.execute("INSERT INTO site_operator_cap (id, limit_w, since, updated_at) "
               "VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET limit_w = excluded.limit_w, "
               "since = excluded.since, updated_at = excluded.updated_at",
               (float(limit_w), db_time(since), db_time(at)))


def set_cap_windows(tx: StoreTx, windows: list[tuple[datetime, datetime, float]]) -> None:
    """Replace the operator's cap schedule: (start, end, limit_w) windows, in order."""
    tx.execute("DELETE FROM site_cap_windows")
    for position, (start, end, limit_w) in enumerate(windows):
        tx.execute("INSERT INTO site_cap_windows (position, start_time, end_time, limit_w) "
                   "VALUES (?, ?, ?, ?)", (position, db_time(start), db_time(end),
                                           float(limit_w)))


def new_event_id(tx: StoreTx, *, at: datetime) -> str:
    """The next `dr-N` from a sequence that never restarts (AUTOINCREMENT), skipping a name an
    operator or utility already gave an event by hand."""
    while True:
        number = tx.execute("INSERT INTO dr_event_numbers (issued_at) VALUES (?)",
                            (db_time(at),)).lastrowid
        event_id = f"{EVENT_ID_PREFIX}{number}"
        if tx.execute("SELECT 1 FROM dr_events WHERE event_id = ?",
                      (event_id,)).fetchone() is None:
            return event_id


def keyed_event(tx: StoreTx, key: str) -> tuple[str, str] | None:
    """(request_sha256, event_id) of the event a POST with Idempotency-Key `key` made."""
    row = tx.execute("SELECT request_sha256, event_id FROM dr_event_keys WHERE "
                     "idempotency_key = ?", (key,)).fetchone()
    return None if row is None else (row[0], row[1])


def save_event_key(tx: StoreTx, key: str, request_sha256: str, event_id: str, *,
                   at: datetime) -> None:
    tx.execute("INSERT INTO dr_event_keys (idempotency_key, request_sha256, event_id, "
               "created_at) VALUES (?, ?, ?, ?)", (key, request_sha256, event_id, db_time(at)))


def save_event(tx: StoreTx, event: EventRow, *, at: datetime) -> None:
    """Insert or replace one demand-response event (an update or cancellation too)."""
    tx.execute(
        "INSERT INTO dr_events (event_id, start_time, end_time, limit_w, reduction_w, priority, "
        "cancelled, circuit_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (event_id) DO UPDATE SET start_time = excluded.start_time, "
        "end_time = excluded.end_time, limit_w = excluded.limit_w, "
        "reduction_w = excluded.reduction_w, priority = excluded.priority, "
        "cancelled = excluded.cancelled, circuit_id = excluded.circuit_id, "
        "updated_at = excluded.updated_at",
        (event.event_id, db_time(event.start), db_time(event.end), event.limit_w,
         event.reduction_w, event.priority, int(event.cancelled), event.circuit_id,
         db_time(at), db_time(at)))


def set_need(tx: StoreTx, transaction_id: int, *, requested_wh: float | None,
             departure: datetime | None, at: datetime) -> None:
    """A session's whole need as the controller now holds it (energy [Wh], departure)."""
    tx.execute("INSERT INTO session_needs (transaction_id, requested_wh, departure, updated_at) "
               "VALUES (?, ?, ?, ?) ON CONFLICT (transaction_id) DO UPDATE SET "
               "requested_wh = excluded.requested_wh, departure = excluded.departure, "
               "updated_at = excluded.updated_at",
               (transaction_id, requested_wh, db_time(departure), db_time(at)))


def prune(tx: StoreTx, now: datetime) -> dict[str, int]:
    """Drop what no longer binds anyone: events that ended more than a day ago, cap windows
    that ended, needs of sessions that are no longer open (or to be reopened: a connector's
    latest session, closed by its station's boot). Returns how many of each."""
    kept_since = db_time(now - timedelta(seconds=ENDED_EVENT_KEEP_S))
    counts = {
        "events": tx.execute("DELETE FROM dr_events WHERE end_time < ?",
                             (kept_since,)).rowcount,
        "cap_windows": tx.execute("DELETE FROM site_cap_windows WHERE end_time <= ?",
                                  (db_time(now),)).rowcount,
        "needs": tx.execute("DELETE FROM session_needs WHERE transaction_id NOT IN "
                            "(SELECT transaction_id FROM sessions WHERE state = 'open' OR "
                            "(state = 'closed_implicitly' AND closed_by = 'Reboot' AND "
                            "transaction_id IN (SELECT MAX(transaction_id) FROM sessions WHERE "
                            "connector_id IS NOT NULL GROUP BY station_id, connector_id)))"
                            ).rowcount,
    }
    # a key outlives neither its event nor a day (a client's retry comes within minutes)
    counts["event_keys"] = tx.execute(
        "DELETE FROM dr_event_keys WHERE created_at < ? OR event_id NOT IN "
        "(SELECT event_id FROM dr_events)", (kept_since,)).rowcount
    # the sequence lives in sqlite_sequence; the rows themselves are only a log
    tx.execute("DELETE FROM dr_event_numbers WHERE number < "
               "(SELECT MAX(number) FROM dr_event_numbers)")
    return counts


# --- reads ----------------------------------------------------------------------------------
def load(tx: StoreTx) -> Obligations:
    out = Obligations()
    row = tx.execute("SELECT limit_w, since FROM site_operator_cap WHERE id = 1").fetchone()
    if row is not None:
        out.operator_cap = (row[0], from_db_time(row[1]))
    out.cap_windows = [(from_db_time(start), from_db_time(end), limit_w)
                       for start, end, limit_w in tx.execute(
                           "SELECT start_time, end_time, limit_w FROM site_cap_windows "
                           "ORDER BY position")]
    out.events = [EventRow(event_id, from_db_time(start), from_db_time(end), limit_w,
                           reduction_w, priority, bool(cancelled), circuit_id)
                  for event_id, start, end, limit_w, reduction_w, priority, cancelled,
                  circuit_id
                  in tx.execute("SELECT event_id, start_time, end_time, limit_w, reduction_w, "
                                "priority, cancelled, circuit_id FROM dr_events "
                                "ORDER BY start_time, event_id")]
    out.needs = {tid: NeedRow(tid, requested_wh, from_db_time(departure))
                 for tid, requested_wh, departure in tx.execute(
                     "SELECT transaction_id, requested_wh, departure FROM session_needs")}
    return out


def all_open_sessions(tx: StoreTx) -> list[SessionRow]:
    """Every open session of every station, oldest first (the controller's live sessions)."""
    return [row for station in tx.execute(
        "SELECT DISTINCT station_id FROM sessions WHERE state = 'open' ORDER BY station_id")
        for row in tx.open_sessions(station[0])]


def registers_received(tx: StoreTx, transaction_id: int, session: SessionRow | None = None
                       ) -> list[tuple[str, float, str, str, frozenset[str]]]:
    """(station timestamp, Wh, received_at, location, phases summed) of the session's billed
    import register (the outlet's, else one other location's; each set's total, else the sum
    of its phases: `StoreTx.billed_register_points`), in time order: what the session had
    taken by a given moment of ours (a car's needs were relative to it). With its `session`
    row, also the connector's registers that came without a transaction while it was open, as
    the live site counts them (`StoreTx.live_register_points`)."""
    points = (tx.billed_register_points(transaction_id) if session is None
              else tx.live_register_points(session))[0]
    return [(p.timestamp, p.value_wh, p.received, p.location, p.phases) for p in points]


def start_register_location(tx: StoreTx, session: SessionRow) -> str | None:
    """Where a 2.0.1 session's start register was measured: the location of its
    Transaction.Begin register of that value (the live `SessionStarted.meter_start_location`),
    so a restart starts that location's chain alone from it. Each Begin set read as the live
    run reads it (`metering.register_points`: its total, else the sum of its phases), the
    location among those of that value as `metering.billed_location` picks it - a start
    register sent only per phase was not found by totals alone, so the outlet's chain started
    from an inlet's start after a restart. None for 1.6 (meterStart says no location) and when
    no start register is known."""
    if session.station_tx_ref is None or session.meter_start_wh is None:
        return None
    points, _ = register_points(tx.execute(
        "SELECT timestamp, context, location, phase, value_si FROM meter_samples "
        "WHERE transaction_id = ? AND measurand = 'Energy.Active.Import.Register' "
        "AND context = 'Transaction.Begin' AND value_si IS NOT NULL ORDER BY timestamp, id",
        (session.transaction_id,)))
    return billed_location({p.location for p in points
                            if p.value_wh == session.meter_start_wh})


def latest_samples(tx: StoreTx, transaction_id: int, measurands: tuple[str, ...]
                   ) -> list[dict]:
    """The rows of the session's latest sampling moment that carries one of `measurands`
    (every measurand of that moment, so per-phase currents come together), at one location:
    the outlet, else one other (`metering.billed_location`), as the live events read them."""
    marks = ", ".join("?" * len(measurands))
    wanted = f"measurand IN ({marks}) AND value_si IS NOT NULL"
    where = tx.execute(billed_location_sql(wanted),
                       (transaction_id, *measurands)).fetchone()
    if where is None:
        return []
    latest = tx.execute(f"SELECT MAX(timestamp) FROM meter_samples WHERE transaction_id = ? "
                        f"AND {wanted} AND location = ?",
                        (transaction_id, *measurands, where[0])).fetchone()[0]
    if latest is None:
        return []
    cursor = tx.execute("SELECT measurand, phase, value_si, timestamp, received_at, context, "
                        "location FROM meter_samples WHERE transaction_id = ? AND timestamp = ? "
                        "AND location = ? ORDER BY id", (transaction_id, latest, where[0]))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]
