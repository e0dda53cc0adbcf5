"""One day through the real site controller, in site time that moves only when we move it.

The controller (`smartcharge.site.controller.SiteController`: planner, limits with the utility's
event, the drivers' told needs or the site's defaults, the closed loop that re-plans around a car
taking less, minimum rates, phases, breakers) is driven in-process under a `ManualClock`: every
`step_s` of site time the cars charge at what the plan offers them (`sim.ev.SimEV`: on-board
charger, phases, battery taper), every `meter_s` each station reports a meter sample, and the
controller re-plans when it asks to (its triggers), at every slot boundary and at every limit
change, as its own loop would. The stations are ideal: a plan is in force the moment it is
made (no OCPP round trips, no dispatch ordering; `smartcharge demo` measures those over real
WebSockets in real time). A single-phase car on a three-phase bay whose phases the controller
does not know yet gets a third of its allocation (the station applies the per-phase current of
a balanced three-phase plan to the one phase the car uses). The stations answer the phase
probe (`site/phase_probe.py`: TriggerMessage MeterValues once the plan first offers a new car
power) as the simulated stations do, with a sample of the car's draw - at the next step (a
minute later, where a station answers in seconds: the benchmark errs on the late side). They say
when a car's charging state changes (`ChargingStateChanged`: SuspendedEV once it is full,
Charging while it draws, else SuspendedEVSE - what the simulated stations send in
StatusNotification and TransactionEvent), at the step it changes in.

The truth every metric is computed from is what the simulated cars drew.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

import optimizer

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.demo.report import Draw, GridLimits, Monitor, TimedLimit
from smartcharge.demo.scenario import DemandResponsePlan, Visit
from smartcharge.model import PHASE_NAMES, Site
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.estimates import PastSession
from smartcharge.site.installed import w_factor
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.phase_probe import PhaseProbes
from smartcharge.site.topology import ConnectorRef


@dataclass
class DayResult:
    """What happened, step by step and per visit."""

    times: list[datetime] = field(default_factory=list)
    load_w: list[float] = field(default_factory=list)       # the cars' summed draw
    limit_w: list[float] = field(default_factory=list)      # effective grid limit
    # what the plugged cars could take: each its battery's acceptance, at most its bay's maximum
    wanted_w: list[float] = field(default_factory=list)
    offered_w: list[float] = field(default_factory=list)    # what the plan offered them
    # the most the plugged cars could draw together under the grid limit and every breaker
    # and phase (NaN: not short then, not computed)
    reachable_w: list[float] = field(default_factory=list)
    # what a single-phase car on a three-phase bay could not use of its plan while its phases
    # were not known yet (it is sent a balanced plan's per-phase current) [W]
    phases_unknown_w: list[float] = field(default_factory=list)
    # the grid connection's most loaded phase, as a share of its per-phase current limit (NaN:
    # it has none): a grid at its current limit on one phase is at its limit, whatever its W
    grid_phase_use: list[float] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    charged_wh: list[float] = field(default_factory=list)
    pauses: list[int] = field(default_factory=list)         # charging -> 0 -> charging again
    # of those, the pauses a re-plan made: the plan before it still offered the car power then
    replan_pauses: list[int] = field(default_factory=list)
    # every pause a re-plan made: (when it paused, connector, visit index) - the moment of the
    # re-plan that paused it (benchmarks/pause_causes.py reads them)
    replan_pause_log: list = field(default_factory=list)
    hours_plugged: list[float] = field(default_factory=list)
    violations: int = 0
    replans: int = 0
    # plan offered and not taken [Wh]: to full cars, to cars in taper, to others
    untaken_wh: dict[str, float] = field(default_factory=lambda: {"full": 0.0, "taper": 0.0,
                                                                   "other": 0.0})


@dataclass(frozen=True, slots=True)
class Step:
    """One car's minute (the `trace` of run_day): what the plan offered it, what it drew, what
    its battery would have taken, and whether it was full, in taper or neither before it."""

    at: datetime
    visit: int           # index in DayResult.visits
    offered_w: float
    draw_w: float
    acceptance_w: float
    kind: str            # "full" | "taper" | "other"


def _grid_limits(site: Site, dr: DemandResponsePlan | None) -> GridLimits:
    limits = GridLimits(site.root.limit_w, 0.0)
    for window in site.cap_schedule:
        limits.add(TimedLimit(window.start, window.end, window.limit_w, "operator cap"))
    if dr is not None:
        limits.add(TimedLimit(dr.start, dr.end, dr.limit_w, dr.event_id))
    return limits


async def run_day(site: Site, visits: list[Visit], start: datetime, hours: float,
                  dr: DemandResponsePlan | None = None, *, truthful: bool = False,
                  backend: str = "auto", step_s: float = 60.0, meter_s: float = 300.0,
                  settings: dict | None = None, silent_tell: str | None = None,
                  history: list[PastSession] | None = None,
                  trace: list | None = None) -> DayResult:
    """Replay `visits` (deep-copied: their cars charge) through a fresh controller.

    `silent_tell` ("need" or "departure"): the drivers who tell nothing tell that one truth
    (to measure which part of the information costs most). `history`: the site's past
    sessions, which silent drivers' needs and departures are estimated from
    (`site/estimates.py`); None: none, the site's defaults. `trace`: a list that gets one
    `Step` per car and step (benchmarks/quality_gap.py reads it)."""
    visits = copy.deepcopy(visits)
    clock = ManualClock(start)
    settings = ControllerSettings(**{"stale_after_s": 3 * meter_s, "backend": backend,
                                     **(settings or {})})
    controller = SiteController(site, clock, settings)
    for past in history or ():
        controller.state.history.add(past)
    limits = _grid_limits(site, dr)
    monitor = Monitor(site, limits)
    topo = controller.topology
    # the stations are asked for a sample of a new car's phases (the service's PhaseProbing)
    probe_after_s = DispatchSettings().phase_probe_after_s
    probes = None if probe_after_s is None else PhaseProbes(topo, controller.state,
                                                            probe_after_s)

    def tell(event) -> None:
        controller.on_event(event)
        if probes is not None:
            probes.on_event(event)
    unit_of = {s.station_id: str(s.rate_unit.value) for s in site.stations}
    for station in site.stations:
        controller.on_event(ev.StationBooted(station.station_id, start, True, "sim", "sim"))
    end = start + timedelta(hours=hours)
    result = DayResult(visits=visits)
    arrivals = sorted(visits, key=lambda v: v.arrival)
    plugged: dict[ConnectorRef, tuple[Visit, int]] = {}
    register_wh: dict[ConnectorRef, float] = {ref: 0.0 for ref in topo.refs}
    last_draw: dict[int, float] = {}
    said: dict[ConnectorRef, str] = {}  # what each station last said of its car's state
    state: dict[int, str] = {}          # per visit: "idle" | "charging" | "paused"
    pauses = {id(v): 0 for v in visits}
    index = {id(v): i for i, v in enumerate(visits)}
    replan_pauses = {id(v): 0 for v in visits}
    by_replan: dict[int, bool] = {}     # per paused visit: whether a re-plan paused it
    paused_at: dict[int, datetime] = {}
    index_of = {id(v): n for n, v in enumerate(visits)}
    plugged_s = {id(v): 0.0 for v in visits}
    next_tx, next_arrival, dr_sent = 1, 0, dr is None
    next_meter = start
    next_slot = start
    change_times = sorted(limits_change for limits_change in _changes(dr, site))
    now = start
    while now < end:
        # the utility's event, when announced
        if not dr_sent and now >= dr.announce:
            controller.limits.add_event(DemandResponseEvent(dr.event_id, dr.start, dr.end,
                                                            limit_w=dr.limit_w))
            controller.request_replan("demand-response")
            dr_sent = True
        # departures, then arrivals
        for ref, (visit, tx) in list(plugged.items()):
            if visit.departure <= now:
                tell(ev.SessionStopped(ref.station_id, ref.connector_id, tx, now,
                                       visit.ev.charged_wh, "EVDisconnected"))
                del plugged[ref]
                said.pop(ref, None)
        while next_arrival < len(arrivals) and arrivals[next_arrival].arrival <= now:
            visit = arrivals[next_arrival]
            next_arrival += 1
            ref = ConnectorRef(visit.station_id, visit.connector_id)
            if ref in plugged or visit.departure <= now:
                continue
            visit.ev.phases = min(visit.ev.onboard_phases, topo.connector(ref).phases)
            plugged[ref] = (visit, next_tx)
            tell(ev.SessionStarted(ref.station_id, ref.connector_id, next_tx,
                                   visit.id_tag or "SIM", register_wh[ref], now))
            if truthful or visit.tells_need:
                controller.state.set_need(next_tx, requested_wh=visit.requested_wh,
                                          departure=visit.departure)
            elif silent_tell == "need":
                controller.state.set_need(next_tx, requested_wh=visit.requested_wh)
            elif silent_tell == "departure":
                controller.state.set_need(next_tx, departure=visit.departure)
            next_tx += 1
        # the phase probes due: each station answers with a sample of what its car drew in
        # the step since the plan offered it power (no current: it teaches nothing)
        for ref, tx in probes.take_due(now) if probes is not None else ():
            if ref in plugged and plugged[ref][1] == tx:
                _sample(controller, topo, ref, plugged[ref], last_draw, register_wh, now,
                        "Trigger")
        # re-plan: the controller's triggers, every slot boundary, every limit change
        boundary = now >= next_slot
        if boundary:
            next_slot = now + timedelta(seconds=settings.slot_s - now.timestamp() % settings.slot_s)
        limit_changed = bool(change_times) and change_times[0] <= now
        while change_times and change_times[0] <= now:
            change_times.pop(0)
        offered_before: dict = {}
        if controller._replan.is_set() or boundary or limit_changed:
            controller._replan.clear()
            reasons, controller._reasons = controller._reasons, set()
            # what the plan before this re-plan offers now: a pause it did not plan is the re-plan's
            offered_before = {ref: controller.allocated_now_w(ref) or 0.0 for ref in plugged}
            await controller.replan(reasons)
            result.replans += 1
            if probes is not None:
                probes.on_plan(controller.plan, now)
        # the cars charge for one step at what the plan offers
        draws, wanted_w, offered_w, unknown_w = [], 0.0, 0.0, 0.0
        before_w = {}
        for ref, (visit, tx) in plugged.items():
            car = visit.ev
            before_w[ref] = car.acceptance_w()
            # what it could take: its battery's acceptance, at most what its bay gives it (a
            # 22 kW car on an 11 kW bay wants 11 kW; the reachable LP caps it the same way)
            wanted_w += min(before_w[ref], topo.max_power_w(ref, car.phases))
            offered = controller.allocated_now_w(ref) or 0.0
            plan = controller.plan.connectors.get(ref) if controller.plan else None
            if car.phases == 1 and topo.connector(ref).phases == 3 and \
                    (plan is None or not plan.phases_known or plan.phases == 3) or \
                    plan is not None and w_factor(topo, unit_of[ref.station_id], ref,
                                                  plan.phases, plan.phases_known) < 1.0:
                # a third: the balanced plan's per-phase share of a three-phase plan on one
                # phase, or a W station's limit while the car's phases are unknown, which a
                # three-phase car draws as it is (installed.w_factor)
                unknown_w += offered * 2.0 / 3.0
                offered /= 3.0
            offered_w += offered
            before_full = car.full
            tapering = car.soc > car.taper_start_soc
            draw_w = car.advance(step_s, offered)
            kind = "full" if before_full else "taper" if tapering else "other"
            result.untaken_wh[kind] += max(offered - draw_w, 0.0) * step_s / 3600.0
            register_wh[ref] += draw_w * step_s / 3600.0
            plugged_s[id(visit)] += step_s
            key = id(visit)
            if draw_w > 1.0:
                if state.get(key) == "paused":
                    pauses[key] += 1
                    replan_pauses[key] += by_replan.get(key, False)
                    if by_replan.get(key, False):
                        result.replan_pause_log.append((paused_at[key], ref, index_of[key]))
                state[key] = "charging"
            elif state.get(key) == "charging" and not before_full and not car.full:
                state[key] = "paused"
                by_replan[key] = offered_before.get(ref, 0.0) > 1.0
                paused_at[key] = now
            last_draw[key] = draw_w
            if trace is not None:
                trace.append(Step(now, index[key], offered, draw_w, before_w[ref], kind))
            draws.append(Draw(ref.station_id, ref.connector_id, draw_w, car.phases,
                              topo.connector(ref).phase))
            charging = "SuspendedEV" if car.full else "Charging" if draw_w > 1.0 \
                else "SuspendedEVSE"
            if said.get(ref) != charging:
                said[ref] = charging
                tell(ev.ChargingStateChanged(ref.station_id, ref.connector_id, tx, charging,
                                             now))
        sample = monitor.record(now, draws, len(plugged), 0.0)
        result.times.append(now)
        result.load_w.append(sample.site_load_w)
        limit_now = limits.effective_w(now) or float("inf")
        result.limit_w.append(limit_now)
        result.reachable_w.append(
            reachable_w(topo, [(ref, visit.ev) for ref, (visit, _) in plugged.items()],
                        limit_now, before_w) if wanted_w > limit_now + 1.0 else float("nan"))
        result.wanted_w.append(wanted_w)
        result.offered_w.append(offered_w)
        result.phases_unknown_w.append(unknown_w)
        result.grid_phase_use.append(_grid_phase_use(site, draws, topo))
        # meter samples
        if now >= next_meter:
            for ref, visit_tx in plugged.items():
                _sample(controller, topo, ref, visit_tx, last_draw, register_wh, now,
                        "Sample.Periodic")
            next_meter = now + timedelta(seconds=meter_s)
        now = now + timedelta(seconds=step_s)
        clock.set(now)
        await asyncio.sleep(0)
    result.violations = len(monitor.violations)
    result.charged_wh = [v.ev.charged_wh for v in visits]
    result.pauses = [pauses[id(v)] for v in visits]
    result.replan_pauses = [replan_pauses[id(v)] for v in visits]
    result.hours_plugged = [plugged_s[id(v)] / 3600.0 for v in visits]
    return result


def _sample(controller, topo, ref: ConnectorRef, visit_tx: tuple, last_draw: dict,
            register_wh: dict, now: datetime, context: str) -> None:
    """A station's meter sample of one connector: its car's draw in the last step, on the
    phases the car uses."""
    visit, tx = visit_tx
    draw_w = last_draw.get(id(visit), 0.0)
    per_phase = draw_w / (topo.station(ref.station_id).voltage_v * visit.ev.phases)
    currents = (per_phase, per_phase, per_phase) if visit.ev.phases == 3 \
        else (per_phase, 0.0, 0.0)
    controller.on_event(ev.MeterSampled(
        ref.station_id, ref.connector_id, tx, now, context,
        energy_register_wh=register_wh[ref], power_w=draw_w, current_a=currents,
        received_at=now))


def _grid_phase_use(site: Site, draws: list[Draw], topo) -> float:
    """The grid connection's most loaded phase over its per-phase current limit (NaN: none),
    the draws counted as the demo's Monitor counts them (a single-phase car on its site phase)."""
    limit_a = site.root.limit_a
    if limit_a is None or limit_a <= 0:
        return float("nan")
    amps = [0.0, 0.0, 0.0]
    for draw in draws:
        per_phase_a = draw.power_w / (topo.station(draw.station_id).voltage_v
                                      * draw.phases_in_use)
        for phase in ((0, 1, 2) if draw.phases_in_use == 3
                      else (PHASE_NAMES.index(draw.phase),)):
            amps[phase] += per_phase_a
    return max(amps) / limit_a


def reachable_w(topo, cars, limit_w: float, acceptance_w: dict) -> float:
    """The most `cars` [(ref, SimEV)] could draw together right now (each at most what its
    battery accepts, on the phases it uses) under the grid limit and every breaker and phase:
    one slot of the optimizer, no minimum rates."""
    if not cars:
        return 0.0
    node_w, node_a = topo.node_limits(np.array([limit_w]))
    rows = []
    for ref, car in cars:
        phases = min(car.phases, topo.connector(ref).phases)
        rows.append((topo.station_node[ref.station_id],
                     min(topo.max_power_w(ref, phases), acceptance_w[ref]), phases,
                     topo.site_phase(ref, 0) if phases == 1 else 0,
                     topo.station(ref.station_id).voltage_v))
    node, max_w, phases, phase, volt = (np.array(c) for c in zip(*rows))
    problem = optimizer.Problem(
        slot_s=[60.0], max_power_w=max_w, energy_wh=max_w / 60.0 + 1.0,
        arrival_slot=np.zeros(len(rows), dtype=np.int64),
        departure_slot=np.ones(len(rows), dtype=np.int64), node_parent=topo.node_parent,
        connector_node=node, node_limit_w=node_w, node_limit_a=node_a, phases=phases,
        phase=phase, voltage_v=volt)
    return float(optimizer.solve(problem).power_w.sum())


def _changes(dr: DemandResponsePlan | None, site: Site) -> list[datetime]:
    moments = []
    if dr is not None:
        moments += [dr.start, dr.end]
    for window in site.cap_schedule:
        moments += [window.start, window.end]
    return moments
