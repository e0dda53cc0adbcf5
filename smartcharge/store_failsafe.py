"""The SQL of what each connector's fail-safe default may be in its station (`failsafe_held`):
per connector, the most it may hold as W steps over time (`site/held_defaults.py`). Plain rows
in, plain rows out."""

from __future__ import annotations

import json
from datetime import datetime

from smartcharge.store_tx import StoreTx, db_time, from_db_time

Step = list[tuple[datetime, float]]


def write_held(tx: StoreTx, station_id: str, held: dict[int, Step], *, at: datetime,
               idle: dict[int, float | None] | None = None) -> None:
    """Replace what the station's connectors (`held`: connector id -> step) may hold; `idle`
    (connector id -> W or None): the most an idle share of ours may let a car draw there."""
    idle = idle or {}
    for connector_id, step in held.items():
        text = json.dumps([[db_time(m), float(w)] for m, w in step])
        idle_w = idle.get(connector_id)
        tx.execute("INSERT INTO failsafe_held (station_id, connector_id, steps_json, updated_at, "
                   "idle_w) VALUES (?, ?, ?, ?, ?) ON CONFLICT (station_id, connector_id) DO "
                   "UPDATE SET steps_json = excluded.steps_json, updated_at = "
                   "excluded.updated_at, idle_w = excluded.idle_w",
                   (station_id, int(connector_id), text, db_time(at),
                    None if idle_w is None else float(idle_w)))


def write_held_batch(tx: StoreTx, batch: dict[str, tuple[dict[int, Step], datetime,
                                                         dict[int, float | None]]]) -> None:
    """`write_held` for several stations at once (station id -> (held, at, idle)): one piece
    of store work, so a round's lowered records cost one commit."""
    for station_id, (held, at, idle) in batch.items():
        write_held(tx, station_id, held, at=at, idle=idle)


def read_held(tx: StoreTx) -> dict[str, dict[int, Step]]:
    """Station id -> connector id -> the step it may hold."""
    out: dict[str, dict[int, Step]] = {}
    for station_id, connector_id, text in tx.execute(
            "SELECT station_id, connector_id, steps_json FROM failsafe_held"):
        step = [(from_db_time(m), float(w)) for m, w in json.loads(text)]
        if step:
            out.setdefault(station_id, {})[int(connector_id)] = step
    return out


def read_held_idle(tx: StoreTx) -> dict[str, dict[int, float]]:
    """Station id -> connector id -> the most an idle share of ours may let a car draw there
    (connectors with none known left out)."""
    out: dict[str, dict[int, float]] = {}
    for station_id, connector_id, idle_w in tx.execute(
            "SELECT station_id, connector_id, idle_w FROM failsafe_held "
            "WHERE idle_w IS NOT NULL"):
        out.setdefault(station_id, {})[int(connector_id)] = float(idle_w)
    return out
