"""The planner, pure: an immutable picture of the site (`PlanInputs`) -> an `optimizer.Problem`
-> a checked `Plan` with the binding limit of each connector and the idle connectors' shares.

No asyncio, no I/O, no clock: the controller takes the picture on the event loop (cheap, in
steps: `site/plan_inputs.py`) and runs `make_plan` in a worker thread, so building the problem
for thousands of connectors, solving, checking and working out the bindings never holds up the
stations' answers (issue 10). Everything here reads only its arguments and the topology, which
is built once from the frozen site file and never changes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

import optimizer
from optimizer.baselines import serve_more
from optimizer.check import node_loads
from optimizer.forward import running_first_order
from optimizer.solve import weighted_energy_wh
from smartcharge.site.connector_plans import ConnectorPlans
from smartcharge.site.limits import LimitSource
from smartcharge.site.plan import (Plan, binding_sources, clip_to_limits, idle_shares,
                                   over_limits, safe_baseline)
from smartcharge.site import resumes, undeclared
from smartcharge.site.installed import planned_share
from smartcharge.site.topology import ConnectorRef, SiteTopology
from smartcharge.site.warm_plans import WarmPlans

log = logging.getLogger(__name__)

ENERGY_RESOLUTION_WH = 1.0   # an energy register's resolution
OVERSTAY_S = 3600.0          # a car past its departure, still plugged in: planned this much more
# the weight of a car of unknown phases started to show them (unknown_phases_started): above
# the worst exchange a per-phase limit makes (one W of it for three of a three-phase car, at
# mixed voltages a little more), so its minimum wins wherever the limits allow it
UNKNOWN_PHASES_WEIGHT = 4.0
# the least room now handed to a silent driver's car (silent_cars_served_now) [W]
SILENT_ROOM_MIN_W = 1.0


@dataclass(frozen=True, slots=True)
class SessionInput:
    """One open session as the planner sees it, copied from the live state at one moment."""

    ref: ConnectorRef
    transaction_id: int
    remaining_wh: float
    need_told: bool
    departure: datetime
    phases: int                  # phase use it is planned on (controller.phase_use)
    phase: int
    phases_known: bool
    fixed_w: float | None = None     # not controlled (refuses, unanswered, offline): this load
    floor_w: float = 0.0             # a station that cannot pause: its minimum draw
    ev_cap_w: float | None = None    # closed loop: what the car takes (+ headroom)
    # its on-board charger's ceiling guessed (charger_ceiling.py), when that is the cap in
    # ev_cap_w: the bay's maximum on its phases is what it may take beyond it (`guessed_...`)
    charger_guess_w: float | None = None
    taper_w: np.ndarray | None = None  # (T,) its learned taper: what it will take per slot
    declined: bool = False           # the car declines power (full): planned at 0
    car_min_w: float | None = None   # ISO 15118 evMinCurrent on `phases`
    cap_w: np.ndarray | None = None  # (T,) limits set outside us and the car's maximum

    @property
    def controlled(self) -> bool:
        return self.fixed_w is None


@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan is made from, at `now`; never changed after it is taken."""

    now: datetime
    starts: tuple[datetime, ...]            # slot edges (controller._slots)
    ends: tuple[datetime, ...]
    root_w: np.ndarray                      # (T,) effective grid limit [W] (inf: none)
    root_sources: tuple                     # (T,) its source per slot
    circuits: tuple = ()                    # (node, values (T,), source now) of DR on circuits
    # (node, W (T,), A per phase (T,), its LimitSource) of each station limited as a whole
    # from outside us (NotifyChargingLimit without an EVSE): its total, all its connectors
    station_caps: tuple = ()
    sessions: tuple[SessionInput, ...] = ()   # every open session on a known connector
    price_per_kwh: np.ndarray | None = None
    default_energy_wh: float = 0.0          # the site's default need (silent drivers' top-up)
    topup_weight: float = 0.1
    taper_worth: bool = True                # ControllerSettings.taper_worth
    taper_worth_hold_s: float = 3600.0      # ControllerSettings.taper_worth_hold_s
    idle_window_s: float = 1800.0
    slot_s: float = 900.0
    previous: Plan | None = None            # the last plan (immutable): kept among equal optima
    stable_window_s: float | None = None    # ... in the slots starting this soon (None: no)
    limits_version: int | None = None       # the limits' version the picture was taken at
    # (station id, W) of each station with a connector the site file does not list: what it
    # may draw that nothing of ours bounds, kept free above it (undeclared.station_reserve_w)
    undeclared_w: tuple[tuple[str, float], ...] = ()
    # (ref, W) of each declared connector drawing without a session (a free-vend station):
    # a fixed load at its fresh measured draw, never a session (sessionless.py)
    sessionless_w: tuple[tuple[ConnectorRef, float], ...] = ()
    # (ref, 1 or 3) of each of those whose sample's per-phase currents showed its phases
    # (controller.draw_phase_use); the others are counted as of unknown phases
    sessionless_phases: tuple[tuple[ConnectorRef, int], ...] = ()


@dataclass(frozen=True)
class Built:
    """A problem and what it was built from (the connectors in its row order, the fixed loads
    planned around it, the floors)."""

    problem: optimizer.Problem
    controlled: list[ConnectorRef]
    sessions: list[SessionInput]            # the controlled ones, in row order
    fixed: dict[ConnectorRef, float]
    circuit_sources: dict[int, LimitSource] = field(default_factory=dict)
    root_fixed_w: float = 0.0               # what the fixed loads took off the root's limit
    # (N,) each row's W per W of the site's plan (installed.planned_share): 1, or a third
    scale: np.ndarray | None = None
    # the fixed loads alone (uncontrolled sessions, boot-closed ones, floors, draws without a
    # session, undeclared connectors' reserves) over a node's limit in some slot: the plan
    # cannot keep it until one of them can be planned again (controller.py)
    fixed_over: bool = False

    def __post_init__(self) -> None:
        if self.scale is None:
            object.__setattr__(self, "scale", np.ones(len(self.controlled)))


@dataclass
class PlanTimes:
    """Where a re-plan's time went [s of real time] (benchmarks/stage_probe.py reads them)."""

    build_s: float = 0.0
    solve_s: float = 0.0
    check_s: float = 0.0
    finish_s: float = 0.0   # bindings, idle shares, the plan's objects


TAPER_WORTH_STEPS = 4   # a taper's worth in quarters: 0.25, 0.5, 0.75 (never 0: weights > 0)


def build_problem(topo: SiteTopology, inputs: PlanInputs) -> Built:
    t = len(inputs.starts)
    slot_s = np.array([(e - b).total_seconds() for b, e in zip(inputs.starts, inputs.ends)])
    node_w, node_a = topo.node_limits(inputs.root_w)
    circuit_sources = {}     # node -> the DR event on it that is lowest now
    for node, values, source in inputs.circuits:
        if source is not None and values[0] < node_w[node, 0]:
            circuit_sources[node] = source
        node_w[node] = np.minimum(node_w[node], values)
    for node, values_w, values_a, source in inputs.station_caps:
        if values_w[0] < node_w[node, 0] or values_a[0] < node_a[node, 0]:
            circuit_sources[node] = source
        node_w[node] = np.minimum(node_w[node], values_w)
        node_a[node] = np.minimum(node_a[node], values_a)
    fixed: dict[ConnectorRef, float] = {}
    # the phases each fixed load is counted on (1, 3; None: its car's are not known)
    fixed_phases: dict[ConnectorRef, int | None] = {}
    controlled: list[SessionInput] = []
    for session in inputs.sessions:
        if not session.controlled:
            fixed[session.ref] = session.fixed_w
            fixed_phases[session.ref] = session.phases if session.phases_known else None
        else:
            controlled.append(session)
            if session.floor_w:
                fixed[session.ref] = session.floor_w
                # a floor is its minimum current on each phase it plans the car on, whatever
                # the car: its plan's minimum on `phases` (a single-phase car's on its one)
                fixed_phases[session.ref] = session.phases
    fixed_phases.update(inputs.sessionless_phases)
    root_fixed_w = 0.0
    fixed_over = False    # the fixed loads alone over a limit somewhere (plan.extra)
    for ref, load_w in [*fixed.items(), *inputs.sessionless_w]:
        # Fixed load is planned around: it comes off every limit above it. On the current
        # limits, at the most it puts on one phase (topology.most_phase_a: a single-phase
        # car's all on its phase, a car of unknown phases as if it were one), taken off all
        # three phases' (a node's limit is one for its three phases): never less than the
        # phase it loads, as the guard counts it. Counted balanced over its connector's
        # phases, a single-phase car's 32 A were 10.7 A, and the cars beside it were planned
        # into the other 21 A of its phase (tests/test_fixed_load_phases.py). A draw without
        # a session is counted on the phases its currents showed, if they did. A session on
        # a connector the site file does not list is shown as a fixed load, but its
        # station's reserve below stands for it.
        if not topo.has(ref):
            continue
        amps = topo.most_phase_a(ref, load_w, fixed_phases.get(ref))
        for node in topo.ancestors(topo.station_node[ref.station_id]):
            fixed_over = fixed_over or bool((node_w[node] < load_w).any()
                                            or (node_a[node] < amps).any())
            node_w[node] = np.maximum(node_w[node] - load_w, 0.0)
            node_a[node] = np.maximum(node_a[node] - amps, 0.0)
        root_fixed_w += load_w
    for station_id, load_w in inputs.undeclared_w:
        # A station with a connector the site file does not list may start a transaction
        # there without asking; its own maximum profile is the one bound on its total. Kept
        # free above the station, idle or charging, so a zero-notice start fits under every
        # circuit; inside it the listed connectors share the maximum, which the station
        # enforces over all its connectors (undeclared.py). Counted twice above the station
        # (its listed connectors' plans too): on the safe side.
        amps = undeclared.amps(topo, ConnectorRef(station_id, 0), load_w)
        for node in topo.ancestors(topo.station_node[station_id])[1:]:
            fixed_over = fixed_over or bool((node_w[node] < load_w).any()
                                            or (node_a[node] < amps).any())
            node_w[node] = np.maximum(node_w[node] - load_w, 0.0)
            node_a[node] = np.maximum(node_a[node] - amps, 0.0)
        root_fixed_w += load_w
    controlled.sort(key=lambda s: s.ref)
    refs = [s.ref for s in controlled]
    arrays = topo.arrays(refs)
    # a row's W per plan W (1, or a third: installed.planned_share); its plan is written back
    # divided by it, in the W the rest of the site plans in
    scale = np.ones(len(controlled))
    for i, session in enumerate(controlled):
        ref, phases = session.ref, session.phases
        if phases != arrays["phases"][i]:
            arrays["phases"][i], arrays["phase"][i] = phases, session.phase
            arrays["max_power_w"][i] = topo.max_power_w(ref, phases)
            arrays["min_power_w"][i] = topo.min_power_w(ref, phases)
        elif (share := planned_share(topo, ref, phases, session.phases_known)) != 1.0:
            # sent a third of its plan in W until its phases are known (installed.w_factor):
            # a 3-phase car must still get its minimum, or it never shows its phases
            arrays["min_power_w"][i] = min(3 * arrays["min_power_w"][i],
                                           arrays["max_power_w"][i])
            scale[i] = share
        if session.car_min_w is not None:
            # ISO 15118 evMinCurrent: below it this car does not charge at all
            arrays["min_power_w"][i] = min(max(arrays["min_power_w"][i], session.car_min_w),
                                           arrays["max_power_w"][i])
    max_w = arrays["max_power_w"].copy()
    for i, session in enumerate(controlled):
        max_w[i] -= session.floor_w
        if session.ev_cap_w is not None:
            # closed loop: the car takes less than it gets; plan it at what it draws
            # (W it draws: what it is sent, `scale` of its plan)
            max_w[i] = min(max_w[i], max(session.ev_cap_w / scale[i],
                                         arrays["min_power_w"][i]))
    max_w = np.maximum(max_w, 0.0)
    for i, session in enumerate(controlled):
        if session.declined:
            max_w[i] = 0.0
    # Rows sent a third of their plan are planned in what they are sent (what the car draws in
    # all, whatever its phases): 1 W against every W limit, and on the phases the worst of what
    # its car may be (`unknown_phase_a_per_w`). Planned in its
    # balanced plan's W, such a car took three times what it can draw off the cap: 12.4 kW to
    # start at 4.14 kW, and rounding left that room unused (the demo day's depot bays).
    # What a car was measured drawing (closed loop, taper) and a station's own limit are W it
    # draws: applied in the row's W as they are.
    max_w *= scale
    arrays["min_power_w"] = arrays["min_power_w"] * scale
    arrays["voltage_v"] = arrays["voltage_v"] * scale
    energy = np.array([s.remaining_wh for s in controlled], float)
    # Registers count whole Wh: less than that left is a need met (a float's last digits
    # must not buy a full car the slot at its minimum below).
    energy = np.where(energy < ENERGY_RESOLUTION_WH, 0.0, energy)
    # A silent driver's car past the site's default need may want more: it gets another
    # default's worth at a low priority, so it takes only what the told needs leave over
    # (the cap went unused while such cars waited: benchmarks/README.md).
    topup = np.array([not s.need_told for s in controlled], bool) & (energy == 0.0)
    energy = np.where(topup, inputs.default_energy_wh, energy)
    weight = np.where(topup, inputs.topup_weight, 1.0)
    held = np.zeros(len(controlled), dtype=bool)
    if inputs.taper_worth:
        worth = taper_worth(controlled, np.minimum(arrays["min_power_w"], max_w))
        held = worth_held(controlled, worth, inputs)
        weight = weight * np.where(held, 1.0, worth)
    # A need smaller than one slot at the minimum rate could never be met (0 or >= min):
    # ask for one full slot at the minimum instead; the car stops by itself when full.
    # At the minimum, not more: in a short first slot (a re-plan minutes before a slot edge)
    # the LP gave that slot's energy at up to the car's maximum (20.7 kW for 100 Wh), and
    # it stood unused from the car's first seconds until its next sample (demo day,
    # truthful: most of the 14 kWh a day offered to full cars).
    # Only a told need: a silent driver's need is the site's assumption, and its car tops up
    # past it (above); held at its minimum there, it drew 4 of the 20 kW it had to itself
    # until the top-up took over (tests/test_site_need_now.py).
    one_slot_wh = np.minimum(arrays["min_power_w"], max_w) * inputs.slot_s / 3600.0
    small = (energy > 0) & (energy < one_slot_wh)
    energy = np.where(small, one_slot_wh, energy)
    told = np.array([s.need_told for s in controlled], bool)
    max_w = np.where(small & told, np.minimum(max_w, arrays["min_power_w"]), max_w)
    departure = np.array([departure_slot(s.departure, inputs.now, inputs.ends)
                          for s in controlled], dtype=np.int64)
    max_matrix = np.repeat(max_w[:, None], t, axis=1)
    for i, session in enumerate(controlled):
        if session.cap_w is not None:
            # a limit set outside us (NotifyChargingLimit): the station applies the lower;
            # under the car's minimum it cannot charge at all
            cap = np.where(session.cap_w < arrays["min_power_w"][i], 0.0, session.cap_w)
            max_matrix[i] = np.minimum(max_matrix[i], cap)
        if session.taper_w is not None:
            # closed loop, its battery's taper (site/taper.py): what it will take in each
            # slot; at least its minimum, the least it can be offered (it takes less)
            max_matrix[i] = np.minimum(max_matrix[i], np.maximum(
                session.taper_w, min(arrays["min_power_w"][i], max_w[i])))
    previous_w = _previous_w(inputs, controlled)
    if previous_w is not None:
        previous_w = previous_w * scale[:, None]
        if held.any():
            previous_w = keep_running(previous_w, held)
    problem = optimizer.Problem(
        slot_s=slot_s, max_power_w=max_matrix, energy_wh=energy, previous_w=previous_w,
        arrival_slot=np.zeros(len(controlled), dtype=np.int64), departure_slot=departure,
        node_parent=topo.node_parent, connector_node=arrays["connector_node"],
        node_limit_w=node_w, node_limit_a=node_a,
        min_power_w=np.minimum(arrays["min_power_w"], max_w), phases=arrays["phases"],
        phase=arrays["phase"], voltage_v=arrays["voltage_v"], weight=weight,
        price_per_kwh=inputs.price_per_kwh)
    if (scale != 1.0).any():
        problem = dataclasses.replace(problem, phase_a_per_w=unknown_phase_a_per_w(
            topo, refs, problem.amps_per_w, scale))
    return Built(problem, refs, controlled, fixed, circuit_sources, root_fixed_w, scale,
                 fixed_over)


def taper_worth(sessions, min_power_w: np.ndarray) -> np.ndarray:
    """(N,) what each W of a row is worth in energy now: below 1 for a car whose learned taper
    says it takes less than its minimum in the first slot (it can be offered its minimum or
    nothing, and takes its acceptance of it). Planned at full worth, such a car held its
    minimum while the site was short and cars that would take every W waited (s38-gap)."""
    worth = np.ones(len(sessions))
    for i, session in enumerate(sessions):
        if session.taper_w is not None and min_power_w[i] > 0.0 and len(session.taper_w):
            share = float(session.taper_w[0]) / min_power_w[i]
            if share < 1.0:
                # in steps: a worth that moved with every sample changed the LP's optimum at
                # every re-plan (and many distinct weights make the energy level's scale large)
                worth[i] = max(np.round(share * TAPER_WORTH_STEPS) / TAPER_WORTH_STEPS,
                               1.0 / TAPER_WORTH_STEPS)
    return worth


def worth_held(sessions, worth: np.ndarray, inputs: PlanInputs) -> np.ndarray:
    """(N,) the rows of worth below 1 whose car a plan paused less than
    `inputs.taper_worth_hold_s` ago and the last plan runs again (resumes.py): planned at full
    worth, so its worth pauses it at most once in that while - paused for its worth at every
    short spell, a car was paused more than once an hour on a day whose room came and went
    (s39-gap)."""
    held = np.zeros(len(sessions), dtype=bool)
    runs = _runs(inputs.previous)
    if not runs or inputs.taper_worth_hold_s <= 0.0:
        return held
    for i in np.flatnonzero(worth < 1.0):
        session = sessions[i]
        held[i] = resumes.held(runs.get(session.ref), session.transaction_id, inputs.now,
                               inputs.taper_worth_hold_s)
    return held


def keep_running(previous_w: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`previous_w` (the stable preference, NaN: none) with each of `rows` that the last plan
    runs now preferred running on at that power in every kept slot where the last plan paused
    it: a held car's last plan was made at its lower worth and had planned its next pause, and
    at full worth, both choices equal, the re-plans kept that pause (s39-gap)."""
    out = previous_w.copy()
    for i in np.flatnonzero(rows):
        now_w = out[i, 0]
        if np.isfinite(now_w) and now_w > 0.0:
            kept = np.isfinite(out[i])
            out[i, kept] = np.maximum(out[i, kept], now_w)
    return out


def _runs(plan: Plan | None) -> dict:
    """The record of runs the plan carries (resumes.py), or none."""
    return plan.extra.get(resumes.RUNS_KEY, {}) if plan is not None else {}


def unknown_phase_a_per_w(topo: SiteTopology, refs: list[ConnectorRef], amps_per_w: np.ndarray,
                          scale: np.ndarray) -> np.ndarray:
    """(N, 3) each row's current per W: the rows planned in what they are sent (`scale` != 1, a
    car of unknown phases on a 3-phase connector) on the worst of what the car may be. A
    single-phase car draws every W on its connector's L1, a known site phase
    (`SiteTopology.site_phase`): 1/V A there; a three-phase car 1/(3V) A on each phase. So
    1/V on that phase and 1/(3V) on the other two - not 1/V on all three, which held two
    phases' worth of room for nothing until the car's phases were known (benchmarks/README.md
    "s30-quality")."""
    out = np.array(amps_per_w, dtype=float)
    for i in np.flatnonzero(scale != 1.0):
        volt = topo.station(refs[i].station_id).voltage_v
        out[i] = 1.0 / (3.0 * volt)
        out[i, topo.site_phase(refs[i], 0)] = 1.0 / volt
    return out


def unknown_phases_started(built: Built, power_w: np.ndarray) -> optimizer.Problem | None:
    """The problem again with every car of unknown phases on a W station that `power_w`
    leaves under its minimum now made worth starting at its minimum: None if there is none.

    Such a car is planned on what it is sent, in the worst case all on one phase: under a
    per-phase breaker each of its W costs three W of a three-phase neighbour, and under a
    binding cap it is worth no more than anyone's. So the plan left it at 0 beside running
    neighbours that nearly fill a breaker, and a car offered nothing never shows its phases
    (the quality benchmark's workplace day: a three-phase 11 kW car at 0 for 14 minutes while
    ~10 kW of its breaker's room went unused, benchmarks/README.md "s29-quality"). Its
    minimum is what teaches its phases (site/phase_probe.py): planned at its minimum at most,
    at a weight a breaker's worst-case exchange cannot outweigh, it is started wherever the
    limits allow its minimum at all, the others giving up what it takes; once its phases are
    known it is planned as any other car. Only where the first solve left it out, so a car
    that gets more anyway is not held at its minimum until its phases are known."""
    problem = built.problem
    if problem.n_connectors == 0 or not (built.scale != 1.0).any():
        return None
    now_w = power_w[:, 0]
    start = ((built.scale != 1.0) & (problem.weight == 1.0) & (problem.energy_wh > 0)
             & (problem.departure_slot > 0) & (problem.min_power_w > 0)
             & (problem.max_power_w[:, 0] >= problem.min_power_w)
             & (now_w < problem.min_power_w - 1e-6))
    if not start.any():
        return None
    # ... and only where its minimum drawn on three phases fits beside the plan now, but for
    # the phase its worst case loads (`unknown_phase_a_per_w`: its connector's L1): there its
    # phases are worth something now. Under a cap that binds (no W room for its minimum at
    # some node) they win nothing, and a car that leaves first would give up its place for a
    # car that can wait. On its worst phase the others make room for its three-phase minimum
    # in the re-solve: that phase full of single-phase neighbours (each A of them 230 W, of a
    # three-phase car 690 W: the demo day's CP019, benchmarks/README.md "s36-quality") kept it
    # at 0, its L2 and L3 empty, for as long as the neighbours stayed
    load_w, load_a = node_loads(problem, power_w[:, :1])
    free_w = problem.node_limit_w[:, 0] - load_w[:, 0]
    free_a = problem.node_limit_a[:, :1] - load_a[:, :, 0]          # (M, 3)
    above = problem.node_connector.tocsc()
    for i in np.flatnonzero(start):
        nodes = above.indices[above.indptr[i]:above.indptr[i + 1]]
        # a three-phase car draws the worst case's smallest current on each phase
        amps = problem.amps_per_w[i]
        need_a = np.full(3, problem.min_power_w[i] * amps.min())
        worst = amps > amps.min() * (1.0 + 1e-9)       # the phase its worst case loads
        room_a = (free_a[nodes] >= need_a[None, :] - 1e-9) | worst[None, :]
        start[i] = bool((free_w[nodes] >= problem.min_power_w[i] - 1e-6).all()
                        and room_a.all()
                        and (problem.node_limit_a[nodes, 0] >= need_a[0]).all())
    if not start.any():
        return None
    weight = np.where(start, UNKNOWN_PHASES_WEIGHT, problem.weight)
    max_w = np.array(problem.max_power_w)
    max_w[start] = np.minimum(max_w[start], problem.min_power_w[start, None])
    return dataclasses.replace(problem, weight=weight, max_power_w=max_w)


def small_needs_now(built: Built, power_w: np.ndarray) -> np.ndarray:
    """power_w with each told need that fits in the first slot at its car's minimum served
    there at its minimum, where every limit has room for it beside the plan, and planned at 0
    after (its need is met in the first slot), earliest departure first.

    Such a need is asked as one nominal slot at the minimum (`build_problem`: a car runs at 0
    or at least its minimum). Where the first slot's room could not hold the whole asked slot
    beside the others (a short first slot, a room just under it), the plan put the asked slot
    later and left the room now unused; the top-up and the pull forward cannot move it, as what
    the first slot holds looks like less than the asked slot - though the need itself fits
    there. The demo day's truthful run: 10:20-10:29 the site 14 kW under its 120 kW cap while
    a car with 421 Wh to go waited for a later slot (benchmarks/README.md "s34-quality").
    Only adds power where `serve_more` finds room under every limit and only lowers the same
    car's later slots: lawful when power_w is."""
    problem = built.problem
    if problem.n_connectors == 0:
        return power_w
    minimum = problem.min_power_w
    first_wh = minimum * problem.wh_per_w[0]
    remaining = np.array([s.remaining_wh if s.need_told else np.inf for s in built.sessions])
    fits = ((remaining >= ENERGY_RESOLUTION_WH) & (remaining <= first_wh) & (minimum > 0)
            & (power_w[:, 0] < minimum - 1e-6) & (problem.max_power_w[:, 0] >= minimum - 1e-6)
            & (problem.departure_slot > 0) & (problem.energy_wh > 0) & (built.scale == 1.0))
    if not fits.any():
        return power_w
    order = np.flatnonzero(fits)[np.argsort(problem.departure_slot[fits], kind="stable")]
    can_take = np.where(fits, minimum, 0.0)
    extra = serve_more(problem, 0, power_w[:, 0], can_take, order)
    if extra is None:
        return power_w
    started = np.flatnonzero(fits & (extra >= minimum - 1e-6))
    if started.size == 0:
        return power_w
    out = np.array(power_w, dtype=float)
    out[started, 0] = minimum[started]
    out[started, 1:] = 0.0
    return out


def silent_cars_served_now(built: Built, power_w: np.ndarray) -> tuple[np.ndarray, Built]:
    """(power_w, built) with the room the first slot leaves under every limit handed to the
    cars of silent drivers that can take more there, up to what each can take (running cars
    first, then earliest departure: the top-up's order), and each such car's request in the
    problem raised to what it is now planned (its top-up past the assumed need, as the plan
    after the need is met asks it; the plan is checked against that).

    A silent driver's need is the site's assumption (its default, or an estimate), and its car
    tops up past it at a low weight once it is met (`build_problem`). Before it is met the
    plan gives it exactly the assumed rest - spread over the slots left where the stable pass
    keeps the previous plan's minimum in a later slot - though the car will go on taking
    whatever is left over: alone under a 20 kW cap a 22 kW car drew 8.3, then 4.1-4.8 kW for
    half an hour until its assumed need was met and the top-up gave it the cap again
    (benchmarks/README.md "s35-quality"; tests/test_site_silent_need_met.py). Room in the
    first slot that the plan leaves is lost if nobody takes it now. Only adds power where
    `serve_more` finds room under every limit (the minimum rule kept: a car at 0 only at its
    minimum or more) and leaves every later slot as planned: lawful when power_w is, and no
    told need loses a Wh."""
    problem = built.problem
    if problem.n_connectors == 0 or problem.n_slots == 0:
        return power_w, built
    silent = np.array([not s.need_told for s in built.sessions], bool)
    can_take = np.where(silent & (problem.departure_slot > 0),
                        problem.max_power_w[:, 0] - power_w[:, 0], 0.0)
    # whole watts only: the limits' margins leave millionths of a W of room under a site that
    # has room for every car at its maximum (40 cars at 4e-5 W each), a plan changed for nothing
    can_take = np.where(can_take >= SILENT_ROOM_MIN_W, can_take, 0.0)
    if not can_take.any():
        return power_w, built
    # asked as much more as the first slot can hold (the problem's bound on a car in one slot
    # is what its request leaves), then asked what it is planned: the plan's request
    topped_wh = problem.energy_wh + can_take * problem.wh_per_w[0]
    asking = dataclasses.replace(problem, energy_wh=topped_wh)
    served = _served_more_now(problem, asking, power_w, can_take)
    if served is None:
        return power_w, built
    out, energy_wh = served
    raised = dataclasses.replace(problem, energy_wh=energy_wh)
    return out, dataclasses.replace(built, problem=raised)


def _served_more_now(problem, asking, power_w: np.ndarray, can_take: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """(power_w with the first slot's extra that `serve_more` finds for `can_take` under every
    limit of `asking`, each car's request raised to what it is then planned), or None when no
    car is given a whole W more."""
    extra = serve_more(asking, 0, power_w[:, 0], can_take,
                       running_first_order(problem, power_w[:, 0]), zero_w=1e-6)
    if extra is None:
        return None
    extra = np.where(extra >= SILENT_ROOM_MIN_W, extra, 0.0)
    if not extra.any():
        return None
    out = np.array(power_w, dtype=float)
    out[:, 0] += extra
    planned_wh = out @ problem.wh_per_w
    energy_wh = np.where(extra > 0.0, np.maximum(problem.energy_wh, planned_wh),
                         problem.energy_wh)
    return out, energy_wh


def guessed_chargers_served_now(topo: SiteTopology, built: Built, power_w: np.ndarray
                                ) -> tuple[np.ndarray, Built]:
    """(power_w, built) with the room the first slot leaves under every limit handed to the
    cars planned at their guessed charger ceiling (`SessionInput.charger_guess_w`,
    charger_ceiling.py), up to their bay's maximum: the guess held a 22 kW car at 11 kW until
    a sample showed it drawing that, where nobody else could take the rest (the tight day,
    truthful: 16:13, 14.7 kW of room the cars could have drawn not offered). Room no car the
    plan knows can take: an 11 kW car given it leaves it unused, as it was. Only adds power
    where `serve_more` finds room under every limit and leaves every later slot as planned;
    the problem's bound in the first slot and the car's request are raised to what it is now
    planned (the plan is checked against them)."""
    problem = built.problem
    if problem.n_connectors == 0 or problem.n_slots == 0:
        return power_w, built
    bay_w = np.zeros(problem.n_connectors)
    for i, session in enumerate(built.sessions):
        guess_w = session.charger_guess_w
        if guess_w is None or built.scale[i] != 1.0 or session.taper_w is not None or \
                power_w[i, 0] < min(guess_w, problem.max_power_w[i, 0]) - SILENT_ROOM_MIN_W:
            continue   # not held at its guess now
        bay_w[i] = topo.max_power_w(session.ref, session.phases) - session.floor_w
        if session.cap_w is not None:
            bay_w[i] = min(bay_w[i], float(session.cap_w[0]))
    can_take = np.where(problem.departure_slot > 0, np.maximum(bay_w - power_w[:, 0], 0.0), 0.0)
    can_take = np.where(can_take >= SILENT_ROOM_MIN_W, can_take, 0.0)
    if not can_take.any():
        return power_w, built
    max_w = np.array(problem.max_power_w, dtype=float)
    max_w[:, 0] = np.maximum(max_w[:, 0], power_w[:, 0] + can_take)
    asking = dataclasses.replace(problem, max_power_w=max_w,
                                 energy_wh=problem.energy_wh + can_take * problem.wh_per_w[0])
    served = _served_more_now(problem, asking, power_w, can_take)
    if served is None:
        return power_w, built
    out, energy_wh = served
    max_w = np.array(problem.max_power_w, dtype=float)
    max_w[:, 0] = np.maximum(max_w[:, 0], out[:, 0])
    raised = dataclasses.replace(problem, max_power_w=max_w, energy_wh=energy_wh)
    return out, dataclasses.replace(built, problem=raised)


def departure_slot(departure: datetime, now: datetime, ends) -> int:
    """The first slot the car is gone. A car still plugged in after its departure keeps
    charging for at least an hour's slots; one that leaves within the hour is planned to
    its departure (it was planned over an hour too, and left without what the plan had
    put off past its departure: benchmarks/README.md)."""
    until = departure if departure > now else now + timedelta(seconds=OVERSTAY_S)
    # the first slot ending at or after `until`, by bisection: the ends increase (sorted
    # distinct edges: plan_inputs.slots); a scan of every slot for every car took ~1.5 ms a
    # re-plan at 1 000 cars (s35-replan)
    slot = min(bisect_left(ends, until), len(ends) - 1) + 1
    return int(min(slot, len(ends)))


def _previous_w(inputs: PlanInputs, controlled: list[SessionInput]) -> np.ndarray | None:
    """(N, T) what the last plan gives each session in the slots starting within
    stable_window_s (NaN later): among equal optima the optimizer keeps it, so a re-plan
    does not pause a running car or start a waiting one for nothing. A session the last
    plan did not have has no preference (NaN); None when no session has one (the first
    plan after a start: planned as before, by the flow where it applies)."""
    window_s = inputs.stable_window_s
    if window_s is None or not controlled:
        return None
    starts, now = inputs.starts, inputs.now
    kept = [t for t, start in enumerate(starts) if (start - now).total_seconds() < window_s]
    previous = np.full((len(controlled), len(starts)), np.nan)
    old = inputs.previous.connectors if inputs.previous is not None else {}
    if isinstance(old, ConnectorPlans):
        return _previous_from_columns(old, controlled, starts, kept, previous)
    known = False
    for i, session in enumerate(controlled):
        cplan = old.get(session.ref)
        if cplan is None or cplan.transaction_id != session.transaction_id:
            continue
        known = known or bool(kept)
        for t in kept:
            previous[i, t] = max(cplan.power_at(starts[t]) - session.floor_w, 0.0)
    return previous if known else None


def _previous_from_columns(old: ConnectorPlans, controlled: list[SessionInput], starts,
                           kept: list[int], previous: np.ndarray) -> np.ndarray | None:
    """`_previous_w` read from the last plan's columns at once: the same numbers as each
    connector's power_at (its rows share their slot starts), without a ConnectorPlan and a
    bisection per session and slot (~25 ms of the worker thread, holding the interpreter
    lock, at 5 000 sessions)."""
    rows = np.array([old.rows.get(s.ref, -1) for s in controlled], dtype=np.int64)
    same = np.array([row >= 0 and old.transaction_ids[row] == s.transaction_id
                     for row, s in zip(rows.tolist(), controlled)], dtype=bool)
    if not kept or not same.any():
        return None
    # the last slot of the old plan started at or before each kept start (the first before any)
    columns = [max(bisect_right(old.slot_starts, starts[t]) - 1, 0) for t in kept]
    floor_w = np.array([s.floor_w for s in controlled], dtype=float)[same]
    given = old.power_w[rows[same]][:, columns]
    previous[np.ix_(np.flatnonzero(same), kept)] = np.maximum(given - floor_w[:, None], 0.0)
    return previous


def solve(problem, backend: str, time_limit_s: float, warm: WarmPlans | None = None,
          sessions: Sequence[SessionInput] = (), slot_ends: Sequence | None = None
          ) -> tuple[np.ndarray, str, dict]:
    """(power_w, status, what the solver says). optimizer.solve never raises for a valid
    Problem; if the optimizer itself is missing or broken, everyone at their maximum clipped
    under every limit is still a safe plan.

    warm: the controller's kept HiGHS model (site/warm_plans.py), keyed by `sessions` (the
    problem's rows) and `slot_ends` (its slots); the optimum is the cold solve's, only found
    from the last plan's basis."""
    optimizer_solve = getattr(optimizer, "solve", None)
    if optimizer_solve is not None:
        try:
            with (warm.use(sessions, slot_ends) if warm is not None else nullcontext()) as start:
                schedule = optimizer_solve(problem, backend=backend, time_limit_s=time_limit_s,
                                           warm=start)
            power_w = np.array(schedule.power_w, dtype=float)
            return power_w, schedule.status, _solver_info(problem, schedule, power_w, warm)
        except Exception:  # task boundary: fall back to the safe baseline below
            log.exception("optimizer.solve failed; planning the clipped baseline")
    return safe_baseline(problem), "safe-baseline", {}


def _solver_info(problem, schedule, power_w: np.ndarray, warm: WarmPlans | None) -> dict:
    """What tells two plans of one problem apart (tests, benchmarks): the backend, the LP's
    optimum before rounding, the plan's objective and weighted energy, how the model was made."""
    return {"backend": schedule.backend, "objective": schedule.objective,
            "relaxation_objective": schedule.extra.get("relaxation_objective"),
            "relaxation_weighted_wh": schedule.extra.get("relaxation_weighted_wh"),
            "weighted_wh": weighted_energy_wh(problem, power_w),
            "iterations": schedule.extra.get("iterations"),
            "model": None if warm is None else warm.last}


def check(problem, power_w) -> list:
    """The optimizer's own check and ours (independent of it): every breach, empty if safe."""
    optimizer_check = getattr(optimizer, "check", None)
    found = list(optimizer_check(problem, power_w)) if optimizer_check is not None else []
    return found + over_limits(problem, power_w, tol_w=1e-3)


@dataclass(frozen=True)
class Made:
    plan: Plan
    built: Built
    violations: list = field(default_factory=list)   # what the solve broke (then clipped)
    times: PlanTimes = field(default_factory=PlanTimes)
    solver: dict = field(default_factory=dict)        # planner._solver_info


def make_plan(topo: SiteTopology, inputs: PlanInputs, *, backend: str = "auto",
              time_limit_s: float = 5.0, warm: WarmPlans | None = None) -> Made:
    """Build, solve, check (clip what breaks a limit), bindings and idle shares: the whole
    re-plan but taking the picture. Reads the real-time counter only to say how long each
    stage took. warm: the controller's kept solver model (site/warm_plans.py; None: cold)."""
    clock = time.perf_counter
    times = PlanTimes()
    started = clock()
    built = build_problem(topo, inputs)
    problem = built.problem
    times.build_s = clock() - started
    started = clock()
    if problem.n_connectors:
        power_w, status, solver = solve(problem, backend, time_limit_s, warm, built.sessions,
                                        inputs.ends)
        to_start = unknown_phases_started(built, power_w)
        if to_start is not None:
            # checked and finished against the problem as built: the same limits (bindings
            # say which one holds the started car, not the cap at its minimum it was solved in)
            power_w, status, solver = solve(to_start, backend, time_limit_s, warm,
                                            built.sessions, inputs.ends)
        power_w = small_needs_now(built, power_w)
        power_w, built = silent_cars_served_now(built, power_w)
        power_w, built = guessed_chargers_served_now(topo, built, power_w)
        problem = built.problem
    else:
        power_w, status, solver = np.zeros((0, problem.n_slots)), "empty", {}
    times.solve_s = clock() - started
    started = clock()
    violations = check(problem, power_w) if problem.n_connectors else []
    if violations:
        power_w = clip_to_limits(problem, power_w)
    times.check_s = clock() - started
    started = clock()
    plan = finish(topo, inputs, built, power_w, status)
    times.finish_s = clock() - started
    return Made(plan, built, violations, times, solver)


def finish(topo: SiteTopology, inputs: PlanInputs, built: Built, power_w: np.ndarray,
           status: str) -> Plan:
    """The checked allocation as a Plan: per connector its schedule and binding limit, the
    fixed loads, the idle connectors' shares."""
    problem, now, starts = built.problem, inputs.now, list(inputs.starts)
    bindings = binding_sources(problem, power_w, topo, list(inputs.root_sources),
                               built.controlled, built.circuit_sources)
    sessions = built.sessions
    floor_w = np.array([s.floor_w for s in sessions], dtype=float)
    previous = inputs.previous.connectors if inputs.previous is not None else None
    plans = ConnectorPlans(
        built.controlled, start=now, slot_starts=starts,
        # in the site's W (a row planned in what it is sent: `scale` of its plan); a new
        # array, the plan's own, read-only
        power_w=power_w / built.scale[:, None] + floor_w[:, None],
        transaction_ids=[s.transaction_id for s in sessions],
        min_power_w=problem.min_power_w / built.scale, bindings=bindings,
        phases=[s.phases for s in sessions], phases_known=[s.phases_known for s in sessions],
        previous=previous if isinstance(previous, ConnectorPlans) else None)
    # the slots that start within the idle window (after the first boundary of the slot_s
    # grid): by time, as finer slots near now or a departure's edge add slots to it
    first_edge_ts = (now.timestamp() // inputs.slot_s + 1) * inputs.slot_s
    window_end_ts = first_edge_ts + np.ceil(inputs.idle_window_s / inputs.slot_s) * inputs.slot_s
    lifetime_slots = max(1, sum(1 for start in starts if start.timestamp() < window_end_ts))
    busy = set(built.controlled) | set(built.fixed) | {s.ref for s in inputs.sessions}
    idle = idle_shares(problem, power_w, topo, busy=busy, window_slots=lifetime_slots)
    root_limit_w = (float(problem.node_limit_w[0, 0] + built.root_fixed_w)
                    if np.isfinite(problem.node_limit_w[0, 0]) else float("inf"))
    extra = {} if inputs.limits_version is None else {"limits_version": inputs.limits_version}
    if built.fixed_over:
        extra["fixed_over"] = True
    if inputs.taper_worth:
        # which sessions this plan runs now, and when each was last resumed (resumes.py)
        extra[resumes.RUNS_KEY] = resumes.runs_after(
            _runs(inputs.previous), built.controlled, [s.transaction_id for s in sessions],
            (power_w[:, 0] > 0.0).tolist() if power_w.shape[1] else [False] * len(sessions),
            now)
    return Plan(at=now, connectors=plans, fixed_w=built.fixed, idle_w=idle,
                sessionless_w=dict(inputs.sessionless_w),
                root_limit_w=root_limit_w, root_source=inputs.root_sources[0], status=status,
                extra=extra)
