"""The SQL of the site's session history: the stopped sessions a silent driver's need and
departure are estimated from (`site/estimates.py`; loaded by `site/restore.py` at start, on the
store's read connection, off the event loop). Plain rows out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from smartcharge.store_tx import StoreTx, db_time, from_db_time

HISTORY_S = 90 * 24 * 3600.0     # sessions that stopped within this long before now
HISTORY_ROWS = 20_000            # at most this many (the newest)
# (index sessions_stopped_by_stop_time: the table grows for years, the read is of a window)
HISTORY_SQL = (
    "SELECT id_tag, station_id, connector_id, start_time, stop_time, energy_wh "
    "FROM sessions WHERE state = 'stopped' AND energy_wh IS NOT NULL AND connector_id IS "
    "NOT NULL AND start_time IS NOT NULL AND stop_time >= ? ORDER BY stop_time DESC LIMIT ?")


@dataclass(frozen=True)
class StoppedSession:
    id_tag: str | None
    station_id: str
    connector_id: int
    start_time: datetime
    stop_time: datetime
    energy_wh: float


def stopped_sessions(tx: StoreTx, now: datetime, history_s: float = HISTORY_S,
                     limit: int = HISTORY_ROWS) -> list[StoppedSession]:
    """Sessions stopped by a StopTransaction (not closed implicitly: a reboot or a new session
    says nothing of a stay) with their billed energy, oldest first."""
    rows = tx.execute(HISTORY_SQL, (db_time(now - timedelta(seconds=history_s)),
                                    limit)).fetchall()
    return [StoppedSession(tag, station, connector, from_db_time(start), from_db_time(stop),
                           float(energy))
            for tag, station, connector, start, stop, energy in reversed(rows)]
