"""Rebuild the controller from the store at start, before its first plan and before the server
listens: every acknowledged limit (operator cap and schedule, demand-response events), the open
sessions with their needs, and each session's last energy register and power measurement.

A session the station started before a crash is open in the ledger; if the station re-sends its
StartTransaction after the restart the ledger answers it as a duplicate and publishes nothing,
so the store is the only place the controller can learn of it.

Measurements keep their age: a sample counts from the earlier of its own timestamp and when we
received it (never later than now), so a station clock that runs ahead cannot make an old
reading look fresh, and a replayed offline sample stays as old as it is.
"""

from __future__ import annotations

import logging
from datetime import datetime

from smartcharge import events as ev
from smartcharge import store_obligations as ob
from smartcharge.metering import ENERGY_REGISTER
from smartcharge.site.obligations import event_from_row
from smartcharge.store import SessionRow, from_db_time

log = logging.getLogger(__name__)

POWER = "Power.Active.Import"
CURRENT = "Current.Import"


async def restore(controller, store) -> dict[str, int]:
    """Prune what expired, then load the obligations and live sessions into `controller`.
    Returns counts of what was restored and pruned (also logged)."""
    now = controller.clock.now()

    def read(tx):
        pruned = ob.prune(tx, now)
        sessions = [(row, ob.latest_samples(tx, row.transaction_id, (ENERGY_REGISTER,)),
                     ob.latest_samples(tx, row.transaction_id, (POWER, CURRENT)))
                    for row in ob.all_open_sessions(tx)]
        return pruned, ob.load(tx), sessions

    pruned, obligations, sessions = await store.run(read)
    _restore_limits(controller.limits, obligations)
    restored = 0
    for row, energy_rows, power_rows in sessions:
        restored += _restore_session(controller.state, row, obligations.needs, now,
                                     energy_rows, power_rows)
    counts = {"events": len(obligations.events), "cap_windows": len(obligations.cap_windows),
              "operator_cap": int(obligations.operator_cap is not None), "sessions": restored,
              **{f"pruned_{k}": v for k, v in pruned.items()}}
    log.info("restored from the store: %s", counts)
    return counts


def _restore_limits(limits, obligations: ob.Obligations) -> None:
    if obligations.operator_cap is not None:
        limit_w, since = obligations.operator_cap
        limits.set_operator_cap(limit_w, since=since)
    if obligations.cap_windows:
        limits.set_cap_schedule(obligations.cap_windows)
    for row in obligations.events:
        limits.add_event(event_from_row(row))


def _restore_session(state, row: SessionRow, needs: dict[int, ob.NeedRow], now: datetime,
                     energy_rows: list[dict], power_rows: list[dict]) -> int:
    if row.connector_id is None:
        return 0
    started = from_db_time(row.start_time) or from_db_time(row.created_at)
    change = state.apply(ev.SessionStarted(row.station_id, row.connector_id, row.transaction_id,
                                           row.id_tag or "", row.meter_start_wh or 0.0,
                                           started))
    if change is None:   # a station the site file no longer has
        return 0
    need = needs.get(row.transaction_id)
    if need is not None:
        state.set_need(row.transaction_id, requested_wh=need.requested_wh,
                       departure=need.departure)
    for rows in (energy_rows, power_rows):
        if rows:
            state.apply(_sampled(row, rows, now))
    return 1


def _sampled(session: SessionRow, rows: list[dict], now: datetime) -> ev.MeterSampled:
    """One stored sampling moment as the event the adapter published when it arrived."""
    def value(measurand: str, phases: tuple[str, ...] = ("",)) -> float | None:
        found = [r["value_si"] for r in rows if r["measurand"] == measurand
                 and r["phase"] in phases and r["value_si"] is not None]
        return found[-1] if found else None

    stamped = from_db_time(rows[0]["timestamp"])
    received = max(from_db_time(r["received_at"]) for r in rows)
    currents = tuple(value(CURRENT, (phase, f"{phase}-N")) for phase in ("L1", "L2", "L3"))
    return ev.MeterSampled(session.station_id, session.connector_id, session.transaction_id,
                           min(stamped, received, now), rows[0]["context"],
                           energy_register_wh=value(ENERGY_REGISTER), power_w=value(POWER),
                           current_a=currents)
