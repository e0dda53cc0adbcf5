"""Plans -> SetChargingProfile sends, one station at a time per station, all stations at once.

Per station we read the smart-charging capabilities once (GetConfiguration), install fail-safe
defaults at boot (ChargePointMaxProfile + a TxDefaultProfile per connector whose sum stays under
every limit if smartcharge disappears), and send each connector whose plan changed a TxProfile.
A rejected profile is retried in the documented alternatives (the other rate unit, a
TxDefaultProfile on the connector, the minimum rate instead of 0); what worked is remembered per
station. A connector none of them works for is reported to the controller as uncontrollable,
drawing what it has installed.

Order, interval by interval: a profile that lowers a connector anywhere (against what the
station has installed there, its fail-safe default after the installed profile runs out) goes
out first; one that also raises somewhere is first sent as the pointwise minimum of the two.
The increases under a node wait until every decrease they depend on (of any station sharing a
limited node with them) is acknowledged, and then a settle time for the cars to follow; a
decrease refused, unanswered or met offline holds those increases and the controller re-plans
with that connector at what it may really draw. Increases in unrelated subtrees do not wait.
Every TxProfile and idle TxDefaultProfile ends at one common instant (`expiry`), so whatever
subset of them is in force at a later moment is one consistent plan or the fail-safe defaults.
Every profile sent is recorded with the station's answer in the store's audit table.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from ocpp.v16 import call

from smartcharge import events as ev
from smartcharge.tasks import OwnedTasks
from smartcharge.clock import Clock, parse_ocpp_time
from smartcharge.ocpp import profiles as P
from smartcharge.ocpp.registry import (StationCallError, StationOffline, StationRegistry,
                                       StationTimeout)
from smartcharge.site import steps
from smartcharge.site.plan import ConnectorPlan, Plan
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger(__name__)

CONFIG_KEYS = ["ChargeProfileMaxStackLevel", "ChargingScheduleMaxPeriods",
               "ChargingScheduleAllowedChargingRateUnit", "MaxChargingProfilesInstalled"]
NO_ANSWER = "no answer"
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DispatchSettings:
    call_timeout_s: float = 10.0       # real seconds we wait for a station's answer
    retries: int = 1                   # extra attempts after a timeout
    # Every TxProfile ends at one common instant, at most this much site time ahead; all are
    # re-sent (at a slot start) with a later one when less than refresh_before_s is left.
    # Short on purpose: if smartcharge disappears, every station is back on its fail-safe
    # TxDefaultProfile within this time - all at the same instant.
    profile_lifetime_s: float = 1800.0
    refresh_before_s: float = 1000.0
    probe_every_s: float = 900.0       # an uncontrollable connector is offered a profile again
    # After the decreases an increase depends on are acknowledged, the cars get this much site
    # time to follow them (IEC 61851-1 gives an EV seconds to react to a lower duty cycle).
    settle_s: float = 5.0


@dataclass
class Sent:
    """What a connector was last told (accepted)."""

    transaction_id: int
    start: datetime
    expires: datetime
    unit: str
    phases: int
    starts_s: list[int]
    limits: list[float]
    purpose: str = P.TX_PROFILE

    def rate_at(self, moment: datetime) -> float | None:
        if moment >= self.expires:
            return None
        offset = (moment - self.start).total_seconds()
        rate = self.limits[0]
        for start_s, limit in zip(self.starts_s, self.limits):
            if start_s <= offset:
                rate = limit
        return rate


@dataclass
class StationControl:
    station_id: str
    caps: P.Capabilities | None = None
    unit: str = "A"
    use_tx_default: bool = False       # the station refuses TxProfiles: plan via TxDefault
    zero_ok: bool = True               # False: it refuses limit 0; pause at the minimum
    # (connector, transaction) whose TxProfile was refused once. A refusal is often a race (the
    # car left before we heard), so the station is only switched to TxDefault plans when the
    # same, still open transaction refuses its TxProfile a second time.
    tx_refused: set[tuple[int, int]] = field(default_factory=set)
    defaults_root_w: float | None = None   # the grid limit the defaults were sized for, now
    defaults_key: tuple | None = None      # (limit now, later (moment, limit) changes) sent
    sent: dict[int, Sent] = field(default_factory=dict)   # connector id -> last accepted
    idle_sent: dict[int, tuple[float, datetime]] = field(default_factory=dict)  # W, expires
    # what the station has installed under the TxProfile, as accepted: its stack-1
    # TxDefaultProfile (idle share or a TxDefault plan) and its fail-safe default
    idle_layer: dict[int, Sent] = field(default_factory=dict)
    default_layer: dict[int, Sent] = field(default_factory=dict)
    last_payload: dict | None = None       # what the last _send really sent (alternatives)
    setup_link: object | None = None       # the connection the fail-safe setup went out on
    booted_link: object | None = None      # the connection a BootNotification came on
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Dispatcher:
    def __init__(self, controller, registry: StationRegistry, store, clock: Clock,
                 settings: DispatchSettings | None = None) -> None:
        self.controller = controller
        self.topology = controller.topology
        self.registry = registry
        self.store = store
        self.clock = clock
        # the site file's settle time unless the caller tunes dispatch itself
        self.settings = settings or DispatchSettings(settle_s=controller.site.server.settle_s)
        self.stations = {s.station_id: StationControl(s.station_id, unit=str(s.rate_unit.value))
                         for s in controller.site.stations}
        self._latest: Plan | None = None
        self._wake = asyncio.Event()
        self._audit: list[tuple] = []
        self._audit_wake = asyncio.Event()
        self._tasks = OwnedTasks(log, "dispatch")
        self._probed: dict[ConnectorRef, datetime] = {}
        self._shares: dict = {}
        self._shares_for: float | None = None
        self.expiry: datetime | None = None   # when every TxProfile sent now ends
        self.changed_at: dict[ConnectorRef, datetime] = {}   # last accepted profile change
        self._stopped: set[tuple[str, int, int]] = set()   # (station, connector, transaction)
        self.rounds_done = 0
        self.round_done = asyncio.Event()   # replaced after each round (for waiters)

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
            # once per connection; a second boot on the same connection is a reboot
            again = control.booted_link is link and link is not None
            control.booted_link = link
            self._spawn(self.setup_station(event.station_id, force=again))
        elif isinstance(event, ev.StationConnected):
            # a reconnect without a reboot sends no BootNotification: re-install all the same
            self._spawn(self.setup_station(event.station_id))
        elif isinstance(event, ev.SessionStopped | ev.SessionStarted) \
                and event.connector_id is not None:
            sent = control.sent.pop(event.connector_id, None)
            if sent is not None and sent.purpose == P.TX_DEFAULT_PROFILE:
                # a TxDefault plan outlives its transaction: it is what the next car gets
                control.idle_layer[event.connector_id] = sent
            if isinstance(event, ev.SessionStopped) and event.transaction_id is not None:
                # a plan made before the stop must not send this transaction a TxProfile
                self._stopped.add((event.station_id, event.connector_id,
                                   event.transaction_id))

    def _spawn(self, coroutine) -> None:
        self._tasks.spawn(coroutine)

    # --- background loops (owned by setup's cleanup_ctx) ------------------------------------
    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            plan = self._latest
            try:
                await self.dispatch_plan(plan)
            except Exception:  # task boundary: next plan gets its chance
                log.exception("dispatching plan from %s failed", plan.at if plan else None)
            self.rounds_done += 1
            done, self.round_done = self.round_done, asyncio.Event()
            done.set()

    async def run_audit(self) -> None:
        while True:
            await self._audit_wake.wait()
            self._audit_wake.clear()
            await self.flush_audit()

    async def flush_audit(self) -> None:
        rows, self._audit = self._audit, []
        if not rows or self.store is None:
            return

        def write(tx):
            for row in rows:
                tx.insert_profile_sent(*row)
        try:
            await self.store.run(write)
        except Exception:
            log.exception("could not record %d sent profiles in the audit table", len(rows))

    async def close(self) -> None:
        await self._tasks.close()
        await self.flush_audit()

    # --- one station's setup: capabilities, fail-safe defaults, current profiles ------------
    async def setup_station(self, station_id: str, *, force: bool = False) -> None:
        """Capabilities and fail-safe defaults, once per connection (a BootNotification right
        after the connection does not send them twice); `force`: the station rebooted."""
        control = self.stations.get(station_id)
        if control is None:
            return
        async with control.lock:
            link = self.registry.get(station_id)
            if link is None or (control.setup_link is link and not force):
                return
            control.setup_link = link
            try:
                if control.caps is None:
                    control.caps = await self._read_capabilities(station_id)
                    if "A" not in control.caps.rate_units and control.caps.rate_units:
                        control.unit = control.caps.rate_units[0]
                control.sent.clear()   # the station may have forgotten everything
                control.idle_sent.clear()
                control.idle_layer.clear()
                control.default_layer.clear()
                await self._send_defaults(control)
            except (StationOffline, StationTimeout) as exc:
                control.setup_link = None
                log.info("station %s: setup postponed (%s)", station_id, exc)
                return
        for connector in self.topology.station(station_id).connectors:
            self.controller.set_uncontrollable(ConnectorRef(station_id, connector.connector_id),
                                               None)
        if self._latest is not None:
            self._wake.set()   # the current plan, through the ordered and gated round

    async def _read_capabilities(self, station_id: str) -> P.Capabilities:
        try:
            answer = await self._call(station_id, call.GetConfiguration(key=list(CONFIG_KEYS)))
        except StationCallError as exc:
            log.info("station %s: GetConfiguration refused (%s); assuming defaults",
                     station_id, exc)
            return P.Capabilities()
        values = {}
        for item in answer.configuration_key or []:
            key = item.get("key") if isinstance(item, dict) else getattr(item, "key", None)
            value = item.get("value") if isinstance(item, dict) else getattr(item, "value", None)
            values[key] = value
        return parse_capabilities(values)

    def default_root_w(self) -> float:
        return self.controller.default_root_limit_w()

    def _defaults_key(self) -> tuple:
        schedule = self.controller.default_root_schedule()
        return (schedule[0][1], tuple(schedule[1:]))

    def w_factor(self, unit: str, ref: ConnectorRef, phases: int, phases_known: bool) -> float:
        """What a W limit is multiplied by so no phase can be overloaded. A single-phase car on
        a 3-phase connector under a W limit draws it all on one phase: 3x the per-phase current
        a balanced plan reserved. While the car's phase use is unknown (and a per-phase current
        limit holds above the connector) the W limit is the balanced plan's per-phase share, a
        third; an A limit is per phase already and needs nothing."""
        connector = self.topology.connector(ref)
        if unit != "W" or phases_known or phases != 3 or connector.phases != 3:
            return 1.0
        return 1.0 / 3.0 if self.topology.phase_limited(ref) else 1.0

    async def _send_defaults(self, control: StationControl) -> None:
        station = self.topology.station(control.station_id)
        now = self.clock.now()
        key = self._defaults_key()
        schedule = [(now, key[0])] + list(key[1])
        offsets = [max((moment - now).total_seconds(), 0.0) for moment, _ in schedule]
        shares = [self._default_shares(root_w) for _, root_w in schedule]
        phases = max(c.phases for c in station.connectors)
        station_max_w = sum(self.topology.max_power_w(ConnectorRef(station.station_id,
                                                                   c.connector_id))
                            for c in station.connectors)
        if station.max_power_w is not None:
            station_max_w = min(station_max_w, station.max_power_w)
        if station.max_current_a is not None:
            station_max_w = min(station_max_w, station.max_current_a * phases * station.voltage_v)
        payload = P.charge_point_max_profile(now, station_max_w, unit=control.unit, phases=phases,
                                             voltage_v=station.voltage_v)
        await self._send(control, payload, alternatives=True)
        for connector in station.connectors:
            ref = ConnectorRef(station.station_id, connector.connector_id)
            factor = self.w_factor(control.unit, ref, connector.phases, False)
            payload = P.tx_default_profile(
                connector.connector_id, now, offsets, [s[ref][0] * factor for s in shares],
                unit=control.unit, phases=connector.phases, voltage_v=station.voltage_v,
                caps=control.caps)
            if await self._send(control, payload, alternatives=True) == "Accepted":
                control.default_layer[connector.connector_id] = _layer(control.last_payload)
        control.defaults_root_w = key[0]
        control.defaults_key = key

    # --- plans ---------------------------------------------------------------------------
    def _refresh_expiry(self, now: datetime) -> datetime:
        """The common end of every TxProfile; moved on (and so every profile re-sent) when less
        than refresh_before_s is left."""
        left = None if self.expiry is None else (self.expiry - now).total_seconds()
        if left is None or left < self.settings.refresh_before_s:
            self.expiry = (now + timedelta(seconds=self.settings.profile_lifetime_s)
                           ).replace(microsecond=0)
        return self.expiry

    async def dispatch_plan(self, plan: Plan) -> None:
        """Decreases first (every station at once); each station's increases once the
        decreases they depend on are acknowledged and the settle time has passed."""
        now = self.clock.now()
        self._refresh_expiry(now)
        controls = [c for c in self.stations.values()
                    if self.registry.get(c.station_id) and c.caps is not None]
        work = {c.station_id: self._work(c, plan) for c in controls}
        loop = asyncio.get_running_loop()
        done = {sid: loop.create_future() for sid, (downs, _) in work.items() if downs}
        limited = {c.station_id: self._limited_nodes(c.station_id, plan) for c in controls}

        async def decrease(control: StationControl, items: list) -> None:
            ok = False
            try:
                ok = await self._run_items(control, items, decrease=True)
            finally:
                done[control.station_id].set_result((ok, self.clock.now()))

        async def increase(control: StationControl, items: list) -> None:
            sid = control.station_id
            deps = [sid2 for sid2 in done if sid2 == sid or limited[sid] & limited[sid2]]
            outcomes = await asyncio.gather(*(done[d] for d in deps))
            failed = [d for d, (ok, _) in zip(deps, outcomes) if not ok]
            if failed:
                log.warning("station %s: increases held: decreases at %s not acknowledged; "
                            "re-planning", sid, ", ".join(failed))
                self.controller.request_replan(f"held:{sid}")
                return
            if outcomes:
                settled = max(at for _, at in outcomes) + timedelta(seconds=self.settings.settle_s)
                await self.clock.sleep((settled - self.clock.now()).total_seconds())
            await self._run_items(control, items, decrease=False)

        await asyncio.gather(
            *(decrease(c, work[c.station_id][0]) for c in controls if work[c.station_id][0]),
            *(increase(c, work[c.station_id][1]) for c in controls if work[c.station_id][1]))
        await asyncio.gather(*(self._probe(c, plan) for c in controls))
        self._audit_wake.set()

    def _limited_nodes(self, station_id: str, plan: Plan) -> set[int]:
        """The nodes above a station that have a limit: two stations sharing one depend on each
        other's decreases. The root counts when any limit (cap, DR event) may hold on it."""
        topo = self.topology
        out = {self.topology.station_node[station_id]}   # its own decreases, always
        for node in topo.ancestors(topo.station_node[station_id]):
            if np.isfinite(topo.static_limit_w[node]) or np.isfinite(topo.static_limit_a[node]):
                out.add(node)
        root_limited = np.isfinite(plan.root_limit_w) or bool(
            self.controller.limits.change_times(self.clock.now()))
        if root_limited:
            out.add(0)
        return out

    def _work(self, control: StationControl, plan: Plan) -> tuple[list, list]:
        """(decreases, increases) for one station: ("plan", ConnectorPlan), ("idle",
        connector_id, W), ("defaults",)."""
        downs: list = []
        ups: list = []
        for ref, cplan in plan.connectors.items():
            if ref.station_id != control.station_id:
                continue
            if (ref.station_id, ref.connector_id, cplan.transaction_id) in self._stopped:
                continue   # its StopTransaction is acknowledged: the plan is older than that
            down, up = self._split(control, cplan)
            if down is not None:
                downs.append(("plan", down))
            if up is not None:
                ups.append(("plan", up))
        for connector_id, value, lower in self._idle_changes(control, plan):
            (downs if lower else ups).append(("idle", connector_id, value))
        key = self._defaults_key()
        if control.defaults_key != key:
            # a DR event or cap announced or over: the fail-safe defaults follow it
            lower = control.defaults_key is None or key[0] <= control.defaults_key[0]
            (downs if lower else ups).append(("defaults",))
        return downs, ups

    async def _run_items(self, control: StationControl, items: list, *, decrease: bool) -> bool:
        """Send one station's items in order; True when every decrease among them was
        acknowledged (increases and idle shares do not count)."""
        ok = True
        async with control.lock:
            try:
                for item in items:
                    if item[0] == "plan":
                        accepted = await self._send_plan(control, item[1])
                        ok &= accepted or not decrease
                    elif item[0] == "idle":
                        await self._send_idle(control, item[1], item[2])
                    else:
                        await self._send_defaults(control)
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
                self.controller.set_uncontrollable(ref, "station offline")

    def _split(self, control: StationControl, cplan: ConnectorPlan
               ) -> tuple[ConnectorPlan | None, ConnectorPlan | None]:
        """(what goes out with the decreases, what goes out with the increases), compared
        with what is installed in every interval: a plan that only lowers is a decrease, one
        that only raises an increase; one that does both is first sent as the pointwise
        minimum (a decrease), then in full."""
        now = self.clock.now()
        _, new = self._desired(control, cplan, floor=not control.zero_ok)
        phases, factor = self._phase_use(control, cplan)
        installed = self._installed_w(control, cplan.ref, phases, factor, cplan.transaction_id)
        below = self._below_w(control, cplan.ref, phases, factor, control.use_tx_default)
        wanted = steps.overlay(self._sent_w(new, phases, factor, cplan.ref), new.expires, below)
        old = control.sent.get(cplan.ref.connector_id)
        lowers, raises = steps.compare(installed, wanted, now)
        if not (lowers or raises) and old is not None \
                and old.transaction_id == cplan.transaction_id and old.unit == new.unit \
                and old.expires == new.expires:
            return None, None
        if lowers and raises:
            part = steps.pointwise_min(installed, wanted, now, new.expires)
            down = ConnectorPlan(
                ref=cplan.ref, transaction_id=cplan.transaction_id, start=now,
                slot_starts=[m for m, _ in part], power_w=np.array([v for _, v in part]),
                min_power_w=cplan.min_power_w, binding=cplan.binding, phases=cplan.phases,
                phases_known=cplan.phases_known)
            return down, cplan
        if lowers:
            return cplan, None
        if not raises and old is None:
            return None, None   # the idle share it runs on is the plan: nothing to say
        return None, cplan

    def _phase_use(self, control: StationControl, cplan: ConnectorPlan) -> tuple[int, float]:
        connector = self.topology.connector(cplan.ref)
        phases = min(cplan.phases, connector.phases)
        return phases, self.w_factor(control.unit, cplan.ref, phases, cplan.phases_known)

    def _sent_w(self, sent: Sent, phases: int, factor: float, ref: ConnectorRef) -> steps.Step:
        """A profile's limits as the plan's W (what the car may draw on `phases`, undoing the
        W factor dispatch applied)."""
        voltage = self.topology.station(ref.station_id).voltage_v
        return [(sent.start + timedelta(seconds=s),
                 P.rate_to_power(limit, sent.unit, phases, voltage) / factor)
                for s, limit in zip(sent.starts_s, sent.limits)]

    def _below_w(self, control: StationControl, ref: ConnectorRef, phases: int, factor: float,
                 replaces_idle: bool) -> steps.Step | None:
        """What a connector falls back to when its TxProfile ends: the stack-1 TxDefault (idle
        share), then the fail-safe default; unknown defaults count as its maximum."""
        default = control.default_layer.get(ref.connector_id)
        if default is None:
            step = [(datetime.min.replace(tzinfo=UTC), self.topology.max_power_w(ref) / factor)]
        else:
            step = self._sent_w(default, phases, factor, ref)
        idle = control.idle_layer.get(ref.connector_id)
        if idle is not None and not replaces_idle:
            step = steps.overlay(self._sent_w(idle, phases, factor, ref), idle.expires, step)
        return step

    def _installed_w(self, control: StationControl, ref: ConnectorRef, phases: int,
                     factor: float, transaction_id: int | None) -> steps.Step:
        below = self._below_w(control, ref, phases, factor, False)
        old = control.sent.get(ref.connector_id)
        if old is None or old.transaction_id != transaction_id:
            return below
        return steps.overlay(self._sent_w(old, phases, factor, ref), old.expires, below)

    def followed_since(self, ref: ConnectorRef) -> datetime | None:
        """From when a car had its settle time under the connector's current profile."""
        changed = self.changed_at.get(ref)
        return None if changed is None else changed + timedelta(seconds=self.settings.settle_s)

    def installed_w(self, ref: ConnectorRef, since: datetime | None = None) -> float | None:
        """The most a connector's accepted profiles let it draw [W] from `since` (its settle
        time before) until now (None: unknown)."""
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return None
        now = self.clock.now()
        since = now if since is None else min(since, now)
        since -= timedelta(seconds=self.settings.settle_s)
        session = self.controller.state.sessions.get(ref)
        phases = self.controller.phase_use(ref)[0]
        step = self._installed_w(control, ref, phases, 1.0,
                                 session.transaction_id if session else None)
        most = max(steps.value_at(step, m) for m in steps.moments(step, since=since) if m <= now)
        return min(most, self.topology.max_power_w(ref))

    def installed_max_w(self, ref: ConnectorRef) -> float | None:
        """The most a connector may draw from now on under what it has accepted (None: no
        profile known accepted): what a connector that stopped obeying us is planned at."""
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return None
        session = self.controller.state.sessions.get(ref)
        phases = self.topology.connector(ref).phases
        step = self._installed_w(control, ref, phases, 1.0,
                                 session.transaction_id if session else None)
        return min(steps.maximum(step, self.clock.now()), self.topology.max_power_w(ref))

    async def _probe(self, control: StationControl, plan: Plan) -> None:
        """Offer an uncontrollable connector a profile at the load it is planned at anyway (its
        fallback), now and then: harmless if it obeys, and if it accepts it is controlled again.
        """
        if control.caps is None:
            return
        now = self.clock.now()
        for ref, fallback_w in plan.fixed_w.items():
            if ref.station_id != control.station_id or ref not in self.controller.uncontrollable:
                continue
            last = self._probed.get(ref)
            if last is not None and (now - last).total_seconds() < self.settings.probe_every_s:
                continue
            session = self.controller.state.sessions.get(ref)
            if session is None:
                continue
            probe = ConnectorPlan(ref=ref, transaction_id=session.transaction_id, start=now,
                                  slot_starts=[now], power_w=np.array([fallback_w]),
                                  min_power_w=self.topology.min_power_w(ref))
            async with control.lock:
                try:
                    await self._send_plan(control, probe)
                except StationOffline:
                    return
                finally:
                    self._probed[ref] = now

    def _idle_changes(self, control: StationControl, plan: Plan) -> list[tuple[int, float, bool]]:
        """Idle connectors get a short-lived TxDefaultProfile (stack level 1) at their share of
        the room the plan leaves, so a car arriving before the next re-plan stays within it:
        (connector, W, lower) for each that needs one now."""
        if control.caps.max_stack_level < 1:
            return []   # it would replace the fail-safe default at stack level 0
        out = []
        for connector in self.topology.station(control.station_id).connectors:
            ref = ConnectorRef(control.station_id, connector.connector_id)
            value = plan.idle_w.get(ref)
            if value is None or (value <= 0 and not control.zero_ok):
                continue
            sent = control.idle_sent.get(connector.connector_id)
            lower = sent is None or value < sent[0] - 1.0
            if lower or sent[1] != self.expiry or value > sent[0] + max(1000.0, 0.2 * sent[0]):
                out.append((connector.connector_id, value, lower))
        return out

    async def _send_idle(self, control: StationControl, connector_id: int, value: float) -> None:
        now = self.clock.now()
        station = self.topology.station(control.station_id)
        connector = station.connector(connector_id)
        ref = ConnectorRef(control.station_id, connector_id)
        factor = self.w_factor(control.unit, ref, connector.phases, False)
        duration_s = max(int((self.expiry - now.replace(microsecond=0)).total_seconds()), 1)
        payload = P.tx_default_profile(
            connector_id, now, [0], [value * factor], unit=control.unit,
            phases=connector.phases, voltage_v=station.voltage_v, caps=control.caps,
            duration_s=duration_s, stack_level=1, fallback=True)
        if await self._send(control, payload) == "Accepted":
            control.idle_layer[connector_id] = _layer(control.last_payload)
        # recorded even when refused: best effort, retried when it runs out
        control.idle_sent[connector_id] = (value, self.expiry)

    def _desired(self, control: StationControl, cplan: ConnectorPlan, *,
                 floor: bool = False) -> tuple[dict, Sent]:
        station = self.topology.station(cplan.ref.station_id)
        connector = self.topology.connector(cplan.ref)
        now = self.clock.now()
        expiry = self.expiry if self.expiry is not None else self._refresh_expiry(now)
        start = now.replace(microsecond=0)
        lifetime = max(int((expiry - start).total_seconds()), 1)
        offsets, powers = cplan.window(now, lifetime)
        if floor:
            powers = [max(p, cplan.min_power_w) for p in powers]
        phases = min(cplan.phases, connector.phases)
        factor = self.w_factor(control.unit, cplan.ref, phases, cplan.phases_known)
        powers = [p * factor for p in powers]
        kwargs = dict(unit=control.unit, phases=phases, voltage_v=station.voltage_v,
                      caps=control.caps, duration_s=int(lifetime),
                      min_power_w=cplan.min_power_w * factor)
        if control.use_tx_default:
            payload = P.tx_default_profile(cplan.ref.connector_id, now, offsets, powers,
                                           stack_level=1, fallback=True, **kwargs)
        else:
            payload = P.tx_profile(cplan.ref.connector_id, cplan.transaction_id, now, offsets,
                                   powers, **kwargs)
        sched = payload["csChargingProfiles"]["chargingSchedule"]
        periods = sched["chargingSchedulePeriod"]
        sent = Sent(cplan.transaction_id, start, start + timedelta(seconds=lifetime),
                    control.unit, phases, [p["startPeriod"] for p in periods],
                    [p["limit"] for p in periods])
        return payload, sent

    def _default_shares(self, root_w: float) -> dict:
        if self._shares_for != root_w:
            self._shares, self._shares_for = self.topology.default_shares(root_w), root_w
        return self._shares

    async def _send_plan(self, control: StationControl, cplan: ConnectorPlan) -> bool:
        """Send one connector's plan, trying the alternatives when the station refuses; True
        when one was accepted."""
        ref = cplan.ref
        key = (ref.connector_id, cplan.transaction_id)
        units = [control.unit] + [u for u in control.caps.rate_units if u != control.unit]
        modes = [control.use_tx_default, not control.use_tx_default]
        floors = [not control.zero_ok, True] if control.zero_ok else [True]
        has_zero = any(p <= 0 for p in cplan.power_w[:4])
        remembered = (control.unit, control.use_tx_default)
        answer = None
        for floor in floors:
            if floor and control.zero_ok and not has_zero:
                break   # the minimum instead of 0 only helps a plan that pauses
            for use_tx_default in modes:
                for unit in units:
                    control.unit, control.use_tx_default = unit, use_tx_default
                    payload, sent = self._desired(control, cplan, floor=floor)
                    answer = await self._send(control, payload)
                    if answer == "Accepted":
                        await self._accepted(control, cplan, sent, use_tx_default,
                                             remembered[1], key)
                        if floor and control.zero_ok:
                            control.zero_ok = False
                            self.controller.set_floor(ref, cplan.min_power_w)
                        self.controller.set_uncontrollable(ref, None)
                        return True
                    if answer == NO_ANSWER:
                        control.unit, control.use_tx_default = remembered
                        self.controller.set_uncontrollable(ref, "station does not answer")
                        return False
        control.unit, control.use_tx_default = remembered
        self.controller.set_uncontrollable(ref, f"every profile rejected (last answer: {answer})")
        return False

    async def _accepted(self, control: StationControl, cplan: ConnectorPlan, sent: Sent,
                        used_tx_default: bool, was_tx_default: bool, key) -> None:
        connector_id = cplan.ref.connector_id
        previous = control.sent.get(connector_id)
        sent.purpose = P.TX_DEFAULT_PROFILE if used_tx_default else P.TX_PROFILE
        control.sent[connector_id] = sent
        self.changed_at[cplan.ref] = self.clock.now()
        if used_tx_default:   # the same profile id as the idle one: it replaced it
            control.idle_layer.pop(connector_id, None)
            control.idle_sent[connector_id] = (
                min(P.rate_to_power(r, sent.unit, sent.phases,
                                    self.topology.station(control.station_id).voltage_v)
                    for r in sent.limits), sent.expires)
        if used_tx_default and not was_tx_default:
            # remembered only on a second refusal of the same open transaction
            control.use_tx_default = key in control.tx_refused
            control.tx_refused.add(key)
        if used_tx_default and previous is not None and previous.purpose == P.TX_PROFILE \
                and previous.transaction_id == cplan.transaction_id:
            # a TxProfile still installed would overrule the plan we just sent: remove it
            await self._clear_tx_profile(control, connector_id)

    async def _clear_tx_profile(self, control: StationControl, connector_id: int) -> None:
        request = call.ClearChargingProfile(id=P.profile_id(connector_id, P.TX_PROFILE))
        try:
            answer = await self._call(control.station_id, request)
            log.info("station %s connector %d: old TxProfile cleared (%s)", control.station_id,
                     connector_id, getattr(answer, "status", answer))
        except (StationTimeout, StationCallError) as exc:
            log.warning("station %s connector %d: could not clear the old TxProfile: %s",
                        control.station_id, connector_id, exc)

    # --- the wire ---------------------------------------------------------------------------
    async def _call(self, station_id: str, request):
        link = self.registry.get(station_id)
        if link is None:
            raise StationOffline(f"station {station_id} is not connected")
        for attempt in range(self.settings.retries + 1):
            try:
                return await link.call(request, timeout_s=self.settings.call_timeout_s)
            except StationTimeout:
                if attempt == self.settings.retries:
                    raise

    async def _send(self, control: StationControl, payload: dict, *,
                    alternatives: bool = False) -> str:
        """One SetChargingProfile; returns the answer ("Accepted", "Rejected", "NotSupported",
        a CALLERROR code, or NO_ANSWER). Raises StationOffline when the station is gone."""
        control.last_payload = payload
        request = call.SetChargingProfile(connector_id=payload["connectorId"],
                                          cs_charging_profiles=payload["csChargingProfiles"])
        try:
            result = await self._call(control.station_id, request)
            answer = str(getattr(result.status, "value", result.status))
        except StationTimeout:
            answer = NO_ANSWER
        except StationCallError as exc:
            answer = exc.code
        except StationOffline:
            self._record(control, payload, "offline")
            raise
        self._record(control, payload, answer)
        if alternatives and answer not in ("Accepted", NO_ANSWER) and control.caps is not None:
            other = [u for u in control.caps.rate_units if u != control.unit]
            if other:  # defaults in the other unit, and remember it
                profile = payload["csChargingProfiles"]
                periods = profile["chargingSchedule"]["chargingSchedulePeriod"]
                station = self.topology.station(control.station_id)
                phases = periods[0].get("numberPhases", 3)
                powers = [P.rate_to_power(p["limit"], control.unit, phases, station.voltage_v)
                          for p in periods]
                # every period kept (a fail-safe default carries a DR event's window), counted
                # from now: the first answer took a moment
                now = self.clock.now()
                elapsed_s = max((now - parse_ocpp_time(
                    profile["chargingSchedule"]["startSchedule"])).total_seconds(), 0.0)
                shifted = [(p["startPeriod"] - elapsed_s, w) for p, w in zip(periods, powers)]
                current = [w for offset, w in shifted if offset <= 0][-1]
                later = [(offset, w) for offset, w in shifted if offset > 0]
                offsets = [0.0] + [offset for offset, _ in later]
                powers = [current] + [w for _, w in later]
                control.unit = other[0]
                sched = P.schedule(now, offsets, powers, unit=control.unit, phases=phases,
                                   voltage_v=station.voltage_v, max_periods=len(periods))
                retry = dict(payload, csChargingProfiles=dict(profile, chargingSchedule=sched))
                return await self._send(control, retry)
        return answer

    def _record(self, control: StationControl, payload: dict, answer: str) -> None:
        profile = payload["csChargingProfiles"]
        self._audit.append((control.station_id, payload["connectorId"],
                            profile["chargingProfilePurpose"], payload, answer,
                            self.clock.now()))
        self.controller.stats.profiles_sent += 1
        if len(self._audit) >= 200:
            self._audit_wake.set()


def _layer(payload: dict) -> Sent:
    """What a TxDefaultProfile payload installs, as a Sent (no transaction)."""
    sched = payload["csChargingProfiles"]["chargingSchedule"]
    periods = sched["chargingSchedulePeriod"]
    start = parse_ocpp_time(sched["startSchedule"])
    expires = start + timedelta(seconds=sched["duration"]) if "duration" in sched else FOREVER
    return Sent(0, start, expires, sched["chargingRateUnit"], periods[0].get("numberPhases", 3),
                [p["startPeriod"] for p in periods], [float(p["limit"]) for p in periods],
                purpose=P.TX_DEFAULT_PROFILE)


def parse_capabilities(values: dict) -> P.Capabilities:
    """GetConfiguration values -> Capabilities; unknown or unreadable keys keep the defaults."""
    base = P.Capabilities()

    def as_int(key, default):
        try:
            return int(str(values.get(key)).strip())
        except (TypeError, ValueError):
            return default
    units_text = values.get("ChargingScheduleAllowedChargingRateUnit")
    units = base.rate_units
    if units_text:
        names = [u.strip() for u in str(units_text).split(",")]
        parsed = tuple(u for u, name in (("A", "Current"), ("W", "Power")) if name in names)
        units = parsed or units
    return P.Capabilities(
        max_stack_level=max(as_int("ChargeProfileMaxStackLevel", base.max_stack_level), 0),
        max_periods=max(as_int("ChargingScheduleMaxPeriods", base.max_periods), 1),
        rate_units=units,
        max_profiles_installed=as_int("MaxChargingProfilesInstalled", None))
