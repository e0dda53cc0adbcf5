"""Taking the planner's picture of the site (`planner.PlanInputs`) on the event loop.

The live state keeps changing while a plan is made in its worker thread, so the planner gets a
copy: per open session a few numbers (`SessionInput`), the limits per slot, the prices. Copying
5 000 sessions at once takes tens of ms, so `read_steps` is a generator that yields every
SESSIONS_PER_STEP sessions and the controller gives the loop back in between (issue 10: the loop
is never blocked for more than 20 ms). Each session is read as it is when its step runs; one
that ended meanwhile is left out, as if the plan had been made a moment later - the state moves
on during the solve anyway, and every such change asks for the next re-plan.

Reads the controller's live picture (`SiteController`) but changes nothing in it except
forgetting the closed-loop facts of sessions that ended.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta

import numpy as np

from smartcharge.site import in_steps, unbounded, undeclared
from smartcharge.site.planner import PlanInputs, SessionInput
from smartcharge.site.topology import ConnectorRef

# ~0.1-0.2 ms each at 5 000 stations (steps of 400 were up to 88 ms: s25-budget); the loop is
# given back once the turn's share of background work is spent (turn_share.py)
SESSIONS_PER_STEP = 25
# what an estimate of a car's energy since its last register leaves of its need at least
# (_remaining_now_wh): well above the planner's ENERGY_RESOLUTION_WH, under which a need is met
REMAINING_FLOOR_WH = 10.0
DEPARTURE_EDGES = 8          # slot edges at the next departures (within two slots) ...
DEPARTURE_EDGE_GAP_S = 60.0  # ... unless one is this close to another edge


def slots(controller, now: datetime) -> tuple[list[datetime], list[datetime]]:
    """Slot edges: now, every slot boundary, and every moment a limit begins or ends.

    A slot partly covered by a lower limit takes that limit for the whole slot (safe), so
    without an edge near 17:12 an event starting then would hold the site down from 17:00.
    """
    settings = controller.settings
    slot_s = settings.slot_s
    horizon_end = now + timedelta(seconds=settings.horizon_s)
    first_end_ts = (now.timestamp() // slot_s + 1) * slot_s
    edges = {now, datetime.fromtimestamp(first_end_ts, now.tzinfo)}
    while max(edges) < horizon_end:
        edges.add(max(edges) + timedelta(seconds=slot_s))
    last = max(edges)
    # The edge goes a little before the change: stations' clocks drift and their schedules
    # switch on whole seconds, and the slot from there on takes the lower limit (see above).
    lead = timedelta(seconds=settings.limit_lead_s)
    edges.update(m - lead for m in controller.limits.change_times(now) if now < m - lead < last)
    edges.update(departure_edges(controller, now, edges))
    edges.update(near_edges(settings, now, last))
    ordered = sorted(edges)
    return ordered[:-1], ordered[1:]


def near_edges(settings, now: datetime, last: datetime) -> list[datetime]:
    """Edges at every multiple of near_slot_s within near_window_s of now (none within
    DEPARTURE_EDGE_GAP_S of now). Over a 15-min first slot the LP sees a car near its need
    as its need spread over the slot: a car 2 kWh from full planned at 8 kW where it could
    take 22 kW for 5 minutes and leave the rest of the slot to the others - while the
    others were at their own maximum, that power went unused (the demo day, truthful:
    23.6 kWh of the 90 kWh the limit left unused while the site was short). On the grid, so
    a re-plan finds the last plan's edges again (warm start, kept slots)."""
    step_s = settings.near_slot_s
    if step_s is None:
        return []
    out = []
    edge_ts = (now.timestamp() // step_s + 1) * step_s
    until = min(now + timedelta(seconds=settings.near_window_s), last)
    while (edge := datetime.fromtimestamp(edge_ts, now.tzinfo)) < until:
        if (edge - now).total_seconds() >= DEPARTURE_EDGE_GAP_S:
            out.append(edge)
        edge_ts += step_s
    return out


def departure_edges(controller, now: datetime, edges: set[datetime]) -> list[datetime]:
    """An edge at each of the next few departures within two slots: a car leaving inside a
    slot was planned as if it stayed to the slot's end, its energy spread over the whole
    slot, and left without the part planned after it had gone. A few only (the earliest):
    the next re-plans add the later ones, and every edge costs solve time."""
    near = now + timedelta(seconds=2 * controller.settings.slot_s)
    gap = timedelta(seconds=DEPARTURE_EDGE_GAP_S)
    out: list[datetime] = []
    for departure in sorted(s.departure for s in controller.state.sessions.values()
                            if now < s.departure < near):
        if len(out) >= DEPARTURE_EDGES or \
                any(abs(departure - e) < gap for e in (*edges, *out)):
            continue
        out.append(departure)
    return out


def fallback_w(controller, ref: ConnectorRef) -> float:
    """What a connector we cannot control (refuses, does not answer, offline) is planned at:
    what the profiles it accepted let it draw, or, with none known, its maximum (or more, if
    it was measured drawing more)."""
    c = controller
    installed = c.installed.installed_max_w(ref) if c.installed is not None else None
    if installed is not None:
        return max(installed, c.overdraw_w.get(ref, 0.0))
    last = c.state.last_measured_w(ref) or 0.0
    return max(c.topology.max_power_w(ref), last, c.overdraw_w.get(ref, 0.0))


def read_steps(controller, now: datetime) -> Generator[None, None, PlanInputs]:
    """The picture at `now`, in steps: yields between steps, returns the PlanInputs."""
    c, topo = controller, controller.topology
    limits_version = c.limits.version   # dispatch holds increases once it moves on
    starts, ends = slots(c, now)
    root_w, root_sources = c.limits.effective_root_limit_w(starts, ends)
    circuits = []
    for circuit_id in c.limits.circuits_limited() & set(topo.node_ids[1:]):
        values, sources = c.limits.circuit_limit_w(circuit_id, starts, ends)   # OpenADR
        circuits.append((topo.node_ids.index(circuit_id), values, sources[0]))
    station_caps = tuple((topo.station_node[station_id], *caps)
                         for station_id, *caps in c.reports.station_caps(starts, ends)
                         if station_id in topo.station_node)
    yield from c.closed_loop.forget_ended_steps(now)   # in steps (s33-stall)
    items = list(c.state.sessions.items())
    sessions: list[SessionInput] = []
    for first in range(0, len(items), SESSIONS_PER_STEP):
        if first:
            yield
        for ref, session in items[first:first + SESSIONS_PER_STEP]:
            if c.state.sessions.get(ref) is not session:
                continue    # ended while the picture was taken
            if topo.has(ref):
                sessions.append(_session_input(c, ref, session, starts, ends))
            elif undeclared.is_undeclared(topo, ref):
                # not in the site file: a fixed load at what its station lets it draw
                sessions.append(_undeclared_input(c, ref, session))
    closed = list(c.state.reboot_closed.values())   # (a restart's boot storm: every car)
    for first in range(0, len(closed), SESSIONS_PER_STEP):
        yield
        sessions.extend(_boot_closed_inputs(c, closed[first:first + SESSIONS_PER_STEP]))
    # connectors drawing without a session (a free-vend station): their fresh draw is room
    # taken, though no session is there to plan (sessionless.py)
    sessionless_w = c.sessionless.loads_w(now, c.settings.stale_after_s,
                                          {s.ref for s in sessions})
    sessionless_phases = tuple((ref, use[0]) for ref, _ in sessionless_w
                               if (use := c.draw_phase_use(ref))[2])
    return PlanInputs(
        now=now, starts=tuple(starts), ends=tuple(ends), root_w=root_w,
        root_sources=tuple(root_sources), circuits=tuple(circuits), station_caps=station_caps,
        sessions=tuple(sessions),
        price_per_kwh=c.prices.per_slot(starts, ends),
        default_energy_wh=c.site.session_defaults.energy_wh,
        topup_weight=c.settings.topup_weight, taper_worth=c.settings.taper_worth,
        taper_worth_hold_s=c.settings.taper_worth_hold_s,
        idle_window_s=c.settings.idle_window_s,
        slot_s=c.settings.slot_s, previous=c.plan, stable_window_s=c.settings.stable_window_s,
        limits_version=limits_version,
        undeclared_w=undeclared.station_reserves_w(c.state, topo) + _unbounded_w(c, now),
        sessionless_w=sessionless_w, sessionless_phases=sessionless_phases)


# a connector's status that says no car is there: a boot-closed session on it is over
FREE_STATUSES = frozenset({"Available"})


def _boot_closed_inputs(c, closed: list) -> list[SessionInput]:
    """Sessions a station's BootNotification closed that its next message may reopen (it kept
    the transaction: the car still charging on its TxProfile): fixed loads at what that
    profile allows, until reopened, stopped, replaced by a new session or the connector is
    seen Available. Left out of the plan, their room went to other cars: 39.9 kW of installed
    profiles under a 30 kW grid after a restart, until their next messages reopened them."""
    out = []
    for session in closed:
        ref = session.ref
        if ref in c.state.sessions or not c.topology.has(ref) \
                or c.state.status.get(ref) in FREE_STATUSES:
            continue
        fixed_w = (c.installed.boot_closed_max_w(session) if c.installed is not None
                   else c.topology.max_power_w(ref))
        out.append(SessionInput(ref=ref, transaction_id=session.transaction_id,
                                remaining_wh=session.remaining_wh, need_told=session.need_told,
                                departure=session.departure,
                                phases=c.topology.connector(ref).phases, phase=0,
                                phases_known=False, fixed_w=fixed_w))
    return out


def _unbounded_w(c, now: datetime) -> tuple[tuple[str, float], ...]:
    """What the idle connectors whose station refused their fail-safe default, or keeps it
    under a new car (no idle layer), may draw the moment a car arrives, kept free above their
    stations (site/unbounded.py)."""
    out: tuple[tuple[str, float], ...] = ()
    if c.unbounded_idle:
        out = unbounded.station_reserves_w(c.topology, c.unbounded_idle,
                                           busy=c.state.sessions)
    if c.kept_defaults_w:
        out += unbounded.station_reserves_w(c.topology, c.kept_defaults_w,
                                            busy=c.state.sessions)
    if c.held_idle:
        # a held station's idle connectors at the most what it holds lets a car draw from
        # now on (its idle share until it ends, then its default: learned.HeldIdle)
        out += unbounded.held_reserves_w(c.held_idle, now, c.state.sessions)
    return out


def read_all(controller, now: datetime) -> PlanInputs:
    """The picture in one go (no event loop needed: tests, benchmarks)."""
    return in_steps.run_all(read_steps(controller, now))


def _session_input(c, ref: ConnectorRef, session, starts, ends) -> SessionInput:
    phases, phase, known = c.phase_use(ref)
    if phases == 1 and ref in c.plans_on_default and c.topology.connector(ref).phases == 3:
        # its plan goes out as the connector's default, which limits whatever car comes
        # next: planned for a three-phase car (A per phase on every phase) as much as for
        # the single-phase one it has, as while its phases were unknown
        phases, phase, known = 3, 0, False
    common = dict(ref=ref, transaction_id=session.transaction_id,
                  remaining_wh=_remaining_now_wh(c, ref, session, starts[0]),
                  need_told=session.need_told,
                  departure=session.departure, phases=phases, phase=phase, phases_known=known)
    if ref in c.uncontrollable or not c.state.online.get(ref.station_id, False):
        return SessionInput(**common, fixed_w=fallback_w(c, ref))
    ev_cap_w = c.ev_cap_w.get(ref)
    guess_w = c.closed_loop.ceiling.cap_w(ref, session.transaction_id, phases, known)
    if guess_w is not None and ev_cap_w is not None and ev_cap_w <= guess_w:
        guess_w = None       # what it was seen taking is the lower cap
    return SessionInput(**common, floor_w=c.floor_w.get(ref, 0.0),
                        ev_cap_w=ev_cap_w if guess_w is None else guess_w,
                        charger_guess_w=guess_w,
                        taper_w=_taper_w(c, ref, session, starts, ends),
                        declined=ref in c.declined_at,
                        car_min_w=c.reports.car_min_w(ref, phases),
                        cap_w=c.reports.cap_w(ref, starts, ends, phases))


def _remaining_now_wh(c, ref: ConnectorRef, session, now: datetime) -> float:
    """The car's need left now: at its last register reading less what it has drawn since
    (closed_loop.drawn_since_sample_wh). An estimate never plans the need met: it leaves at
    least REMAINING_FLOOR_WH, so only a register says a car is done (planned at 0 on a guess,
    a car not yet full would be paused until its next sample)."""
    remaining = session.remaining_wh
    since = c.closed_loop.drawn_since_sample_wh(ref, now)
    if since <= 0.0 or remaining <= REMAINING_FLOOR_WH:
        return remaining
    return max(remaining - since, REMAINING_FLOOR_WH)


def _taper_w(c, ref: ConnectorRef, session, starts, ends):
    """Per slot what the car's learned taper says it will take (site/taper.py), or None."""
    loop = c.closed_loop
    if ref not in loop.taper.fits or ref not in c.state.measurements:
        return None
    sampled_at = c.state.measurements[ref].ordered_at
    caps = loop.taper.caps_w(ref, sampled_at, session.energy_wh, starts, ends,
                             loop.next_sample(ref, starts[0]), c.settings.ev_headroom_w)
    return np.array(caps, dtype=float)


def _undeclared_input(c, ref: ConnectorRef, session) -> SessionInput:
    """A session on a connector the site file does not list (site/undeclared.py)."""
    return SessionInput(ref=ref, transaction_id=session.transaction_id,
                        remaining_wh=session.remaining_wh, need_told=session.need_told,
                        departure=session.departure,
                        phases=undeclared.phases(c.topology, ref), phase=0, phases_known=False,
                        fixed_w=undeclared.planned_w(c.state, c.topology, ref))
