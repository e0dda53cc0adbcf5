"""Rebuild the controller from the store at start, before its first plan and before the server
listens: every acknowledged limit (operator cap and schedule, demand-response events), the open
sessions with their needs, their energy so far (every stored register through the ledger's rules,
with the connector's registers that came without a transaction while it was open, as live)
and their last power measurement; and what stations reported that the site acts on (a
car's needs, external limits), from the version-neutral events stored beside the reports.

A session the station started before a crash is open in the ledger; if the station re-sends its
StartTransaction after the restart the ledger answers it as a duplicate and publishes nothing,
so the store is the only place the controller can learn of it.

Measurements keep their age: a sample counts from the earlier of its own timestamp and when we
received it (never later than now), so a station clock that runs ahead cannot make an old
reading look fresh, and a replayed offline sample stays as old as it is.

A car's needs (ISO 15118) are taken again as they were taken: the energy it asked for on top of
what the session had when it asked (the registers received by then), unless a person set the
need (stored in `session_needs`: that one wins, as it did). External limits come back unless
cleared or ended; the station re-sends what changes.

Connectors the site file does not list that a station reported a status of come back too
(their station's maximum is kept free above it: `site/undeclared.py`).

The history of stopped sessions (`store_history.py`) is loaded before the open sessions, so a
silent driver's estimated need and departure (`site/estimates.py`) come back as they were made:
each from the sessions that had ended when it started.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from smartcharge import events as ev
from smartcharge import events_json
from smartcharge.clock import later
from smartcharge import store_obligations as ob
from smartcharge.metering import (ENERGY_REGISTER, LiveEnergy, phase_total,
                                  station_max_power_w)
from smartcharge.store_history import stopped_sessions
from smartcharge.store_reports import site_events
from smartcharge.site.estimates import PastSession
from smartcharge.site.obligations import event_from_row
from smartcharge.site.state import REBOOT
from smartcharge.site.station_reports import clear_external, needs_wait
from smartcharge.site.topology import ConnectorRef
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
        sessions = [(row, ob.start_register_location(tx, row),
                     ob.registers_received(tx, row.transaction_id, row),
                     ob.latest_samples(tx, row.transaction_id, (ENERGY_REGISTER,)),
                     ob.latest_samples(tx, row.transaction_id, (POWER, CURRENT)))
                    for row in ob.all_open_sessions(tx)]
        # sessions a station's boot closed, still to be reopened by its next message: the
        # profiles an earlier process sent them may still run (site/installed_restore.py)
        reboot_closed = [(row, ob.start_register_location(tx, row),
                          ob.registers_received(tx, row.transaction_id, row))
                         for row in tx.reboot_closed_latest()]
        connectors = [(row["station_id"], row["connector_id"])
                      for row in tx.connector_statuses()]
        return (pruned, ob.load(tx), sessions, reboot_closed, tx.last_transaction_id(),
                site_events(tx), connectors)

    pruned, obligations, sessions, reboot_closed, last_transaction_id, reported, connectors = \
        await store.run(read)
    controller.state.earlier_transactions_upto = last_transaction_id
    _restore_limits(controller.limits, obligations)
    for station_id, connector_id in connectors:
        # a connector the site file does not list, seen before the restart: the room for its
        # station's maximum is kept from the first plan and the first fail-safe defaults on
        # (a reconnect without a reboot reports no status that did not change)
        controller.state.note_undeclared(station_id, connector_id)
    history = await store.read(lambda tx: stopped_sessions(tx, now))
    _restore_history(controller.state, history)
    restored = 0
    orphaned = _not_in_site_file(controller.state.site, [row for row, *_ in sessions])
    for row, start_location, registers, energy_rows, power_rows in sessions:
        restored += _restore_session(controller.state, row, start_location, obligations.needs,
                                     now, registers, energy_rows, power_rows)
    for row, start_location, registers in reboot_closed:
        # as the reboot left it (its energy so far, its driver's need), to be reopened -
        # unless an open session of the store's holds its connector (an older one reopened
        # after the same boot): that one runs
        if ConnectorRef(row.station_id, row.connector_id) in controller.state.sessions:
            continue
        if _restore_session(controller.state, row, start_location, obligations.needs, now,
                            registers, [], []):
            controller.state.apply(ev.SessionStopped(
                row.station_id, row.connector_id, row.transaction_id,
                from_db_time(row.stop_time) or now, None, REBOOT, implicit=True))
    registers_of = {row.transaction_id: registers for row, _, registers, _, _ in sessions}
    needs, limits = _restore_reports(controller, reported, registers_of,
                                     {row.transaction_id: row for row, *_ in sessions}, now)
    counts = {"events": len(obligations.events), "cap_windows": len(obligations.cap_windows),
              "undeclared_connectors": len(controller.state.undeclared),
              "operator_cap": int(obligations.operator_cap is not None), "sessions": restored,
              "not_in_site_file": orphaned,
              "reboot_closed": len(controller.state.reboot_closed),
              "ev_needs": needs, "external_limits": limits, "history": len(history),
              **{f"pruned_{k}": v for k, v in pruned.items()}}
    log.info("restored from the store: %s", counts)
    return counts


def _not_in_site_file(site, rows: list[SessionRow]) -> int:
    """Open sessions of stations the site file no longer lists (removed while a car charged):
    they stay open in the store - not planned, not billed until a stop arrives (the station,
    listed again, sends it; it is refused at its handshake meanwhile). Logged once, so the
    operator who removed it knows; returns how many."""
    by_station: dict[str, list[int]] = {}
    for row in rows:
        if site.station(row.station_id) is None:
            by_station.setdefault(row.station_id, []).append(row.transaction_id)
    for station_id, ids in sorted(by_station.items()):
        log.warning("station %s is not in the site file: its open session(s) %s stay open "
                    "in the store, not planned and not billed until it stops them (list it "
                    "again to let it connect and send its stops)", station_id,
                    ", ".join(str(i) for i in sorted(ids)))
    return sum(len(ids) for ids in by_station.values())


def _restore_history(state, history) -> None:
    for row in history:
        state.history.add(PastSession(row.id_tag, ConnectorRef(row.station_id, row.connector_id),
                                      row.start_time, row.stop_time, row.energy_wh))


def _restore_limits(limits, obligations: ob.Obligations) -> None:
    if obligations.operator_cap is not None:
        limit_w, since = obligations.operator_cap
        limits.set_operator_cap(limit_w, since=since)
    if obligations.cap_windows:
        limits.set_cap_schedule(obligations.cap_windows)
    for row in obligations.events:
        limits.add_event(event_from_row(row))


def _restore_reports(controller, reported: list[tuple[dict, str]],
                     registers_of: dict[int, list[tuple[str, float, str, str, frozenset[str]]]],
                     open_rows: dict[int, SessionRow], now: datetime) -> tuple[int, int]:
    """Feed the stored report events back to the site: each open session's latest car needs
    (with what it had taken by then; a need reported before the session, on its EVSE, by the
    live rule: `station_reports.needs_wait`) and the external limits still in force. Returns
    how many of each."""
    latest_needs: dict[int, tuple[ev.ChargingNeedsReported, datetime]] = {}
    external: dict[tuple, ev.ExternalLimitReported] = {}
    for data, received_at in reported:
        event = events_json.from_json(data)
        if isinstance(event, ev.ChargingNeedsReported):
            if event.transaction_id is None:
                waiting, event = event, _waiting_needs_of(event, open_rows)
                if event is None and needs_wait(waiting.at, now):
                    # no session there yet: it may still begin (killed before its Started)
                    controller.reports.waiting_needs[
                        ConnectorRef(waiting.station_id, waiting.connector_id)] = waiting
            if event is not None and event.transaction_id in registers_of:
                latest_needs[event.transaction_id] = (event, from_db_time(received_at))
        elif isinstance(event, ev.ExternalLimitReported):
            external[(event.station_id, event.connector_id, event.source)] = event
        else:
            clear_external(external, event)     # as live: no EVSE named, every EVSE's
    state = controller.state
    for transaction_id, (event, received) in latest_needs.items():
        session = state.session_by_id(transaction_id)
        if session is None:
            continue
        live = LiveEnergy(session.meter_start_wh, session.started_at,
                          station_max_power_w(state.site.station(session.ref.station_id)),
                          session.meter_start_location)
        for at, wh, arrived, location, phases in registers_of[transaction_id]:
            if from_db_time(arrived) <= received:
                live.add(from_db_time(at), wh, location, phases)
        # a need a person set (restored above, from session_needs) stands, as it did
        controller.reports.take_needs(event, taken_wh=live.energy_wh or 0.0)
    in_force = [e for e in external.values() if not _ended(e, now)]
    for event in in_force:
        controller.reports.on_event(event)
    return len(latest_needs), len(in_force)


def _waiting_needs_of(event: ev.ChargingNeedsReported, open_rows: dict[int, SessionRow]
                      ) -> ev.ChargingNeedsReported | None:
    """A need reported with no session on its EVSE, as the open session there it waited for
    (first stored within `NEEDS_WAIT_S` after it) - None when there is none."""
    for row in open_rows.values():
        if (row.station_id, row.connector_id) == (event.station_id, event.connector_id) \
                and needs_wait(event.at, from_db_time(row.created_at)):
            return dataclasses.replace(event, transaction_id=row.transaction_id)
    return None


def _ended(event: ev.ExternalLimitReported, now: datetime) -> bool:
    """True when every schedule of the limit has run out (one with no duration never does)."""
    return all(s.duration_s is not None
               and later(s.start or event.at, s.duration_s) <= now
               for s in event.schedules)


def _restore_session(state, row: SessionRow, start_location: str | None,
                     needs: dict[int, ob.NeedRow], now: datetime, registers: list[tuple[str, float, str, str, frozenset[str]]], energy_rows: list[dict],
                     power_rows: list[dict]) -> int:
    if row.connector_id is None:
        return 0
    started = from_db_time(row.start_time) or from_db_time(row.created_at)
    # no start register (a 2.0.1 Started lost) stays unknown: the registers that arrived tell
    change = state.apply(ev.SessionStarted(row.station_id, row.connector_id, row.transaction_id,
                                           row.id_tag or "", row.meter_start_wh, started,
                                           meter_start_location=start_location))
    if change is None:   # a station the site file no longer has, or an older transaction
        # whose start came late while a newer one runs on its connector (state.py)
        return 0
    need = needs.get(row.transaction_id)
    if need is not None:
        state.set_need(row.transaction_id, requested_wh=need.requested_wh,
                       departure=need.departure)
    # every stored register through the ledger's rules (offline starts, resets), not only the
    # last one: meterStart 0 and a 4.5 MWh register must not read as "need met"; at their
    # location, so the live samples after the restart go on with the same chain
    for location in {location for *_, location, _ in registers}:   # one: the billed location
        state.load_registers(row.transaction_id,
                             [(from_db_time(at), wh, phases)
                              for at, wh, _, where, phases in registers
                              if where == location], location)
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
                           energy_register_wh=value(ENERGY_REGISTER),
                           power_w=phase_total((r["phase"], r["value_si"]) for r in rows
                                               if r["measurand"] == POWER
                                               and r["value_si"] is not None),
                           current_a=currents, register_location=rows[0]["location"],
                           draw_location=rows[0]["location"])
