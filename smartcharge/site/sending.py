"""Sending a connector its plan: the payload in the station's unit and phases (`_desired`),
the documented alternatives when it refuses (the other rate unit, a TxDefaultProfile, the minimum
instead of 0), what is remembered when one is accepted, and the wire - one SetChargingProfile,
its answer, its row in the audit table.

A mixin of `Dispatcher` (needs `stations`, `topology`, `controller`, `clock`, `settings`,
`registry`, `expiry`, `_refresh_expiry`, `changed_at`, `_audit`, `_audit_wake`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from ocpp.v16 import call

from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp.v16 import profiles as P
from smartcharge.ocpp.registry import StationCallError, StationOffline, StationTimeout
from smartcharge.site.plan import ConnectorPlan
from smartcharge.site.station_control import Sent, StationControl
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger("smartcharge.site.dispatch")

NO_ANSWER = "no answer"


class ProfileSending:
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

    async def _send_plan(self, control: StationControl, cplan: ConnectorPlan, *,
                         raising: bool = False) -> bool:
        """Send one connector's plan, trying the alternatives when the station refuses; True
        when one was accepted. An increase left unanswered may have been installed all the
        same: it counts as installed (the upper bound of what the connector may draw)."""
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
                        if raising:
                            sent.purpose = P.TX_DEFAULT_PROFILE if use_tx_default \
                                else P.TX_PROFILE
                            control.sent[ref.connector_id] = sent
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
