"""The dashboard's view model: what `/api/site` and its stream show, as a pure function of the
controller's state at one moment (the controller measures the load and the limit in force and
records the history first; nothing here changes any state)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from smartcharge.clock import format_ocpp_time
from smartcharge.site import in_steps
from smartcharge.site.limits import SOURCE_FALLBACK, LimitSource
from smartcharge.site.topology import ConnectorRef

ITEMS_PER_STEP = 250   # connectors (or sessions) per step: a few ms

if TYPE_CHECKING:
    from smartcharge.site.controller import SiteController
    from smartcharge.site.reading import SiteReading


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else value


def view_model(controller: SiteController, now: datetime, limit_w: float,
               limit_source: LimitSource | None, reading: SiteReading,
               reading_limit_w: float) -> dict:
    """The snapshot at `now`: the site's load (a reading at one instant, `site/reading.py`)
    against the limit in force then, each connector, the sessions, the stations, the DR events
    and the controller's counters."""
    return in_steps.run_all(view_model_steps(controller, now, limit_w, limit_source, reading,
                                             reading_limit_w))


def view_model_steps(controller: SiteController, now: datetime, limit_w: float,
                     limit_source: LimitSource | None, reading: SiteReading,
                     reading_limit_w: float) -> in_steps.Steps[dict]:
    """`view_model` in steps of ITEMS_PER_STEP connectors or sessions (in_steps.py): at 5 000
    connectors with a session each it took 0.3-0.5 s in one go (issue 10)."""
    c = controller
    connectors = []
    for first, refs in in_steps.chunks(c.topology.refs, ITEMS_PER_STEP):
        if first:
            yield
        connectors += [_connector(c, ref, now) for ref in refs]
    yield
    # connectors the stations reported that the site file does not list (site/undeclared.py)
    connectors += [_connector(c, ref, now) for ref in list(c.state.undeclared)]
    sessions = []
    for first, part in in_steps.chunks(sorted(c.state.sessions.values(),
                                              key=lambda s: s.transaction_id), ITEMS_PER_STEP):
        if first:
            yield
        sessions += [s.as_json() for s in part]
    yield
    return {
        "time": format_ocpp_time(now),
        "effective_limit_w": _finite(limit_w),
        # the measured draw at one instant (site_load_at), its limit then, stale meters
        "site_load_w": round(reading.load_w, 1),
        "site_load_at": format_ocpp_time(reading.at),
        "site_load_limit_w": _finite(reading_limit_w),
        "site_load_stale": reading.stale,
        "limit_binding": limit_source.as_json() if limit_source else None,
        "history": list(c.history),
        "connectors": connectors,
        "sessions": sessions,
        "stations": [{"station_id": sid, "online": online}
                     for sid, online in c.state.online.items()],
        "dr_events": c.limits.events_json(now),
        "prices": c.prices.as_json(now),
        "vens": [status(now) for _, status in sorted(c.ven_status.items())],
        "stats": {"profiles_sent": c.stats.profiles_sent, "replans": c.stats.replans,
                  "violations": c.stats.violations,
                  "last_solve_s": round(c.stats.last_solve_s, 4),
                  "last_status": c.stats.last_status},
    }


def _connector(c: SiteController, ref: ConnectorRef, now: datetime) -> dict:
    session = c.state.sessions.get(ref)
    plan = c.plan.connectors.get(ref) if c.plan else None
    declared = c.topology.has(ref)
    if not declared and session is not None:
        binding = LimitSource(SOURCE_FALLBACK, f"{ref.station_id}/{ref.connector_id}",
                              "not in the site file: planned at the station's maximum")
    elif ref in c.uncontrollable and session is not None:
        binding = LimitSource(SOURCE_FALLBACK, f"{ref.station_id}/{ref.connector_id}",
                              c.uncontrollable[ref])
    elif plan is not None:
        binding = plan.binding
    else:
        binding = None
    measured = c.state.measured_w(ref, now, c.settings.stale_after_s)
    allocated = c.allocated_now_w(ref) if session is not None else None
    return {
        "station_id": ref.station_id, "connector_id": ref.connector_id,
        "online": c.state.online.get(ref.station_id, False),
        "status": c.state.status.get(ref),
        "session_id": session.transaction_id if session else None,
        "allocated_w": None if allocated is None else round(allocated, 1),
        "measured_w": None if measured is None else round(measured, 1),
        "binding": binding.as_json() if binding else None,
        "controllable": declared and ref not in c.uncontrollable,
        # a connector the station reports that the site file does not list
        "undeclared": not declared}


__all__ = ["view_model", "view_model_steps"]
