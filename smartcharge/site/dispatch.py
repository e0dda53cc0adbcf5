"""Plans -> SetChargingProfile sends, one station at a time per station, all stations at once.

Per station we read the smart-charging capabilities once (GetConfiguration), install fail-safe
defaults at boot (ChargePointMaxProfile + a TxDefaultProfile per connector whose sum stays under
every limit if smartcharge disappears), and send each connector whose plan changed a TxProfile.
A rejected profile is retried in the documented alternatives (the other rate unit, a
TxDefaultProfile on the connector, the minimum rate instead of 0); what worked is remembered per
station. A connector none of them works for is reported to the controller as uncontrollable.
Decreases go out (and are answered) before increases, so a re-plan never overshoots in between.
Every profile sent is recorded with the station's answer in the store's audit table.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from ocpp.v16 import call

from smartcharge import events as ev
from smartcharge.tasks import OwnedTasks
from smartcharge.clock import Clock, parse_ocpp_time
from smartcharge.ocpp import profiles as P
from smartcharge.ocpp.registry import (StationCallError, StationOffline, StationRegistry,
                                       StationTimeout)
from smartcharge.site.plan import ConnectorPlan, Plan
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger(__name__)

CONFIG_KEYS = ["ChargeProfileMaxStackLevel", "ChargingScheduleMaxPeriods",
               "ChargingScheduleAllowedChargingRateUnit", "MaxChargingProfilesInstalled"]
NO_ANSWER = "no answer"


@dataclass(frozen=True)
class DispatchSettings:
    call_timeout_s: float = 10.0       # real seconds we wait for a station's answer
    retries: int = 1                   # extra attempts after a timeout
    # A TxProfile covers this much site time and is re-sent (at a slot start) when less than
    # refresh_before_s is left. Short on purpose: if smartcharge disappears, every station is
    # back on its fail-safe TxDefaultProfile within this time.
    profile_lifetime_s: float = 1800.0
    refresh_before_s: float = 1000.0
    probe_every_s: float = 900.0       # an uncontrollable connector is offered a profile again


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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Dispatcher:
    def __init__(self, controller, registry: StationRegistry, store, clock: Clock,
                 settings: DispatchSettings | None = None) -> None:
        self.controller = controller
        self.topology = controller.topology
        self.registry = registry
        self.store = store
        self.clock = clock
        self.settings = settings or DispatchSettings()
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
        self.rounds_done = 0
        self.round_done = asyncio.Event()   # replaced after each round (for waiters)

    # --- inputs (from the controller, synchronously) ----------------------------------------
    def apply(self, plan: Plan) -> None:
        self._latest = plan
        self._wake.set()

    def on_event(self, event) -> None:
        if isinstance(event, ev.StationBooted) and event.accepted:
            self._spawn(self.setup_station(event.station_id))
        elif isinstance(event, ev.StationConnected):
            # a reconnect without a reboot sends no BootNotification: re-install all the same
            self._spawn(self.setup_station(event.station_id))
        elif isinstance(event, ev.SessionStopped | ev.SessionStarted) \
                and event.connector_id is not None:
            control = self.stations.get(event.station_id)
            if control is not None:
                # idle_sent stays: that TxDefaultProfile is still what a new transaction gets
                control.sent.pop(event.connector_id, None)

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
    async def setup_station(self, station_id: str) -> None:
        control = self.stations.get(station_id)
        if control is None:
            return
        async with control.lock:
            try:
                if control.caps is None:
                    control.caps = await self._read_capabilities(station_id)
                    if "A" not in control.caps.rate_units and control.caps.rate_units:
                        control.unit = control.caps.rate_units[0]
                control.sent.clear()   # the station may have forgotten everything
                control.idle_sent.clear()
                await self._send_defaults(control)
            except (StationOffline, StationTimeout) as exc:
                log.info("station %s: setup postponed (%s)", station_id, exc)
                return
        for connector in self.topology.station(station_id).connectors:
            self.controller.set_uncontrollable(ConnectorRef(station_id, connector.connector_id),
                                               None)
        if self._latest is not None:
            await self._dispatch_station(control, self._latest, phase=None)

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
            await self._send(control, payload, alternatives=True)
        control.defaults_root_w = key[0]
        control.defaults_key = key

    # --- plans ------------------------------------------------------------------------------
    async def dispatch_plan(self, plan: Plan) -> None:
        """Decreases first (all stations at once, each waiting for its answers), then the rest."""
        controls = [c for c in self.stations.values() if self.registry.get(c.station_id)]
        for phase in ("down", "up"):
            await asyncio.gather(*(self._dispatch_station(c, plan, phase) for c in controls))
        await asyncio.gather(*(self._probe(c, plan) for c in controls))
        self._audit_wake.set()

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

    async def _dispatch_station(self, control: StationControl, plan: Plan,
                                phase: str | None) -> None:
        if control.caps is None:
            return   # not set up yet: setup_station sends the plan once it has the capabilities
        async with control.lock:
            try:
                for ref, cplan in plan.connectors.items():
                    if ref.station_id != control.station_id:
                        continue
                    if phase is not None and self._direction(control, cplan) != phase:
                        continue
                    if self._needs_send(control, cplan):
                        await self._send_plan(control, cplan)
                await self._dispatch_idle(control, plan, phase)
                if control.defaults_key != self._defaults_key():
                    # a DR event or a lower cap announced or over: the fail-safe defaults
                    # follow it, right after this station's decreases (in the first phase)
                    await self._send_defaults(control)
            except StationOffline:
                return
            except Exception:  # one station's trouble never stops the others
                log.exception("station %s: dispatch failed", control.station_id)

    async def _dispatch_idle(self, control: StationControl, plan: Plan, phase: str | None) -> None:
        """Idle connectors get a short-lived TxDefaultProfile (stack level 1) at their share of
        the room the plan leaves, so a car arriving before the next re-plan stays within it."""
        if control.caps.max_stack_level < 1:
            return   # it would replace the fail-safe default at stack level 0
        now = self.clock.now()
        for connector in self.topology.station(control.station_id).connectors:
            ref = ConnectorRef(control.station_id, connector.connector_id)
            value = plan.idle_w.get(ref)
            if value is None or (value <= 0 and not control.zero_ok):
                continue
            sent = control.idle_sent.get(connector.connector_id)
            lower = sent is None or value < sent[0] - 1.0
            if phase is not None and (phase == "down") != lower:
                continue
            if not (lower or (sent[1] - now).total_seconds() < self.settings.refresh_before_s
                    or value > sent[0] + max(1000.0, 0.2 * sent[0])):
                continue
            station = self.topology.station(control.station_id)
            factor = self.w_factor(control.unit, ref, connector.phases, False)
            payload = P.tx_default_profile(
                connector.connector_id, now, [0], [value * factor], unit=control.unit,
                phases=connector.phases, voltage_v=station.voltage_v, caps=control.caps,
                duration_s=int(self.settings.profile_lifetime_s), stack_level=1, fallback=True)
            await self._send(control, payload)
            # recorded even when refused: best effort, retried when it runs out
            control.idle_sent[connector.connector_id] = (
                value, now + timedelta(seconds=self.settings.profile_lifetime_s))

    def _desired(self, control: StationControl, cplan: ConnectorPlan, *,
                 floor: bool = False) -> tuple[dict, Sent]:
        station = self.topology.station(cplan.ref.station_id)
        connector = self.topology.connector(cplan.ref)
        now = self.clock.now()
        lifetime = self.settings.profile_lifetime_s
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
        start = now.replace(microsecond=0)
        sent = Sent(cplan.transaction_id, start, start + timedelta(seconds=lifetime),
                    control.unit, phases, [p["startPeriod"] for p in periods],
                    [p["limit"] for p in periods])
        return payload, sent

    def _direction(self, control: StationControl, cplan: ConnectorPlan) -> str:
        old = control.sent.get(cplan.ref.connector_id)
        if old is None or old.transaction_id != cplan.transaction_id or old.unit != control.unit:
            # a new transaction runs on its idle TxDefaultProfile (or the fail-safe default)
            # until its plan arrives: going below that is a decrease like any other
            return "down" if cplan.power_at(self.clock.now()) < self._in_force_w(control, cplan) \
                else "up"
        _, new = self._desired(control, cplan, floor=not control.zero_ok)
        for moment in _change_points(old, new):
            before, after = old.rate_at(moment), new.rate_at(moment)
            if before is not None and after is not None and after < before:
                return "down"
        return "up"

    def _in_force_w(self, control: StationControl, cplan: ConnectorPlan) -> float:
        idle = control.idle_sent.get(cplan.ref.connector_id)
        if idle is not None and idle[1] > self.clock.now():
            return idle[0]
        root_w = control.defaults_root_w if control.defaults_root_w is not None \
            else self.default_root_w()
        return self._default_shares(root_w)[cplan.ref][0]

    def _default_shares(self, root_w: float) -> dict:
        if self._shares_for != root_w:
            self._shares, self._shares_for = self.topology.default_shares(root_w), root_w
        return self._shares

    def _needs_send(self, control: StationControl, cplan: ConnectorPlan) -> bool:
        old = control.sent.get(cplan.ref.connector_id)
        if old is None or old.transaction_id != cplan.transaction_id or old.unit != control.unit:
            return True
        now = self.clock.now()
        if (old.expires - now).total_seconds() < self.settings.refresh_before_s:
            return True
        _, new = self._desired(control, cplan, floor=not control.zero_ok)
        return any(old.rate_at(m) != new.rate_at(m) for m in _change_points(old, new)
                   if m < old.expires)

    async def _send_plan(self, control: StationControl, cplan: ConnectorPlan) -> None:
        """Send one connector's plan, trying the alternatives when the station refuses."""
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
                        return
                    if answer == NO_ANSWER:
                        control.unit, control.use_tx_default = remembered
                        self.controller.set_uncontrollable(ref, "station does not answer")
                        return
        control.unit, control.use_tx_default = remembered
        self.controller.set_uncontrollable(ref, f"every profile rejected (last answer: {answer})")

    async def _accepted(self, control: StationControl, cplan: ConnectorPlan, sent: Sent,
                        used_tx_default: bool, was_tx_default: bool, key) -> None:
        connector_id = cplan.ref.connector_id
        previous = control.sent.get(connector_id)
        sent.purpose = P.TX_DEFAULT_PROFILE if used_tx_default else P.TX_PROFILE
        control.sent[connector_id] = sent
        if used_tx_default:   # the same profile id as the idle one: it replaced it
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


def _change_points(old: Sent, new: Sent) -> list[datetime]:
    points = {new.start + timedelta(seconds=s) for s in new.starts_s}
    points |= {old.start + timedelta(seconds=s) for s in old.starts_s}
    return sorted(p for p in points if p >= new.start and p < min(old.expires, new.expires))


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
