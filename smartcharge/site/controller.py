"""The site controller: keeps the live picture, re-plans when something that matters changes,
checks every plan against every limit, and hands the plan to dispatch.

Re-plan triggers: a session starts or stops, a need or a limit changes, a DR event or cap window
begins or ends, a station goes offline or comes back, a connector becomes (un)controllable, a car
draws clearly less than it was given (closed loop), a connector starts (or stops) drawing without
a session (sessionless.py), and the start of every slot. Triggers that
arrive in a burst are coalesced into one solve. The controller takes a picture of the site on the
event loop, in steps (`plan_inputs.py`), and the pure planner (`planner.py`: build, solve, check,
bindings, idle shares) makes the plan from it in a worker thread, so the server keeps answering
stations (issue 10: the loop is never blocked for more than 20 ms). The solver's model is kept
from one plan to the next (`warm`, site/warm_plans.py): a car arriving re-solves from the last
optimum, to the same optimum as a solve from scratch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

import optimizer
from smartcharge import events
from smartcharge.clock import Clock, format_ocpp_time
from smartcharge.model import Site
from smartcharge.site import learned
from smartcharge.site.closed_loop import ClosedLoop
from smartcharge.site import state as st
from smartcharge.site.guard import SiteGuard
from smartcharge.site.failsafe_limits import node_limit_schedule
from smartcharge.site.limits import LimitSource, SiteLimits
from smartcharge.site import in_steps, plan_inputs, planner, unbounded, undeclared
from smartcharge.site.plan import Plan
from smartcharge.site.planner import PlanInputs, PlanTimes
from smartcharge.site.prices import SitePrices
from smartcharge.site.reading import SiteReading, cap_before_decrease_w, read_site_steps
from smartcharge.site.sessionless import SessionlessDraws
from smartcharge.site.snapshot import view_model_steps
from smartcharge.site.station_reports import StationReports
from smartcharge.site.topology import ConnectorRef, SiteTopology
from smartcharge.site.warm_plans import WarmPlans
from smartcharge.turn_share import BACKGROUND, URGENT, TurnShare

log = logging.getLogger(__name__)

# re-plan reasons that only make the plan better, not safer: a new car is held by its
# connector's idle share, a car's phases by limits no car can exceed on any phase
DEFERRABLE = ("session:MeterSampled", "session:SessionStarted", "session:SessionStopped",
              "station:StationConnected", "station:StationBooted", "ev-ramp:", "underuse:",
              "controllable:", "need:", "ev-needs:", "sessionless-ended:",
              "held-idle-released:")
REPLAN_DUTY = 4   # deferrable triggers wait until 4x the last re-plan's length after it,
DEFERRABLE_S_PER_CONNECTOR = 0.001   # and at least 1 ms per connector planned (2 s at 2 000)
GUARD_DUTY = 5   # measurement-driven guard passes start at least 5x the last one's length apart
# A guard pass counts again only the connectors whose inputs changed or whose moment came
# (guard_counts.py): at 5 000 stations ~0.3 ms, not ~0.1 s, so at every sample at most every
# guard_min_real_s it takes next to nothing of the loop; the duty rule still holds the passes
# that count many (after a dispatch round) apart. Every connector's count is audited (counted
# again and compared: a change no watcher was told of is logged) once per guard_audit_real_s,
# a slice with each pass (s23-guard).


@dataclass(frozen=True)
class ControllerSettings:
    slot_s: float = 900.0              # plan slot length [s of site time]
    # Finer slots near now: the first near_window_s are cut at every multiple of near_slot_s
    # (on the clock's grid, so a slot keeps its edges from one re-plan to the next). In a
    # 15-min first slot a car near its need was planned at its need over the whole slot, the
    # rest of its power left unused while the site was short. Off by default: at 300 s the
    # demo day's truthful limit use rose 93.7 -> 94.6 %, energy moved within the loop's
    # spread (+8 kWh over 12 runs) and pauses rose 27 %, cars paused more than once an hour
    # by re-plans 1 -> 5 (benchmarks/README.md, "s22-quality"). None: the slot_s grid only.
    near_slot_s: float | None = None
    near_window_s: float = 900.0
    limit_lead_s: float = 60.0         # a limit change is planned from this long before it
    horizon_s: float = 24 * 3600.0     # how far ahead we plan [s]
    coalesce_real_s: float = 0.05      # a burst of triggers within this real time -> one solve
    stale_after_s: float = 180.0       # a measurement older than this is unknown [s site time]
    underuse_margin_w: float = 500.0   # "clearly less": below allocation by this much ...
    underuse_fraction: float = 0.1     # ... and by this fraction of the allocation
    # A car that draws less is planned at its draw + ev_headroom_w; once this far under its
    # draw + headroom it is capped again at its new draw (taper goes on). Every watt of it is
    # idle under a binding cap: 500 / 250 W left 0.3-1.0 points of the quality days' energy
    # on the table (benchmarks/README.md, "Closed loop headroom").
    ev_headroom_w: float = 150.0
    ev_follow_w: float = 100.0
    taper_model: bool = True           # plan a tapering car along its learned line (taper.py)
    # A three-phase car is planned at most at this current a phase (+ ev_headroom_w) until a
    # sample shows it drawing that: on-board chargers take 16 A (11 kW) or 32 A (22 kW), and an
    # 11 kW car raised to its bay's 22 kW left 11 kW unused until its next sample
    # (charger_ceiling.py). None: no guess - the default: on the tight day's truthful run the
    # portfolio guard then chose LLF's plan at four slot edges in a row, pausing two cars more
    # than once an hour (benchmarks/README.md "s39-gap"); 16.0 is the measured value.
    charger_guess_a: float | None = None
    # a tapering car whose battery takes less than its minimum is worth what it takes per W of
    # its minimum (its weight scaled down), so a short site gives that minimum to hungry cars
    taper_worth: bool = True
    # ... except once running again within this long of a plan pausing it (resumes.py): paused
    # for its worth at every short spell, a car was paused more than once an hour (s39-gap)
    taper_worth_hold_s: float = 3600.0
    declined_w: float = 100.0          # a car drawing less than this at two samples in a row
                                       # while offered its minimum declines power (full) ...
    declined_retry_s: float = 3600.0   # ... and is offered power again after this long
    topup_weight: float = 0.1          # a silent driver's car past the site's default need
                                       # keeps charging at this priority (what is left over)
    solve_time_limit_s: float = 5.0    # optimizer time limit [real s]
    history_points: int = 2000
    history_every_s: float = 60.0      # one history point per this much site time
    snapshot_min_real_s: float = 0.25  # measurement-driven snapshots at most this often
    idle_window_s: float = 1800.0      # an idle connector's arrival share covers this long
    guard_min_real_s: float = 0.2      # measurement-driven guard checks at most this often
    guard_audit_real_s: float = 30.0   # every connector's kept guard count audited this often
    backend: str = "auto"              # optimizer.solve backend; a baseline name ("edf", "llf",
                                       # "equal_share") runs that heuristic (benchmarks)
    stable_window_s: float | None = 1800.0   # the slots starting this soon keep the previous
                                       # plan among equal optima (what the stations hold: the
                                       # profile lifetime); None: no preference (optimizer/stable.py)


@dataclass
class Stats:
    replans: int = 0
    profiles_sent: int = 0
    violations: int = 0                # plans the optimizer returned over a limit (then clipped)
    last_solve_s: float = 0.0          # the last re-plan, picture to plan [real s]
    last_status: str = ""
    last_times: PlanTimes | None = None   # its build, solve, check, finish [real s]
    last_solver: dict | None = None       # its backend, optimum, solver model (planner.py)


class SiteController:
    def __init__(self, site: Site, clock: Clock, settings: ControllerSettings | None = None):
        self.site = site
        self.clock = clock
        self.settings = settings or ControllerSettings()
        self.topology = SiteTopology(site)
        uncapped_w = sum(self.topology.max_power_w(r) for r in self.topology.refs)
        self.limits = SiteLimits(site, uncapped_w=uncapped_w)
        self.prices = SitePrices()     # price signals (OpenADR) for the optimizer's cost term
        # the VENs' state for the dashboard (program -> status at a moment), set by openadr/
        self.ven_status: dict[str, object] = {}
        self.state = st.SiteState(site)
        self.stats = Stats()
        self.plan: Plan | None = None
        # the solver model kept from one plan to the next (one plan at a time uses it)
        self.warm = WarmPlans()
        self.uncontrollable: dict[ConnectorRef, str] = {}   # ref -> why
        # idle connectors nothing of ours bounds (site/unbounded.py): kept free in the plan
        self.unbounded_idle: set[ConnectorRef] = set()
        # idle connectors that keep their fail-safe default under a new car (no idle layer):
        # that default [W] kept free in the plan too
        self.kept_defaults_w: dict[ConnectorRef, float] = {}
        # stations held at what they may hold (offline, a decrease left unanswered): station
        # id -> what a car arriving at each of its idle connectors may draw under it
        # (learned.HeldIdle, made ready by unbounded.held_reserve)
        self.held_idle: dict[str, tuple] = {}
        self.holds_seen = 0   # dispatch's count of holds the last HeldIdle told (plan.extra)
        self.floor_w: dict[ConnectorRef, float] = {}        # stations that cannot pause: min draw
        self.overdraw_w: dict[ConnectorRef, float] = {}     # measured over its profile (guard)
        # connectors whose plans go out as their default: planned for any car (plan_inputs)
        self.plans_on_default: set[ConnectorRef] = set()
        # what the stations accepted (site/installed.py), read-only; set by setup with dispatch
        self.installed = None
        # plans out, what dispatch learned back (site/learned.py): neither holds the other
        self.site_bus = events.EventBus()
        self.site_bus.subscribe(self.on_learned)
        self.history: deque[dict] = deque(maxlen=self.settings.history_points)
        self._last_history_at: datetime | None = None
        self._last_history_reading_at: datetime | None = None
        self._replan = asyncio.Event()
        self._urgent = asyncio.Event()     # a trigger that is not DEFERRABLE is waiting
        self._replanning_urgent = False    # the re-plan running now had such a trigger
        self._reasons: set[str] = set()
        self._replan_done_real = 0.0
        self._replan_gap_real_s = 0.0
        self._snapshot_version = 0
        self._snapshot_changed = asyncio.Event()   # replaced by a fresh one after every change
        self._last_snapshot_real = 0.0
        self._snapshot_making: asyncio.Future | None = None   # shared by its askers
        self.closed_loop = ClosedLoop(self)
        self.ev_cap_w = self.closed_loop.ev_cap_w            # read by the picture and tests
        self.declined_at = self.closed_loop.declined_at
        # what stations report of the car (its needs) and of limits set outside us (caps)
        self.reports = StationReports(self.topology, self.state, self.request_replan)
        # connectors drawing without a session: fixed loads of the plan's room (sessionless.py)
        self.sessionless = SessionlessDraws(self.state, self.topology, self.request_replan)
        self.plan_done = asyncio.Event()   # set after every completed re-plan (for waiters)
        # the background CPU each turn of the loop may spend (turn_share.py), shared with
        # dispatch: re-plans' steps in it, the guard's passes in its safety lane
        self.share = TurnShare()
        self.guard = SiteGuard(self)
        self.guard.counts.audit_period_s = self.settings.guard_audit_real_s
        self._last_guard_real = 0.0
        self._guard_task: asyncio.Task | None = None
        self._guard_gap_real_s = 0.0

    # --- inputs -----------------------------------------------------------------------------
    def on_event(self, event) -> None:
        """EventBus subscriber: quick, never blocks."""
        self.reports.on_event(event)
        seen = len(self.state.undeclared)
        change = self.state.apply(event)
        if len(self.state.undeclared) != seen:
            # a connector the site file does not list: the fail-safe defaults of the others
            # make room for its station's maximum (failsafe.py), sent with the next round
            self.request_replan(f"undeclared:{event.station_id}/{event.connector_id}")
        if change == st.SESSION_CHANGE and isinstance(event, events.MeterSampled):
            self.closed_loop.phases_learned(ConnectorRef(event.station_id, event.connector_id),
                                            event)
        if change in (st.SESSION_CHANGE, st.STATION_CHANGE):
            reason = f"{change}:{type(event).__name__}"
            if self._frees_fixed_over(event.station_id, getattr(event, "connector_id", None)):
                reason = f"fixed-over:{event.station_id}"   # urgent: see _frees_fixed_over
            self.request_replan(reason)
        elif change == st.MEASUREMENT:
            self.closed_loop.on_sample(event)
            self.sessionless.on_sample(ConnectorRef(event.station_id, event.connector_id))
            self._guard(throttle=True)
            self._notify_snapshot(throttle=True)
        elif change == st.STATUS:   # 1.6: a session's state is its connector's status
            self.closed_loop.on_charging_state(
                ConnectorRef(event.station_id, event.connector_id), event.status)
            if event.status == "Available":
                self.reports.connector_freed(ConnectorRef(event.station_id, event.connector_id))
        if isinstance(event, events.SessionStarted):
            # a car's needs reported before its session (ISO 15118, 2.0.1): now its own
            self.reports.session_began(event, self.clock.now())
        if isinstance(event, events.ChargingStateChanged):   # 2.0.1
            self.closed_loop.on_charging_state(
                ConnectorRef(event.station_id, event.connector_id), event.state,
                event.transaction_id)
        if isinstance(event, events.SessionStopped) and event.connector_id is not None:
            ref = ConnectorRef(event.station_id, event.connector_id)
            # the late stop of an older transaction (a station's queue out of order) is not
            # the end of the session running there: what it was measured drawing stands
            if ref not in self.state.sessions:
                self.overdraw_w.pop(ref, None)

    def on_learned(self, event) -> None:
        """Site-bus subscriber: what dispatch learned about the stations."""
        if isinstance(event, learned.ConnectorControl):
            self.set_uncontrollable(event.ref, event.uncontrollable)
        elif isinstance(event, learned.ConnectorUnbounded):
            if (event.ref in self.unbounded_idle) != event.unbounded:
                (self.unbounded_idle.add if event.unbounded
                 else self.unbounded_idle.discard)(event.ref)
                self.request_replan(f"unbounded:{event.ref.station_id}/"
                                    f"{event.ref.connector_id}")
        elif isinstance(event, learned.IdleDefaultKept):
            if self.kept_defaults_w.get(event.ref) != event.default_w:
                if event.default_w is None:
                    self.kept_defaults_w.pop(event.ref, None)
                else:
                    self.kept_defaults_w[event.ref] = event.default_w
                self.request_replan(f"kept-default:{event.ref.station_id}/"
                                    f"{event.ref.connector_id}")
        elif isinstance(event, learned.HeldIdle):
            self.holds_seen = max(self.holds_seen, event.holds_added)
            if event.held:
                # made once (asked per connector per plan; the topology's look-ups were ~60 us
                # a connector: 0.6 s a plan at 10 000 restored connectors)
                self.held_idle[event.station_id] = unbounded.held_reserve(
                    self.topology, event.station_id,
                    [(ref, *steps_from(step)) for ref, step in event.held])
                self.request_replan(f"held-idle:{event.station_id}")
            elif self.held_idle.pop(event.station_id, None) is not None:
                # let go: only more room for the others (a boot storm's set-ups release
                # thousands)
                self.request_replan(f"held-idle-released:{event.station_id}")
        elif isinstance(event, learned.ConnectorFloor):
            self.set_floor(event.ref, event.floor_w)
        elif isinstance(event, learned.PlansAsDefault):
            if (event.ref in self.plans_on_default) != event.as_default:
                (self.plans_on_default.add if event.as_default
                 else self.plans_on_default.discard)(event.ref)
                self.request_replan(f"plans-as-default:{event.ref.station_id}/"
                                    f"{event.ref.connector_id}")
        elif isinstance(event, learned.ReplanWanted):
            self.request_replan(event.reason)
        elif isinstance(event, learned.ProfileSent):
            self.stats.profiles_sent += 1

    def request_replan(self, reason: str) -> None:
        self._reasons.add(reason)
        self._replan.set()
        if not reason.startswith(DEFERRABLE):
            self._urgent.set()

    def _frees_fixed_over(self, station_id: str | None = None,
                          connector_id: int | None = None) -> bool:
        """Whether a fixed load of the plan in force - one it could not keep a limit beside
        (`fixed_over`: the fixed loads alone over it) - can be planned now: a session a boot
        closed seen running again, a station back online, a connector controllable again
        (of `station_id`, `connector_id`; None: any). Such a change is what lets a re-plan
        bring the site under the limit, so it does not wait as one that only improves the
        plan: deferred (REPLAN_DUTY x the last re-plan's length), a reopened car ran on its old
        TxProfile meanwhile - 22 kW under a 5 kW DR limit for 22 s behind a re-plan starved
        while it ran (s38-flaky; tests/test_reopen_under_limit.py). Only while a plan breaks a
        limit by its fixed loads: otherwise the plan counted the load at what it may draw."""
        plan = self.plan
        if plan is None or not plan.extra.get("fixed_over"):
            return False
        for ref in plan.fixed_w:
            if (station_id is not None and ref.station_id != station_id) \
                    or (connector_id is not None and ref.connector_id != connector_id):
                continue
            if ref not in plan.connectors and ref in self.state.sessions \
                    and ref not in self.uncontrollable \
                    and self.state.online.get(ref.station_id, False):
                return True
        return False

    def set_uncontrollable(self, ref: ConnectorRef, why: str | None) -> None:
        """Dispatch reports a connector that does not take profiles (why=None: it does again;
        not believed for one the guard measured drawing over its profile, until its session
        ends)."""
        if why is None:
            if ref in self.overdraw_w:
                return   # accepting a profile proves nothing: it was measured ignoring one
            if self.uncontrollable.pop(ref, None) is not None:
                urgent = self._frees_fixed_over(ref.station_id, ref.connector_id)
                self.request_replan(f"{'fixed-over' if urgent else 'controllable'}:"
                                    f"{ref.station_id}/{ref.connector_id}")
        elif self.uncontrollable.get(ref) != why:
            self.uncontrollable[ref] = why
            self.request_replan(f"uncontrollable:{ref.station_id}/{ref.connector_id}")

    def set_overdraw(self, ref: ConnectorRef, measured_w: float) -> None:
        """The guard measured a connector drawing more than its profiles allow: it does not
        obey, so it is planned as a fixed load at what it draws."""
        self.overdraw_w[ref] = max(measured_w, self.overdraw_w.get(ref, 0.0))
        self.set_uncontrollable(ref, f"draws {measured_w:.0f} W, more than its profile allows")

    def _guard(self, *, throttle: bool) -> None:
        real = time.monotonic()
        if throttle and real - self._last_guard_real < max(self.settings.guard_min_real_s,
                                                          self._guard_gap_real_s):
            return
        if self._guard_task is not None and not self._guard_task.done():
            return      # a pass is under way: it reads the newest samples as it goes
        self._last_guard_real = real
        try:
            asyncio.get_running_loop()
        except RuntimeError:    # no loop (a plain test): the whole pass now
            self.guard.check(self.clock.now())
            return
        # in steps, so that a pass over thousands of connectors never holds up the stations'
        # answers for long (issue 10); one pass at a time
        self._guard_task = asyncio.create_task(self.share.run(self._guard_pass(), safety=True),
                                               name="site-guard")

    async def _guard_pass(self) -> None:
        started = time.monotonic()
        try:
            await self.guard.check_async(self.clock.now())
        except Exception:  # a task boundary: the next measurement starts another pass
            log.exception("guard pass failed")
        # measurement-driven passes take at most 1/GUARD_DUTY of the loop's time however
        # large the site (a pass that counts every connector takes tens of ms at 5 000)
        self._guard_gap_real_s = GUARD_DUTY * (time.monotonic() - started)

    def replan_lane(self) -> int:
        """The share's lane for the controller's task (turn_share.py): URGENT while a re-plan
        for a limit, an overload or a station lost or refusing waits or runs."""
        return URGENT if self._urgent.is_set() or self._replanning_urgent else BACKGROUND

    def set_floor(self, ref: ConnectorRef, floor_w: float) -> None:
        """A station that refuses limit 0: pausing it leaves it at its minimum."""
        if self.floor_w.get(ref) != floor_w:
            self.floor_w[ref] = floor_w
            self.request_replan(f"floor:{ref.station_id}/{ref.connector_id}")

    # --- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Re-plan on every trigger (coalesced), at every slot start and limit change."""
        self.request_replan("start")
        try:
            await self._run()
        finally:
            if self._guard_task is not None:
                self._guard_task.cancel()

    async def _run(self) -> None:
        while True:
            timer = asyncio.ensure_future(self.clock.sleep(self._seconds_to_next_boundary()))
            trigger = asyncio.ensure_future(self._replan.wait())
            try:
                await asyncio.wait({timer, trigger}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
                trigger.cancel()
            if not self._replan.is_set():
                self._reasons.add("slot")
            await asyncio.sleep(self.settings.coalesce_real_s)  # let the burst arrive
            await self._gather_deferrable()
            self._replan.clear()
            self._replanning_urgent = self._urgent.is_set()
            self._urgent.clear()
            reasons, self._reasons = self._reasons, set()
            started = time.monotonic()
            try:
                await self.replan(reasons)
            except Exception:  # the loop must survive one bad plan; it re-plans next slot
                log.exception("re-plan failed (reasons %s)", sorted(reasons))
            self._replanning_urgent = False
            self._replan_done_real = time.monotonic()
            # the re-plan, and the dispatch round after it (up to a profile per connector)
            sessions = len(self.plan.connectors) if self.plan is not None else 0
            self._replan_gap_real_s = max(REPLAN_DUTY * (self._replan_done_real - started),
                                          DEFERRABLE_S_PER_CONNECTOR * sessions)

    async def _gather_deferrable(self) -> None:
        """Triggers that only make the plan better (a car's phases learned, a session begun,
        a car drawing less) wait until REPLAN_DUTY times the last re-plan's length (at least
        1 ms per connector it planned, for the dispatch round after it) has passed since it
        ended, so they are planned together: on a site of thousands, where a re-plan
        takes a good part of a second, every first sample of 2 000 new sessions re-planned
        the whole site again (issue 10). A limit, an overload, a station lost or refusing
        does not wait, nor a fixed load that breaks a limit becoming plannable
        (`_frees_fixed_over`)."""
        wait_s = self._replan_gap_real_s - (time.monotonic() - self._replan_done_real)
        if wait_s <= 0 or self._urgent.is_set():
            return
        if self._frees_fixed_over():
            # (a load the plan in force fixed over a limit became plannable while that plan
            # was being made: its trigger came before the plan said so)
            self._reasons.add("fixed-over")
            self._urgent.set()
            return
        try:
            async with asyncio.timeout(wait_s):
                await self._urgent.wait()
        except TimeoutError:
            pass

    def _seconds_to_next_boundary(self) -> float:
        now = self.clock.now()
        slot_s = self.settings.slot_s
        into = now.timestamp() % slot_s
        until = slot_s - into
        for moment in self.limits.change_times(now)[:1]:
            until = min(until, (moment - now).total_seconds())
        return max(until, 0.001)

    # --- planning ---------------------------------------------------------------------------
    def phase_use(self, ref: ConnectorRef) -> tuple[int, int, bool]:
        """(phases, site phase, known) a session is planned on. A single-phase car on a 3-phase
        connector (learned from its per-phase currents) is a single-phase load on the site
        phase its station phase is wired to; until its phases are measured a 3-phase connector
        is planned balanced and sent limits no car can exceed on any phase (dispatch)."""
        connector = self.topology.connector(ref)
        if connector.phases == 1:
            return 1, self.topology.phase_index(ref), True
        session = self.state.sessions.get(ref)
        if session is not None and session.phases_in_use == 1:
            return 1, self.topology.site_phase(ref, session.station_phase), True
        return 3, 0, session is not None and session.phases_in_use == 3

    def draw_phase_use(self, ref: ConnectorRef) -> tuple[int, int, bool]:
        """`phase_use` of what a connector draws: its session's car's; without a session (a
        draw without a transaction, sessionless.py), what its latest sample's per-phase
        currents showed. The guard counts a draw so, and the planner a sessionless load."""
        sample = self.state.measurements.get(ref)
        shown = sample.phases_shown if sample is not None else None
        if shown is None or ref in self.state.sessions:
            return self.phase_use(ref)
        phases, station_phase = shown
        if phases == 1:
            return 1, self.topology.site_phase(ref, station_phase), True
        return 3, 0, True

    def plan_inputs(self, now: datetime) -> PlanInputs:
        """The planner's picture of the site at `now`, in one go (plan_inputs.py)."""
        return plan_inputs.read_all(self, now)

    def build_problem(self, now: datetime) -> tuple[optimizer.Problem, planner.Built]:
        """(the problem a re-plan at `now` would solve, what it was built from)."""
        built = planner.build_problem(self.topology, self.plan_inputs(now))
        return built.problem, built

    async def replan(self, reasons: set[str] | None = None) -> Plan:
        """Take the picture on the loop; build, solve, check and finish the plan in a worker
        thread (site/planner.py, pure), so the stations' answers never wait for it."""
        now = self.clock.now()
        started = time.perf_counter()
        holds_seen = self.holds_seen   # the held stations in the picture (site/applied.py)
        # (the limits' version is in the picture: dispatch holds increases once it moves on)
        inputs = await in_steps.run_async(plan_inputs.read_steps(self, now), self.share)
        made = await asyncio.to_thread(
            planner.make_plan, self.topology, inputs, backend=self.settings.backend,
            time_limit_s=self.settings.solve_time_limit_s, warm=self.warm)
        if made.violations:
            self.stats.violations += 1
            log.error("optimizer plan (%s) breaks %d limits, e.g. %s: clipped it",
                      made.plan.status, len(made.violations), made.violations[0])
        plan = made.plan
        # made for a limit, an overload, a station lost or refusing: its dispatch round runs
        # in the share's urgent lane (turn_share.py), ahead of set-ups and other rounds' work
        plan.extra["urgent"] = self._replanning_urgent
        plan.extra["holds_added"] = holds_seen
        # A car that arrived during the solve keeps the idle share the plan left its
        # connector: the plan gave the rest of the room to others. Dropped ("it waits for its
        # own plan"), the car went on drawing the share of the plan before while another was
        # raised into that room - over the limit until the next plan.
        self.plan = plan
        self.stats.replans += 1
        self.stats.last_solve_s = time.perf_counter() - started
        self.stats.last_status = plan.status
        self.stats.last_times = made.times
        self.stats.last_solver = made.solver
        log.debug("re-planned (%s): %d connectors, %s, %.3f s", ",".join(sorted(reasons or ())),
                  len(plan.connectors), plan.status, self.stats.last_solve_s)
        self.site_bus.publish(learned.PlanMade(self.plan))
        self.plan_done.set()
        self.plan_done = asyncio.Event()
        self._notify_snapshot(throttle=False)
        return self.plan

    def allocated_now_w(self, ref: ConnectorRef) -> float | None:
        if self.plan is None:
            return None
        if ref in self.plan.fixed_w:
            return self.plan.fixed_w[ref]
        plan = self.plan.connectors.get(ref)
        return None if plan is None else plan.power_at(self.clock.now())

    def default_root_schedule(self) -> list[tuple[datetime, float]]:
        """The grid connection's part of what the fail-safe defaults are sized for, over time:
        [(from, limit_w)], the first from now (every node's: site/failsafe_limits.py)."""
        out: list[tuple[datetime, float]] = []
        for moment, node_w in node_limit_schedule(self.topology, self.limits, self.clock.now()):
            if not out or out[-1][1] != node_w[0]:
                out.append((moment, node_w[0]))
        return out

    # --- snapshot ---------------------------------------------------------------------------
    def effective_limit_now(self) -> tuple[float, LimitSource | None]:
        return self.effective_limit_at(self.clock.now())

    def effective_limit_at(self, moment: datetime) -> tuple[float, LimitSource | None]:
        values, sources = self.limits.effective_root_limit_w(
            [moment], [moment + timedelta(seconds=1)])
        root = self.topology.static_limit_w[0]
        if root < values[0]:
            return float(root), self.topology.node_sources[0]
        return float(values[0]), sources[0]

    def site_reading(self) -> SiteReading:
        """The site's measured draw at one instant (reading.py): stale meters at maximum."""
        return in_steps.run_all(self._reading_steps())

    async def site_reading_async(self) -> SiteReading:
        """`site_reading`, giving the loop back every few hundred connectors (20-60 ms in one
        go at 5 000 connectors: issue 10)."""
        return await in_steps.run_async(self._reading_steps(), self.share)

    def _sample_cap_w(self, ref: ConnectorRef, sample, at: datetime) -> float | None:
        """`reading.cap_before_decrease_w` with what the installed profiles say of `ref`."""
        installed = self.installed
        if installed is None or not self.topology.has(ref) or not installed.governs(ref):
            return None
        return cap_before_decrease_w(sample, at, installed.followed_since(ref),
                                     installed.settle_s, lambda: installed.installed_w(ref, at),
                                     lambda moment: self.state.sample_after(ref, moment))

    def site_load_w(self) -> float:
        return self.site_reading().load_w

    def _reading_steps(self) -> in_steps.Steps[SiteReading]:
        # the connectors the site file does not list count too (site/undeclared.py)
        return read_site_steps(self.state, [*self.topology.refs, *self.state.undeclared],
                               self.clock.now(), self.settings.stale_after_s, self._stale_w,
                               self._sample_cap_w)

    def _stale_w(self, ref: ConnectorRef) -> float:
        """What a charging connector with a stale meter counts at: its maximum (an undeclared
        one's is its station's)."""
        if self.topology.has(ref):
            return self.topology.max_power_w(ref)
        return undeclared.planned_w(self.state, self.topology, ref)

    def snapshot(self) -> dict:
        """The dashboard's view model (`site/snapshot.py`), the history recorded first."""
        return in_steps.run_all(self._snapshot_steps())

    async def snapshot_async(self) -> dict:
        """`snapshot`, giving the loop back every few ms (0.3-0.5 s in one go at 5 000
        connectors: issue 10). Callers that ask while one is being made share it (every
        dashboard stream wakes on the same change)."""
        if self._snapshot_making is None or self._snapshot_making.done():
            self._snapshot_making = asyncio.ensure_future(
                self.share.run(in_steps.run_async(self._snapshot_steps(), self.share)))
        return await asyncio.shield(self._snapshot_making)

    def _snapshot_steps(self) -> in_steps.Steps[dict]:
        reading = yield from self._reading_steps()
        now = self.clock.now()
        limit_w, limit_source = self.effective_limit_now()
        self._record_history(now, reading)
        return (yield from view_model_steps(self, now, limit_w, limit_source, reading,
                                            self.effective_limit_at(reading.at)[0]))

    def tick(self) -> None:
        """A measurement moment: record history and wake the stream even if nothing re-planned."""
        self._tick(self.site_reading())

    async def tick_async(self) -> None:
        """`tick`, the site read in steps (tens of ms at 5 000 connectors in one go)."""
        self._tick(await self.site_reading_async())

    def _tick(self, reading: SiteReading) -> None:
        self._record_history(self.clock.now(), reading)
        self._guard(throttle=False)   # meters go stale without any message arriving
        self._notify_snapshot(throttle=False)

    def _record_history(self, now: datetime, reading: SiteReading) -> None:
        """One point per history_every_s: the load at its reading's instant, with the limit in
        force at that instant (so the two lines compare like with like)."""
        last = self._last_history_at
        if last is not None and (now - last).total_seconds() < self.settings.history_every_s:
            return
        if self._last_history_reading_at is not None \
                and reading.at <= self._last_history_reading_at:
            return      # nothing newer was read: no point back in time
        self._last_history_at, self._last_history_reading_at = now, reading.at
        self.history.append({"time": format_ocpp_time(reading.at),
                             "site_load_w": round(reading.load_w, 1),
                             "effective_limit_w": _finite(self.effective_limit_at(reading.at)[0]),
                             "stale": reading.stale})

    def _notify_snapshot(self, *, throttle: bool) -> None:
        real = time.monotonic()
        if throttle and real - self._last_snapshot_real < self.settings.snapshot_min_real_s:
            return
        self._last_snapshot_real = real
        self._snapshot_version += 1
        changed, self._snapshot_changed = self._snapshot_changed, asyncio.Event()
        changed.set()

    @property
    def snapshot_version(self) -> int:
        return self._snapshot_version

    async def next_snapshot(self, after_version: int, timeout_s: float | None = None
                            ) -> tuple[int, dict] | None:
        """Wait until the snapshot changes after `after_version`; (version, snapshot) or None
        on timeout."""
        if self._snapshot_version <= after_version:
            try:   # asyncio.timeout: 3.11's wait_for can swallow a cancellation (SSE shutdown)
                async with asyncio.timeout(timeout_s):
                    await self._snapshot_changed.wait()
            except TimeoutError:
                return None
        return self._snapshot_version, await self.snapshot_async()


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else value


def steps_from(step) -> tuple[tuple, tuple]:
    """(a W step's moments, the most it allows from each of them on): what a held connector
    may draw from any moment on is one bisection (`plan_inputs._unbounded_w`)."""
    moments = tuple(m for m, _ in step)
    most: list[float] = []
    for _, value in reversed(step):
        most.append(value if not most else max(value, most[-1]))
    return moments, tuple(reversed(most))

