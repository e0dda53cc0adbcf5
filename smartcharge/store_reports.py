"""Queries for what 2.0.1 stations report beside billing (table `station_reports`): an EV's
charging needs, external limits, the profiles a station holds, its device model, security
events. Kept as sent (camelCase JSON), with the EVSE and our session when known."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from smartcharge.store_tx import StoreTx, db_time

# information only, and large (a whole device model, event streams): pruned by age with the raw
# inbound messages; an EV's needs, external limits, reported profiles and security events stay
PRUNABLE_KINDS = ("NotifyReport", "NotifyEvent", "NotifyMonitoringReport",
                  "NotifyCustomerInformation", "NotifyDisplayMessages")


# the reports the site acts on, whose neutral event (`event_json`) it restores at start
SITE_KINDS = ("NotifyEVChargingNeeds", "NotifyChargingLimit", "ClearedChargingLimit")


def insert_report(tx: StoreTx, station_id: str, kind: str, payload: dict, at: datetime, *,
                  connector_id: int | None = None, transaction_id: int | None = None,
                  event: dict | None = None) -> int:
    """`event`: the version-neutral event published for it (events_json.to_json), if any."""
    cursor = tx.execute(
        "INSERT INTO station_reports (station_id, kind, connector_id, transaction_id, "
        "payload_json, received_at, event_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (station_id, kind, connector_id, transaction_id, json.dumps(payload), db_time(at),
         None if event is None else json.dumps(event)))
    return int(cursor.lastrowid)


def site_events(tx: StoreTx) -> list[tuple[dict, str]]:
    """(neutral event JSON, received_at) of every report the site acts on, oldest first."""
    marks = ", ".join("?" * len(SITE_KINDS))
    return [(json.loads(row[0]), row[1]) for row in tx.execute(
        f"SELECT event_json, received_at FROM station_reports WHERE kind IN ({marks}) AND "
        "event_json IS NOT NULL ORDER BY id", SITE_KINDS)]


def reports(tx: StoreTx, station_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    """A station's reports, oldest first (of one kind, when given); `payload` parsed."""
    query = ("SELECT id, kind, connector_id, transaction_id, payload_json, received_at FROM "
             "station_reports WHERE station_id = ?")
    args: tuple = (station_id,)
    if kind is not None:
        query, args = query + " AND kind = ?", (station_id, kind)
    rows = tx.execute(query + " ORDER BY id", args).fetchall()
    return [{"id": row[0], "kind": row[1], "connector_id": row[2], "transaction_id": row[3],
             "payload": json.loads(row[4]), "received_at": row[5]} for row in rows]


def prune_reports(tx: StoreTx, before: datetime) -> int:
    """Forget the information-only reports received before `before`; returns how many."""
    marks = ", ".join("?" * len(PRUNABLE_KINDS))
    return tx.execute(f"DELETE FROM station_reports WHERE kind IN ({marks}) AND "
                      "received_at < ?", (*PRUNABLE_KINDS, db_time(before))).rowcount
