"""Plans -> connector schedules through each station's control port (`ocpp/port.py`), one
request at a time per station, all stations at once. Version-neutral: which payload, which unit,
which alternative after a refusal is the port's business (`ocpp/v16/station_port.py` for 1.6).

Per station the port reads its capabilities once; dispatch installs fail-safe defaults at boot
(the station's maximum + a default per connector whose sum stays under every limit if
smartcharge disappears) and sends each connector whose plan changed its schedule. A connector
the station refuses every alternative for is reported as uncontrollable, drawing what it has
installed; what dispatch learns goes to the controller as events on the site bus
(`learned.py`), never as a call.

Order, interval by interval: a schedule that lowers a connector anywhere (against what the
station has installed there, its fail-safe default after the installed schedule runs out) goes
out first; one that also raises somewhere is first sent as the pointwise minimum of the two.
The increases under a node wait until every decrease they depend on (of any station sharing a
limited node with them) is acknowledged, and come into force a settle time later for the cars to
follow (every raise - a plan's, an idle share's, a default's - is held by its own schedule until
the settle time and the clocks' margin after it is sent: `edges.held`); a
decrease refused, unanswered or met offline holds those increases and the controller re-plans
with that connector at what it may really draw. Increases in unrelated subtrees do not wait.
Every plan and idle schedule ends at one common instant (`expiry`), so whatever subset of them
is in force at a later moment is one consistent plan or the fail-safe defaults. When that
instant moves on, what a connector has installed after the old one is its fail-safe default:
re-sending to the new one is ordered against that like any change (an idle share too, idle.py).
Every request sent is recorded with the station's answer in the store's audit table
(`benchmarks/resend_causes.py` counts why each went out). What does not count as a change: a
plan installed with its end delayed a little (`edges.end_kept`), and a raise within the dead
band (`DispatchSettings.raise_deadband_w`); every decrease goes out.

The parts: `failsafe.py` (setup once per connection, the fail-safe defaults), `installed.py` (what
a connector may draw under what it accepted: the controller's and the guard's read-only view),
`sending.py` (schedules in both units, what an answer changes), `edges.py` (raises a few
seconds after their edges: stations' clocks disagree), `idle.py` (idle connectors' idle
schedules, compared like plans; the 0 W default under a car on a TxProfile),
`station_control.py` (what we know of one station),
`steps.py` (limits over time), `learned.py` (the site bus's events).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import numpy as np

from smartcharge import events as ev
from smartcharge.clock import Clock
from smartcharge.model import DISPATCH_CALL_TIMEOUT_S, Site
from smartcharge.ocpp.port import Answer, PortSettings, PowerSchedule
from smartcharge.ocpp.registry import StationOffline, StationRegistry
from smartcharge.site import failsafe, learned, steps
from smartcharge.site.failsafe import FailSafeSetup, default_in_force
from smartcharge.site.held_defaults import HeldDefaults
from smartcharge.site.idle import IdleSending
from smartcharge.site.dispatch_round import DispatchRound
from smartcharge.store_ops import StoreOp
from smartcharge.store_refusals import log_unless_refused
from smartcharge.site.edges import end_kept
from smartcharge.site.installed import InstalledLimits
from smartcharge.site.limits import SiteLimits
from smartcharge.site.plan import ConnectorPlan, Plan
from smartcharge.site.sending import NO_ANSWER, ProfileSending
from smartcharge.site.slots import LATER, SendingSlots
from smartcharge.site.state import SiteState
from smartcharge.site.station_control import Sent, StationControl
from smartcharge.site.topology import ConnectorRef, SiteTopology
from smartcharge.site.watched import WatchedDict
from smartcharge.tasks import OwnedTasks
from smartcharge.turn_share import BACKGROUND, URGENT, TurnShare

log = logging.getLogger(__name__)

# stations a round sends to at once. Not the loop's guard any more (the turn share bounds a
# round's CPU per turn, its tasks start a batch per turn): a request in flight costs the server
# a future and a timer. At 64, a DR event at 1 000 connectors kept 40-48 requests in flight and
# the loop ~50 % idle on a quiet machine - the round waited on the window, not on the CPU
# (s39-dr: POST -> last ack 2.2 s, 1.07 s at 256, the same loop CPU)
SEND_CONCURRENCY = 256
# stations a round lists (connected, capabilities read) per piece of its first step: all
# 5 000 in one go were 10-21 ms of the loop's CPU before the comparisons began (s35-stall)
LIST_PER_STEP = 500

__all__ = ["NO_ANSWER", "Dispatcher", "DispatchSettings", "Sent", "SiteReads",
           "StationControl"]


@dataclass(frozen=True)
class DispatchSettings:
    call_timeout_s: float = DISPATCH_CALL_TIMEOUT_S   # real s we wait for a station's answer
    retries: int = 1                   # extra attempts after a timeout
    # Every plan sent ends at one common instant, at most this much site time ahead; all are
    # re-sent (at a slot start) with a later one when less than refresh_before_s is left.
    # Short on purpose: if smartcharge disappears, every station is back on its fail-safe
    # fail-safe default within this time - all at the same instant.
    profile_lifetime_s: float = 1800.0
    refresh_before_s: float = 1000.0
    probe_every_s: float = 900.0       # an uncontrollable connector is offered a profile again
    # After the decreases an increase depends on are acknowledged, the cars get this much site
    # time to follow them (IEC 61851-1 gives an EV seconds to react to a lower duty cycle).
    settle_s: float = 5.0
    # Stations read a schedule's absolute times on their own clocks, which disagree: a raise
    # inside a schedule starts settle_s + edge_margin_s after its edge, and every schedule
    # begins edge_margin_s early (edges.py). Site time, like settle_s.
    edge_margin_s: float = 5.0
    # A new car on a three-phase connector whose phases are unknown: its station is asked for
    # a meter sample (TriggerMessage MeterValues) this much site time after the plan first
    # offers it power, once per session (site/phase_probe.py); None: never asked.
    phase_probe_after_s: float | None = 10.0
    # A plan that only raises a connector by a little over what it has (the optimizer's
    # allocations move by tens of W between re-plans) is not sent: the connector keeps a
    # schedule at most raise_deadband_w, and at most raise_deadband_fraction of its plan,
    # below the plan, everywhere until the common end - or lower only for the raise delay
    # and a second (edges.py: a raise edge or a fall a few seconds apart from the plan's)
    # (issue 10: a re-send per connector per re-plan at 5 000 stations). A decrease always
    # goes out; 0: every raise goes out.
    raise_deadband_w: float = 250.0
    raise_deadband_fraction: float = 0.05


@dataclass(frozen=True)
class SiteReads:
    """What dispatch reads of the site (never the controller itself): the topology and the site
    file, the live state, the limits, the connectors planned as fixed loads, a session's phase
    use (the fail-safe defaults follow `limits` over the tree: failsafe_limits.py)."""

    topology: SiteTopology
    site: Site
    state: SiteState
    limits: SiteLimits
    uncontrollable: Mapping[ConnectorRef, str]
    phase_use: Callable[[ConnectorRef], tuple]


class Dispatcher(FailSafeSetup, HeldDefaults, ProfileSending, IdleSending):
    def __init__(self, reads: SiteReads, registry: StationRegistry, store, clock: Clock,
                 settings: DispatchSettings | None = None, *, ports,
                 publish: Callable[[object], None], share: TurnShare | None = None) -> None:
        self.view = reads
        self.topology = reads.topology
        self.registry = registry
        self.store = store
        self.clock = clock
        self.publish = publish   # what dispatch learns, as events (site/learned.py)
        # the background CPU each turn of the loop may spend, shared with the controller's
        # re-plans and guard (turn_share.py): every task of dispatch runs through it
        self.share = share or TurnShare()
        # the site file's settle time unless the caller tunes dispatch itself
        self.settings = settings or DispatchSettings(
            call_timeout_s=reads.site.server.dispatch_call_timeout_s,
            settle_s=reads.site.server.settle_s, edge_margin_s=reads.site.server.edge_margin_s)
        self._port_settings = PortSettings(self.settings.call_timeout_s, self.settings.retries,
                                           self.settings.edge_margin_s)
        # `ports`: a station's link -> a port for that connection, by its protocol (the site
        # never names one); called at each (re)connection by the fail-safe setup
        self.ports = ports
        # watched: a record replaced is told to the guard like one changed (guard_counts.py)
        self.stations = WatchedDict({s.station_id: StationControl(s.station_id,
                                                                  str(s.rate_unit.value))
                                     for s in reads.site.stations})
        self._voltage_v = {s.station_id: s.voltage_v for s in reads.site.stations}
        self.installed = InstalledLimits(self.topology, reads.state, reads.phase_use, clock,
                                         self.settings.settle_s, self.stations)
        self.changed_at = self.installed.changed_at   # last accepted profile change
        self._latest: Plan | None = None
        self._wake = asyncio.Event()
        # Stations served at once in a round. Without a bound every station's first request
        # (build, validate, send: ~1 ms each) ran in one turn of the loop: 2 000 stations held
        # every answer up for seconds (issue 10). FIFO: the decreases queue first; the
        # fail-safe defaults under a plan in force wait for a slot behind them (slots.py).
        self._sending = SendingSlots(SEND_CONCURRENCY)
        self._setting_up = asyncio.Semaphore(failsafe.SETUP_CONCURRENCY)   # boot storms
        self._setups_queued = 0   # set-ups waiting for a slot or sending
        # station id -> (link, set-ups given up on it, a retry waiting): failsafe._setup_given_up
        self._setup_retries: dict[str, tuple[object, int, bool]] = {}
        self._audit: list[tuple] = []
        self._audit_wake = asyncio.Event()
        # one flush at a time: a flush returns once every row recorded before it is stored,
        # also those a flush already writing took (tests/test_dispatch_audit_flush.py)
        self._audit_lock = asyncio.Lock()
        self._tasks = OwnedTasks(log, "dispatch")
        self._probed: dict[ConnectorRef, datetime] = {}
        self._shares: dict = {}
        # connectors whose station refused their fail-safe default (site/unbounded.py), and a
        # count of its changes: the fail-safe defaults' key (`_defaults_key`) follows it
        self._unbounded: set[ConnectorRef] = set()
        self._unbounded_version = 0
        # station id -> ((ref, (W steps, ...)), ...): what an offline station's connectors
        # hold, the larger of the steps (failsafe.hold_offline), and a version the defaults'
        # key follows
        self._held_offline: dict[str, tuple] = {}
        self._held_version = 0
        # counts every station newly held at what it may hold (offline, a default unanswered):
        # the others' defaults are shared anew around it by a later round, and a limit's
        # answer waits for that round (site/applied.py)
        self.holds_added = 0
        # set up again, released once the set-ups queued with them are done; and what the
        # store says each station's connectors may hold (held_defaults.py)
        self._release_pending: set[str] = set()
        self._held_stored: dict[str, dict[int, steps.Step]] = {}
        # beside it, the most an idle share may let a car draw per connector (None: nothing
        # above the default), as stored; and the last idle share sent per connector [W]
        self._idle_stored: dict[str, dict[int, float | None]] = {}
        self._idle_sent_w: dict[ConnectorRef, float] = {}
        # lowered records not yet written, and whether a task is writing them
        self._held_pending: dict[str, tuple] = {}
        self._held_flushing = False
        # the accepted default [W] of each idle connector that keeps it under a new car (its
        # station has no idle layer): the controller keeps it free in the plan (failsafe.py)
        self._kept_defaults: dict[ConnectorRef, float] = {}
        self._shares_for: tuple | None = None
        self.expiry: datetime | None = None   # when every plan sent now ends
        # (station, connector, transaction) of acknowledged stops, newest last (bounded)
        self._stopped: dict[tuple[str, int, int], None] = {}
        self.rounds_done = 0
        self.rounds_running = 0   # a newer round starts at once: an older one may still run
        self.round_done = asyncio.Event()   # replaced after each round (for waiters)
        self._newest_round: DispatchRound | None = None   # the newest; ended when a newer starts
        self.round_started = asyncio.Event()   # replaced at each round's start (for waiters)
        # station -> when it last had decreases acknowledged; and the stations whose raises
        # go out in force at once now, needing nobody's decrease (settling.py)
        self.decreased_at: dict[str, datetime] = {}
        self.raising_at_once: set[str] = set()

    def on_learned(self, event) -> None:
        """Site-bus subscriber: a new plan from the controller."""
        if isinstance(event, learned.PlanMade):
            self.apply(event.plan)

    # --- inputs (from the controller, synchronously) ----------------------------------------
    def apply(self, plan: Plan) -> None:
        self._latest = plan
        self._wake.set()

    def on_event(self, event) -> None:
        control = self.stations.get(getattr(event, "station_id", None))
        if control is None:
            return
        link = self.registry.get(event.station_id)
        if isinstance(event, ev.StationBooted) and event.accepted:
            # once per connection; a second boot on the same connection is a reboot, and so
            # is a boot after the station refused our calls as unregistered (SecurityError:
            # it booted after `boot_wait_s`, when its set-up had gone out)
            again = link is not None and (control.booted_link is link
                                          or link.refused_unregistered)
            control.booted_link = link
            self._spawn(self.setup_station(event.station_id, force=again))
        elif isinstance(event, ev.ChargingProfilesReported):
            if control.port is not None:
                control.port.profiles_reported(event)   # what else it holds (reconnect)
        elif isinstance(event, ev.ChargingNeedsReported):
            # ISO 15118: a TxProfile refused before the needs (K15.FR.17) is taken now
            control.resend = True
        elif isinstance(event, ev.StationClockMeasured):
            if event.clock_set and control.port is not None:
                # set to ours: what it holds (moved onto its old clock) lies in its future now
                control.port.clock_set()
            if control.port is not None and control.port.sent_off_its_clock():
                # sent before its offset was known: everything again, on its clock
                self._spawn(self.setup_station(event.station_id, moved=True))
        elif isinstance(event, ev.StationDisconnected):
            self.hold_offline(event.station_id)
        elif isinstance(event, ev.StationConnected):
            # a reconnect without a reboot sends no BootNotification: re-install all the same
            self._spawn(self.setup_station(event.station_id))
        elif isinstance(event, ev.StationProfilesCleared):
            # an operator's ClearChargingProfile: what the station accepted from us may be
            # gone - its connectors count at their maximum (every plan is then a decrease)
            # until set up again and every plan is sent again, as after a reboot
            failsafe.forget_installed(control)
            self._spawn(self.setup_station(event.station_id, force=True, forget=True))
        elif isinstance(event, ev.SessionStopped | ev.SessionStarted) \
                and event.connector_id is not None:
            sent = control.sent.get(event.connector_id)
            if sent is not None and self._sent_outlived(event, sent):
                del control.sent[event.connector_id]
            else:
                sent = None
            if sent is not None and sent.default:
                # a plan sent as the connector's default outlives its transaction: the next car's
                control.idle_layer[event.connector_id] = sent
            if isinstance(event, ev.SessionStarted):
                # reopened (closed by a reboot, then seen running): it may have profiles again
                self._stopped.pop((event.station_id, event.connector_id,
                                   event.transaction_id), None)
            elif event.transaction_id is not None and not event.implicit:
                # a plan made before the stop must not send this transaction a schedule
                self._stopped[(event.station_id, event.connector_id,
                               event.transaction_id)] = None
                while len(self._stopped) > 10_000:
                    del self._stopped[next(iter(self._stopped))]

    def _sent_outlived(self, event, sent: Sent) -> bool:
        """Whether what a connector was last sent is over with this start or stop: a stop of
        the transaction it was for, or a start while that transaction is no longer the
        connector's live session. A station's queue sent out of order after an offline period
        brings the stop (or start) of an OLDER transaction while a newer one runs there: its
        profile stays what the station runs (the site state keeps the running session)."""
        if event.transaction_id == sent.transaction_id and not sent.default \
                and (isinstance(event, ev.SessionStarted) or event.implicit):
            # closed only in our books (a BootNotification while the station kept the
            # transaction), or that transaction seen running again: the station still holds
            # its TxProfile, which overrules every default under it. Forgotten, the reopened
            # car counted at its defaults (0 W under a DR event): a plan of 0 W there was "no
            # change", nothing was sent, and the car drew its old 7.9 kW under a 5 kW limit
            # for good (tests/test_reopen_under_limit.py). A new transaction there ends it.
            return False
        if isinstance(event, ev.SessionStopped):
            return event.transaction_id == sent.transaction_id
        live = self.view.state.sessions.get(ConnectorRef(event.station_id, event.connector_id))
        return live is None or live.transaction_id != sent.transaction_id \
            or live.transaction_id == event.transaction_id

    def _spawn(self, coroutine) -> None:
        self._tasks.spawn(self.share.run(coroutine))

    # --- background loops (owned by setup's cleanup_ctx) ------------------------------------
    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.rounds_running += 1   # from now: `idle` must not see a gap before it starts
            # a round of an urgent plan (a limit lowered...) in the share's urgent lane
            urgent = self._latest is not None and self._latest.extra.get("urgent", False)
            current = self._tasks.spawn(self.share.run(
                self._round(self._latest), lane=URGENT if urgent else BACKGROUND))
            newer = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({current, newer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                newer.cancel()
            # a newer plan starts its round at once; requests of this one still in flight
            # (a station that does not answer) end in the background. Waiting for them held a
            # DR event's decreases behind a silent station for its call timeouts.

    @property
    def newest_round(self) -> DispatchRound | None:
        return self._newest_round

    @property
    def idle(self) -> bool:
        """Every plan made so far has had its round (none waiting, none running)."""
        return not self._wake.is_set() and self.rounds_running == 0

    async def _round(self, plan: Plan) -> None:
        try:
            await self.dispatch_plan(plan)
        except Exception:  # task boundary: next plan gets its chance
            log.exception("dispatching plan from %s failed", plan.at if plan else None)
        finally:
            self.rounds_running -= 1
            self.rounds_done += 1
            done, self.round_done = self.round_done, asyncio.Event()
            done.set()

    async def run_audit(self) -> None:
        while True:
            await self._audit_wake.wait()
            self._audit_wake.clear()
            await self.flush_audit()

    async def flush_audit(self) -> None:
        """Every sent profile recorded so far is committed when this returns. A flush
        already writing (the background one after a round) is waited for: returning at once
        with the list it had emptied, a reader outside the store's order of work (its
        read-only connection, another process) read nothing yet."""
        async with self._audit_lock:
            rows, self._audit = self._audit, []
            if not rows or self.store is None:
                return
            try:   # by name: the store's writer process takes it (store_ops.StoreOp)
                await self.store.run(StoreOp("insert_profiles_sent", rows))
            except Exception as error:
                log_unless_refused(log, error, "could not record %d sent profiles in the audit "
                                   "table", len(rows))

    async def close(self) -> None:
        await self._tasks.close()
        await self.flush_held()
        await self.flush_audit()

    # --- plans ---------------------------------------------------------------------------
    def _refresh_expiry(self, now: datetime) -> datetime:
        """The common end of every plan sent; moved on (and so every profile re-sent) when less
        than refresh_before_s is left."""
        left = None if self.expiry is None else (self.expiry - now).total_seconds()
        if left is None or left < self.settings.refresh_before_s:
            self.expiry = (now + timedelta(seconds=self.settings.profile_lifetime_s)
                           ).replace(microsecond=0)
        return self.expiry

    async def dispatch_plan(self, plan: Plan) -> None:
        """One round (`dispatch_round.py`): decreases first (each station's as soon as it is
        compared); each
        station's increases once the decreases they depend on are acknowledged and the settle
        time has passed. A newer round starting ends an older one still running."""
        if self._newest_round is not None:
            self._newest_round.end()
        this = self._newest_round = DispatchRound(self, plan, asyncio.Event())
        started, self.round_started = self.round_started, asyncio.Event()
        started.set()
        self._refresh_expiry(self.clock.now())
        controls = await self._round_stations()
        # through the share when called on its own (tests); inside a round's task, charged
        # with it
        await self.share.run(this.run(controls))
        probing = {ref.station_id for ref in plan.fixed_w if ref in self.view.uncontrollable}
        for control in controls:
            if control.station_id in probing:
                # in the background: a station that does not answer must not hold the next
                # round (only stations with a connector to probe: a task per station of the
                # site per round was tens of ms in one turn at thousands, issue 10)
                self._spawn(self._probe(control, plan))
        self._audit_wake.set()

    async def _round_stations(self) -> list[StationControl]:
        """The stations a round sends to (connected, their capabilities read), in the site's
        order, listed LIST_PER_STEP a piece: the loop is given back between two pieces once the
        share's turn is spent (turn_share.py). A station that connects or leaves meanwhile is
        listed as the piece that reads it finds it; the round's own sends look it up again."""
        stations = list(self.stations.values())
        controls: list[StationControl] = []
        for first in range(0, len(stations), LIST_PER_STEP):
            if first and self.share.should_yield():
                await asyncio.sleep(0)
            controls.extend(c for c in stations[first:first + LIST_PER_STEP]
                            if self.registry.get(c.station_id) and c.caps is not None)
        return controls

    def _work(self, control: StationControl, plan: Plan, cplans) -> tuple[list, list]:
        """(decreases, increases) for one station, from its connectors' plans `cplans`:
        ("plan", ConnectorPlan[, its PowerSchedule as compared]), ("idle", connector_id, W,
        part sent first or None),
        ("under", connector_id, transaction id) (the 0 W default under a TxProfile, idle.py),
        ("defaults", {connector_id: W steps}[, LATER]) - LATER: lowered defaults under a plan or
        an idle share in force, which change nothing drawn before the plans' common end: sent
        after every station's decreases of the round (`dispatch_round.py`)."""
        if control.caps is None:
            # back on a new connection, its capabilities not read (its set-up runs or failed):
            # nothing can be built for it, and its set-up sends everything again (`resend`)
            return [], []
        downs: list = []
        ups: list = []
        for cplan in cplans:
            ref = cplan.ref
            if (ref.station_id, ref.connector_id, cplan.transaction_id) in self._stopped:
                continue   # its StopTransaction is acknowledged: the plan is older than that
            down, up, as_default, schedule = self._split(control, cplan)
            if down is not None:
                # the schedule the comparison built, when the plan goes out whole: sent as
                # it is (`_send_plan`), not built again
                downs.append(("plan", down) if schedule is None else ("plan", down, schedule))
            if up is not None:
                ups.append(("plan", up))
            # after the plan's own items: the car is on its TxProfile when its default drops
            first = self._under_change(control, cplan, as_default, down, up)
            if first is not None:
                (downs if first else ups).append(("under", ref.connector_id,
                                                  cplan.transaction_id))
        for connector_id, value, lower, part in self._idle_changes(control, plan):
            (downs if lower else ups).append(("idle", connector_id, value, part))
        if control.defaults_key != self._defaults_key():
            # a DR event or cap announced or over: the connectors whose fail-safe default
            # changes get the new one (failsafe.py)
            down, up = self._default_changes(control)
            now = self.clock.now()
            # in force now (nothing above it, the connector not controlled, or the station's
            # profiles being sent again after a reconnect): with the plans
            urgent = {c: step for c, step in down.items()
                      if control.resend or default_in_force(control, c, now)
                      or ConnectorRef(control.station_id, c) in self.view.uncontrollable}
            later = {c: step for c, step in down.items() if c not in urgent}
            if urgent:
                downs.append(("defaults", urgent))
            if later:
                downs.append(("defaults", later, LATER))
            if up:
                ups.append(("defaults", up))
        control.resend = False
        return downs, ups

    async def _run_items(self, control: StationControl, items: list, *, decrease: bool,
                         superseded=None, refused: set[str] | None = None) -> bool:
        """Send one station's items in order (the caller holds its lock); True when every
        decrease among them was acknowledged (increases and idle shares do not count).
        `superseded()` true stops increases between two items: a limit lowered while the
        first was answered must not let the second raise the site. `refused` (a round's)
        gets the station when it refused a lowered default or idle share: it keeps the higher
        one, so it is not acknowledged in the round's outcome (site/applied.py) - but its
        raises are not held for it (ok stays): its connector is kept free for it
        (unbounded.py, the kept default), and holding the raises for a station that refuses
        every default re-planned for ever (tests/test_site_e2e.py's rejecting station)."""
        ok = True
        try:
            for item in items:
                if superseded is not None and superseded():
                    break
                if item[0] == "plan":
                    accepted = await self._send_plan(
                        control, item[1], raising=not decrease,
                        schedule=item[2] if len(item) > 2 else None)
                    ok &= accepted or not decrease
                elif item[0] == "idle":
                    answer = await self._send_idle(control, item[1], item[2],
                                                   raising=not decrease, part=item[3])
                    if decrease and answer is not Answer.ACCEPTED and refused is not None:
                        refused.add(control.station_id)   # it keeps the higher one
                    if decrease and answer is Answer.NO_ANSWER:
                        # it may still let a car draw its old idle share until the plans'
                        # common end: not acknowledged, held at it (the plan keeps it free:
                        # learned.HeldIdle) and set up again. Counted acknowledged, a cap's
                        # answer read complete beside CP2's unanswered 22 kW idle share
                        # (tests/test_outside_s35_cap_answer.py)
                        ok = False
                        self._hold_unanswered(control)
                elif item[0] == "under":
                    await self._send_under(control, item[1], item[2])
                else:
                    # the limits moved: new defaults; the station's maximum was set up with
                    # this connection and does not move with them
                    refused_here: set[int] = set()
                    unanswered = await self._send_defaults(
                        control, station_max=False, defaults=item[1], raising=not decrease,
                        refused=refused_here)
                    if refused_here and decrease and refused is not None:
                        # it keeps the higher one (its connector is kept free at its maximum:
                        # unbounded.py): not acknowledged. Counted so, a cap's answer read
                        # complete beside CP2's refused 22 kW
                        # (tests/test_outside_s35_cap_answer.py)
                        refused.add(control.station_id)
                    if unanswered and decrease:
                        # it may hold the higher one: not acknowledged (counted so, a cap's
                        # answer read `complete` beside CP2's unanswered 22 kW and CP1's
                        # 15 kW under a 30 kW cap: tests/test_outside_s35_cap_answer.py)
                        ok = False
                        self._hold_unanswered(control)
                    elif unanswered:
                        self._resend_unanswered_raise(control)
        except StationOffline:
            self._mark_offline(control, items)
            return False
        except Exception:  # one station's trouble never stops the others
            log.exception("station %s: dispatch failed", control.station_id)
            return False
        return ok

    def _mark_offline(self, control: StationControl, items: list) -> None:
        for item in items:
            if item[0] == "plan":
                ref = item[1].ref
                self._report_uncontrollable(ref, "station offline")

    def _split(self, control: StationControl, cplan: ConnectorPlan
               ) -> tuple[ConnectorPlan | None, ConnectorPlan | None, bool,
                          PowerSchedule | None]:
        """(what goes out with the decreases, what goes out with the increases, whether the
        plan goes out as the connector's default, the schedule compared when the decrease is
        the whole plan), compared with what is installed in every interval: a plan that only
        lowers is a decrease, one that only raises an increase; one that does both is first
        sent as the pointwise minimum (a decrease), then in full.

        The schedule is what `_send_plan` would build for a decrease sent at once (~a tenth
        of a ms each, 450 in a DR event at 1 000 connectors: issue 10). It stays right while
        nobody else holds the station's lock (the round compares again otherwise) and for a
        decrease sent a little later: its times are absolute and it ends at the common end
        (`expiry`); it only begins earlier than one built at the send. An increase, sent
        after the settle time, is built again (a raise waits from its send: `edges.held`)."""
        now = self.clock.now()
        limits = self.installed
        phases, factor = limits.phases_and_factor(control, cplan)
        # what it falls to under its idle share: asked three times below, built once
        below_idle = limits.below_steps(control, cplan.ref, phases, factor, False)
        installed = limits.installed_steps(control, cplan.ref, phases, factor,
                                           cplan.transaction_id, below_idle)
        schedule, new = self._desired(control, cplan, floor=not control.zero_ok,
                                      installed=installed, below_idle=below_idle)
        # a plan that goes out as the connector's default replaces its idle share
        below = below_idle if not new.default else \
            limits.below_steps(control, cplan.ref, phases, factor, True)
        sent = limits.sent_steps(new, phases, factor, cplan.ref)
        old = control.sent.get(cplan.ref.connector_id)
        kept = old is not None and not control.resend \
            and old.transaction_id == cplan.transaction_id and old.unit == new.unit
        end = new.expires
        if kept and old.expires != end and end_kept(
                sent, below if new.default else
                limits.below_steps(control, cplan.ref, phases, factor, True), end,
                old.expires, self.raise_delay_s()):
            end = old.expires   # the installed end, delayed a little: compared as it is
        wanted = steps.overlay(sent, end, below)
        lowers, raises = limits.judged(control, cplan.ref, phases, factor,
                                       cplan.transaction_id, installed, wanted, now)
        same = kept and old.expires == end
        if raises and same and not steps.raises_beyond(
                installed, wanted, now, self.settings.raise_deadband_w,
                self.settings.raise_deadband_fraction,
                self.raise_delay_s() + 1.0 if self.settings.raise_deadband_w > 0 else 0.0):
            # within the dead band: the raise waits for one beyond it; a decrease goes out
            raises = False
            if lowers:
                wanted = steps.pointwise_min(installed, wanted, now, end)
                return self._part(cplan, wanted, now), None, new.default, None
        if not (lowers or raises) and same:
            return None, None, new.default, None
        if lowers and raises:
            part = steps.pointwise_min(installed, wanted, now, end)
            return self._part(cplan, part, now), cplan, new.default, None
        if lowers:
            return cplan, None, new.default, schedule
        if not raises and old is None and not control.resend:
            # the idle share it runs on is the plan: nothing to say
            return None, None, new.default, None
        return None, cplan, new.default, None

    @staticmethod
    def _part(cplan: ConnectorPlan, part: steps.Step, now: datetime) -> ConnectorPlan:
        """The plan `cplan` as the steps `part` (its pointwise minimum with what is
        installed: the part of a change that only lowers)."""
        return ConnectorPlan(
            ref=cplan.ref, transaction_id=cplan.transaction_id, start=now,
            slot_starts=[m for m, _ in part], power_w=np.array([v for _, v in part]),
            min_power_w=cplan.min_power_w, binding=cplan.binding, phases=cplan.phases,
            phases_known=cplan.phases_known)

    async def _probe(self, control: StationControl, plan: Plan) -> None:
        """Offer an uncontrollable connector a profile now and then: if it accepts it is
        controlled again. At most its minimum, never the load it is planned at (its fallback):
        a station that did not answer a decrease in time may have taken it all the same, and
        a probe at the old level raised it again with nothing waiting for it - over a
        zero-notice cap the site was already above. A probe can only lower; the re-plan that
        follows its acceptance raises the connector like any increase, after the decreases it
        depends on."""
        if control.caps is None:
            return
        now = self.clock.now()
        for ref, fallback_w in plan.fixed_w.items():
            if ref.station_id != control.station_id or ref not in self.view.uncontrollable:
                continue
            last = self._probed.get(ref)
            if last is not None and (now - last).total_seconds() < self.settings.probe_every_s:
                continue
            session = self.view.state.sessions.get(ref)
            if session is None:
                continue
            minimum_w = self.topology.min_power_w(ref)
            probe = ConnectorPlan(ref=ref, transaction_id=session.transaction_id, start=now,
                                  slot_starts=[now],
                                  power_w=np.array([min(fallback_w, minimum_w)]),
                                  min_power_w=minimum_w)
            async with control.lock:
                last = self._probed.get(ref)
                if last is not None and \
                        (self.clock.now() - last).total_seconds() < self.settings.probe_every_s:
                    continue   # probed (or refused) while this waited for the lock
                try:
                    await self._send_plan(control, probe)
                except StationOffline:
                    return
                finally:
                    self._probed[ref] = now

    # --- what dispatch learns, reported ------------------------------------------------------
    def _report_uncontrollable(self, ref: ConnectorRef, reason: str | None) -> None:
        self.publish(learned.ConnectorControl(ref, reason))

    def _report_floor(self, ref: ConnectorRef, min_power_w: float) -> None:
        self.publish(learned.ConnectorFloor(ref, min_power_w))

    def stats_profiles_sent(self) -> None:
        self.publish(learned.ProfileSent())
