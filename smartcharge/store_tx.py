"""The SQL the ledger, the adapters and the API need, run inside one store transaction.

`StoreTx` is what a piece of work passed to `Store.run()` receives; it only knows SQL (billing
rules live in `ledger.py`). Times are stored as fixed-width UTC text so they sort.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from smartcharge.metering import (
    LOCATIONS_BY_PREFERENCE,
    RegisterPoint,
    billed_points,
    register_points,
)


def db_time(moment: datetime | None) -> str | None:
    """Fixed-width UTC text that sorts like the times it stands for."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _last_microsecond(second: datetime) -> datetime:
    """The last instant of a whole second: its end as an inclusive bound (a second later is
    no datetime at 9999-12-31T23:59:59, a stamp strict stations may send)."""
    return second.replace(microsecond=999_999)


def from_db_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# `metering.location_rank` in SQL: the outlet first, then the others by preference
_LOCATION_RANK = ("CASE location " + " ".join(
    f"WHEN '{where}' THEN {rank}" for rank, where in enumerate(LOCATIONS_BY_PREFERENCE))
    + f" ELSE {len(LOCATIONS_BY_PREFERENCE)} END, location")


def billed_location_sql(condition: str) -> str:
    """A query for the location `metering.billed_location` picks among a session's
    meter_samples rows that meet `condition` (its first parameter: the transaction id): the
    outlet's values when it has any, else one other location's, never two mixed."""
    return (f"SELECT location FROM meter_samples WHERE transaction_id = ? AND {condition} "
            f"ORDER BY {_LOCATION_RANK} LIMIT 1")


# every import register value of a session, totals and per phase, for `metering.register_points`
_ENERGY_VALUES = ("SELECT timestamp, context, location, phase, value_si, received_at FROM "
                  "meter_samples WHERE transaction_id = ? AND measurand = "
                  "'Energy.Active.Import.Register' AND value_si IS NOT NULL ORDER BY timestamp, id")

# a connector's import register values that came with no transaction, from a moment on (the
# index on (transaction_id, measurand, timestamp) reads them by range)
_CONNECTOR_ENERGY_VALUES = (
    "SELECT timestamp, context, location, phase, value_si, received_at FROM meter_samples "
    "WHERE transaction_id IS NULL AND measurand = 'Energy.Active.Import.Register' "
    "AND timestamp >= ? AND station_id = ? AND connector_id = ? AND received_at >= ? "
    "AND value_si IS NOT NULL ORDER BY timestamp, id")


@dataclass(frozen=True)
class SessionRow:
    transaction_id: int
    station_id: str
    connector_id: int | None
    id_tag: str | None
    start_time: str | None
    meter_start_wh: float | None
    reservation_id: int | None
    stop_time: str | None
    meter_stop_wh: float | None
    stop_reason: str | None
    stop_id_tag: str | None
    state: str
    closed_by: str | None
    energy_wh: float | None
    energy_method: str | None
    flags: str
    station_tx_id: int | None
    created_at: str
    updated_at: str
    station_tx_ref: str | None = None   # OCPP 2.0.1: the station's own transactionId (text)


_SESSION_COLUMNS = ", ".join(f.name for f in fields(SessionRow))


@dataclass(frozen=True)
class SampleRow:
    station_id: str
    connector_id: int
    transaction_id: int | None
    station_tx_id: int | None
    timestamp: str
    measurand: str
    phase: str
    unit: str
    context: str
    location: str
    format: str
    value_text: str
    value_si: float | None
    source: str
    received_at: str
    station_tx_ref: str | None = None   # OCPP 2.0.1: the station's transactionId (text)


_SAMPLE_COLUMNS = ", ".join(f.name for f in fields(SampleRow))
# a row's values in column order, in C (the writer thread runs this for every sampled value of
# every MeterValues, holding the GIL the event loop needs: issue 10, s21-p99)
_SAMPLE_VALUES = attrgetter(*(f.name for f in fields(SampleRow)))
_SAMPLE_ROW_SQL = f"({', '.join('?' * len(fields(SampleRow)))})"
# rows per INSERT statement: one statement for a whole MeterValues (a row per sampled value),
# within SQLite's oldest default limit on parameters (999; 16 a row)
_SAMPLES_PER_STATEMENT = 60


def _insert_samples_sql(rows: int) -> str:
    """One INSERT of `rows` sample rows, ignoring exact repeats. One statement, not one per
    row: `sqlite3` lets the GIL go around each step of a statement, and the writer thread then
    waits to take it back behind the busy event loop - `executemany` of six rows was six such
    waits per MeterValues (s27-store: 11 statements a MeterValues before, 3 now). The texts
    are few (1 ... 60 rows), so `sqlite3`'s statement cache keeps each prepared."""
    return (f"INSERT OR IGNORE INTO meter_samples ({_SAMPLE_COLUMNS}) VALUES "
            + ", ".join([_SAMPLE_ROW_SQL] * rows))


# JSON without the spaces after separators: the kept payloads are the store's largest rows, and
# every byte is written twice (the WAL, then the database file) and fsynced. One encoder made
# once: `json.dumps` with a non-default argument builds a new one per call (+30 % CPU)
_json = json.JSONEncoder(separators=(",", ":")).encode


class StoreTx:
    """The SQL the ledger and the adapters need, used inside one transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    # -- stations ---------------------------------------------------------------------------
    def station_connecting(self, station_id: str, at: datetime,
                           protocol: str | None) -> str | None:
        """`station_seen`, then the station's last boot status (its WebSocket handshake)."""
        self.station_seen(station_id, at, protocol)
        return self.boot_status(station_id)

    def station_seen(self, station_id: str, at: datetime, protocol: str | None = None) -> None:
        """The station connected (or sent something) at `at`; `protocol` is the subprotocol
        its connection negotiated (None: unchanged)."""
        self._db.execute(
            "INSERT INTO stations (station_id, first_seen, last_seen, protocol) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (station_id) DO UPDATE SET "
            "last_seen = excluded.last_seen, protocol = COALESCE(excluded.protocol, protocol)",
            (station_id, db_time(at), db_time(at), protocol))

    def set_boot(self, station_id: str, status: str, at: datetime, payload: dict, *,
                 vendor: str | None = None, model: str | None = None,
                 serial_number: str | None = None,
                 firmware_version: str | None = None) -> None:
        """A BootNotification; the station's facts default to the 1.6 payload's fields (2.0.1
        nests them under chargingStation with other names: its adapter passes them)."""
        self.station_seen(station_id, at)
        self._db.execute(
            "UPDATE stations SET boot_status = ?, boot_time = ?, vendor = ?, model = ?, "
            "serial_number = ?, firmware_version = ?, boot_json = ? WHERE station_id = ?",
            (status, db_time(at), vendor or payload.get("chargePointVendor"),
             model or payload.get("chargePointModel"),
             serial_number or payload.get("chargePointSerialNumber"),
             firmware_version or payload.get("firmwareVersion"), json.dumps(payload),
             station_id))

    def boot_status(self, station_id: str) -> str | None:
        row = self._db.execute("SELECT boot_status FROM stations WHERE station_id = ?",
                               (station_id,)).fetchone()
        return row[0] if row else None

    def set_notification(self, station_id: str, kind: str, status: str, at: datetime) -> None:
        """A firmware / diagnostics (1.6) / log (2.0.1) status, or a security event (2.0.1:
        kind "security", status = its type): kept in the history; the first three are also the
        station's current status (a 2.0.1 log upload is its diagnostics status)."""
        self.station_seen(station_id, at)
        column = {"firmware": "firmware_status", "diagnostics": "diagnostics_status",
                  "log": "diagnostics_status"}.get(kind)
        if column is not None:
            self._db.execute(f"UPDATE stations SET {column} = ?, {column}_time = ? "
                             "WHERE station_id = ?", (status, db_time(at), station_id))
        self._db.execute("INSERT INTO station_notifications (station_id, kind, status, "
                         "received_at) VALUES (?, ?, ?, ?)",
                         (station_id, kind, status, db_time(at)))

    def set_connector_status(self, station_id: str, connector_id: int, status: str,
                             error_code: str, info: str | None, vendor_error_code: str | None,
                             timestamp: datetime, received_at: datetime,
                             in_step: bool = False, in_step_s: float = 0.0) -> None:
        self._db.execute(
            "INSERT INTO connector_status VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (station_id, connector_id) DO UPDATE SET status = excluded.status, "
            "error_code = excluded.error_code, info = excluded.info, "
            "vendor_error_code = excluded.vendor_error_code, timestamp = excluded.timestamp, "
            "received_at = excluded.received_at "
            # a status stamped before the one held is from a station's queue, history - unless
            # the station booted since that one came (a reboot may have set its clock), or it
            # is stamped in step with our clock (`in_step`) and the held one was stamped ahead
            # of it: its clock set to ours without a reboot (ocpp/clock_offset.py `supersedes`)
            "WHERE excluded.timestamp >= connector_status.timestamp "
            "OR (? AND (julianday(connector_status.timestamp) "
            "- julianday(connector_status.received_at)) * 86400.0 > ?) "
            "OR connector_status.received_at < COALESCE((SELECT boot_time FROM stations "
            "WHERE stations.station_id = excluded.station_id), '')",
            (station_id, connector_id, status, error_code, info, vendor_error_code,
             db_time(timestamp), db_time(received_at), int(in_step), in_step_s))

    def stations(self) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM stations ORDER BY station_id")

    def connector_statuses(self, station_id: str | None = None) -> list[dict[str, Any]]:
        if station_id is None:
            return self._dicts("SELECT * FROM connector_status ORDER BY station_id, connector_id")
        return self._dicts("SELECT * FROM connector_status WHERE station_id = ? "
                           "ORDER BY connector_id", (station_id,))

    # -- id tags ----------------------------------------------------------------------------
    def id_tag_status(self, id_tag: str) -> str | None:
        # OCPP's id tags are case-insensitive (a handful of rows: no index needed)
        row = self._db.execute("SELECT status FROM id_tags WHERE id_tag = ? COLLATE NOCASE",
                               (id_tag,)).fetchone()
        return row[0] if row else None

    def put_id_tag(self, id_tag: str, status: str = "Accepted") -> None:
        self._db.execute("INSERT INTO id_tags (id_tag, status) VALUES (?, ?) ON CONFLICT "
                         "(id_tag) DO UPDATE SET status = excluded.status", (id_tag, status))

    # -- raw billing messages (idempotency) ------------------------------------------------
    def seen_message(self, station_id: str, action: str, key: str) -> dict | None:
        row = self._db.execute("SELECT answer_json FROM inbound_messages WHERE station_id = ? "
                               "AND action = ? AND message_key = ?",
                               (station_id, action, key)).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE inbound_messages SET duplicates = duplicates + 1 WHERE "
                         "station_id = ? AND action = ? AND message_key = ?",
                         (station_id, action, key))
        return json.loads(row[0])

    def remember_message(self, station_id: str, action: str, key: str, payload: dict,
                         answer: dict, at: datetime) -> None:
        self._db.execute("INSERT INTO inbound_messages (station_id, action, message_key, "
                         "payload_json, answer_json, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (station_id, action, key, _json(payload), _json(answer),
                          db_time(at)))

    def remember_new_message(self, station_id: str, action: str, key: str, payload: dict,
                             answer: dict, at: datetime) -> bool:
        """`remember_message` unless the message is remembered already: then it is counted as
        a duplicate (`seen_message`) and False returned. One statement where the check and the
        insert were two (each a GIL hand-back of the writer thread: s27-store); the conflict
        named, so any other failure still raises."""
        inserted = self._db.execute(
            "INSERT INTO inbound_messages (station_id, action, message_key, payload_json, "
            "answer_json, received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (station_id, "
            "action, message_key) DO NOTHING",
            (station_id, action, key, _json(payload), _json(answer), db_time(at))).rowcount
        if inserted:
            return True
        self._db.execute("UPDATE inbound_messages SET duplicates = duplicates + 1 WHERE "
                         "station_id = ? AND action = ? AND message_key = ?",
                         (station_id, action, key))
        return False

    def forget_message(self, station_id: str, action: str, key: str) -> None:
        """A remembered message whose meaning now names another one (ledger.start_transaction:
        the same start again after its transaction was stopped)."""
        self._db.execute("DELETE FROM inbound_messages WHERE station_id = ? AND action = ? "
                         "AND message_key = ?", (station_id, action, key))

    def prune_inbound_messages(self, before: datetime) -> int:
        """Forget raw messages received before `before`; returns how many. Only old rows go:
        the recent ones are what recognises a station's re-sent message as a duplicate."""
        return self._db.execute("DELETE FROM inbound_messages WHERE received_at < ?",
                                (db_time(before),)).rowcount

    # -- sessions ---------------------------------------------------------------------------
    def insert_session(self, *, station_id: str, connector_id: int | None, id_tag: str | None,
                       start_time: datetime | None, meter_start_wh: float | None,
                       reservation_id: int | None, state: str, at: datetime,
                       station_tx_id: int | None = None, station_tx_ref: str | None = None,
                       flags: Iterable[str] = ()) -> int:
        cursor = self._db.execute(
            "INSERT INTO sessions (station_id, connector_id, id_tag, start_time, "
            "meter_start_wh, reservation_id, state, station_tx_id, station_tx_ref, flags, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (station_id, connector_id, id_tag, db_time(start_time), meter_start_wh,
             reservation_id, state, station_tx_id, station_tx_ref, ",".join(sorted(set(flags))),
             db_time(at), db_time(at)))
        return int(cursor.lastrowid)

    def sessions_by_tx_ref(self, station_id: str, station_tx_ref: str) -> list[SessionRow]:
        """The sessions of a 2.0.1 station's own transaction id, oldest first (one, unless
        the station reused the id)."""
        return [SessionRow(*row) for row in self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE station_id = ? AND "
            "station_tx_ref = ? ORDER BY transaction_id", (station_id, station_tx_ref))]

    def amend_session(self, transaction_id: int, at: datetime, **columns: Any) -> None:
        """Set what a late message told us about a session's start (2.0.1: a Started event or
        an idToken that arrives after other events): connector_id, id_tag, start_time,
        meter_start_wh, flags."""
        allowed = {"connector_id", "id_tag", "start_time", "meter_start_wh", "flags"}
        if not columns or set(columns) - allowed:
            raise ValueError(f"amend_session: {sorted(set(columns) - allowed)} not amendable")
        values = {name: db_time(value) if name == "start_time" else
                  ",".join(sorted(set(value))) if name == "flags" else value
                  for name, value in columns.items()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        self._db.execute(f"UPDATE sessions SET {assignments}, updated_at = ? WHERE "
                         "transaction_id = ?", (*values.values(), db_time(at), transaction_id))

    def session(self, transaction_id: int) -> SessionRow | None:
        row = self._db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE "
                               "transaction_id = ?", (transaction_id,)).fetchone()
        return SessionRow(*row) if row else None

    def open_sessions(self, station_id: str, connector_id: int | None = None) -> list[SessionRow]:
        query = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE station_id = ? AND state = 'open'"
        args: tuple = (station_id,)
        if connector_id is not None:
            query, args = query + " AND connector_id = ?", (station_id, connector_id)
        return [SessionRow(*row) for row in self._db.execute(query + " ORDER BY transaction_id",
                                                              args)]

    def sessions_in_state(self, station_id: str, state: str) -> list[SessionRow]:
        return [SessionRow(*row) for row in self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE station_id = ? AND state = ? "
            "ORDER BY transaction_id", (station_id, state))]

    def reboot_closed_latest(self) -> list[SessionRow]:
        """Every connector's latest session where a station's boot closed it (closed_implicitly
        by Reboot): it may still be running, to be reopened by the station's next message."""
        return [SessionRow(*row) for row in self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE transaction_id IN (SELECT "
            "MAX(transaction_id) FROM sessions WHERE connector_id IS NOT NULL "
            "GROUP BY station_id, connector_id) AND state = 'closed_implicitly' "
            "AND closed_by = 'Reboot' ORDER BY transaction_id")]

    def last_transaction_id(self) -> int:
        """The highest transaction id given so far (0: none). Ids only grow (AUTOINCREMENT,
        rows never deleted): one above it is a transaction started after this moment."""
        row = self._db.execute("SELECT MAX(transaction_id) FROM sessions").fetchone()
        return int(row[0] or 0)

    def last_sessions_per_connector(self, station_id: str, state: str) -> list[SessionRow]:
        """Each connector's latest session in `state`."""
        return [SessionRow(*row) for row in self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE transaction_id IN (SELECT "
            "MAX(transaction_id) FROM sessions WHERE station_id = ? AND state = ? AND "
            "connector_id IS NOT NULL GROUP BY connector_id) ORDER BY transaction_id",
            (station_id, state))]

    def began_on_connector_between(self, station_id: str, connector_id: int,
                                   transaction_id: int, after: datetime,
                                   before: datetime) -> bool:
        """Whether a session other than `transaction_id` began on this connector after
        `after` and before `before` (the station's stamps)."""
        return self._db.execute(
            "SELECT 1 FROM sessions WHERE station_id = ? AND start_time > ? AND "
            "start_time < ? AND connector_id = ? AND transaction_id != ? LIMIT 1",
            (station_id, db_time(after), db_time(before), connector_id,
             transaction_id)).fetchone() is not None

    def set_flags(self, transaction_id: int, flags: Iterable[str]) -> None:
        self._db.execute("UPDATE sessions SET flags = ? WHERE transaction_id = ?",
                         (",".join(sorted(set(flags))), transaction_id))

    def close_session(self, transaction_id: int, *, state: str, closed_by: str,
                      stop_time: datetime | None, meter_stop_wh: float | None,
                      stop_reason: str | None, stop_id_tag: str | None,
                      energy_wh: float | None, energy_method: str | None, flags: Iterable[str],
                      at: datetime) -> None:
        self._db.execute(
            "UPDATE sessions SET state = ?, closed_by = ?, stop_time = ?, meter_stop_wh = ?, "
            "stop_reason = ?, stop_id_tag = ?, energy_wh = ?, energy_method = ?, flags = ?, "
            "updated_at = ? WHERE transaction_id = ?",
            (state, closed_by, db_time(stop_time), meter_stop_wh, stop_reason, stop_id_tag,
             energy_wh, energy_method, ",".join(sorted(set(flags))), db_time(at),
             transaction_id))

    def session_started_at(self, station_id: str, connector_id: int, id_tag: str,
                           meter_start_wh: float, start_time: datetime) -> SessionRow | None:
        """A session of this station already started so: the same connector, tag (in any
        case: id tags are case-insensitive) and start register within the second of this
        start's instant (the same StartTransaction, maybe re-sent after a reboot without the
        milliseconds it first had, or its tag in another case); the one at the very instant
        first."""
        second = start_time.replace(microsecond=0)
        row = self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE station_id = ? AND "
            "connector_id = ? AND id_tag = ? COLLATE NOCASE AND meter_start_wh = ? AND "
            "start_time >= ? AND "
            "start_time <= ? ORDER BY start_time != ?, transaction_id LIMIT 1",
            (station_id, connector_id, id_tag, meter_start_wh, db_time(second),
             db_time(_last_microsecond(second)), db_time(start_time))).fetchone()
        return SessionRow(*row) if row else None

    def session_stopped_at(self, station_id: str, meter_stop_wh: float, stop_time: datetime,
                           stop_id_tag: str | None) -> SessionRow | None:
        """A session of this station already ended by a StopTransaction with exactly this stop
        register and tag (in any case), within the second of this stop's instant (the same
        stop, re-sent under another transaction id - after a reboot, from what the station
        kept, often without the milliseconds it first had); the one at the very instant
        first."""
        second = stop_time.replace(microsecond=0)
        row = self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE station_id = ? AND "
            "closed_by = 'StopTransaction' AND meter_stop_wh = ? AND stop_time >= ? AND "
            "stop_time <= ? AND stop_id_tag IS ? COLLATE NOCASE ORDER BY stop_time != ?, "
            "transaction_id LIMIT 1",
            (station_id, meter_stop_wh, db_time(second),
             db_time(_last_microsecond(second)), stop_id_tag,
             db_time(stop_time))).fetchone()
        return SessionRow(*row) if row else None

    def stopped_as(self, station_id: str, station_tx_id: int, meter_stop_wh: float,
                   stop_time: datetime) -> SessionRow | None:
        """The session of this station a StopTransaction under `station_tx_id` already ended
        with this stop register within the second of `stop_time`, whatever the tag: the same
        stop re-sent without its optional idTag or under another (session 29's judge: an
        `orphan_stop` row for a stop already billed). Our ids name one session; under an id
        we never gave (0, -1: the station had lost ours) the one such stop, None when two
        connectors' stops fit (their tags tell them apart: `session_stopped_at`; the caller
        asks only for a stop re-sent without one)."""
        second = stop_time.replace(microsecond=0)
        which = "transaction_id = ?" if station_tx_id > 0 else "station_tx_id = ?"
        rows = self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE {which} AND "
            "station_id = ? AND closed_by = 'StopTransaction' AND meter_stop_wh = ? AND "
            "stop_time >= ? AND stop_time <= ? LIMIT 2",
            (station_tx_id, station_id, meter_stop_wh, db_time(second),
             db_time(_last_microsecond(second)))).fetchall()
        return SessionRow(*rows[0]) if len(rows) == 1 else None

    def set_station_tx_id(self, transaction_id: int, station_tx_id: int) -> None:
        self._db.execute("UPDATE sessions SET station_tx_id = ? WHERE transaction_id = ?",
                         (station_tx_id, transaction_id))

    def sessions(self, station_id: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, limit: int = 1000,
                 after_transaction_id: int | None = None) -> list[SessionRow]:
        """Sessions that overlap [since, until); open sessions extend to now, and a stop
        stamped before its start ends the session at its start (`api/sessions.billed_at`: a
        station's clock lost at a power loss stamps its stop at its epoch). In transaction id
        order, from after `after_transaction_id` (the next page of a long export)."""
        clauses, args = [], []
        if after_transaction_id is not None:
            clauses.append("transaction_id > ?")
            args.append(after_transaction_id)
        if station_id is not None:
            clauses.append("station_id = ?")
            args.append(station_id)
        if since is not None:
            clauses.append("(stop_time IS NULL OR "
                           "MAX(stop_time, COALESCE(start_time, stop_time)) >= ?)")
            args.append(db_time(since))
        if until is not None:
            clauses.append("(start_time IS NULL OR start_time < ?)")
            args.append(db_time(until))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions{where} "
                                "ORDER BY transaction_id LIMIT ?", (*args, limit))
        return [SessionRow(*row) for row in rows]

    # -- meter samples ----------------------------------------------------------------------
    def insert_samples(self, samples: Iterable[SampleRow]) -> int:
        """Insert, ignoring exact repeats (a retried message); returns how many were new."""
        rows = [_SAMPLE_VALUES(s) for s in samples]
        before = self._db.total_changes
        for first in range(0, len(rows), _SAMPLES_PER_STATEMENT):
            chunk = rows[first:first + _SAMPLES_PER_STATEMENT]
            self._db.execute(_insert_samples_sql(len(chunk)),
                             [value for row in chunk for value in row])
        return self._db.total_changes - before

    def billed_register_points(self, transaction_id: int
                               ) -> tuple[list[RegisterPoint], frozenset[str]]:
        """The session's import register, one point per set of values (its total, else the
        sum of its phases: `metering.billed_points`), at the location it is billed at (the
        outlet's, else one other's), in time order (timestamps as stored); and what that
        says (`phase_sum`, `phases_incomplete`)."""
        points, incomplete = register_points(self._db.execute(_ENERGY_VALUES,
                                                              (transaction_id,)))
        return billed_points(points, incomplete)

    def live_register_points(self, session: SessionRow
                             ) -> tuple[list[RegisterPoint], frozenset[str]]:
        """`billed_register_points` and, as the live site counts them for the car on the
        connector (`SiteState._meter`), the connector's registers that came with no
        transaction while the session was open, stamped from its start (1.6 clock-aligned
        values often come without a transactionId): what a restart rebuilds its energy from.
        Not the bill's (docs/promises.md: kept, not billed)."""
        rows = list(self._db.execute(_ENERGY_VALUES, (session.transaction_id,)))
        if session.connector_id is not None and session.start_time is not None:
            rows += self._db.execute(_CONNECTOR_ENERGY_VALUES, (
                session.start_time, session.station_id, session.connector_id,
                session.created_at))
            rows.sort(key=lambda row: row[0])   # by timestamp (stable: each id order kept)
        points, incomplete = register_points(rows)
        return billed_points(points, incomplete)

    def register_readings(self, transaction_id: int) -> list[tuple[str, float]]:
        """(timestamp, Wh) of the session's billed import register (`billed_register_points`),
        in time order."""
        return [(p.timestamp, p.value_wh)
                for p in self.billed_register_points(transaction_id)[0]]

    def context_register(self, transaction_id: int, context: str) -> float | None:
        """The session's billed import register read in `context` (2.0.1: its
        Transaction.Begin or .End value) at the location the session is billed at, if any."""
        points = [p for p in self.billed_register_points(transaction_id)[0]
                  if p.context == context]
        return points[-1].value_wh if points else None

    def samples(self, transaction_id: int) -> list[dict[str, Any]]:
        return self._dicts(f"SELECT {_SAMPLE_COLUMNS} FROM meter_samples WHERE "
                           "transaction_id = ? ORDER BY timestamp, id", (transaction_id,))

    # -- other station messages -------------------------------------------------------------
    def insert_data_transfer(self, station_id: str, vendor_id: str, message_id: str | None,
                             data: str | None, at: datetime) -> None:
        self._db.execute("INSERT INTO data_transfers (station_id, vendor_id, message_id, data, "
                         "received_at) VALUES (?, ?, ?, ?, ?)",
                         (station_id, vendor_id, message_id, data, db_time(at)))

    def prune_data_transfers(self, before: datetime) -> int:
        """Forget the DataTransfers received before `before`; returns how many. A vendor's
        data (telemetry, often one a minute per station, up to a frame's 1 Mi characters),
        read by nothing here: kept as long as the raw messages, not for ever."""
        return self._db.execute("DELETE FROM data_transfers WHERE received_at < ?",
                                (db_time(before),)).rowcount

    def data_transfers(self, station_id: str) -> list[dict[str, Any]]:
        return self._dicts("SELECT vendor_id, message_id, data, received_at FROM data_transfers "
                           "WHERE station_id = ? ORDER BY id", (station_id,))

    def insert_profile_sent(self, station_id: str, connector_id: int, purpose: str | None,
                            profile: dict, answer: str | None, at: datetime) -> int:
        cursor = self._db.execute(
            "INSERT INTO profiles_sent (station_id, connector_id, purpose, profile_json, answer, "
            "sent_at) VALUES (?, ?, ?, ?, ?, ?)",
            (station_id, connector_id, purpose, json.dumps(profile), answer, db_time(at)))
        return int(cursor.lastrowid)

    def insert_profiles_sent(self, rows: Iterable[tuple]) -> None:
        """Each row as `insert_profile_sent`'s arguments: a dispatch round's audit at once."""
        for row in rows:
            self.insert_profile_sent(*row)

    def prune_profiles_sent(self, before: datetime) -> int:
        """Forget the audit rows of profiles sent before `before`; returns how many (read by
        nothing but an operator: what a station holds is asked of the station at its set-up,
        site/installed_restore.py)."""
        return self._db.execute("DELETE FROM profiles_sent WHERE sent_at < ?",
                                (db_time(before),)).rowcount

    def prune_station_notifications(self, before: datetime) -> int:
        """Forget the firmware / diagnostics / log statuses and security events received
        before `before`; returns how many (an audit trail, read by an operator; the current
        statuses are the station's own columns)."""
        return self._db.execute("DELETE FROM station_notifications WHERE received_at < ?",
                                (db_time(before),)).rowcount

    def profiles_sent(self, station_id: str | None = None) -> list[dict[str, Any]]:
        if station_id is None:
            return self._dicts("SELECT * FROM profiles_sent ORDER BY id")
        return self._dicts("SELECT * FROM profiles_sent WHERE station_id = ? ORDER BY id",
                           (station_id,))

    def execute(self, query: str, args: tuple = ()) -> sqlite3.Cursor:
        """Plain SQL for the query modules of one topic (e.g. store_obligations.py)."""
        return self._db.execute(query, args)

    def pragma(self, name: str) -> Any:
        """A SQLite setting, for diagnostics (e.g. "journal_mode", "user_version")."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    def _dicts(self, query: str, args: tuple = ()) -> list[dict[str, Any]]:
        cursor = self._db.execute(query, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]
